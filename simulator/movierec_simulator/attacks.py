"""Injections for the data-quality gate: distribution drift and a shilling (rating-fraud) attack."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from movierec_ingestor.events import format_fields

from movierec_simulator.sessions import KIND_RATE, KIND_WATCH, MINUTE, SECOND, EventTable
from movierec_simulator.vocab import GENRE_INDEX, GENRES
from movierec_simulator.world import World, sample_ratings


@dataclass(frozen=True)
class Drift:
    """In the newest window a new cohort arrives: more active, other tastes, harsher ratings."""

    start_fraction: float = 0.75  # the window is the last (1 - start_fraction) of the stream
    cohort_share: float = 0.15  # share of the world's users who only appear in the window
    activity_factor: float = 3.0  # their sessions per day relative to the others
    rating_shift: float = -1.0  # added to their true ratings before noise and rounding
    genres: tuple[str, ...] = ("Horror", "Animation")
    genre_boost: float = 1.5  # extra appeal of those genres for the cohort

    def __post_init__(self) -> None:
        if not 0.0 < self.start_fraction < 1.0:
            raise ValueError(f"drift start_fraction must be in (0, 1), got {self.start_fraction}")
        if not 0.0 < self.cohort_share < 1.0:
            raise ValueError(f"drift cohort_share must be in (0, 1), got {self.cohort_share}")
        unknown = [g for g in self.genres if g not in GENRE_INDEX]
        if unknown:
            raise ValueError(f"unknown drift genres {unknown}; known: {', '.join(GENRES)}")

    def boost_vector(self) -> np.ndarray:
        boost = np.zeros(len(GENRES))
        boost[[GENRE_INDEX[g] for g in self.genres]] = self.genre_boost
        return boost


@dataclass(frozen=True)
class Shilling:
    """A burst of fresh fake accounts that all rate one target movie (5 to push, 1 to nuke)."""

    n_users: int
    target: str | None = None  # a movie id; None picks one (an obscure movie, or a hit to nuke)
    rating: int = 5
    # the attack happens in the stream's last burst_minutes (a slow drip: many hours)
    burst_minutes: float = 30.0
    fillers: tuple[int, int] = (2, 4)  # filler ratings on popular movies per account, inclusive

    def __post_init__(self) -> None:
        if self.n_users < 1:
            raise ValueError(f"a shilling attack needs at least one fake user, got {self.n_users}")
        if self.rating not in (1, 5):
            raise ValueError(f"shilling rating must be 5 (push) or 1 (nuke), got {self.rating}")


def resolve_target(world: World, shilling: Shilling, rng: np.random.Generator) -> int:
    """The target's movie index: the given id, or an obscure below-average movie to push
    (a popular one to nuke), chosen by the seed."""
    if shilling.target is not None:
        idx = world.movie_index(shilling.target)
        if idx is None:
            raise ValueError(f"shilling target {shilling.target!r} is not a movie of this world")
        return idx
    by_pop = np.argsort(-world.popularity, kind="stable")
    n = world.n_movies
    if shilling.rating == 5:
        candidates = by_pop[n // 2 : max(n // 2 + 1, (9 * n) // 10)]
        below = candidates[world.movie_bias[candidates] < np.median(world.movie_bias)]
        candidates = below if below.size else candidates
    else:
        candidates = by_pop[: max(1, n // 20)]
    return int(candidates[rng.integers(candidates.size)])


def shilling_events(
    world: World,
    shilling: Shilling,
    target: int,
    end_ns: int,
    rng: np.random.Generator,
) -> tuple[EventTable, np.ndarray]:
    """The attack's events in the burst before `end_ns`, and the fake user ids.

    Each fake account rates a few popular movies near their usual rating (to look normal),
    streams a minute or two of the target, then rates it `shilling.rating`.
    """
    n = shilling.n_users
    first_id = int(world.user_ids.max()) + 1 + int(rng.integers(0, 1000))
    fake_ids = np.arange(first_id, first_id + n, dtype=np.int64)
    burst = int(shilling.burst_minutes * MINUTE)
    arrive = end_ns - burst + rng.integers(0, max(burst - 10 * MINUTE, 1), size=n)

    lo, hi = shilling.fillers
    # camouflage can mean many fillers: the pool of popular movies grows with it
    popular = np.argsort(-world.popularity, kind="stable")[
        : max(5, min(max(30, hi + 1), world.n_movies))
    ]
    n_fill = rng.integers(lo, hi + 1, size=n)
    f_user = np.repeat(np.arange(n), n_fill)
    f_slot = np.arange(f_user.size) - np.repeat(np.cumsum(n_fill) - n_fill, n_fill)
    # Distinct fillers per account: a random order of the popular movies, first n_fill of it.
    pool = popular[popular != target]
    order = np.argsort(rng.random((n, pool.size)), axis=1)
    f_movie = pool[order[f_user, np.minimum(f_slot, pool.size - 1)]]
    # A filler rating is what an average viewer gives the movie, so the account looks ordinary.
    f_stars = sample_ratings(world.global_mean + world.movie_bias[f_movie], rng, noise=0.5)
    f_time = arrive[f_user] + f_slot * rng.integers(20, 90, size=f_user.size) * SECOND

    t_target = arrive + n_fill * 90 * SECOND
    n_watch = rng.integers(1, 3, size=n)
    w_user = np.repeat(np.arange(n), n_watch)
    w_minute = np.arange(w_user.size) - np.repeat(np.cumsum(n_watch) - n_watch, n_watch)
    w_time = t_target[w_user] + w_minute * MINUTE
    r_time = t_target + n_watch * MINUTE + rng.integers(2, 20, size=n) * SECOND

    table = EventTable(
        t_ns=np.concatenate([f_time, w_time, r_time]),
        user_id=fake_ids[np.concatenate([f_user, w_user, np.arange(n)])],
        kind=np.concatenate(
            [
                np.full(f_user.size, KIND_RATE, np.int8),
                np.full(w_user.size, KIND_WATCH, np.int8),
                np.full(n, KIND_RATE, np.int8),
            ]
        ),
        movie=np.concatenate([f_movie, np.full(w_user.size + n, target)]).astype(np.int64),
        value=np.concatenate([f_stars.astype(np.int64), w_minute, np.full(n, shilling.rating)]),
    )
    return table, fake_ids


def attack_lines(
    world: World, table: EventTable, start: datetime, backdate_hours: float = 0.0
) -> list[tuple[datetime, str]]:
    """The attack's stream lines with their arrival times: (arrival, line), in arrival order.

    `backdate_hours` is the adaptive attacker's trick: every line claims a time that many hours
    before it is sent, and each account first sends a watch line claiming twice that age, so
    that by claimed times the accounts look long established.
    """
    shift = timedelta(hours=backdate_hours)
    out: list[tuple[datetime, str]] = []
    first: dict[int, datetime] = {}
    for t_ns, user, kind, movie, value in zip(
        table.t_ns.tolist(),
        table.user_id.tolist(),
        table.kind.tolist(),
        table.movie.tolist(),
        table.value.tolist(),
        strict=True,
    ):
        arrival = start + timedelta(microseconds=t_ns // 1000)
        kind_name = "watch" if kind == KIND_WATCH else "rate"
        fields = (arrival - shift, user, world.movie_ids[movie], value)
        out.append((arrival, format_fields(kind_name, fields)))
        first[user] = min(first.get(user, arrival), arrival)
    if backdate_hours > 0:
        popular = world.movie_ids[int(np.argmax(world.popularity))]
        for user, arrival in first.items():
            aged = (arrival - 2 * shift, user, popular, 0)
            out.append((arrival, format_fields("watch", aged)))
    out.sort(key=lambda pair: pair[0])
    return out
