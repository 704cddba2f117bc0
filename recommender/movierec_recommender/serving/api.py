"""Routes of the recommender service: /recommend/<user_id>, /healthz, /readyz, /metrics."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from movierec_recommender.provenance import build_event
from movierec_recommender.serving import admission
from movierec_recommender.serving.http import parse_user_id, render, short, wants_json
from movierec_recommender.serving.metrics import metrics_response, openapi_response

log = logging.getLogger(__name__)
bp = Blueprint("recommender", __name__)

COMPONENT = "recommender"


def _state() -> Any:
    return current_app.extensions["movierec"]


@bp.get("/recommend/<user_id>")
def recommend(user_id: str) -> Response:
    started = time.perf_counter()
    st = _state()
    settings = st.settings
    uid = parse_user_id(user_id)
    snap = st.holder.current
    version = snap.version if snap else "none"
    if uid is None:
        resp = short(400, "bad user id: expected a non-negative integer")
        return _finish(st, resp, version, started)
    if snap is None:
        resp = short(503, "model loading", {"Retry-After": "1"})
        return _finish(st, resp, version, started)
    waited = admission.queue_wait()
    if waited * 1000 > settings.shed_queue_ms:
        st.metrics.shed.labels("queue_wait").inc()
        return _finish(st, short(503, "overloaded", {"Retry-After": "1"}), version, started)
    if not st.in_flight.enter():
        st.metrics.shed.labels("in_flight").inc()
        return _finish(st, short(503, "overloaded", {"Retry-After": "1"}), version, started)
    try:
        spent = waited + (time.perf_counter() - started)
        time_left = min(settings.compute_budget_ms / 1000, settings.budget_ms / 1000 - spent - 0.05)
        ans = st.answerer.answer(snap, str(uid), time_left)
    finally:
        st.in_flight.leave()
    if ans.fallback is not None:
        st.metrics.fallbacks.labels(ans.fallback).inc()
    body, ctype = render(
        uid,
        ids=ans.ids,
        scores=ans.scores,
        model_version=snap.version,
        track=settings.track,
        as_json=wants_json(request.headers.get("Accept")),
    )
    resp = Response(body, status=200, content_type=ctype)
    resp = _finish(st, resp, snap.version, started)
    if st.provenance.enabled:
        st.provenance.emit(
            build_event(
                user_id=uid,
                track=settings.track,
                model_name=snap.name,
                model_version=snap.version,
                ids=ans.ids,
                scores=ans.scores,
                latency_ms=(time.perf_counter() - started) * 1000,
                status=200,
                fallback=ans.fallback,
            )
        )
    return resp


def _finish(st: Any, resp: Response, version: str, started: float) -> Response:
    resp.headers["X-Model-Version"] = version
    resp.headers["X-Track"] = st.settings.track
    st.metrics.observe(
        COMPONENT, st.settings.track, version, resp.status_code, time.perf_counter() - started
    )
    return resp


@bp.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", content_type="text/plain; charset=utf-8")


@bp.get("/readyz")
def readyz() -> Response:
    st = _state()
    snap = st.holder.current
    if snap is None:
        reason = st.holder.last_error or "loading"
        return short(503, f"not ready: {reason}"[:300], {"Retry-After": "1"})
    return jsonify({"ready": True, "model_version": snap.version, "algo": snap.algo})


@bp.get("/metrics")
def metrics() -> Response:
    return metrics_response(_state().registry)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return openapi_response("movierec recommender")
