"""MLflow adapter: resolve the version to roll out, move ``champion``, tag each rollout outcome."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from movierec_operator import constants
from movierec_operator.constants import Outcome
from movierec_operator.status import rfc3339

log = logging.getLogger(__name__)
T = TypeVar("T")


class RegistryUnavailableError(RuntimeError):
    """MLflow did not answer (retried later); ``reason`` is one line a person can act on."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class VersionNotFoundError(LookupError):
    """The model, version or alias does not exist (a person must fix the spec or the registry)."""


def _bound_calls(timeout: float, retries: int) -> None:
    """MLflow's client retries a dead server for minutes by default (120 s x 7 tries); the
    operator bounds each call and retries the whole reconciliation itself, with the reason in
    status. MLflow reads these per request and takes whole seconds."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, round(timeout)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] = "0.5"


def error_class(exc: BaseException) -> str:
    """The innermost cause's class name: ``ConnectionRefusedError``, ``TimeoutError``, ..."""
    seen: set[int] = set()
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return type(exc).__name__
        seen.add(id(exc))
        exc = nxt


class Registry:
    """The few MLflow Model Registry calls the operator makes."""

    def __init__(self, tracking_uri: str, *, timeout: float = 5.0, retries: int = 2) -> None:
        _bound_calls(timeout, retries)
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _unavailable(self, what: str, exc: BaseException) -> RegistryUnavailableError:
        reason = f"MLflowUnavailable: {self.tracking_uri}: {error_class(exc)}"
        return RegistryUnavailableError(f"{what}: {reason}: {exc}", reason=reason)

    def _run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args)
        except MlflowException as exc:
            if exc.error_code in (
                "RESOURCE_DOES_NOT_EXIST",
                "INVALID_PARAMETER_VALUE",
                "NOT_FOUND",
            ):
                raise VersionNotFoundError(f"{what}: {exc.message}") from exc
            raise self._unavailable(what, exc) from exc
        except OSError as exc:
            raise self._unavailable(what, exc) from exc

    def resolve(self, model_name: str, *, version: str | None, alias: str | None) -> str:
        """The version number to serve: the pinned one (checked to exist) or the alias' target."""
        if alias is not None:
            mv = self._run(
                f"alias {alias!r} of model {model_name!r}",
                self._client.get_model_version_by_alias,
                model_name,
                alias,
            )
        else:
            mv = self._run(
                f"version {version} of model {model_name!r}",
                self._client.get_model_version,
                model_name,
                version,
            )
        return str(mv.version)

    def record_outcome(
        self, model_name: str, version: str, outcome: Outcome, reason: str, now: float
    ) -> None:
        """Tag the version with what its rollout ended in; promotions also move ``champion``."""
        what = f"record {outcome} for {model_name} version {version}"
        if outcome in (Outcome.PROMOTED, Outcome.FORCE_PROMOTED):
            self._run(
                what,
                self._client.set_registered_model_alias,
                model_name,
                constants.CHAMPION_ALIAS,
                version,
            )
        for key, value in (
            (constants.TAG_OUTCOME, str(outcome)),
            (constants.TAG_REASON, reason[:4000]),
            (constants.TAG_TIME, rfc3339(now)),
        ):
            self._run(what, self._client.set_model_version_tag, model_name, version, key, value)
