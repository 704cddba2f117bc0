"""`movierec train` / `movierec predict`: outputs, fallbacks and exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from movierec.cli import main
from tests.recommender.test_models_fixtures import latent_data


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = latent_data(n_users=60, n_items=40, density=0.4)
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    rows = zip(d.user_ids, d.movie_ids, d.ratings.astype(int), d.timestamps, strict=True)  # type: ignore[arg-type]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "movie_id", "rating", "timestamp"])
        w.writerows(rows)
    return path


@pytest.mark.parametrize("algo", ["user-user", "item-item"])
def test_train_prints_metrics_and_saves_a_model_predict_scores_every_pair(
    algo: str, ratings_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    code = main(
        [
            "train",
            "--ratings",
            str(ratings_csv),
            "--algo",
            algo,
            "--out",
            str(out),
            "--config",
            '{"neighbors": 10}',
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["algo"] == algo
    for key in ("rmse", "mae", "precision@10", "recall@10", "ndcg@10", "coverage"):
        assert np.isfinite(result[key])
    assert (out / "meta.json").is_file()
    assert json.loads((out / "meta.json").read_text())["config"]["neighbors"] == 10

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user_id,movie_id\nu1,m3\nstranger,m3\nu1,no-such-movie\nu1,m3\n")
    preds = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(out), "--pairs", str(pairs), "--out", str(preds)]) == 0
    with preds.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["user_id"], r["movie_id"]) for r in rows] == [
        ("u1", "m3"),
        ("stranger", "m3"),
        ("u1", "no-such-movie"),
        ("u1", "m3"),
    ]
    values = [float(r["prediction"]) for r in rows]
    assert all(1 <= v <= 5 for v in values) and values[0] == values[3]


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--ratings", "{csv}", "--algo", "svd", "--out", "{tmp}/m"],
        ["train", "--ratings", "{tmp}/missing.csv", "--algo", "item-item", "--out", "{tmp}/m"],
        ["train", "--ratings", "{bad}", "--algo", "item-item", "--out", "{tmp}/m"],
        [
            "train",
            "--ratings",
            "{csv}",
            "--algo",
            "item-item",
            "--out",
            "{tmp}/m",
            "--config",
            '{"neighbours": 3}',
        ],
        ["train", "--algo", "item-item", "--out", "{tmp}/m"],
        ["predict", "--model", "{tmp}/nomodel", "--pairs", "{bad}", "--out", "{tmp}/p.csv"],
    ],
)
def test_bad_input_exits_2(
    args: list[str], ratings_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user,movie\n1,2\n")
    subst = {"{csv}": str(ratings_csv), "{tmp}": str(tmp_path), "{bad}": str(bad)}
    argv = list(args)
    for key, value in subst.items():
        argv = [a.replace(key, value) for a in argv]
    assert run(argv) == 2
    assert capsys.readouterr().err.strip()


def test_predict_bad_pairs_header_exits_2(
    ratings_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "train",
                "--ratings",
                str(ratings_csv),
                "--algo",
                "item-item",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 0
    )
    bad = tmp_path / "pairs.csv"
    bad.write_text("movie_id,user_id\n1,2\n")
    code = main(
        [
            "predict",
            "--model",
            str(tmp_path / "m"),
            "--pairs",
            str(bad),
            "--out",
            str(tmp_path / "p.csv"),
        ]
    )
    assert code == 2
    assert "expected header 'user_id,movie_id'" in capsys.readouterr().err


def run(argv: list[str]) -> int:
    """main() as the shell sees it: argparse's own usage errors exit via SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
