"""`make test`'s pytest runs: the cluster e2e beside the rest of the suite, the node teardown last.

The cluster e2e spends most of its nine minutes waiting for pods, rollout intervals and the
evaluator's windows, so the rest of the suite runs in a second pytest process meanwhile (each
test has its own namespace, topics and databases). The teardown test restarts the shared node,
so it runs alone once both are done. Arguments, when given, go to one plain pytest run instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

E2E = "tests/e2e/test_cluster.py"
TEARDOWN = "tests/harness/test_cluster_teardown.py"
LOG_DIR = Path("var/test-logs")


def _pytest(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *args]


def _report(name: str, code: int, seconds: float) -> str:
    verdict = "passed" if code == 0 else f"FAILED (pytest exit code {code})"
    return f"{name}: {verdict} in {seconds:.0f}s"


def run_split() -> int:
    """Run the three parts; the exit code is the first failing part's, else 0."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    e2e_log = LOG_DIR / "e2e-cluster.log"
    begun = time.monotonic()
    with e2e_log.open("wb") as sink:
        # No cache plugin: two pytest processes must not write .pytest_cache at once.
        e2e = subprocess.Popen(
            _pytest("-p", "no:cacheprovider", E2E), stdout=sink, stderr=subprocess.STDOUT
        )
        print(f"cluster e2e started in the background (pid {e2e.pid}); its log: {e2e_log}")
        sys.stdout.flush()
        try:
            suite = subprocess.call(_pytest(f"--ignore={E2E}", f"--ignore={TEARDOWN}"))
            suite_seconds = time.monotonic() - begun
            e2e_code = e2e.wait()
        except BaseException:
            e2e.terminate()
            e2e.wait(timeout=60)
            raise
    e2e_seconds = time.monotonic() - begun
    print(f"\n===== cluster e2e ({E2E}), run beside the suite =====")
    sys.stdout.write(e2e_log.read_text(errors="replace"))
    sys.stdout.flush()
    teardown_begun = time.monotonic()
    teardown = subprocess.call(_pytest("-p", "no:cacheprovider", TEARDOWN))
    print()
    print(_report("suite", suite, suite_seconds))
    print(_report("cluster e2e", e2e_code, e2e_seconds))
    print(_report("node teardown", teardown, time.monotonic() - teardown_begun))
    return next((code for code in (suite, e2e_code, teardown) if code != 0), 0)


def main(argv: list[str]) -> int:
    """``python -m harness.testrun [pytest args]``."""
    if argv:
        return subprocess.call(_pytest(*argv))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run_split()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
