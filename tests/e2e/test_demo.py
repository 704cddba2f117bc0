"""The whole loop at a tiny size: the demo runs end to end and its numbers are sane."""

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from flask import Flask, Response
from werkzeug.serving import make_server

from movierec.process import free_port

pytestmark = pytest.mark.e2e

USERS, MOVIES, SEED, REQUESTS = 600, 200, 11, 1600


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "movierec", "demo", "--users", str(USERS), "--movies", str(MOVIES),
         "--hours", "48", "--seed", str(SEED), "--requests", str(REQUESTS), "--workdir", str(work)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "movierec demo summary" in proc.stdout
    summary = json.loads((work / "summary.json").read_text())
    summary["_work"] = str(work)
    summary["_stdout"] = proc.stdout
    return summary


def test_every_step_ran_and_the_report_exists(demo: dict) -> None:
    steps = [s["step"] for s in demo["steps"]]
    assert steps[0] == "simulate history" and steps[-1] == "online evaluation"
    report = Path(demo["_work"]) / "report.html"
    assert report.is_file() and report.stat().st_size > 20_000  # tables plus inlined plots
    assert str(report) in demo["_stdout"]


def test_ingestion_accounts_for_every_line(demo: dict) -> None:
    ing = demo["ingest_history"]
    assert ing["read"] == ing["stored"] + ing["duplicates"] + ing["dead_letters"]
    assert ing["dead_letters"] > 0  # the simulator injects malformed lines
    assert demo["quality"]["passed"] is True


def test_offline_models_beat_the_global_mean(demo: dict) -> None:
    for algo in ("user-user", "item-item"):
        metrics = demo["offline"][algo]
        assert 0.3 < metrics["rmse"] < 1.2
        assert 0.0 < metrics["ndcg@10"] <= 1.0


def test_both_tracks_served_everyone_within_budget(demo: dict) -> None:
    tracks = demo["online"]["tracks"]
    assert set(tracks) == {"user-user", "item-item", "popular"}
    total = sum(t["requests"] for t in tracks.values())
    for t in tracks.values():
        assert t["success_rate"] == 1.0
        assert t["latency_p99_ms"] < 800
        assert 0.2 < t["requests"] / total < 0.47  # a 3-way split by user
        assert t["rmse_samples"] > 0 and 0.3 < t["online_rmse"] < 1.5
        assert t["engagement_rate"] > 0
    ab = demo["online"]["ab"]  # the evaluator's test: each model track against the baseline
    assert {(r["a"], r["b"]) for r in ab} == {("popular", "user-user"), ("popular", "item-item")}
    assert all(0.0 <= r["p_value"] <= 1.0 for r in ab)


def test_online_evaluation_ran_on_stored_provenance(demo: dict) -> None:
    """The services' provenance events went through the ingestor into the store, and the
    evaluator's round counted them: one stored exposure per answer the users got."""
    ingest = demo["ingest"]["provenance"]
    assert ingest["dead_letters"] == 0 and ingest["stored"] == demo["online"]["exposures"]
    answered = sum(t["requests"] - t["errors"] for t in demo["live_clients"].values())
    # a client that timed out still got a stored answer: allow a few
    assert abs(demo["online"]["exposures"] - answered) <= 0.01 * answered
    work = Path(demo["_work"])
    assert (work / "mlruns").is_dir()  # MLflow's artifacts stay in the output folder
    assert "/d/movierec-service" in demo["_stdout"] and "/d/movierec-fairness" in demo["_stdout"]


@pytest.fixture
def random_recommender() -> Iterator[str]:
    from movierec_simulator.world import World

    world = World.generate(USERS, MOVIES, SEED)
    rng = np.random.default_rng(0)
    app = Flask("random")

    @app.get("/recommend/<int:user_id>")
    def recommend(user_id: int) -> Response:
        picks = rng.choice(world.n_movies, size=20, replace=False)
        return Response(",".join(world.movie_ids[i] for i in picks), mimetype="text/plain")

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def test_personalised_models_beat_random_on_engagement(demo: dict, random_recommender: str) -> None:
    """The same simulated users watch more of what the models recommend than of random lists."""
    from datetime import datetime

    from movierec_simulator.client import run_sessions
    from movierec_simulator.sinks import MemorySink
    from movierec_simulator.world import World

    world = World.generate(USERS, MOVIES, SEED)
    with MemorySink() as sink:
        summary = run_sessions(
            world, random_recommender, world.user_ids.tolist(), 800, sink, seed=5,
            deadline_s=120, start=datetime(2030, 1, 1),
        )  # fmt: skip
    random_rate = summary.watched / summary.requests
    for track in ("user-user", "item-item"):
        stats = demo["live_clients"][track]
        assert stats["watched_per_request"] > 1.3 * random_rate, (track, stats, random_rate)


def test_personalised_tracks_beat_most_popular_significantly(demo: dict) -> None:
    """Live, same router, users randomised to tracks: the models' lists are watched more than
    the most-popular list (per-user share of recommendations watched, Welch's t-test)."""
    versus = demo["versus_popular"]
    for track in ("user-user", "item-item"):
        assert versus[track]["difference"] > 0, versus[track]  # each model track: direction
    pooled = versus["personalised"]
    assert pooled["users_a"] > 300 and pooled["users_b"] > 150  # the sample this size gives
    assert pooled["p_value"] < 0.05 and pooled["cohens_d"] > 0.15, pooled
    assert "Cohen's d" in demo["_stdout"]  # the effect size is reported, not only the p-value
