"""The data-quality gate: read the store, judge the newest window, record the report and quarantine."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from movierec_ingestor import db
from movierec_ingestor import schema as s
from movierec_ingestor.quality import checks, data, drift, poisoning, quarantine
from movierec_ingestor.quality.metrics import collector_for
from movierec_ingestor.quality.settings import QualitySettings

log = logging.getLogger(__name__)

REPORT_VERSION = 1


@dataclass(frozen=True)
class GateResult:
    """The verdict (`passed` includes a forced override), the stored report and its id."""

    passed: bool
    report: dict[str, Any]
    report_id: int
    suspects: list[dict[str, Any]] = field(default_factory=list)


def run_gate(
    db_url: str,
    force: bool = False,
    *,
    window: float | None = None,
    now: datetime | None = None,
    settings: QualitySettings | None = None,
    registry: CollectorRegistry | None = None,
) -> GateResult:
    """Judge the newest `window` hours (default from settings) and record the outcome.

    Blocking: schema errors above tolerance, a failing duplicate or dead-letter rate, severe
    drift. Poisoning suspects are quarantined and reported; they block only when the quarantine
    had to be cut short (some suspects would then reach training). `force` lets a blocked gate
    pass and records that it was overridden.
    """
    cfg = settings or QualitySettings()
    hours = window if window is not None else cfg.window_hours
    if not hours > 0:
        raise ValueError(f"the window must be positive, got {hours} hours")
    wall = datetime.now(UTC).replace(tzinfo=None)
    now = now or wall
    engine = db.create_engine(db_url)
    try:
        db.upgrade(engine)
        with engine.connect() as conn:
            report, pairs = _evaluate(conn, now, hours, cfg)
        report["created_at"] = wall.isoformat()
        report["forced"] = bool(force and not report["passed"])
        passed = report["passed"] or force
        report_id = _record(engine, report, pairs, passed=passed, forced=report["forced"], now=wall)
    finally:
        engine.dispose()
    report["report_id"] = report_id
    collector_for(registry, cfg.metrics_top_movies).update({**report, "passed": passed})
    log.info(
        "quality gate %s (report %d, blocking=%s, quarantined=%d)",
        "passed" if report["passed"] else ("forced" if force else "blocked"),
        report_id,
        report["blocking"],
        len(pairs),
    )
    return GateResult(passed, report, report_id, report["poisoning"]["suspect_users"])


def _evaluate(
    conn: sa.Connection, now: datetime, hours: float, cfg: QualitySettings
) -> tuple[dict[str, Any], list[tuple[int, str, str]]]:
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "created_at": None,
        "now": now.isoformat(),
        "window": None,
        "checks": [],
        "drift": [],
        "poisoning": poisoning.PoisoningResult().as_dict(),
        "blocking": [],
        "warnings": [],
        "passed": True,
    }
    w = data.resolve_window(
        conn,
        now,
        hours,
        slots=cfg.reference_windows,
        skew_seconds=cfg.checks.future_skew_seconds,
        min_ratings=cfg.drift.min_ratings,
        tail_share=cfg.tail_share,
    )
    if w is None:
        report["warnings"].append("no events in the store: nothing to judge")
        return report, []
    lag_s = cfg.poisoning.max_lag_hours * 3600.0
    live = data.arrival_is_informative(conn, lag_s)
    w = replace(w, since=data.previous_run(conn), arrival_lag_s=lag_s if live else None)
    if not live:
        report["warnings"].append(
            "poisoning:claimed_times (the store is being backfilled: arrival times say nothing "
            "about account age)"
        )
    report["window"] = {
        "start": w.start.isoformat(),
        "end": w.end.isoformat(),
        "reference_start": w.ref_start.isoformat(),
        "hours": w.hours,
        "requested_hours": hours,
        "reference_windows": w.slots,
        "judged_ingested_since": w.since.isoformat() if w.since else None,
        "poisoning_clock": "arrival" if w.arrival_lag_s is not None else "claimed",
    }
    if w.hours > hours + 1e-9:
        report["warnings"].append(f"window:stretched to {w.hours:.1f} h for enough ratings")
    start_s = float(data.epoch([w.start])[0])

    ratings, already = data.window_ratings(conn, w)
    found = poisoning.detect(ratings, data.history(conn, w), start_s, cfg.poisoning)
    report["poisoning"] = found.as_dict()

    summaries = [
        checks.summarize_ratings(
            ratings.user_ids,
            ratings.movie_ids,
            ratings=ratings.ratings.astype(np.float64),
            times=ratings.times,
            now=float("inf"),  # stored times are judged by arrival: implausible_times
            th=cfg.checks,
        ),
        data.watch_summary(conn, w, now, cfg.checks),
    ]
    for summary, table in zip(summaries, (s.rating_events, s.watch_events), strict=True):
        future, too_old = data.implausible_times(conn, table, w, cfg.checks)
        summary.future += future
        summary.too_old += too_old
    dead, unreadable = data.dead_letter_count(conn, w)
    results = checks.evaluate(summaries, round(dead), data.valid_events(conn, w), cfg.checks)
    for table, nulls, rows in data.metadata_nulls(conn, w):
        results += checks.null_rates(table, nulls, rows, cfg.checks)
    report["checks"] = [r.as_dict() for r in results]
    report["dead_letters_unreadable_time"] = unreadable

    # Drift is measured on what training will see: quarantined pairs are left out.
    suspect = {(u, m) for u, m, _ in found.pairs}
    keep = ~already & np.array(
        [
            (int(u), str(m)) not in suspect
            for u, m in zip(ratings.user_ids, ratings.movie_ids, strict=True)
        ],
        dtype=bool,
    )
    completion, minutes = data.sessions(conn, w)
    inputs = drift.DriftInputs(
        rating_counts=(
            data.reference_rating_counts(conn, w),
            drift.rating_histogram(ratings.ratings[keep]),
        ),
        activity=data.activity(conn, w),
        completion=completion,
        watch_minutes=minutes,
    )
    drifts = drift.measure(inputs, cfg.drift)
    report["drift"] = [d.as_dict() for d in drifts]

    for r in results:
        label = f"{r.name}:{r.table}"
        if r.severity == "fail":
            report["blocking"].append(label)
        elif r.severity == "warn":
            report["warnings"].append(label)
    for d in drifts:
        label = f"drift:{d.feature}/{d.test}"
        if d.severity == "fail":
            report["blocking"].append(label)
        elif d.severity == "warn":
            report["warnings"].append(label)
    if found.truncated:
        report["blocking"].append("poisoning:truncated")
    elif found.movies:
        report["warnings"].append("poisoning:quarantined")
    report["passed"] = not report["blocking"]
    return report, found.pairs


def _record(
    engine: sa.Engine,
    report: dict[str, Any],
    pairs: list[tuple[int, str, str]],
    *,
    passed: bool,
    forced: bool,
    now: datetime,
) -> int:
    """Store the report and its quarantine in one transaction; re-quarantining a pair is a no-op."""
    with engine.begin() as conn:
        report_id = int(
            conn.execute(
                sa.insert(s.quality_reports)
                .values(created_at=now, passed=passed, forced=forced, report=json.dumps(report))
                .returning(s.quality_reports.c.id)
            ).scalar_one()
        )
        released = quarantine.released_pairs(conn)
        pairs = [(u, m, reason) for u, m, reason in pairs if (u, m) not in released]
        if pairs:
            insert = _insert_ignore(engine)
            rows = [
                {
                    "user_id": u,
                    "movie_id": m,
                    "reason": reason,
                    "report_id": report_id,
                    "created_at": now,
                }
                for u, m, reason in pairs
            ]
            conn.execute(insert, rows)
    return report_id


def _insert_ignore(engine: sa.Engine) -> Any:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(s.quarantine).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(s.quarantine).on_conflict_do_nothing()
