"""`movierec train` / `movierec predict`: outputs, fallbacks and exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from movierec_recommender.pipeline.summary import TrainSummary

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
    result = TrainSummary.model_validate_json(lines[0])  # the typed summary, nothing else
    assert result.algo == algo and result.out == str(out)
    for key in ("rmse", "mae", "precision@10", "recall@10", "ndcg@10", "coverage", "popular_share"):
        assert np.isfinite(result.metrics[key])
    assert result.train_ratings + result.test_ratings == result.n_ratings
    assert result.lineage["sha256"] and result.registered is None
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


def _train_csv(path: Path, body: str) -> list[str]:
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    return ["train", "--ratings", str(path), "--algo", "item-item", "--out", str(path) + ".m"]


GOOD_ROWS = "".join(
    f"u{u},m{m},{1 + (u * m) % 5},{u * 100 + m}\n" for u in range(8) for m in range(6)
)


@pytest.mark.parametrize("rating", ["1e308", "-5", "1e30", "0", "5.5", "inf", "nan"])
def test_train_rejects_ratings_off_the_scale_with_exit_2(
    rating: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = "user_id,movie_id,rating,timestamp\n" + GOOD_ROWS + f"u1,m9,{rating},5\n"
    assert run(_train_csv(tmp_path / "r.csv", body)) == 2
    err = capsys.readouterr().err
    assert f"line {GOOD_ROWS.count(chr(10)) + 2}" in err and rating in err


def test_train_rejects_a_header_that_is_not_utf8_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b"user_id,movie_\xff\xfeid,rating\n" + GOOD_ROWS.encode()
    assert run(_train_csv(tmp_path / "r.csv", body)) == 2  # type: ignore[arg-type]
    assert "line 1: not UTF-8" in capsys.readouterr().err


def test_train_rejects_a_header_with_a_repeated_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = "user_id,movie_id,rating,timestamp,timestamp\n" + GOOD_ROWS.replace("\n", ",1\n")
    assert run(_train_csv(tmp_path / "r.csv", body)) == 2
    assert "expected header" in capsys.readouterr().err


def test_train_skips_a_repeated_header_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = "user_id,movie_id,rating,timestamp\n"
    half = GOOD_ROWS.count("\n") // 2
    lines = GOOD_ROWS.splitlines(keepends=True)
    body = header + "".join(lines[:half]) + header + "".join(lines[half:])  # `cat a.csv b.csv`
    assert run(_train_csv(tmp_path / "r.csv", body)) == 0
    assert json.loads(capsys.readouterr().out)["n_ratings"] == len(lines)


@pytest.fixture(scope="module")
def small_model(ratings_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("m") / "model"
    argv = ["train", "--ratings", str(ratings_csv), "--algo", "item-item", "--out", str(out)]
    assert main(argv) == 0
    return out


def _predict(model: Path, tmp_path: Path, body: bytes) -> tuple[int, list[list[str]]]:
    pairs, out = tmp_path / "pairs.csv", tmp_path / "pred.csv"
    pairs.write_bytes(body)
    code = run(["predict", "--model", str(model), "--pairs", str(pairs), "--out", str(out)])
    rows = list(csv.reader(out.open(newline=""))) if code == 0 else []
    return code, rows


def test_predict_output_cannot_inject_spreadsheet_formulas(
    small_model: Path, tmp_path: Path
) -> None:
    evil = ["=cmd|' /C calc'!A0", "+1+1", "-2", "@SUM(A1)", "\tx", "\rx"]
    body = "user_id,movie_id\n" + "".join(f'"{e}",m1\nu1,"{e}"\n' for e in evil)
    code, rows = _predict(small_model, tmp_path, body.encode())
    assert code == 0 and rows[0] == ["user_id", "movie_id", "prediction"]
    cells = [c for row in rows[1:] for c in row[:2]]
    assert len(cells) == 4 * len(evil)
    for cell in cells:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert "'=cmd|' /C calc'!A0" in cells and "'-2" in cells and "u1" in cells


def test_predict_skips_a_repeated_header_row(small_model: Path, tmp_path: Path) -> None:
    code, rows = _predict(
        small_model, tmp_path, b"user_id,movie_id\nu1,m3\nuser_id,movie_id\nu2,m3\n"
    )
    assert code == 0 and [r[:2] for r in rows[1:]] == [["u1", "m3"], ["u2", "m3"]]


@pytest.mark.parametrize(
    "body", [b"user_id,movie_id,extra\nu1,m3,x\n", b"user_id,mo\xffvie_id\nu1,m3\n", b""]
)
def test_predict_rejects_bad_pairs_headers_with_exit_2(
    body: bytes, small_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _predict(small_model, tmp_path, body)[0] == 2
    assert "line 1" in capsys.readouterr().err
