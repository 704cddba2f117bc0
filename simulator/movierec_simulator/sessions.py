"""Viewing sessions as vectorised event tables: pick, request, watch minute by minute, rate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from movierec_simulator.behaviour import rate_probability, watch_fraction, watched_minutes
from movierec_simulator.sampling import ChoiceModel, sample_without_replacement
from movierec_simulator.world import World, sample_ratings

KIND_WATCH, KIND_RATE, KIND_REC = 0, 1, 2
KIND_NAMES = ("watch", "rate", "recommendation")
SECOND = 1_000_000_000  # nanoseconds
MINUTE = 60 * SECOND
BLOCK_CELLS = 4_000_000
RESULTS_PER_REQUEST = 20
FAKE_SERVERS = ("rec-a.movierec.internal:8082", "rec-b.movierec.internal:8082")
FAKE_ERRORS = (
    (500, "java.lang.NullPointerException"),
    (503, "Service Unavailable"),
    (504, "upstream request timeout"),
)
FAKE_ERROR_SHARE = 0.015


@dataclass
class Answers:
    """What the fake recommendation server answered, one row per request event."""

    results: list[tuple[str, ...]] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    latency_ms: list[int] = field(default_factory=list)
    error: list[str | None] = field(default_factory=list)
    server: list[str] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class EventTable:
    """Valid events as parallel arrays; `value` is the minute, the rating or the answer row."""

    t_ns: np.ndarray  # int64, nanoseconds since the stream start
    user_id: np.ndarray  # int64
    kind: np.ndarray  # int8
    movie: np.ndarray  # int64 movie index (-1 for requests)
    value: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.t_ns)

    @staticmethod
    def concat(tables: Sequence[EventTable]) -> EventTable:
        return EventTable(
            *(np.concatenate([getattr(t, f) for t in tables]) for f in EventTable._fields())
        )

    @staticmethod
    def _fields() -> tuple[str, ...]:
        return ("t_ns", "user_id", "kind", "movie", "value")

    def take(self, idx: np.ndarray) -> EventTable:
        return EventTable(*(getattr(self, f)[idx] for f in self._fields()))


def simulate_sessions(
    world: World,
    users: np.ndarray,
    n_sessions: np.ndarray,
    window_ns: tuple[int, int],
    rng: np.random.Generator,
    *,
    answers: Answers,
    max_minutes: int,
    request_share: float,
    genre_boost: np.ndarray | None = None,
    rating_shift: float = 0.0,
) -> EventTable:
    """Events of `n_sessions[i]` sessions of `users[i]`, starting inside `window_ns`.

    Appends the fake server's answers to `answers` (rows referenced by request events).
    """
    s_user, s_movie = _pick_movies(world, users, n_sessions, rng, genre_boost)
    if s_user.size == 0:
        return _empty_table()
    true = world.true_rating(s_user, s_movie)
    frac = watch_fraction(true, rng)
    n_lines = np.minimum(watched_minutes(frac, world.runtimes[s_movie]), max_minutes)
    rated = rng.random(s_user.size) < rate_probability(frac)
    stars = sample_ratings(true, rng, shift=rating_shift)
    start = _schedule(s_user, n_lines, window_ns, rng)

    # Minute lines: one per streamed minute, a second or so of jitter on each fetch.
    rep = np.repeat(np.arange(s_user.size), n_lines)
    minute = np.arange(rep.size) - np.repeat(np.cumsum(n_lines) - n_lines, n_lines)
    t_watch = start[rep] + minute * MINUTE + rng.integers(0, 2 * SECOND, size=rep.size)

    r_idx = np.flatnonzero(rated)
    t_rate = start[r_idx] + n_lines[r_idx] * MINUTE + rng.integers(5, 120, r_idx.size) * SECOND

    q_idx = np.flatnonzero(rng.random(s_user.size) < request_share)
    t_req = start[q_idx] - rng.integers(2, 30, size=q_idx.size) * SECOND
    rows = _fake_answers(world, s_movie[q_idx], rng, answers)

    user_ids = world.user_ids
    return EventTable(
        t_ns=np.concatenate([t_watch, t_rate, t_req]),
        user_id=np.concatenate(
            [user_ids[s_user[rep]], user_ids[s_user[r_idx]], user_ids[s_user[q_idx]]]
        ),
        kind=np.concatenate(
            [
                np.full(rep.size, KIND_WATCH, np.int8),
                np.full(r_idx.size, KIND_RATE, np.int8),
                np.full(q_idx.size, KIND_REC, np.int8),
            ]
        ),
        movie=np.concatenate([s_movie[rep], s_movie[r_idx], np.full(q_idx.size, -1)]),
        value=np.concatenate([minute, stars[r_idx].astype(np.int64), rows]),
    )


def _empty_table() -> EventTable:
    z = np.zeros(0, dtype=np.int64)
    return EventTable(z, z, np.zeros(0, dtype=np.int8), z, z)


def _pick_movies(
    world: World,
    users: np.ndarray,
    n_sessions: np.ndarray,
    rng: np.random.Generator,
    genre_boost: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """One distinct movie per session, by popularity × taste; (user index, movie index) arrays."""
    active = users[n_sessions > 0]
    k = n_sessions[n_sessions > 0]
    block = max(1, BLOCK_CELLS // world.n_movies)
    model = ChoiceModel(world, genre_boost)
    us, ms = [], []
    for lo in range(0, active.size, block):
        chunk = active[lo : lo + block]
        weights = model.weights(chunk)
        rows, cols = sample_without_replacement(weights, k[lo : lo + block], rng)
        us.append(chunk[rows])
        ms.append(cols)
    if not us:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(us), np.concatenate(ms)


def _schedule(
    s_user: np.ndarray, n_lines: np.ndarray, window_ns: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Session start times: uniform in the window, then pushed later so a user's sessions never
    overlap (a user streams one movie at a time). Vectorised over all users at once."""
    # Scheduled in whole seconds (exact integer maths), sub-second jitter added at the end.
    lo, hi = window_ns[0] // SECOND, window_ns[1] // SECOND
    wanted = rng.integers(lo, max(hi, lo + 1), size=s_user.size)
    order = np.lexsort((wanted, s_user))
    u, s = s_user[order], wanted[order]
    busy = n_lines[order] * 60 + rng.integers(5, 60, size=u.size) * 60
    # start_j = max(s_j, start_{j-1} + busy_{j-1}) per user, solved as
    # start_j = C_j + max_{i<=j}(s_i - C_i) with C the exclusive cumulative busy time in the group.
    group_start = np.r_[True, u[1:] != u[:-1]]
    csum = np.cumsum(busy) - busy
    c = csum - np.maximum.accumulate(np.where(group_start, csum, 0))
    # A per-group offset far larger than any time keeps the running max inside each user.
    offset = np.cumsum(group_start).astype(np.int64) << 40
    running = np.maximum.accumulate(s - c + offset) - offset
    start = np.empty_like(wanted)
    start[order] = c + running
    return start * SECOND + rng.integers(0, SECOND, size=start.size)


def _fake_answers(
    world: World, chosen: np.ndarray, rng: np.random.Generator, answers: Answers
) -> np.ndarray:
    """The fake server's answer to each request: popular movies around the one the user picks."""
    n = chosen.size
    first_row = len(answers.status)
    pool = np.argsort(-world.popularity, kind="stable")[: max(RESULTS_PER_REQUEST * 10, 50)]
    size = min(RESULTS_PER_REQUEST, world.n_movies)
    weights = np.broadcast_to(world.popularity[pool], (n, pool.size))
    rows, cols = sample_without_replacement(weights, np.full(n, size), rng)
    picks = pool[cols]
    position = np.minimum(rng.geometric(0.25, size=n) - 1, size - 1)
    failed = rng.random(n) < FAKE_ERROR_SHARE
    latency = np.rint(rng.lognormal(np.log(60.0), 0.5, size=n)).astype(np.int64)
    err_kind = rng.integers(len(FAKE_ERRORS), size=n)
    server = rng.integers(len(FAKE_SERVERS), size=n)
    bounds = np.searchsorted(rows, np.arange(n + 1))
    ids = world.movie_ids
    for i in range(n):
        answers.server.append(FAKE_SERVERS[server[i]])
        if failed[i]:
            status, text = FAKE_ERRORS[err_kind[i]]
            answers.status.append(status)
            answers.error.append(text)
            answers.results.append(())
            answers.latency_ms.append(int(latency[i]) + 800)
            continue
        items = [ids[m] for m in picks[bounds[i] : bounds[i + 1]] if m != chosen[i]][: size - 1]
        items.insert(int(min(position[i], len(items))), ids[chosen[i]])
        answers.status.append(200)
        answers.error.append(None)
        answers.results.append(tuple(items))
        answers.latency_ms.append(int(latency[i]))
    return np.arange(first_row, first_row + n, dtype=np.int64)
