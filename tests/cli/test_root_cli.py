"""The `movierec` entry point: subcommands registered, usage errors exit 2 with a message."""

import subprocess
import sys

import pytest

from movierec.cli import build_parser, main


def test_every_contract_subcommand_is_registered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = set(sub.choices)  # type: ignore[arg-type]
    assert {"demo", "simulate", "ingest", "train", "predict", "serve"} <= names


def test_no_command_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "required" in capsys.readouterr().err


def test_bad_input_exits_2_with_message(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "movierec", "train", "--ratings", str(tmp_path / "missing.csv"),
         "--algo", "item-item", "--out", str(tmp_path / "m")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "missing.csv" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_algo_exits_2(tmp_path) -> None:
    csv = tmp_path / "r.csv"
    csv.write_text("user_id,movie_id,rating\n1,a,4\n")
    proc = subprocess.run(
        [sys.executable, "-m", "movierec", "train", "--ratings", str(csv), "--algo", "svd",
         "--out", str(tmp_path / "m")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "svd" in proc.stderr
