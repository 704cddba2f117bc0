"""A local line file (the embedded default): byte offsets kept in the store, follows growth."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from movierec_ingestor.batch import Batch, TimePolicy

log = logging.getLogger(__name__)

_MIN_CHUNK = 1 << 20
_MAX_CHUNK = 64 << 20
_BYTES_PER_LINE_GUESS = 160
_IDLE_SLEEP_S = 0.1
FINGERPRINT_BYTES = 4096


def file_identity(path: str | os.PathLike[str]) -> str:
    """`dev:inode:n:hash` of the file at `path` now: hash = BLAKE2b of its first n bytes
    (n = up to FINGERPRINT_BYTES). Raises OSError when there is no file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        info = os.fstat(fd)
        head = os.pread(fd, FINGERPRINT_BYTES, 0)
    finally:
        os.close(fd)
    digest = hashlib.blake2b(head, digest_size=16).hexdigest()
    return f"{info.st_dev}:{info.st_ino}:{len(head)}:{digest}"


def same_file(old: str, new: str, path: str | os.PathLike[str]) -> bool:
    """True when `new` (the file at `path` now) is `old` grown: same inode, same first bytes.

    A rotated file has a new inode; a file rewritten in place (same inode) has other first
    bytes. Either way the stored offset belongs to another file's content.
    """
    try:
        old_dev, old_ino, old_n, old_hash = old.split(":")
        new_dev, new_ino, new_n, new_hash = new.split(":")
    except ValueError:
        return False
    if (old_dev, old_ino) != (new_dev, new_ino) or int(new_n) < int(old_n):
        return False
    if old_n == new_n:
        return old_hash == new_hash
    with open(path, "rb") as fh:  # the old fingerprint covered fewer bytes: compare those
        head = fh.read(int(old_n))
    return hashlib.blake2b(head, digest_size=16).hexdigest() == old_hash


class FileSource:
    """Lines of one file from a byte offset on; partition 0, offset = next byte to read.

    A line is complete once its newline is written, so a writer appending concurrently is
    never read half-way; with `take_unterminated` (drain runs over finished files) a last
    line without newline is taken at end of file. A file shorter than the committed offset
    was truncated: it is read again from the start (replays are duplicates). A file replaced
    under the same name (rotated: another inode; rewritten: other first bytes), even a longer
    one, is read from its beginning too: its identity is stored beside the offset.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        take_unterminated: bool = True,
        policy: TimePolicy | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path.resolve()}"
        self.take_unterminated = take_unterminated
        self.policy = policy or TimePolicy()
        self._committed = 0
        self._read_to = 0
        self._rewind = False
        self._file: BinaryIO | None = None
        self._identity: str | None = None  # of the file being read (None: not yet seen)

    def resume(self, committed: Mapping[int, int], identity: str | None = None) -> None:
        """Start after what the store already holds, unless that was another file."""
        self._committed = self._read_to = int(committed.get(0, 0))
        self._identity = identity
        if identity is not None and self._read_to:
            self._check_replaced()

    def _check_replaced(self) -> None:
        """Start over when the file at the path is not the one the offsets belong to."""
        try:
            now = file_identity(self.path)
        except FileNotFoundError:
            return  # between a rotation's rename and the new file: keep going
        if self._identity is not None and not same_file(self._identity, now, self.path):
            log.warning(
                "%s was replaced (now %s, was %s): reading the new file from the start",
                self.path,
                now,
                self._identity,
            )
            self._read_to = 0
            self._rewind = True
            if self._file is not None:
                self._file.close()
                self._file = None
        self._identity = now

    def _size(self) -> int:
        return self.path.stat().st_size

    def _handle(self) -> BinaryIO:
        if self._file is None:
            self._file = self.path.open("rb")
        return self._file

    def read(self, max_lines: int, timeout_s: float) -> Batch:
        """Up to `max_lines` complete lines; waits up to `timeout_s` for the file to grow."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_replaced()
            size = self._size()
            if size < self._read_to:
                log.warning(
                    "%s shrank from %d to %d bytes: reading it again from the start",
                    self.path,
                    self._read_to,
                    size,
                )
                self._read_to = 0
                self._rewind = True
                if self._file is not None:  # it may be a new file under the same name
                    self._file.close()
                    self._file = None
            batch = self._read_lines(max_lines, size)
            if batch.read or time.monotonic() >= deadline:
                return batch
            time.sleep(min(_IDLE_SLEEP_S, max(0.0, deadline - time.monotonic())))

    def _read_lines(self, max_lines: int, size: int) -> Batch:
        batch = Batch(self.name, rewind=self._rewind, policy=self.policy, identity=self._identity)
        start = self._read_to
        if size <= start:
            return batch
        chunk = min(_MAX_CHUNK, max(_MIN_CHUNK, max_lines * _BYTES_PER_LINE_GUESS))
        handle = self._handle()
        handle.seek(start)
        data = handle.read(min(chunk, size - start))
        lines = data.split(b"\n")
        tail = lines.pop()  # bytes after the last newline: a line still being written
        if len(lines) > max_lines:
            del lines[max_lines:]
        elif not lines and tail:
            at_eof = start + len(data) >= size
            # A whole chunk without newline is far past any valid line: take the piece so it
            # is dead-lettered as too long instead of stalling the source.
            if len(data) >= chunk or (at_eof and self.take_unterminated):
                lines = [tail]
        position = start
        add = batch.add
        for line in lines:
            add(line, str(position))
            position += len(line) + 1
        position = min(position, start + len(data))  # a taken unterminated line has no newline
        if lines:
            batch.offsets[0] = position
        self._read_to = position
        return batch

    def committed(self, batch: Batch) -> None:
        """Remember the durable offset (the store has it too)."""
        if 0 in batch.offsets:
            self._committed = batch.offsets[0]
            self._rewind = False

    def caught_up(self) -> bool:
        """True when every byte of the file as it is now has been committed.

        A file shorter than the committed offset is not caught up: it was replaced.
        """
        return self._committed == self._size()

    def lag(self) -> dict[int, int]:
        """Bytes not yet read (a file has no line count without reading it)."""
        return {0: max(0, self._size() - self._read_to)}

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
