"""Kopf entry points: thin handlers that hand every RecommenderModel event to :mod:`reconcile`.

Run with ``kopf run -m movierec_operator.handlers --standalone`` (or ``python -m movierec_operator``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import kopf
import prometheus_client

from movierec_operator import constants, k8s
from movierec_operator.analysis import Prometheus
from movierec_operator.metrics import RolloutMetrics
from movierec_operator.mlflow_client import Registry
from movierec_operator.reconcile import Deps, reconcile
from movierec_operator.settings import Settings

log = logging.getLogger(__name__)

# Kopf registers handlers at import time, so the timer's period is read from the environment here.
TIMER_INTERVAL = Settings().timer_interval_seconds
RESOURCE = (constants.GROUP, constants.VERSION, constants.PLURAL)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Build the adapters once; every object's memo shares them."""
    ours = Settings()
    settings.posting.level = logging.WARNING  # our own Events say what happened; Kopf's are noise
    settings.persistence.finalizer = f"{constants.GROUP}/operator"
    settings.watching.server_timeout = 300
    # A deleted object waits for its timer to exit; a tick in flight (sync, in a thread) is not
    # "instant", and Kopf would then re-check only after 60 s, holding the deletion that long.
    settings.background.cancellation_polling = 1
    # Restricted mode: no cluster-wide list/watch of namespaces and CRDs, so the chart's
    # namespaced Role is enough (the CRD must exist before the operator starts).
    settings.scanning.disabled = not ours.scan_cluster
    metrics = RolloutMetrics()
    if ours.metrics_port:
        prometheus_client.start_http_server(ours.metrics_port, registry=metrics.registry)
    kube = k8s.Kube(k8s.make_api_client(ours.kubeconfig), timeout=ours.request_timeout_seconds)
    # Without list/watch on RecommenderModels nothing works: stop now with the reason instead of
    # reporting healthy and failing later (a RoleBinding naming another namespace did that).
    problem = _watch_problem(kube, ours)
    if problem:
        log.error("the operator cannot start: %s", problem)
        raise kopf.PermanentError(problem)
    memo.deps = Deps(
        settings=ours,
        kube=kube,
        registry=Registry(
            ours.mlflow_tracking_uri,
            timeout=ours.outbound_timeout_seconds,
            retries=ours.outbound_retries,
        ),
        prometheus=Prometheus(
            ours.prometheus_url,
            timeout=ours.outbound_timeout_seconds,
            retries=ours.outbound_retries,
        ),
        metrics=metrics,
    )


def _watch_problem(kube: k8s.Kube, settings: Settings) -> str | None:
    """The first namespace the operator may not watch (patterns such as ``team-*`` cannot be
    listed: Kopf resolves them itself)."""
    if not settings.namespace:
        return kube.watch_problem(None)
    for namespace in settings.namespace.split(","):
        if namespace and not any(c in namespace for c in "*?[!"):
            problem = kube.watch_problem(namespace)
            if problem:
                return problem
    return None


@kopf.on.probe(id="watch")
def watch_works(memo: kopf.Memo, **_: Any) -> str:
    """Liveness/readiness (``--liveness``; Kopf caches it 10 s): fails while the operator may
    not list RecommenderModels, e.g. after its RoleBinding was removed."""
    deps = memo.get("deps")
    if deps is None:
        raise kopf.PermanentError("not configured yet")
    problem = _watch_problem(deps.kube, deps.settings)
    if problem:
        log.error("health check: %s", problem)
        raise kopf.PermanentError(problem)
    return "ok"


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """Kopf talks to the API server with the same credentials as the adapter: the kubeconfig in
    MOVIEREC_OPERATOR_KUBECONFIG, else the in-cluster service account, else ~/.kube/config."""
    ours = Settings()
    return k8s.connection_info(k8s.make_api_client(ours.kubeconfig))


def _reconcile(memo: Any, namespace: str | None, name: str, retry: int) -> None:
    if namespace is None:  # the CRD is namespaced; Kopf types allow cluster-scoped objects too
        return
    # Timers and change handlers of one object may run at once in Kopf's thread pool.
    lock = memo.setdefault("lock", threading.Lock())
    with lock:
        reconcile(memo.deps, namespace, name, retry=retry)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def on_change(namespace: str | None, name: str, memo: Any, retry: int, **_: Any) -> None:
    """The spec changed (or the operator restarted): act on it now, not at the next tick."""
    _reconcile(memo, namespace, name, retry)


@kopf.timer(*RESOURCE, interval=TIMER_INTERVAL, initial_delay=TIMER_INTERVAL)
def tick(namespace: str | None, name: str, memo: Any, **kwargs: Any) -> None:
    """Level-based: poll the alias, analyse a due canary, and repair drifted children."""
    _reconcile(memo, namespace, name, int(kwargs.get("retry") or 0))


@kopf.on.cleanup()
def close(memo: kopf.Memo, **_: Any) -> None:
    deps = memo.get("deps")
    if deps is not None:
        deps.prometheus.close()
