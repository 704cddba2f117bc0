"""The contract every line source keeps with the ingest job."""

from __future__ import annotations

from typing import Protocol

from movierec_ingestor.batch import Batch


class Source(Protocol):
    """Reads batches from the offsets committed in the store; learns of commits afterwards.

    The store is the only place offsets are durable: a source starts (and restarts after a
    rebalance) from what the store says, so a crash between read and commit loses nothing.
    """

    name: str

    def read(self, max_lines: int, timeout_s: float) -> Batch:
        """The next lines (possibly none) with their positions and the offsets after them."""
        ...

    def committed(self, batch: Batch) -> None:
        """The batch is durable in the store: move the read position's baseline past it."""
        ...

    def caught_up(self) -> bool:
        """True when everything present at start (or since) has been read and committed."""
        ...

    def lag(self) -> dict[int, int]:
        """Lines not yet read, per partition, as far as the source knows without a round trip."""
        ...

    def close(self) -> None:
        """Release files and network connections."""
        ...
