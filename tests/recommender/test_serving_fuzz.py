"""Fuzzing the HTTP API (recommender and router): no 500, no stack trace, contract headers kept."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from movierec_recommender.router.app import create_app as create_router
from movierec_recommender.router.settings import RouterSettings
from movierec_recommender.serving.app import create_app
from movierec_recommender.serving.settings import ServingSettings
from werkzeug.serving import make_server

from harness.appservice import train_model

ids = st.one_of(
    st.integers(min_value=0, max_value=2**70).map(str),
    st.integers(min_value=-(2**70), max_value=-1).map(str),
    st.text(max_size=40),
    st.text(alphabet="0123456789+-_.%/ eE", max_size=30),
)
accepts = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "text/plain", "*/*", "application/json;q=0.1,text/*",
                     "text/html", "application/*", "garbage;;;q=x"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
)  # fmt: skip
prefixes = st.sampled_from(
    ["/recommend/", "/recommend//", "/", "/healthz/", "/metrics/", "/readyz/", "/openapi.json/"]
)


@pytest.fixture(scope="module")
def recommender(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    model = train_model(tmp_path_factory.mktemp("fuzz") / "9", n_users=200, n_movies=60)
    app = create_app(ServingSettings(model=str(model)), start=False)
    assert app.extensions["movierec"].holder.load()
    return app.test_client()


@pytest.fixture(scope="module")
def router() -> Iterator[FlaskClient]:
    upstream = Flask("up")

    @upstream.get("/recommend/<int:uid>")
    def rec(uid: int) -> Response:
        resp = Response("a,b", content_type="text/plain")
        resp.headers["X-Track"] = "stable"
        resp.headers["X-Model-Version"] = "1"
        return resp

    server = make_server("127.0.0.1", 0, upstream, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    class Stable:
        def track(self, user_id: int) -> str:
            return "stable"

    settings = RouterSettings(
        tracks={"stable": f"http://127.0.0.1:{server.server_port}"}, rate_limit_rps=0
    )
    yield create_router(settings, assigner=Stable()).test_client()
    server.shutdown()
    server.server_close()


def _check(client: FlaskClient, path: str, accept: str | None) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    resp = client.get(path, headers=headers)
    body = resp.get_data()
    assert resp.status_code < 500 or resp.status_code == 503, (path, resp.status_code, body)
    assert b"Traceback" not in body and b'File "' not in body
    assert len(body) < 10_000
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    if path.startswith("/recommend/"):
        assert "X-Track" in resp.headers or resp.status_code in {404, 405}
    if resp.status_code == 200 and path.startswith("/recommend/"):
        assert "X-Model-Version" in resp.headers


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                HealthCheck.function_scoped_fixture])  # fmt: skip


@FUZZ
@given(prefix=prefixes, user_id=ids, accept=accepts)
def test_recommender_never_500s(
    recommender: FlaskClient, prefix: str, user_id: str, accept: str | None
) -> None:
    _check(recommender, prefix + quote(user_id, safe=""), accept)


@FUZZ
@given(prefix=prefixes, user_id=ids, accept=accepts)
def test_router_never_500s(
    router: FlaskClient, prefix: str, user_id: str, accept: str | None
) -> None:
    _check(router, prefix + quote(user_id, safe=""), accept)


@FUZZ
@given(user_id=st.integers(min_value=0, max_value=2**63 - 1), accept=accepts)
def test_valid_ids_always_answer_200_with_ids(
    recommender: FlaskClient, user_id: int, accept: str | None
) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    resp = recommender.get(f"/recommend/{user_id}", headers=headers)
    assert resp.status_code == 200
    if resp.mimetype == "application/json":
        assert len(resp.get_json()["items"]) == 20
    else:
        assert len(resp.get_data(as_text=True).split(",")) == 20


header_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=1,
    max_size=40,
).filter(lambda n: n.lower() not in {"content-length", "transfer-encoding", "host"})
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300)
headers_sets = st.dictionaries(
    st.one_of(header_names, st.sampled_from(["Accept", "X-Forwarded-For", "Connection",
                                              "If-None-Match", "Cookie", "Range"])),
    header_values,
    max_size=8,
)  # fmt: skip


@FUZZ
@given(headers=headers_sets, user_id=ids, method=st.sampled_from(["GET", "HEAD", "POST"]))
def test_any_headers_keep_the_contract(
    recommender: FlaskClient,
    router: FlaskClient,
    headers: dict[str, str],
    user_id: str,
    method: str,
) -> None:
    for client in (recommender, router):
        resp = client.open("/recommend/" + quote(user_id, safe=""), method=method,
                           headers=headers)  # fmt: skip
        body = resp.get_data()
        assert resp.status_code < 500 or resp.status_code == 503, (headers, resp.status_code)
        assert b"Traceback" not in body and b'File "' not in body
        for name in ("X-Content-Type-Options", "Content-Security-Policy", "X-Model-Version",
                     "X-Track"):  # fmt: skip
            assert name in resp.headers, (name, headers)
        if method == "HEAD":
            assert body == b""


@FUZZ
@given(
    head=st.binary(max_size=400),
    headers=st.lists(st.binary(max_size=120), max_size=12),
    body=st.binary(max_size=64),
)
def test_request_scanner_never_raises_and_bounds_what_it_accepts(
    head: bytes, headers: list[bytes], body: bytes
) -> None:
    from movierec_recommender.web.http1 import COMPLETE, ERROR, scan_request

    data = head + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body
    for cut in (len(data), len(data) // 2):
        scan = scan_request(data[:cut], max_head=512, max_body=32)
        if scan.state == COMPLETE:
            assert 0 < scan.end <= cut
            assert scan.end - data.find(b"\r\n\r\n") - 4 <= 32
        if scan.state == ERROR:
            assert scan.status in {400, 411, 413, 431}


def test_published_openapi_is_served_by_both(recommender: FlaskClient, router: FlaskClient) -> None:
    for client in (recommender, router):
        doc = client.get("/openapi.json").get_json()
        assert doc["openapi"].startswith("3.")
        assert set(doc["paths"]) >= {"/recommend/{user_id}", "/healthz", "/readyz", "/metrics"}


def test_model_path_is_a_real_folder(tmp_path: Path) -> None:
    # the fuzzed service above must have loaded a real model, not a stand-in
    model = train_model(tmp_path / "x", n_users=50, n_movies=20)
    assert (model / "meta.json").is_file()
