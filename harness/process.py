"""The harness's process runner is ``movierec.process`` (shipped in the wheel, so ``movierec demo``
uses the same code); re-exported here for the harness modules."""

from movierec.process import (
    ServiceError,
    ServiceProcess,
    log_tail,
    pid_alive,
    pid_cmdline,
    run,
    stop_pid,
)

__all__ = [
    "ServiceError",
    "ServiceProcess",
    "log_tail",
    "pid_alive",
    "pid_cmdline",
    "run",
    "stop_pid",
]
