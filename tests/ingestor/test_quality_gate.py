"""The gate end to end on a real store fed by the simulator: clean data passes, injected drift
blocks with its effect size, an injected shilling attack is found and quarantined."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from movierec_ingestor import schema
from movierec_ingestor.batch import Batch
from movierec_ingestor.quality.gate import GateResult, run_gate
from movierec_ingestor.quality.settings import QualitySettings
from movierec_ingestor.store import Store
from movierec_simulator.attacks import Drift, Shilling
from movierec_simulator.stream import generate_history
from movierec_simulator.world import World
from prometheus_client import CollectorRegistry

HOURS = 24.0
WINDOW = HOURS * (1 - Drift().start_fraction)  # the simulator's drift fills the last 6 hours
N_USERS, N_MOVIES = 1000, 200


@dataclass(frozen=True)
class Sim:
    lines: list[str | bytes]
    movies: list[dict[str, Any]]
    now: datetime  # a month after the stream: nothing in it is in the future
    shilling: dict[str, Any] | None


@functools.cache
def simulate(seed: int, inject: str = "") -> Sim:
    """24 hours of a small world (about 31k lines, 1 % malformed), optionally with an injection:
    "drift" (a harsher new cohort in the last 6 hours), "push"/"nuke" (8 fresh accounts rate one
    movie 5 / 1 in the last half hour)."""
    world = World.generate(N_USERS, N_MOVIES, seed=0)
    kwargs: dict[str, Any] = {}
    if inject == "drift":
        kwargs["drift"] = Drift()
    elif inject in ("push", "nuke"):
        kwargs["shilling"] = Shilling(n_users=8, rating=5 if inject == "push" else 1)
    history = generate_history(world, HOURS, seed=seed, **kwargs)
    movies = []
    for i in range(world.n_movies):
        record = world.movie_record(i)
        movies.append({**record, "genres": "|".join(record["genres"])})
    end = datetime.fromisoformat(history.summary.end)
    return Sim(list(history), movies, end + timedelta(days=30), history.summary.shilling)


def ingest(url: str, seed: int, inject: str = "") -> Sim:
    sim = simulate(seed, inject)
    store = Store(url)
    try:
        for batch in live_batches(sim.lines):
            store.write(batch)
        store.upsert(schema.movies, sim.movies)
    finally:
        store.close()
    return sim


def live_batches(lines: list[str | bytes], size: int = 2000) -> list[Batch]:
    """The stream as a live consumer stores it: batches arriving as the stream's clock moves
    (each batch's ingestion time is the newest event time read so far)."""
    batches, clock = [], datetime.min
    for start in range(0, len(lines), size):
        chunk = lines[start : start + size]
        for line in chunk:
            try:
                head = (line.decode() if isinstance(line, bytes) else line).split(",", 1)[0]
                clock = max(clock, datetime.fromisoformat(head[:26]))
            except (ValueError, UnicodeDecodeError):
                continue
        batch = Batch(source="quality-test.log", ingested_at=clock)
        for i, line in enumerate(chunk, start):
            batch.add(line, str(i))
        batches.append(batch)
    return batches


def gate(
    url: str, sim: Sim, registry: CollectorRegistry | None = None, *, force: bool = False
) -> GateResult:
    return run_gate(
        url, force=force, window=WINDOW, now=sim.now, registry=registry or CollectorRegistry()
    )


def rows(url: str, table: sa.Table) -> list[sa.Row]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(table)))
    finally:
        engine.dispose()


def _drift(result: GateResult, feature: str, test: str) -> dict:
    return next(d for d in result.report["drift"] if (d["feature"], d["test"]) == (feature, test))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'movierec.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """The same gate tests on the embedded store and on the real PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_url
    return str(request.getfixturevalue("pg_url"))


def test_clean_data_passes(db_url: str) -> None:
    sim = ingest(db_url, seed=1)
    registry = CollectorRegistry()
    result = gate(db_url, sim, registry)
    assert result.passed, result.report["blocking"]
    assert result.report["blocking"] == []
    assert result.suspects == []
    tested = [d for d in result.report["drift"] if d["severity"] != "skipped"]
    assert {(d["feature"], d["test"]) for d in tested} >= {
        ("rating", "psi"),
        ("rating", "chi2"),
        ("activity", "ks"),
        ("completion", "ks"),
    }
    dead = next(c for c in result.report["checks"] if c["name"] == "dead_letters")
    assert 0.005 < dead["rate"] < 0.02  # the simulator's 1 % garbage
    stored = rows(db_url, schema.quality_reports)
    assert [(r.id, r.passed, r.forced) for r in stored] == [(result.report_id, True, False)]
    assert json.loads(stored[0].report)["window"]["requested_hours"] == WINDOW
    assert rows(db_url, schema.quarantine) == []
    assert registry.get_sample_value("movierec_quality_gate_passed") == 1.0
    psi = _drift(result, "rating", "psi")
    assert registry.get_sample_value(
        "movierec_drift_score", {"feature": "rating", "test": "psi"}
    ) == pytest.approx(psi["effect"])


def test_drift_blocks_with_effect_size_and_force_is_recorded(db_url: str) -> None:
    sim = ingest(db_url, seed=2, inject="drift")
    result = gate(db_url, sim)
    assert not result.passed
    for test, effect in (("psi", "psi_fail"), ("chi2", "cramers_v_fail")):
        d = _drift(result, "rating", test)
        assert d["severity"] == "fail", d
        assert d["effect"] > getattr(QualitySettings().drift, effect)
        assert d["p_value"] < 0.01
        assert f"drift:rating/{test}" in result.report["blocking"]
    # The new cohort is also more active: measured, with its effect size, on every feature.
    assert _drift(result, "activity", "ks")["effect"] > 0.05

    forced = gate(db_url, sim, force=True)
    assert forced.passed and forced.report["forced"] is True
    stored = {r.id: r for r in rows(db_url, schema.quality_reports)}
    assert (stored[result.report_id].passed, stored[result.report_id].forced) == (False, False)
    assert (stored[forced.report_id].passed, stored[forced.report_id].forced) == (True, True)


def test_schema_errors_block(db_url: str) -> None:
    sim = ingest(db_url, seed=1)
    latest = datetime.fromisoformat(gate(db_url, sim).report["window"]["end"])
    arrived = datetime.now(UTC).replace(tzinfo=None)
    bad = [  # rows that bypassed the ingest validator
        {"event_key": "bad1", "time": latest, "user_id": 1, "movie_id": "a+1999", "rating": 9},
        {"event_key": "bad2", "time": latest, "user_id": 2, "movie_id": "Not A Slug", "rating": 4},
        {
            "event_key": "bad3",
            "time": datetime(1970, 1, 1),
            "user_id": 3,
            "movie_id": "a",
            "rating": 4,
        },
    ]
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.insert(schema.rating_events), [{**b, "ingested_at": arrived} for b in bad]
            )
    finally:
        engine.dispose()
    result = gate(db_url, sim)
    assert not result.passed
    assert "schema:rating_events" in result.report["blocking"]
    check = next(
        c for c in result.report["checks"] if (c["name"], c["table"]) == ("schema", "rating_events")
    )
    assert check["count"] == 3
    assert check["detail"] == "out_of_range=1, bad_ids=1, too_old=1"


def test_an_implausible_time_fails_one_run_not_every_later_one(db_url: str) -> None:
    sim = ingest(db_url, seed=1)
    assert gate(db_url, sim).passed
    arrived = datetime.now(UTC).replace(tzinfo=None)
    rows_ = [
        {
            "event_key": "old",
            "time": datetime(1990, 1, 1),
            "user_id": 3,
            "movie_id": "a",
            "rating": 4,
        },
        {
            "event_key": "far",
            "time": datetime(9999, 1, 1),
            "user_id": 4,
            "movie_id": "a",
            "rating": 5,
        },
    ]
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:  # bypassing the ingest validator, which dead-letters them
            conn.execute(
                sa.insert(schema.rating_events), [{**r, "ingested_at": arrived} for r in rows_]
            )
    finally:
        engine.dispose()
    first = gate(db_url, sim)
    assert not first.passed
    check = next(
        c for c in first.report["checks"] if (c["name"], c["table"]) == ("schema", "rating_events")
    )
    assert check["detail"] == "future=1, too_old=1"
    # Judged when they arrived; the next run judges what arrived since, and passes.
    second = gate(db_url, sim)
    assert second.passed, second.report["blocking"]
    assert second.report["window"]["end"] == first.report["window"]["end"]


@pytest.mark.parametrize(("inject", "value"), [("push", 5), ("nuke", 1)])
def test_shilling_attack_is_caught_and_quarantined(db_url: str, inject: str, value: int) -> None:
    sim = ingest(db_url, seed=3, inject=inject)
    assert sim.shilling is not None
    fakes, target = set(sim.shilling["user_ids"]), sim.shilling["target"]
    registry = CollectorRegistry()
    result = gate(db_url, sim, registry)

    found = result.report["poisoning"]["suspect_movies"]
    assert [(m["movie_id"], m["value"]) for m in found] == [(target, value)]
    assert found[0]["p_value"] < 1e-4
    suspects = {s["user_id"] for s in result.suspects}
    assert suspects == fakes
    quarantined = {(r.user_id, r.movie_id): r for r in rows(db_url, schema.quarantine)}
    assert {(u, target) for u in fakes} <= set(quarantined)
    assert {u for u, _ in quarantined} == fakes  # their filler ratings too, nobody else's
    assert all(r.report_id == result.report_id for r in quarantined.values())
    # Quarantined, not blocking: training excludes the pairs, drift is measured without them.
    assert result.passed, result.report["blocking"]
    assert "poisoning:quarantined" in result.report["warnings"]
    assert _drift(result, "rating", "psi")["severity"] == "ok"
    assert registry.get_sample_value("movierec_poisoning_suspects", {"movie": target}) == len(fakes)

    again = gate(db_url, sim)  # idempotent: same suspects, no duplicate rows, first report kept
    assert {s["user_id"] for s in again.suspects} == suspects
    assert {(r.user_id, r.movie_id, r.report_id) for r in rows(db_url, schema.quarantine)} == {
        (u, m, r.report_id) for (u, m), r in quarantined.items()
    }


def test_empty_store_passes_with_a_warning(sqlite_url: str) -> None:
    result = gate(sqlite_url, simulate(1))
    assert result.passed
    assert result.report["window"] is None
    assert result.report["warnings"] == ["no events in the store: nothing to judge"]


# --- `movierec quality` -------------------------------------------------------------------


def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    from movierec import cli

    try:
        cli.build_parser().parse_args(["quality", "--db", "sqlite://"])
    except SystemExit:
        # Not wired through movierec_ingestor.cli yet: register the module the same way it will.
        monkeypatch.setattr(
            cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "movierec_ingestor.quality.cli")
        )
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse usage errors exit from inside main, as in a shell
        return int(exc.code or 0)


def test_cli_pass_block_force_and_json(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ingest(sqlite_url, seed=2, inject="drift")
    metrics = tmp_path / "quality.prom"
    assert _cli(["quality", "--db", sqlite_url, "--metrics-out", str(metrics)], monkeypatch) == 1
    out = capsys.readouterr().out
    assert out.startswith("quality gate: BLOCKED")
    assert "drift:rating/psi" in out
    assert "movierec_quality_gate_passed 0.0" in metrics.read_text()

    assert _cli(["quality", "--db", sqlite_url, "--json"], monkeypatch) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False and "drift:rating/psi" in report["blocking"]

    assert _cli(["quality", "--db", sqlite_url, "--force"], monkeypatch) == 0
    assert capsys.readouterr().out.startswith("quality gate: FORCED")


def test_cli_clean_store_exits_zero(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest(sqlite_url, seed=1)
    assert _cli(["quality", "--db", sqlite_url, "--window-hours", "6"], monkeypatch) == 0
    assert capsys.readouterr().out.startswith("quality gate: PASSED")


@pytest.mark.parametrize(
    "argv",
    [
        ["quality", "--db", "sqlite:///{tmp}/missing.db"],
        ["quality", "--db", "mysql://host/db"],
        ["quality", "--db", "sqlite:///{tmp}/x.db", "--window-hours", "0"],
        ["quality", "--db", "sqlite:///{tmp}/x.db", "--window-hours", "soon"],
        ["quality"],
    ],
)
def test_cli_bad_input_exits_two(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert _cli(argv, monkeypatch) == 2
    assert capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()
