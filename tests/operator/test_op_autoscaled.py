"""`movierec.io/autoscaled: "true"` on a RecommenderModel (the chart sets it with its
HorizontalPodAutoscaler): the operator creates the stable Deployment with spec.replicas and
then leaves the count to the autoscaler instead of resetting it every tick."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.operator.support import Cluster, Operator, Registry, wait_for

pytestmark = pytest.mark.k8s


def _model(registry: Registry, version: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "movierec.io/v1alpha1",
        "kind": "RecommenderModel",
        "metadata": {"name": "movies", "annotations": annotations},
        "spec": {"modelName": registry.model_name, "version": version, "replicas": 1},
    }


def _replicas(cluster: Cluster) -> int | None:
    dep = cluster.read("deployment", "movies-stable")
    return None if dep is None else int(dep["spec"]["replicas"])


@pytest.mark.parametrize(("autoscaled", "kept"), [(True, 3), (False, 1)])
def test_replicas_of_an_autoscaled_model_are_the_autoscalers(
    *,
    cluster: Cluster,
    registry: Registry,
    operator_factory: Callable[..., Operator],
    unused_prometheus: str,
    autoscaled: bool,
    kept: int,
) -> None:
    (v1,) = registry.register(1)
    operator_factory(prometheus_url=unused_prometheus).start()
    annotations = {"movierec.io/autoscaled": "true"} if autoscaled else {}
    cluster.apply(_model(registry, v1, annotations))
    wait_for("the stable Deployment with 1 replica", lambda: _replicas(cluster) == 1, timeout=30)
    cluster.kubectl("scale", "deployment/movies-stable", "--replicas=3")  # what an HPA does
    time.sleep(3)  # several ticks of the operator (0.5 s each)
    assert _replicas(cluster) == kept
