"""The one process runner as `movierec demo` uses it: services with their own logs, readiness over
HTTP, a clear error with the log tail when one dies, and every process stopped afterwards."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from movierec.process import ServiceError, free_port, pid_alive, process_group


def test_group_waits_for_http_and_stops_what_it_started(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with process_group(tmp_path / "logs") as group:
        child = group.start("web", argv, env={"MOVIEREC_TEST": "1"})
        group.wait_http(child, f"http://127.0.0.1:{port}/", timeout=30)
        pid = child.pid
        assert pid is not None and pid_alive(pid)
    assert not pid_alive(pid)
    assert (tmp_path / "logs" / "web.log").exists()


def test_a_service_that_dies_fails_with_its_log(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('bad model file'); sys.exit(3)"]
    with process_group(tmp_path) as group:
        child = group.start("serve", argv)
        with pytest.raises(ServiceError, match=r"(?s)exit code 3.*bad model file"):
            group.wait_http(child, f"http://127.0.0.1:{free_port()}/readyz", timeout=30)


def test_the_runner_ships_without_the_harness() -> None:
    # `movierec demo` runs from an installed wheel, where the harness package does not exist
    source = Path(__file__).resolve().parents[2] / "movierec" / "process.py"
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {m for m in imported if m.split(".")[0] in {"harness", "tests"}}
