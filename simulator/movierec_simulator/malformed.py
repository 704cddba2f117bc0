"""Malformed stream lines, one builder per parser reason, each derived from a real nearby event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Template:
    """The valid event a malformed line is derived from (so garbage looks like the stream)."""

    time: str
    user_id: int
    movie_id: str
    line: str
    popular: tuple[str, ...]  # a few real movie ids, for result lists


Builder = Callable[[Template, np.random.Generator], "str | bytes"]

_SERVER = "rec-a.movierec.internal:8082"


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _empty(t: Template, rng: np.random.Generator) -> str:
    return _pick(rng, ("", "   ", "\t"))


def _truncated(t: Template, rng: np.random.Generator) -> str:
    # The writer died before the body: only the time and maybe part of the user id made it.
    user = str(t.user_id)
    return f"{t.time},{user[: int(rng.integers(1, len(user) + 1))]}"


def _bad_time(t: Template, rng: np.random.Generator) -> str:
    bad = _pick(
        rng, ("2025-13-45T25:61:00", "yesterday", "2025/10/01 12:00:00", "1696000000", "T12:00")
    )
    return f"{bad},{t.user_id},GET /data/m/{t.movie_id}/0.mpg"


def _bad_user_id(t: Template, rng: np.random.Generator) -> str:
    bad = _pick(rng, ("-42", "abc", f"{t.user_id}x", "", "4.5", "user17"))
    return f"{t.time},{bad},GET /rate/{t.movie_id}=4"


def _invalid_user_id(t: Template, rng: np.random.Generator) -> str:
    return f"{t.time},{2**63 + int(rng.integers(1000))},GET /rate/{t.movie_id}=3"


def _invalid_rating(t: Template, rng: np.random.Generator) -> str:
    bad = _pick(rng, ("0", "6", "7", "10", "-1", "55"))
    return f"{t.time},{t.user_id},GET /rate/{t.movie_id}={bad}"


def _invalid_minute(t: Template, rng: np.random.Generator) -> str:
    minute = -int(rng.integers(1, 500)) if rng.random() < 0.7 else 100_001 + int(rng.integers(9))
    return f"{t.time},{t.user_id},GET /data/m/{t.movie_id}/{minute}.mpg"


def _invalid_movie_id(t: Template, rng: np.random.Generator) -> str:
    bad = _pick(rng, (t.movie_id.upper(), t.movie_id.replace("+", "%20"), f"{t.movie_id}!"))
    return f"{t.time},{t.user_id},GET /data/m/{bad}/3.mpg"


def _bad_watch(t: Template, rng: np.random.Generator) -> str:
    body = _pick(
        rng,
        (
            f"GET /data/m/{t.movie_id}/12.mp4",
            f"GET /data/m/{t.movie_id}",
            f"GET /data/m/{t.movie_id}/abc.mpg",
            "GET /data/m//7.mpg",
        ),
    )
    return f"{t.time},{t.user_id},{body}"


def _bad_rate(t: Template, rng: np.random.Generator) -> str:
    body = _pick(
        rng,
        (f"GET /rate/{t.movie_id}", f"GET /rate/{t.movie_id}=4.5", f"GET /rate/{t.movie_id}=five"),
    )
    return f"{t.time},{t.user_id},{body}"


def _bad_recommendation(t: Template, rng: np.random.Generator) -> str:
    body = _pick(
        rng,
        (
            "recommendation request",
            f"recommendation request {_SERVER}, status OK, result: {t.movie_id}, 10 ms",
            f"recommendation request {_SERVER} result: {t.movie_id}",
        ),
    )
    return f"{t.time},{t.user_id},{body}"


def _invalid_status(t: Template, rng: np.random.Generator) -> str:
    # 0 is valid (no HTTP response); 1-99 and above 599 are not statuses
    status = _pick(rng, ("001", "099", "600", "999"))
    return (
        f"{t.time},{t.user_id},recommendation request {_SERVER}, status {status}, "
        f"result: {t.movie_id}, 12 ms"
    )


def _invalid_latency(t: Template, rng: np.random.Generator) -> str:
    return (
        f"{t.time},{t.user_id},recommendation request {_SERVER}, status 200, "
        f"result: {t.movie_id}, {10_000_001 + int(rng.integers(10**6))} ms"
    )


def _invalid_results(t: Template, rng: np.random.Generator) -> str:
    bad = _pick(rng, ("The Green Mile", "n/a", "movie#7", "Toy+Story"))
    items = ", ".join((*t.popular[:3], bad))
    return (
        f"{t.time},{t.user_id},recommendation request {_SERVER}, status 200, result: {items}, 31 ms"
    )


def _too_many_results(t: Template, rng: np.random.Generator) -> str:
    n = 101 + int(rng.integers(20))
    items = ", ".join(t.popular[i % len(t.popular)] for i in range(n))
    return (
        f"{t.time},{t.user_id},recommendation request {_SERVER}, status 200, result: {items}, 45 ms"
    )


def _unknown_type(t: Template, rng: np.random.Generator) -> str:
    body = _pick(
        rng,
        (
            "POST /login",
            "GET /search?q=star",
            "GET /healthz",
            f"PUT /rate/{t.movie_id}=4",
            f"GET /watch/{t.movie_id}",
        ),
    )
    return f"{t.time},{t.user_id},{body}"


def _binary(t: Template, rng: np.random.Generator) -> bytes:
    # Valid UTF-8 but control characters: a corrupted buffer, not an encoding problem.
    # Line breaks (including the ones str.splitlines honours) are excluded so the garbage stays
    # one line in a file whichever way a reader splits it.
    breaks = (9, 10, 11, 12, 13, 28, 29, 30)
    controls = np.array([c for c in range(32) if c not in breaks] + [127], dtype=np.uint8)
    printable = rng.integers(32, 127, size=int(rng.integers(10, 80))).astype(np.uint8)
    noise = rng.choice(controls, size=max(1, printable.size // 4))
    mixed = np.concatenate([printable, noise])
    rng.shuffle(mixed)
    return bytes(mixed.tobytes())


def _not_utf8(t: Template, rng: np.random.Generator) -> bytes:
    raw = t.line.encode()
    cut = int(rng.integers(len(raw) // 2, len(raw)))
    bad = _pick(rng, ("\xff\xfe", "\xe9", "\xc3\x28", "\x80"))
    return raw[:cut] + bad.encode("latin-1") + raw[cut:]


def _too_long(t: Template, rng: np.random.Generator) -> str:
    filler = ", ".join(t.popular[i % len(t.popular)] for i in range(1200))
    return f"{t.line} {filler}"


# Reason code (as `movierec_ingestor.events.ParseError.reason` reports it) -> builder.
BUILDERS: dict[str, Builder] = {
    "empty": _empty,
    "truncated": _truncated,
    "bad_time": _bad_time,
    "bad_user_id": _bad_user_id,
    "invalid_user_id": _invalid_user_id,
    "invalid_rating": _invalid_rating,
    "invalid_minute": _invalid_minute,
    "invalid_movie_id": _invalid_movie_id,
    "bad_watch": _bad_watch,
    "bad_rate": _bad_rate,
    "bad_recommendation": _bad_recommendation,
    "invalid_status": _invalid_status,
    "invalid_latency_ms": _invalid_latency,
    "invalid_results": _invalid_results,
    "too_many_results": _too_many_results,
    "unknown_type": _unknown_type,
    "binary": _binary,
    "not_utf8": _not_utf8,
    "too_long": _too_long,
}
MALFORMED_CLASSES: tuple[str, ...] = tuple(BUILDERS)


def assign_classes(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` class indexes, spread evenly over every class (each appears once n reaches the count)."""
    reps = -(-n // len(MALFORMED_CLASSES)) if n else 0
    classes = np.tile(np.arange(len(MALFORMED_CLASSES)), reps)[:n]
    rng.shuffle(classes)
    return classes


def build(reason: str, template: Template, rng: np.random.Generator) -> str | bytes:
    """A malformed line that the parser rejects with exactly `reason`."""
    return BUILDERS[reason](template, rng)
