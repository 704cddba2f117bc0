"""Several sources read as one (the `movielog` and `recommendations` topics by one ingest job)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from movierec_ingestor.batch import Batch
from movierec_ingestor.sources.base import Source


class MultiSource:
    """Reads its sources in turn; every batch belongs to one of them, with that source's name
    and offsets, so each commits in its own transaction exactly as if read alone."""

    def __init__(self, sources: Sequence[Source]) -> None:
        if not sources:
            raise ValueError("MultiSource needs at least one source")
        self.sources = list(sources)
        self.name = "+".join(s.name for s in self.sources)
        self._next = 0

    def read(self, max_lines: int, timeout_s: float) -> Batch:
        """The next non-empty batch of any source, waiting up to `timeout_s` in all."""
        deadline = time.monotonic() + timeout_s
        share = timeout_s / len(self.sources)
        batch: Batch | None = None
        for _ in range(len(self.sources)):
            source = self.sources[self._next]
            self._next = (self._next + 1) % len(self.sources)
            left = max(0.0, deadline - time.monotonic())
            batch = source.read(max_lines, min(share, left) if left else 0.0)
            if batch.read or batch.offsets:
                return batch
        assert batch is not None
        return batch

    def committed(self, batch: Batch) -> None:
        """Tell the source the batch came from."""
        for source in self.sources:
            if source.name == batch.source:
                source.committed(batch)
                return

    def caught_up(self) -> bool:
        """Every source caught up."""
        return all(s.caught_up() for s in self.sources)

    def lag(self) -> dict[int, int]:
        """Lag summed per partition number over the sources."""
        total: dict[int, int] = {}
        for source in self.sources:
            for partition, n in source.lag().items():
                total[partition] = total.get(partition, 0) + n
        return total

    def close(self) -> None:
        """Close every source."""
        for source in self.sources:
            source.close()
