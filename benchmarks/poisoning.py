"""Poisoning defences against an adaptive attacker: simulator attacks through the real store and gate.

    .venv/bin/python benchmarks/poisoning.py [--users 1500] [--movies 200] [--fakes 30] [--seed 1]

An honest simulated stream (24 h) and one shilling attack at its end are ingested the way a live
consumer stores them (batches stamped with the server's clock as the stream moves), then
`movierec quality` judges the last 6 hours on a fresh SQLite store. Attacks:

- naive: fresh accounts push one obscure movie to 5 within 30 minutes, a few filler ratings each;
- backdated: the same, every line claiming a time a week earlier, and each account first sending
  a watch line claiming two weeks (by claimed times the accounts look old);
- slow-drip: the same accounts spread over 24 hours, below the burst thresholds;
- camouflage: each account first rates 40-60 popular movies like an average viewer.

Reported per attack: target detected, share of the fake ratings quarantined (and, as the
baseline, by the same detector on claimed times only, the clock it used before arrival times were
stored), share of honest raters with any rating quarantined, and the target's rank
(Bayesian-average rating among movies; "-": nobody rated it) on honest data, with the attack,
and with the attack after the quarantine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from movierec_ingestor import schema
from movierec_ingestor.batch import Batch
from movierec_ingestor.quality.gate import run_gate
from movierec_ingestor.quality.settings import PoisoningThresholds, QualitySettings
from movierec_ingestor.store import Store
from movierec_simulator.attacks import Shilling, attack_lines, resolve_target, shilling_events
from movierec_simulator.stream import generate_history
from movierec_simulator.world import World

HOURS = 24.0
WINDOW_HOURS = 6.0
WEEK = 24.0 * 7


@dataclass(frozen=True)
class Attack:
    name: str
    shilling: Shilling
    backdate_hours: float = 0.0


def attacks(fakes: int) -> list[Attack]:
    return [
        Attack("naive", Shilling(n_users=fakes)),
        Attack("backdated", Shilling(n_users=fakes), backdate_hours=WEEK),
        Attack("slow-drip", Shilling(n_users=fakes, burst_minutes=HOURS * 60)),
        Attack("camouflage", Shilling(n_users=fakes, fillers=(40, 60))),
    ]


def _claimed(line: str | bytes) -> datetime | None:
    head = (line.decode("utf-8", "replace") if isinstance(line, bytes) else line).split(",", 1)[0]
    try:
        return datetime.fromisoformat(head[:26])
    except ValueError:
        return None


def live_batches(arrivals: list[tuple[datetime, str | bytes]], size: int = 2000) -> list[Batch]:
    """Lines in arrival order, in batches stamped with the arrival clock (as a live consumer)."""
    batches = []
    for start in range(0, len(arrivals), size):
        chunk = arrivals[start : start + size]
        batch = Batch("benchmark.log", ingested_at=max(a for a, _ in chunk))
        for i, (_, line) in enumerate(chunk, start):
            batch.add(line, str(i))
        batches.append(batch)
    return batches


def _rank(ratings: dict[tuple[int, str], int], target: str, prior: float = 10.0) -> int | None:
    """1-based rank of `target` by Bayesian-average rating (shrunk to the global mean); None
    when nobody rated it."""
    values = np.array(list(ratings.values()), dtype=float)
    mu = float(values.mean())
    sums: dict[str, list[float]] = {}
    for (_, movie), r in ratings.items():
        sums.setdefault(movie, []).append(r)
    score = {m: (sum(v) + prior * mu) / (len(v) + prior) for m, v in sums.items()}
    order = sorted(score, key=lambda m: -score[m])
    return order.index(target) + 1 if target in score else None


def _held(url: str) -> set[tuple[int, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            q = schema.quarantine
            return {(int(u), str(m)) for u, m in conn.execute(sa.select(q.c.user_id, q.c.movie_id))}
    finally:
        engine.dispose()


def run_attack(
    attack: Attack,
    *,
    users: int = 1500,
    movies: int = 200,
    seed: int = 1,
    folder: Path | None = None,
    extra: list[tuple[float, str]] | None = None,
) -> dict[str, Any]:
    """Ingest honest history + the attack live, run the gate, measure what it caught.

    `extra`: more honest lines as (hours before the stream's end, line with `{time}` and
    `{target}` placeholders), sent at that time.
    """
    world = World.generate(users, movies, seed=0)
    history = generate_history(world, HOURS, seed=seed)
    rng = np.random.default_rng(seed)
    target_idx = resolve_target(world, attack.shilling, rng)
    target = world.movie_ids[target_idx]
    end_ns = int(HOURS * 3600 * 1e9)
    table, fake_ids = shilling_events(world, attack.shilling, target_idx, end_ns, rng)
    fake_lines = attack_lines(world, table, history.start, attack.backdate_hours)

    arrivals: list[tuple[datetime, str | bytes]] = []
    clock = history.start
    for line in history:
        claimed = _claimed(line)
        clock = max(clock, claimed) if claimed else clock
        arrivals.append((clock, line))
    arrivals += fake_lines
    end = history.start + timedelta(hours=HOURS)
    for hours_before, template in extra or []:
        when = end - timedelta(hours=hours_before)
        line = template.format(time=when.isoformat(timespec="seconds"), target=target)
        arrivals.append((when, line))
    arrivals.sort(key=lambda pair: pair[0])

    folder = folder or Path(tempfile.mkdtemp(prefix="movierec-poisoning-"))
    url = f"sqlite:///{folder / f'{attack.name}.db'}"
    store = Store(url)
    try:
        for batch in live_batches(arrivals):
            store.write(batch)
    finally:
        store.close()
    now = history.start + timedelta(hours=HOURS + 3)  # after the longest attack session
    # Baseline: the same detector on claimed times (an arrival lag nothing exceeds), as before
    # arrival times were stored, on a copy of the same store.
    baseline_url = f"sqlite:///{folder / f'{attack.name}-claimed.db'}"
    shutil.copyfile(folder / f"{attack.name}.db", folder / f"{attack.name}-claimed.db")
    claimed = QualitySettings(poisoning=PoisoningThresholds(max_lag_hours=1e6))
    run_gate(baseline_url, window=WINDOW_HOURS, now=now, settings=claimed)
    result = run_gate(url, window=WINDOW_HOURS, now=now)
    baseline_held = _held(baseline_url)

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            latest = {
                (int(u), str(m)): int(r)
                for u, m, r in conn.execute(
                    sa.select(
                        schema.ratings.c.user_id, schema.ratings.c.movie_id, schema.ratings.c.rating
                    )
                )
            }
    finally:
        engine.dispose()
    held = _held(url)
    fakes = set(fake_ids.tolist())
    fake_pairs = {p for p in latest if p[0] in fakes}
    honest = {p: r for p, r in latest.items() if p[0] not in fakes}
    honest_users = {u for u, _ in honest}
    touched = {u for u, _ in held if u not in fakes}
    suspects = {m["movie_id"] for m in result.report["poisoning"]["suspect_movies"]}
    defended = {p: r for p, r in latest.items() if p not in held}
    return {
        "attack": attack.name,
        "fake_accounts": len(fakes),
        "fake_ratings": len(fake_pairs),
        "target": target,
        "detected": target in suspects,
        "fake_ratings_quarantined": len(fake_pairs & held) / max(len(fake_pairs), 1),
        "fake_target_ratings_quarantined": len({p for p in fake_pairs if p[1] == target} & held)
        / max(len(fakes), 1),
        "baseline_fake_ratings_quarantined": len(fake_pairs & baseline_held)
        / max(len(fake_pairs), 1),
        "honest_raters": len(honest_users),
        "honest_users_touched": len(touched),
        "honest_users_touched_share": len(touched) / max(len(honest_users), 1),
        "target_rank_honest": _rank(honest, target),
        "target_rank_attacked": _rank(latest, target),
        "target_rank_defended": _rank(defended, target),
        "movies": len({m for _, m in latest}),
        "db": url,
        "gate_clock": result.report["window"]["poisoning_clock"]
        if result.report["window"]
        else None,
    }


def _show(rank: int | None) -> str:
    return "-" if rank is None else str(rank)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--movies", type=int, default=200)
    parser.add_argument("--fakes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for attack in attacks(args.fakes):
        row = run_attack(attack, users=args.users, movies=args.movies, seed=args.seed)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "db"}), flush=True)
    print()
    print(
        f"{'attack':<11}{'detected':>9}{'fake q.':>9}{'claimed-clock':>14}{'honest hit':>12}"
        f"{'rank honest':>12}{'attacked':>9}{'defended':>9}"
    )
    for r in rows:
        print(
            f"{r['attack']:<11}{r['detected']!s:>9}{r['fake_ratings_quarantined']:>9.0%}"
            f"{r['baseline_fake_ratings_quarantined']:>14.0%}"
            f"{r['honest_users_touched']:>5} ({r['honest_users_touched_share']:.2%})"
            f"{_show(r['target_rank_honest']):>10}{_show(r['target_rank_attacked']):>9}"
            f"{_show(r['target_rank_defended']):>9}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
