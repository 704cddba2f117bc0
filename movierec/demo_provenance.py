"""The demo's provenance sink: the services' contract events as JSON lines in files, not Kafka.

The demo runs without a broker, so each gunicorn worker of `movierec serve`'s app appends the
events it would send to the `recommendations` topic (`provenance.build_event`) to its own file;
`movierec ingest --source FILE` stores them through the same parser as the topic's messages.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from movierec_recommender.provenance import ProvenanceSink
from prometheus_client import CollectorRegistry

DIR_ENV = "MOVIEREC_DEMO_PROVENANCE_DIR"
SERVING_APP = "movierec.demo_provenance:create()"  # gunicorn entry of the demo's recommenders


class FileProvenanceSink(ProvenanceSink):
    """Appends each event as one JSON line; one file per process, so lines never interleave."""

    def __init__(self, path: Path, registry: CollectorRegistry | None = None) -> None:
        super().__init__(None, "recommendations", registry or CollectorRegistry())
        self.path = path
        self._write_lock = threading.Lock()
        self._fh: Any = None

    @property
    def enabled(self) -> bool:
        return True

    def emit(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._write_lock:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = self.path.open("a", encoding="utf-8", buffering=1)  # line-buffered
            self._fh.write(line)

    def close(self, timeout: float = 5.0) -> None:
        with self._write_lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def create() -> Any:
    """`movierec serve`'s gunicorn app (serving.wsgi.create) with the file sink in place of Kafka."""
    from movierec_recommender.serving.app import create_app
    from movierec_recommender.serving.settings import ServingSettings
    from movierec_recommender.web.edge import edge_of
    from movierec_recommender.web.logs import configure_logging

    configure_logging()
    settings = ServingSettings()
    folder = Path(os.environ[DIR_ENV])
    sink = FileProvenanceSink(folder / f"provenance-{settings.track}-{os.getpid()}.jsonl")
    app = create_app(settings, provenance=sink)
    app.extensions["movierec"].holder.wait_ready(settings.startup_wait_seconds)
    return edge_of(app)
