"""Routes of the recommender service: /recommend/<user_id>, /healthz, /readyz, /metrics."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from movierec_recommender.provenance import build_event
from movierec_recommender.serving import admission
from movierec_recommender.serving.http import (
    Reply,
    parse_user_id,
    render,
    short,
    short_reply,
    wants_json,
)
from movierec_recommender.serving.metrics import metrics_response, openapi_response

log = logging.getLogger(__name__)
bp = Blueprint("recommender", __name__)

COMPONENT = "recommender"


def _state() -> Any:
    return current_app.extensions["movierec"]


@bp.get("/recommend/<user_id>")
def recommend(user_id: str) -> Response:
    """What `RecommendFastPath` does not take (HEAD): the same answer through Flask."""
    reply = answer(_state(), user_id, request.headers.get("Accept"))
    return Response(reply.body, status=reply.status, headers=reply.headers)


def answer(st: Any, raw_id: str, accept: str | None) -> Reply:
    """One `/recommend/<raw_id>` answer, without Flask (the hot path calls it per request)."""
    started = time.perf_counter()
    settings = st.settings
    uid = parse_user_id(raw_id)
    snap = st.holder.current
    version = snap.version if snap else "none"
    if uid is None:
        reply = short_reply(400, "bad user id: expected a non-negative integer", accept)
        return _finish(st, reply, version, started)
    if snap is None:
        reply = short_reply(503, "model loading", accept, [("Retry-After", "1")])
        return _finish(st, reply, version, started)
    waited = admission.queue_wait()
    if waited * 1000 > settings.shed_queue_ms:
        st.metrics.shed_reason.get("queue_wait").inc()
        reply = short_reply(503, "overloaded", accept, [("Retry-After", "1")])
        return _finish(st, reply, version, started)
    if not st.in_flight.enter():
        st.metrics.shed_reason.get("in_flight").inc()
        reply = short_reply(503, "overloaded", accept, [("Retry-After", "1")])
        return _finish(st, reply, version, started)
    try:
        spent = waited + (time.perf_counter() - started)
        time_left = min(settings.compute_budget_ms / 1000, settings.budget_ms / 1000 - spent - 0.05)
        ans = st.answerer.answer(snap, str(uid), time_left)
    finally:
        st.in_flight.leave()
    if ans.fallback is not None:
        st.metrics.fallback_reason.get(ans.fallback).inc()
    body, ctype = render(
        uid,
        ids=ans.ids,
        scores=ans.scores,
        model_version=snap.version,
        track=settings.track,
        as_json=wants_json(accept),
    )
    reply = _finish(st, Reply(200, body.encode(), [("Content-Type", ctype)]), snap.version, started)
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
    return reply


def wsgi_answer(st: Any) -> Any:
    """`answer` for `serving.http.RecommendFastPath` (bound to this app's state)."""

    def call(raw_id: str, environ: dict[str, Any]) -> Reply:
        return answer(st, raw_id, environ.get("HTTP_ACCEPT"))

    return call


def _finish(st: Any, reply: Reply, version: str, started: float) -> Reply:
    track = st.settings.track
    reply.headers.append(("X-Model-Version", version))
    reply.headers.append(("X-Track", track))
    st.metrics.observe(COMPONENT, track, version, reply.status, time.perf_counter() - started)
    return reply


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
