"""The MLflow pyfunc face of a recommender: a thin wrapper whose only artifact is our native model dir.

Serving does not go through this wrapper (``download.download_model`` loads the native dir
directly); it exists so that any MLflow tool (``mlflow.pyfunc.load_model``, batch scoring, the UI's
signature view) can use a registered version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd  # at runtime: MLflow resolves predict's type hint to skip its own inference
from mlflow.pyfunc import PythonModel

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

NATIVE_KEY = "native"
# pyfunc copies each artifact under <model>/artifacts/<basename>; we always save into a dir named
# NATIVE_KEY, so the native model sits at this path inside every logged model.
NATIVE_SUBPATH = f"artifacts/{NATIVE_KEY}"
INPUT_COLUMNS = ("user_id", "movie_id")


class RecommenderPyfunc(PythonModel):
    """``predict`` takes a DataFrame with ``user_id`` and ``movie_id`` and returns predicted ratings."""

    def load_context(self, context: Any) -> None:
        from movierec_recommender.models import load_model

        self._model = load_model(context.artifacts[NATIVE_KEY])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        missing = [c for c in INPUT_COLUMNS if c not in model_input.columns]
        if missing:
            raise ValueError(f"input needs columns {list(INPUT_COLUMNS)}; missing {missing}")
        users = model_input["user_id"].astype(str).to_numpy()
        movies = model_input["movie_id"].astype(str).to_numpy()
        return np.asarray(self._model.predict(users, movies), dtype=np.float64)


def signature() -> ModelSignature:
    """Input: string ``user_id`` and ``movie_id`` columns; output: one double per row."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", name) for name in INPUT_COLUMNS]),
        outputs=Schema([ColSpec("double")]),
    )


def input_example(model: Any) -> pd.DataFrame:
    """Two rows the model can answer (a popular movie for an unknown user): MLflow stores them
    with the model and, at logging time, checks the pyfunc loads and predicts them."""
    movies = [*model.popular(2), "__movierec_probe_movie__", "__movierec_probe_movie__"]
    return pd.DataFrame({"user_id": ["__movierec_probe_user__"] * 2, "movie_id": movies[:2]})
