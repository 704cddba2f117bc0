"""`make test`'s pytest runs: the long tests beside the rest of the suite, the node teardown last.

The cluster e2e spends most of its ten minutes waiting for pods, rollout intervals and the
evaluator's windows, so a second pytest process runs the rest of the suite meanwhile (each test
has its own namespace, topics and databases). The demo and the Kafka fault and security tests join
the e2e in the background process, which balances the two at about 16 minutes each on 2 cores.
The teardown test restarts the shared node, so it runs alone once both are done. Arguments, when
given, go to one plain pytest run instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

BACKGROUND = (
    "tests/e2e",
    "tests/ingestor/test_kafka.py",
    "tests/ingestor/test_kafka_security.py",
)
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
    background_log = LOG_DIR / "background.log"
    begun = time.monotonic()
    with background_log.open("wb") as sink:
        # No cache plugin: two pytest processes must not write .pytest_cache at once.
        background = subprocess.Popen(
            _pytest("-p", "no:cacheprovider", *BACKGROUND), stdout=sink, stderr=subprocess.STDOUT
        )
        names = " ".join(BACKGROUND)
        print(f"{names} started in the background (pid {background.pid}), log {background_log}")
        sys.stdout.flush()
        ended: list[float] = []  # when the background run ended, noted by its own thread

        def note_end() -> None:
            background.wait()
            ended.append(time.monotonic())

        waiter = threading.Thread(target=note_end, daemon=True)
        waiter.start()
        try:
            ignored = [f"--ignore={path}" for path in (*BACKGROUND, TEARDOWN)]
            suite = subprocess.call(_pytest(*ignored))
            suite_seconds = time.monotonic() - begun
            background_code = background.wait()
            waiter.join()
        except BaseException:
            background.terminate()
            background.wait(timeout=60)
            raise
    background_seconds = ended[0] - begun
    print(f"\n===== {names}, run beside the suite =====")
    sys.stdout.write(background_log.read_text(errors="replace"))
    sys.stdout.flush()
    teardown_begun = time.monotonic()
    teardown = subprocess.call(_pytest("-p", "no:cacheprovider", TEARDOWN))
    print()
    print(_report("suite", suite, suite_seconds))
    print(_report("background", background_code, background_seconds))
    print(_report("node teardown", teardown, time.monotonic() - teardown_begun))
    return next((code for code in (suite, background_code, teardown) if code != 0), 0)


def main(argv: list[str]) -> int:
    """``python -m harness.testrun [pytest args]``."""
    if argv:
        return subprocess.call(_pytest(*argv))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run_split()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
