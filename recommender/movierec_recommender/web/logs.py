"""Logging for the gunicorn workers: plain lines, or JSON in containers (MOVIEREC_LOG_JSON=1)."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    """One JSON object per line with time, level, logger, message and the pid (per worker)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def configure_logging() -> None:
    """Give the root logger a stderr handler unless someone already did (gunicorn keeps stderr)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("MOVIEREC_LOG_JSON", "").lower() in {"1", "true", "yes"}:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
        )
    root.addHandler(handler)
    root.setLevel(os.environ.get("MOVIEREC_LOG_LEVEL", "INFO").upper())
    # the MLflow client and urllib3 are chatty at INFO
    for noisy in ("mlflow", "urllib3", "ldclient", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
