"""The history stream: parseable, exactly counted, realistic noise, taste-driven, injectable."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pytest
from movierec_ingestor.events import (
    ParseError,
    RateEvent,
    RecommendationEvent,
    WatchEvent,
    format_line,
    parse_line,
)
from movierec_simulator.attacks import Drift, Shilling
from movierec_simulator.malformed import MALFORMED_CLASSES
from movierec_simulator.stream import History, generate_history
from movierec_simulator.world import World

START = datetime(2025, 10, 1)


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(600, 200, seed=11)


@pytest.fixture(scope="module")
def history(world: World) -> History:
    return generate_history(world, 36, seed=5, start=START, malformed_share=0.03)


Parsed = list[WatchEvent | RateEvent | RecommendationEvent]


@pytest.fixture(scope="module")
def parsed(history: History) -> Parsed:
    return _parsed(history)


def _parsed(history: History) -> Parsed:
    events = []
    for line in history:
        try:
            events.append(parse_line(line))
        except ParseError:
            continue
    return events


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(world: World) -> None:
    a = list(generate_history(world, 6, seed=1, start=START))
    b = list(generate_history(world, 6, seed=1, start=START))
    c = list(generate_history(world, 6, seed=2, start=START))
    assert a == b
    assert a != c


def test_every_line_parses_or_is_an_injected_malformed_line_of_its_class(history: History) -> None:
    malformed_seen: Counter[str] = Counter()
    for row, line in zip(history.rows.tolist(), history, strict=True):
        if row >= 0:
            parse_line(line)  # raises on any bad valid line
        else:
            expected = history.malformed_reasons[~row]
            with pytest.raises(ParseError) as err:
                parse_line(line)
            assert err.value.reason == expected, (expected, line[:120])
            malformed_seen[expected] += 1
    assert dict(malformed_seen) == history.summary.malformed
    # Every class the parser knows shows up, spread evenly.
    assert set(malformed_seen) == set(MALFORMED_CLASSES)
    assert max(malformed_seen.values()) - min(malformed_seen.values()) <= 1


def test_summary_counts_what_ingestion_will_find(history: History, parsed: Parsed) -> None:
    s = history.summary
    lines = list(history)
    events = parsed
    canonical = {format_line(e) for e in events}
    assert s.lines == len(lines)
    assert s.valid_events == len(events)
    assert s.distinct_events == len(canonical)
    assert s.duplicates == s.valid_events - s.distinct_events > 0
    assert s.malformed_total == s.lines - s.valid_events
    assert abs(s.malformed_total / s.lines - 0.03) < 0.005
    kinds = Counter(e.kind for e in {format_line(e): e for e in events}.values())
    assert s.events_by_kind == {k: kinds[k] for k in ("watch", "rate", "recommendation")}
    assert s.active_users == len({e.user_id for e in events})
    assert all(START <= e.time < START + timedelta(hours=36) for e in events)


def test_realistic_noise_times_formats_duplicates_and_late_lines(
    history: History, parsed: Parsed
) -> None:
    text = [line for line in history if isinstance(line, str)]
    heads = [line.split(",", 1)[0] for line in text]
    assert any(re.fullmatch(r"[\d\-T:]+\.\d{9}", h) for h in heads)
    assert any(re.fullmatch(r"[\d\-T:]+\.\d{6}", h) for h in heads)
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", h) for h in heads)
    counts = Counter(text)
    assert sum(n - 1 for n in counts.values() if n > 1) >= history.summary.duplicates
    times = [e.time for e in parsed]
    latest, late = times[0], 0
    for t in times:
        late += t < latest
        latest = max(latest, t)
    assert late >= 0.8 * history.summary.out_of_order > 0
    assert late < 0.1 * len(times)  # mostly in time order


def test_watch_lines_run_minute_by_minute_from_zero(parsed: Parsed) -> None:
    sessions: dict[tuple[int, str], list[int]] = {}
    for e in parsed:
        if isinstance(e, WatchEvent):
            sessions.setdefault((e.user_id, e.movie_id), []).append(e.minute)
    assert sessions
    for minutes in sessions.values():
        distinct = sorted(set(minutes))
        assert distinct == list(range(len(distinct)))
        assert len(distinct) <= 30  # the default cap on lines per view


def test_ratings_and_watch_depth_follow_true_taste(world: World, parsed: Parsed) -> None:
    events = parsed
    rated = [
        (world.user_index(e.user_id), world.movie_index(e.movie_id), e.rating)
        for e in events
        if isinstance(e, RateEvent)
    ]
    u, m, stars = (np.array(x) for x in zip(*rated, strict=True))
    assert np.corrcoef(world.true_rating(u, m), stars)[0, 1] > 0.6
    depth: dict[tuple[int, str], int] = {}
    for e in events:
        if isinstance(e, WatchEvent):
            key = (e.user_id, e.movie_id)
            depth[key] = max(depth.get(key, 0), e.minute + 1)
    keys = list(depth)
    true = world.true_rating(
        np.array([world.user_index(k[0]) for k in keys]),
        np.array([world.movie_index(k[1]) for k in keys]),
    )
    watched = np.array([depth[k] for k in keys])
    assert watched[true >= 4.0].mean() > watched[true <= 3.0].mean() + 5


def test_recommendation_lines_come_from_a_fake_server(parsed: Parsed) -> None:
    recs = [e for e in parsed if isinstance(e, RecommendationEvent)]
    ok = [r for r in recs if r.status == 200]
    assert ok and all(len(r.results) == 20 and r.latency_ms is not None for r in ok)
    assert all(r.error for r in recs if r.status != 200)


def test_no_malformed_lines_when_the_share_is_zero(world: World) -> None:
    h = generate_history(world, 4, seed=2, start=START, malformed_share=0.0)
    assert h.summary.malformed == {} and h.summary.lines == h.summary.valid_events
    assert len(_parsed(h)) == h.summary.lines


def test_drift_shifts_ratings_and_activity_in_the_newest_window(world: World) -> None:
    drift = Drift(start_fraction=0.6, cohort_share=0.2)
    h = generate_history(world, 48, seed=3, start=START, malformed_share=0.0, drift=drift)
    info = h.summary.drift
    assert info is not None
    window = datetime.fromisoformat(info["window_start"])
    assert window == START + timedelta(hours=48 * 0.6)
    cohort = set(info["cohort_user_ids"])
    assert len(cohort) == int(0.2 * world.n_users)
    events = _parsed(h)
    assert all(e.time >= window - timedelta(minutes=1) for e in events if e.user_id in cohort)
    before = [e.rating for e in events if isinstance(e, RateEvent) and e.time < window]
    after = [e.rating for e in events if isinstance(e, RateEvent) and e.time >= window]
    assert np.mean(after) < np.mean(before) - 0.3
    per_user_before = len(before) / len({e.user_id for e in events if e.time < window})
    newcomers = [e for e in events if e.user_id in cohort and isinstance(e, RateEvent)]
    window_hours = 48 * 0.4
    assert len(newcomers) / len(cohort) / window_hours > per_user_before / (48 * 0.6)


@pytest.mark.parametrize("rating", [5, 1])
def test_shilling_burst_of_fresh_accounts_on_one_target(world: World, rating: int) -> None:
    attack = Shilling(25, rating=rating, burst_minutes=30)
    h = generate_history(world, 24, seed=4, start=START, malformed_share=0.0, shilling=attack)
    info = h.summary.shilling
    assert info is not None and info["rating"] == rating
    fakes = set(info["user_ids"])
    assert len(fakes) == 25 and min(fakes) > int(world.user_ids.max())
    events = [e for e in _parsed(h) if e.user_id in fakes]
    on_target = [e for e in events if isinstance(e, RateEvent) and e.movie_id == info["target"]]
    assert {e.user_id for e in on_target} == fakes
    assert {e.rating for e in on_target} == {rating}
    fillers = [e for e in events if isinstance(e, RateEvent) and e.movie_id != info["target"]]
    assert len(fillers) >= 2 * 25
    distinct = {format_line(e): e for e in fillers}.values()  # the stream repeats some lines
    assert len({(e.user_id, e.movie_id) for e in distinct}) == len(distinct)  # each rated once
    end = START + timedelta(hours=24)
    assert all(end - timedelta(minutes=30) <= e.time <= end for e in events)
    pop_rank = {
        m: r for r, m in enumerate(np.array(world.movie_ids)[np.argsort(-world.popularity)])
    }
    if rating == 5:  # pushes an obscure movie; a nuke hits a hit
        assert pop_rank[info["target"]] >= world.n_movies // 2
    else:
        assert pop_rank[info["target"]] < world.n_movies // 10


def test_shilling_target_can_be_chosen_and_must_exist(world: World) -> None:
    target = world.movie_ids[42]
    h = generate_history(world, 2, seed=1, start=START, shilling=Shilling(3, target))
    assert h.summary.shilling is not None and h.summary.shilling["target"] == target
    with pytest.raises(ValueError, match="not a movie"):
        generate_history(world, 2, seed=1, start=START, shilling=Shilling(3, "no+such+movie"))


@pytest.mark.parametrize(
    "kwargs",
    [{"hours": 0}, {"hours": 2, "malformed_share": 1.0}, {"hours": 2, "max_minutes_per_view": 0}],
)
def test_bad_options_are_rejected(world: World, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        generate_history(world, **kwargs)
