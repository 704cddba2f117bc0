"""The recommender's HTTP contract through the Flask test client, on a real (small) model."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from movierec_recommender.provenance import ProvenanceSink
from movierec_recommender.serving.app import create_app
from movierec_recommender.serving.settings import ServingSettings
from movierec_recommender.web.edge import edge_of
from prometheus_client import CollectorRegistry

from harness.appservice import train_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.mktemp("model") / "m1", n_users=300, n_movies=80)


@pytest.fixture(scope="module")
def users_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Users 0..299 are in the model; 1000..1099 are new (cold start) women aged 30."""
    path = tmp_path_factory.mktemp("meta") / "users.csv"
    rows = ["user_id,age,occupation,gender"]
    rows += [f"{u},{20 + u % 40},student,{'F' if u % 2 else 'M'}" for u in range(300)]
    rows += [f"{u},30,writer,F" for u in range(1000, 1100)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def app(model_dir: Path, users_csv: Path) -> Flask:
    settings = ServingSettings(model=str(model_dir), users_csv=str(users_csv), track="canary")
    app = create_app(settings, start=False)
    assert app.extensions["movierec"].holder.load()
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_text_answer_is_one_line_of_up_to_20_ids(client: FlaskClient, model_dir: Path) -> None:
    resp = client.get("/recommend/3")
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    body = resp.get_data(as_text=True)
    assert "\n" not in body
    ids = body.split(",")
    assert 1 <= len(ids) <= 20
    assert len(set(ids)) == len(ids)
    assert resp.headers["X-Model-Version"] == model_dir.name
    assert resp.headers["X-Track"] == "canary"


def test_json_answer_matches_text_answer(client: FlaskClient) -> None:
    text = client.get("/recommend/5").get_data(as_text=True).split(",")
    resp = client.get("/recommend/5", headers={"Accept": "application/json"})
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    doc = resp.get_json()
    assert set(doc) == {"user_id", "items", "model_version", "track"}
    assert doc["user_id"] == 5
    assert [item["movie_id"] for item in doc["items"]] == text
    scores = [item["score"] for item in doc["items"]]
    assert scores == sorted(scores, reverse=True)
    assert doc["model_version"] == resp.headers["X-Model-Version"]
    assert doc["track"] == resp.headers["X-Track"] == "canary"


@pytest.mark.parametrize("precompute", [True, False])
def test_answers_are_the_models_own_lists(model_dir: Path, precompute: bool) -> None:
    from movierec_recommender.models import load_model

    model = load_model(model_dir)
    settings = ServingSettings(model=str(model_dir), precompute=precompute, cache_size=0)
    app = create_app(settings, start=False)
    assert app.extensions["movierec"].holder.load()
    table = app.extensions["movierec"].holder.current.answers.table
    assert (table is not None) == precompute
    if table is not None:
        assert len(table) == 300
    client = app.test_client()
    for uid in range(0, 300, 7):
        doc = client.get(f"/recommend/{uid}", headers={"Accept": "application/json"}).get_json()
        ids, scores = model.recommend(str(uid), n=20)
        assert [item["movie_id"] for item in doc["items"]] == ids
        assert [item["score"] for item in doc["items"]] == pytest.approx(scores, abs=2e-6)


def test_known_user_gets_personal_list_not_the_popular_one(app: Flask, client: FlaskClient) -> None:
    snap = app.extensions["movierec"].holder.current
    popular = ",".join(snap.model.popular(20))
    answers = {client.get(f"/recommend/{u}").get_data(as_text=True) for u in range(1, 40, 2)}
    assert answers - {popular}, "every known user got the overall popular list"


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", "1e3", "%20", "99999999999999999999", "١٢"])
def test_malformed_id_is_a_short_400(client: FlaskClient, bad: str) -> None:
    resp = client.get(f"/recommend/{bad}")
    assert resp.status_code == 400
    body = resp.get_data(as_text=True)
    assert len(body) < 100
    assert "Traceback" not in body
    assert resp.headers["X-Track"] == "canary"
    assert "X-Model-Version" in resp.headers


def test_unknown_user_gets_a_fallback_never_an_error(client: FlaskClient, app: Flask) -> None:
    resp = client.get("/recommend/987654321")
    assert resp.status_code == 200
    ids = resp.get_data(as_text=True).split(",")
    assert len(ids) == 20
    snap = app.extensions["movierec"].holder.current
    assert ids == snap.model.popular(20)  # no metadata for this user: overall popular


def test_cold_start_user_with_metadata_gets_their_segment_list(
    client: FlaskClient, app: Flask
) -> None:
    snap = app.extensions["movierec"].holder.current
    segment_list = snap.fallback.segments[("F", "25-34")][0]
    resp = client.get("/recommend/1042")  # new user, F, 30
    assert resp.get_data(as_text=True).split(",") == segment_list
    assert segment_list != snap.model.popular(20)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'movierec_fallbacks_total{reason="unknown_user"}' in metrics


def test_security_headers_on_every_answer(client: FlaskClient, model_dir: Path) -> None:
    for path in ["/recommend/1", "/recommend/x", "/healthz", "/readyz", "/nope", "/metrics"]:
        for resp in (client.get(path), client.post(path), client.head(path)):
            assert resp.headers["X-Content-Type-Options"] == "nosniff", path
            assert "default-src 'none'" in resp.headers["Content-Security-Policy"], path
            assert resp.headers["Cache-Control"] == "no-store", path
            assert resp.headers["X-Model-Version"] == model_dir.name, path
            assert resp.headers["X-Track"] == "canary", path


def test_unknown_paths_and_methods_are_short_errors(client: FlaskClient) -> None:
    assert client.get("/recommend/").status_code == 404
    assert client.get("/recommend/1/2").status_code == 404
    resp = client.post("/recommend/1")
    assert resp.status_code == 405
    assert "GET" in resp.headers["Allow"]
    assert len(resp.get_data()) < 100


def test_readyz_is_503_until_the_model_is_loaded(model_dir: Path) -> None:
    gate = threading.Event()

    def slow_loader(source: str) -> tuple[Any, str]:
        from movierec_recommender.models import load_model

        gate.wait(10)
        return load_model(source), "7"

    app = create_app(ServingSettings(model=str(model_dir)), loader=slow_loader)
    client = app.test_client()
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "1"
    answer = client.get("/recommend/1")
    assert answer.status_code == 503
    assert client.get("/healthz").status_code == 200
    gate.set()
    deadline = time.monotonic() + 10
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "model never became ready"
        time.sleep(0.02)
    assert client.get("/readyz").get_json()["model_version"] == "7"
    assert client.get("/recommend/1").headers["X-Model-Version"] == "7"
    app.extensions["movierec"].holder.stop()


def test_failed_reload_keeps_serving_the_old_model(app: Flask, client: FlaskClient) -> None:
    holder = app.extensions["movierec"].holder
    before = holder.current.version
    assert not holder.load("/nonexistent/model")
    resp = client.get("/recommend/1")
    assert resp.status_code == 200
    assert resp.headers["X-Model-Version"] == before
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'movierec_model_reloads_total{result="failure"} 1.0' in metrics
    assert f'movierec_model_info{{algo="item-item",model_version="{before}"}} 1.0' in metrics


def test_metrics_count_requests_by_track_version_and_status(
    client: FlaskClient, model_dir: Path
) -> None:
    for _ in range(3):
        client.get("/recommend/1")
    client.get("/recommend/bad")
    text = client.get("/metrics").get_data(as_text=True)
    version = model_dir.name
    ok = (
        f'movierec_requests_total{{component="recommender",model_version="{version}",'
        'status="200",track="canary"} 3.0'
    )
    assert ok in text
    assert 'status="400",track="canary"} 1.0' in text
    assert "movierec_request_latency_seconds_bucket" in text


def test_slow_model_answers_within_budget_with_a_fallback(model_dir: Path) -> None:
    from movierec_recommender.models import load_model

    class Slow:
        def __init__(self, inner: Any) -> None:
            self._inner = inner
            self.algo = inner.algo

        def recommend(self, user_id: str, n: int = 20, exclude_seen: bool = True) -> Any:
            if exclude_seen:  # the serving path; the fallback build uses exclude_seen=False
                time.sleep(1.0)
            return self._inner.recommend(user_id, n, exclude_seen)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    settings = ServingSettings(
        model=str(model_dir), compute_budget_ms=100, cache_size=0, precompute=False
    )
    app = create_app(settings, loader=lambda s: (Slow(load_model(s)), "slow"), start=False)
    assert app.extensions["movierec"].holder.load()
    client = app.test_client()
    started = time.monotonic()
    resp = client.get("/recommend/2")
    elapsed = time.monotonic() - started
    assert resp.status_code == 200
    assert elapsed < 0.5
    assert len(resp.get_data(as_text=True).split(",")) == 20
    assert 'movierec_fallbacks_total{reason="timeout"} 1.0' in client.get("/metrics").get_data(
        as_text=True
    )


class RecordingSink(ProvenanceSink):
    """A provenance sink that keeps events in memory instead of sending them to Kafka."""

    def __init__(self) -> None:
        super().__init__("memory", "recommendations", CollectorRegistry())
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)


def test_head_is_answered_with_the_headers_but_is_not_an_exposure(model_dir: Path) -> None:
    sink = RecordingSink()
    app = create_app(ServingSettings(model=str(model_dir)), start=False, provenance=sink)
    assert app.extensions["movierec"].holder.load()
    client = app.test_client()
    head = client.head("/recommend/3")
    assert head.status_code == 200
    assert head.get_data() == b""
    assert head.headers["X-Model-Version"] == model_dir.name
    assert head.headers["X-Track"] == "stable"
    assert head.headers["X-Content-Type-Options"] == "nosniff"
    assert sink.events == []
    assert client.get("/recommend/3").status_code == 200
    assert [e["user_id"] for e in sink.events] == [3]  # a GET is one


def test_readyz_gives_a_reason_code_never_an_error_text_or_a_path(tmp_path: Path) -> None:
    missing = tmp_path / "secret-folder" / "model"
    app = create_app(ServingSettings(model=str(missing), load_retry_seconds=60), start=False)
    assert not app.extensions["movierec"].holder.load()
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_data(as_text=True) == "not ready: load_failed\n"
    answer = app.test_client().get("/recommend/1")
    assert answer.status_code == 503
    assert answer.headers["X-Model-Version"] == "none"
    assert answer.headers["X-Track"] == "stable"


def test_readyz_says_draining_once_the_worker_drains(app: Flask, client: FlaskClient) -> None:
    assert client.get("/readyz").status_code == 200
    edge_of(app).begin_drain()
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_data(as_text=True) == "not ready: draining\n"
    assert resp.headers["X-Track"] == "canary"
    assert client.get("/recommend/1").status_code == 200  # still answering while it drains


def test_openapi_document_describes_the_contract(client: FlaskClient) -> None:
    doc = json.loads(client.get("/openapi.json").get_data())
    assert "/recommend/{user_id}" in doc["paths"]


def test_new_users_in_metadata_get_their_segment_after_a_refresh(
    model_dir: Path, users_csv: Path, tmp_path: Path
) -> None:
    csv_path = tmp_path / "users.csv"
    csv_path.write_text(users_csv.read_text())
    settings = ServingSettings(
        model=str(model_dir), users_csv=str(csv_path), users_refresh_seconds=0.01
    )
    app = create_app(settings, start=False)
    holder = app.extensions["movierec"].holder
    assert holder.load()
    client = app.test_client()
    popular = holder.current.model.popular(20)
    assert client.get("/recommend/5000").get_data(as_text=True).split(",") == popular
    with csv_path.open("a") as handle:
        handle.write("5000,30,writer,F\n")
    time.sleep(0.05)
    holder.refresh_users()
    segment = holder.current.fallback.segments[("F", "25-34")][0]
    assert client.get("/recommend/5000").get_data(as_text=True).split(",") == segment


def test_user_metadata_from_the_database_users_table(model_dir: Path, tmp_path: Path) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'movierec.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE users (user_id BIGINT PRIMARY KEY, age INT, occupation TEXT, "
                "gender TEXT)"
            )
        )
        rows = [{"u": u, "a": 20 + u % 40, "g": "F" if u % 2 else "M"} for u in range(300)]
        rows.append({"u": 7000, "a": 30, "g": "F"})
        conn.execute(sa.text("INSERT INTO users VALUES (:u, :a, 'x', :g)"), rows)
    engine.dispose()
    app = create_app(ServingSettings(model=str(model_dir), db_url=url), start=False)
    holder = app.extensions["movierec"].holder
    assert holder.load()
    segment = holder.current.fallback.segments[("F", "25-34")][0]
    resp = app.test_client().get("/recommend/7000")
    assert resp.get_data(as_text=True).split(",") == segment


def test_answers_that_need_no_model_call_are_made_now_and_the_rest_left_for_a_thread(
    model_dir: Path,
) -> None:
    """`recommend_now` (what the worker's event loop calls) gives exactly `recommend`'s answer
    for a table hit, an unknown user, an LRU hit or a bad id, and for a user whose list needs a
    model call gives None without counting anything, so the thread that then answers is the
    only one to count it."""
    sink = RecordingSink()
    json_accept = {"HTTP_ACCEPT": "application/json"}
    for precompute in (True, False):
        settings = ServingSettings(model=str(model_dir), precompute=precompute, cache_size=50)
        app = create_app(settings, start=False, provenance=sink)
        assert app.extensions["movierec"].holder.load()
        handler = edge_of(app).handler
        for raw in ("5", "123456", "x1"):  # known (precomputed) user, unknown user, bad id
            if raw == "5" and not precompute:
                continue
            now = handler.recommend_now(raw, dict(json_accept), False)
            later = handler.recommend(raw, dict(json_accept), False)
            assert now is not None
            assert (now.status, now.body) == (later.status, later.body)
        if precompute:
            continue
        counted = _requests_counted(app)
        assert counted > 0
        events = len(sink.events)
        assert handler.recommend_now("7", {}, False) is None  # needs the model
        assert len(sink.events) == events  # no exposure
        assert _requests_counted(app) == counted
        computed = handler.recommend("7", {}, False)  # a thread's answer fills the LRU
        cached = handler.recommend_now("7", {}, False)
        assert cached is not None and cached.body == computed.body
        assert [e["user_id"] for e in sink.events[events:]] == [7, 7]


def _requests_counted(app: Flask) -> float:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("movierec_requests_total{")
    )
