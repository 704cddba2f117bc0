"""Routes and the `/recommend` handler of the recommender service."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, request

from movierec_recommender.provenance import build_event
from movierec_recommender.web.contract import parse_user_id, render, wants_json
from movierec_recommender.web.edge import readyz_response
from movierec_recommender.web.metrics import metrics_response, openapi_response
from movierec_recommender.web.reply import NONE, Reply, short_reply
from movierec_recommender.web.worker import QUEUE_WAIT_KEY

if TYPE_CHECKING:
    from movierec_recommender.serving.answer import Answer
    from movierec_recommender.serving.app import ServingState
    from movierec_recommender.serving.holder import Snapshot

log = logging.getLogger(__name__)
bp = Blueprint("recommender", __name__)

COMPONENT = "recommender"


class RecommenderHandler:
    """The recommender's side of the edge (`web.edge.Handler`)."""

    def __init__(self, state: ServingState) -> None:
        self.st = state
        self.track = state.settings.track
        self.budget = state.settings.budget_ms / 1000
        self.compute_budget = state.settings.compute_budget_ms / 1000

    def recommend(self, raw_id: str, environ: dict[str, Any], head: bool) -> Reply:
        """One answer. Only a `GET` that answered 200 is an exposure (a provenance event)."""
        started = time.perf_counter()
        found = self._user(raw_id, environ, started)
        if isinstance(found, Reply):
            return found
        uid, snap = found
        waited = environ.get(QUEUE_WAIT_KEY, 0.0)
        spent = waited + (time.perf_counter() - started)
        time_left = min(self.compute_budget, self.budget - spent - 0.05)
        ans = self.st.answerer.answer(snap, str(uid), time_left)
        return self._answer(uid, snap, ans, environ, head=head, started=started)

    def recommend_now(self, raw_id: str, environ: dict[str, Any], head: bool) -> Reply | None:
        """The same answer when it needs no model call (`Answerer.answer_now`: the answer table,
        a fallback, the LRU), else None with nothing counted: the worker's event loop makes
        these answers itself, and only model calls take a thread."""
        started = time.perf_counter()
        found = self._user(raw_id, environ, started)
        if isinstance(found, Reply):
            return found
        uid, snap = found
        ans = self.st.answerer.answer_now(snap, str(uid))
        if ans is None:
            return None
        return self._answer(uid, snap, ans, environ, head=head, started=started)

    def _user(
        self, raw_id: str, environ: dict[str, Any], started: float
    ) -> tuple[int, Snapshot] | Reply:
        """The user id and the model to answer with, or the answer when there is neither."""
        uid = parse_user_id(raw_id)
        snap = self.st.holder.current
        version = snap.version if snap else NONE
        as_json = wants_json(environ.get("HTTP_ACCEPT"))
        if uid is None:
            msg = "bad user id: expected a non-negative integer"
            return self._finish(short_reply(400, msg, as_json), version, started)
        if snap is None:
            reply = short_reply(503, "model loading", as_json, retry_after="1")
            return self._finish(reply, version, started)
        return uid, snap

    def _answer(
        self, uid: int, snap: Snapshot, ans: Answer, environ: dict[str, Any], *, head: bool,
        started: float,
    ) -> Reply:  # fmt: skip
        st = self.st
        if ans.fallback is not None:
            st.metrics.fallback_reason.get(ans.fallback).inc()
        body, ctype = render(
            uid,
            ids=ans.ids,
            scores=ans.scores,
            model_version=snap.version,
            track=self.track,
            as_json=wants_json(environ.get("HTTP_ACCEPT")),
        )
        reply = self._finish(Reply(200, body, [("Content-Type", ctype)]), snap.version, started)
        if st.provenance.enabled and not head:
            st.provenance.emit(
                build_event(
                    user_id=uid,
                    track=self.track,
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

    def _finish(self, reply: Reply, version: str, started: float) -> Reply:
        reply.model_version = version
        reply.track = self.track
        self.st.metrics.observe(
            COMPONENT, self.track, version, reply.status, time.perf_counter() - started
        )
        return reply

    def identity(self) -> tuple[str, str]:
        snap = self.st.holder.current
        return (snap.version if snap else NONE), self.track

    def not_ready(self) -> str | None:
        if self.st.holder.current is not None:
            return None
        return "load_failed" if self.st.holder.last_error else "loading"

    def close(self, timeout: float) -> None:
        """Worker exit: stop loading and computing, flush provenance within `timeout`."""
        self.st.holder.stop()
        self.st.answerer.close()
        self.st.provenance.close(timeout)


def _state() -> ServingState:
    state: ServingState = current_app.extensions["movierec"]
    return state


@bp.get("/recommend/<user_id>")
def recommend(user_id: str) -> Response:
    """Only reached when the edge did not answer (it takes GET and HEAD)."""
    reply = _state().handler.recommend(user_id, request.environ, request.method == "HEAD")
    return Response(reply.body, status=reply.status, headers=reply.wsgi_headers())


@bp.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", content_type="text/plain; charset=utf-8")


@bp.get("/readyz")
def readyz() -> Response:
    st = _state()
    snap = st.holder.current
    body = {"model_version": snap.version, "algo": snap.algo} if snap else {}
    return readyz_response(st.handler.not_ready(), body)


@bp.get("/metrics")
def metrics() -> Response:
    return metrics_response(_state().registry)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return openapi_response("movierec recommender")
