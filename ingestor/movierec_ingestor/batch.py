"""One batch of stream lines turned into database rows and dead letters (pure, no I/O)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from movierec_ingestor.events import (
    MAX_LINE_BYTES,
    ParseError,
    fast_fields,
    format_fields,
    parse_general_fields,
)
from movierec_ingestor.provenance import NotExposure, canonical, parse_provenance

# Rows in the column order of their raw table (schema.RAW_TABLES), `ingested_at` included.
WatchRow = tuple[str, datetime, int, str, int, datetime]
RateRow = tuple[str, datetime, int, str, int, datetime]
# ... then request_id, track, model_name, model_version, scores, source.
RecommendationRow = tuple[
    str,
    datetime,
    int,
    str,
    int,
    str,
    int | None,
    str | None,
    datetime,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str,
]
_NO_PROVENANCE = (None, None, None, None, None)


def utcnow() -> datetime:
    """The server's clock, naive UTC like every time in the store."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class TimePolicy:
    """Which event times are plausible: not before the service's epoch, and not ahead of the
    server's clock by more than `max_skew`. Others are dead-lettered (`time_before_epoch`,
    `time_in_future`): a client-supplied time of 1990 or 9999 must not reach the store, where
    it would lock a latest rating or fail every later quality run."""

    epoch: datetime = datetime(1995, 1, 1)
    max_skew: timedelta = timedelta(minutes=5)


# Dead letters keep the bad input for a person to look at, but a multi-megabyte garbage "line"
# should not become a multi-megabyte row.
MAX_DEAD_LETTER_RAW = MAX_LINE_BYTES + 256


def event_key(canonical_line: str) -> str:
    """The idempotency key of an event: 16-byte BLAKE2b of its canonical line, as hex."""
    return hashlib.blake2b(canonical_line.encode("utf-8"), digest_size=16).hexdigest()


def raw_text(raw: str | bytes) -> str:
    """A bad line as storable text: undecodable bytes and NULs spelled out, length bounded."""
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
    if len(text) > MAX_DEAD_LETTER_RAW:
        text = f"{text[:MAX_DEAD_LETTER_RAW]}...[{len(text) - MAX_DEAD_LETTER_RAW} more chars]"
    # PostgreSQL text cannot hold NUL; keep it visible instead of failing the batch.
    return text.replace("\x00", "\\x00")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A line that failed validation, where it came from and why."""

    source: str
    position: str
    raw: str
    reason: str
    detail: str


@dataclass(slots=True)
class Batch:
    """Parsed rows of one read, the dead letters, and the source offsets to commit with them.

    `offsets` maps partition -> next offset to read; for a file the partition is 0 and the
    offset a byte position. Offsets only move forward unless `rewind` is set (a truncated file).
    """

    source: str
    watch: list[WatchRow] = field(default_factory=list)
    rate: list[RateRow] = field(default_factory=list)
    recommendation: list[RecommendationRow] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)
    read: int = 0
    newest_time: datetime | None = None
    rewind: bool = False
    policy: TimePolicy = field(default_factory=TimePolicy)
    # The server's time when the batch was read: stored with every event (trusted, unlike
    # the event's own time) and the reference of the plausibility window.
    ingested_at: datetime = field(default_factory=utcnow)
    skipped: int = 0  # valid provenance events that are not exposures (HEAD, shed)
    identity: str | None = None  # a file source's identity, stored with its offsets
    _earliest: datetime = field(init=False)
    _latest: datetime = field(init=False)

    def __post_init__(self) -> None:
        self._earliest = self.policy.epoch
        self._latest = self.ingested_at + self.policy.max_skew

    def add(self, raw: str | bytes | None, position: str) -> str:
        """Validate one line into a row or a dead letter; returns the kind or the reason."""
        self.read += 1
        if raw is None:  # a Kafka tombstone: no value at all
            return self._dead(b"", position, ParseError("empty", "message without value"))
        if raw[:1] in (b"{", "{"):  # a provenance event (topic `recommendations`)
            return self._add_provenance(raw, position)
        fast = fast_fields(raw) if isinstance(raw, bytes) else None
        if fast is not None:  # the bulk of the stream: fields and canonical line in one match
            kind, fields, canonical = fast
        else:
            try:
                kind, fields = parse_general_fields(raw)
            except ParseError as exc:
                return self._dead(raw, position, exc)
            canonical = format_fields(kind, fields).encode("utf-8")
        time = fields[0]
        if not self._earliest <= time <= self._latest:
            return self._dead(raw, position, self._implausible(time))
        if self.newest_time is None or time > self.newest_time:
            self.newest_time = time
        key = hashlib.blake2b(canonical, digest_size=16).hexdigest()
        if kind == "watch":
            self.watch.append((key, *fields, self.ingested_at))
        elif kind == "rate":
            self.rate.append((key, *fields, self.ingested_at))
        else:
            t, user_id, server, status, results, latency_ms, error = fields
            self.recommendation.append(
                (
                    key,
                    t,
                    user_id,
                    server,
                    status,
                    ",".join(results),
                    latency_ms,
                    error,
                    self.ingested_at,
                    *_NO_PROVENANCE,
                    "log",
                )
            )
        return kind

    def _implausible(self, time: datetime) -> ParseError:
        if time < self._earliest:
            return ParseError("time_before_epoch", f"{time.isoformat()} < {self._earliest}")
        return ParseError(
            "time_in_future", f"{time.isoformat()} > ingestion time + {self.policy.max_skew}"
        )

    def _add_provenance(self, raw: str | bytes, position: str) -> str:
        try:
            fields = parse_provenance(raw)
        except NotExposure:
            self.skipped += 1
            return "not_exposure"
        except ParseError as exc:
            return self._dead(raw, position, exc)
        time = fields[0]
        if not self._earliest <= time <= self._latest:
            return self._dead(raw, position, self._implausible(time))
        if self.newest_time is None or time > self.newest_time:
            self.newest_time = time
        key = event_key(canonical(fields))
        self.recommendation.append((key, *fields[:7], self.ingested_at, *fields[7:], "provenance"))
        return "provenance"

    def _dead(self, raw: str | bytes, position: str, exc: ParseError) -> str:
        self.dead_letters.append(
            DeadLetter(self.source, position, raw_text(raw), exc.reason, exc.detail)
        )
        return exc.reason

    def split(self, parts: int) -> list[Batch]:
        """The batch's events in `parts` batches by user (user id mod parts), without offsets.

        One user's events, and so every derived row they touch (sessions and latest ratings
        are keyed by user), and every repeat of one event, land in one part: parts can commit
        concurrently without waiting on each other's row locks. Dead letters go with the first.
        """
        out = [
            Batch(self.source, policy=self.policy, ingested_at=self.ingested_at)
            for _ in range(parts)
        ]
        watch = [b.watch for b in out]
        for row in self.watch:
            watch[row[2] % parts].append(row)
        rate = [b.rate for b in out]
        for row in self.rate:
            rate[row[2] % parts].append(row)
        recommendation = [b.recommendation for b in out]
        for rec in self.recommendation:
            recommendation[rec[2] % parts].append(rec)
        out[0].dead_letters = list(self.dead_letters)
        return out

    @property
    def valid(self) -> int:
        """Number of lines that parsed into events (duplicates included)."""
        return len(self.watch) + len(self.rate) + len(self.recommendation)

    def user_ids(self) -> set[int]:
        """Every user id the batch's events mention."""
        ids = {row[2] for row in self.watch}
        ids.update(row[2] for row in self.rate)
        ids.update(row[2] for row in self.recommendation)
        return ids

    def movie_ids(self) -> set[str]:
        """Every movie id watched or rated in the batch (recommended ids are not looked up)."""
        ids = {row[3] for row in self.watch}
        ids.update(row[3] for row in self.rate)
        return ids
