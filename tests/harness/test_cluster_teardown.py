"""Stopping the node leaves no pod, network namespace, mount, IP reservation, bridge or chain.

It stops the shared cluster and starts it again (same certificates, ports and etcd data), so
`tests/harness/conftest.py` runs it after every other test of the session.
"""

from __future__ import annotations

import signal
import time

from harness import cni, coredns, envfile, node_images
from harness.kube import PROCESSES, KubeCluster, leftovers
from harness.process import stop_pid
from harness.session import KubeNamespace

# Everything a pod can leave on the host: a netns and an IP (sandbox), tmpfs mounts (token,
# emptyDir medium Memory), hostPort chains (portmap), Service chains (kube-proxy).
LEAVER = f"""
apiVersion: v1
kind: Pod
metadata: {{name: leaver, labels: {{app: leaver}}}}
spec:
  terminationGracePeriodSeconds: 30
  containers:
    - name: pause
      image: {node_images.PAUSE_IMAGE}
      imagePullPolicy: Never
      ports: [{{containerPort: 8080, hostPort: 18080}}]
      volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  volumes: [{{name: scratch, emptyDir: {{medium: Memory}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: leaver}}
spec:
  selector: {{app: leaver}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def _record(cluster: KubeCluster) -> None:
    """Keep .services.env's PIDs true when it describes this cluster."""
    recorded = envfile.read()
    if recorded.get("MOVIEREC_KUBE_DIR") == str(cluster.workdir):
        envfile.write({**recorded, **cluster.env()})


def _stop_then_start(cluster: KubeCluster) -> tuple[dict[str, list[str]], list[str], float]:
    """Stop the cluster, note what is left and what runs, then start it again for the session."""
    begun = time.monotonic()
    try:
        cluster.stop()
        stopped_after = time.monotonic() - begun
        after = leftovers()
        alive = [name for name in PROCESSES if cluster.process_alive(name)]
    finally:
        if not cluster.running():  # back for the rest of the session, whatever happened
            cluster.stop()
            cluster.start()
            _record(cluster)
    return after, alive, stopped_after


def _run_leaver(kube: KubeNamespace) -> None:
    kube.kubectl("apply", "-f", "-", stdin=LEAVER)
    kube.kubectl("wait", "--for=condition=Ready", "pod/leaver", "--timeout=90s", timeout=100)
    before = leftovers()
    for kind in ("netns", "mounts", "ip reservations", "links", "iptables chains"):
        assert before[kind], f"the pod left no {kind} to clean up: the check proves nothing"


def _dns_answers() -> bool:
    name = f"kubernetes.default.svc.{coredns.CLUSTER_DOMAIN}"
    return coredns.query_a(cni.DNS_SERVICE_IP, name) == [cni.API_SERVICE_IP]


def test_stopping_the_cluster_leaves_nothing_behind(
    kube: KubeNamespace, kube_session: KubeCluster
) -> None:
    _run_leaver(kube)
    pids = dict(kube_session.pids)

    after, alive, stopped_after = _stop_then_start(kube_session)

    assert after == {kind: [] for kind in after}
    assert alive == []
    assert stopped_after < 60  # the pod's 30s grace period is cut short
    assert kube_session.pids != pids
    assert kube_session.running()
    assert _dns_answers()


def test_a_node_whose_kubelet_died_is_cleaned_up_too(
    kube: KubeNamespace, kube_session: KubeCluster
) -> None:
    # Nobody tears the pod down through the CRI: containerd's tasks, the netns, the mounts and
    # the IP are removed by the harness itself.
    _run_leaver(kube)
    kubelet = kube_session.pids["kubelet"]
    assert kubelet is not None
    stop_pid(kubelet, marker=str(kube_session.workdir), sig=signal.SIGKILL, name="kubelet")

    after, alive, _ = _stop_then_start(kube_session)

    assert after == {kind: [] for kind in after}
    assert alive == []
    assert kube_session.running()
    assert _dns_answers()
    # The restarted node runs the same pod again: its hostPort, IP and Service chains were freed.
    # The pod object usually outlives the node, but a controller may have deleted it while the
    # node was NotReady, so it is applied again (a no-op when it is still there).
    kube.kubectl("apply", "-f", "-", stdin=LEAVER)
    kube.kubectl("wait", "--for=condition=Ready", "pod/leaver", "--timeout=90s", timeout=100)
