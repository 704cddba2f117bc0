"""Stopping the node leaves no pod, network namespace, mount, IP reservation, bridge or chain.

It stops the shared cluster and starts it again (same certificates, ports and etcd data), so
`tests/harness/conftest.py` runs it after every other test of the session.
"""

from __future__ import annotations

import time

from harness import cni, coredns, envfile, node_images
from harness.kube import PROCESSES, KubeCluster, leftovers
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


def test_stopping_the_cluster_leaves_nothing_behind(
    kube: KubeNamespace, kube_session: KubeCluster
) -> None:
    kube.kubectl("apply", "-f", "-", stdin=LEAVER)
    kube.kubectl("wait", "--for=condition=Ready", "pod/leaver", "--timeout=90s", timeout=100)
    before = leftovers()
    pids = dict(kube_session.pids)

    begun = time.monotonic()
    try:
        kube_session.stop()
        stopped_after = time.monotonic() - begun
        after = leftovers()
        alive = [name for name in PROCESSES if kube_session.process_alive(name)]
    finally:
        if not kube_session.running():  # back for the rest of the session, whatever happened
            kube_session.stop()
            kube_session.start()
            _record(kube_session)

    for kind in ("netns", "mounts", "ip reservations", "links", "iptables chains"):
        assert before[kind], f"the pod left no {kind} to clean up: the check proves nothing"
    assert after == {kind: [] for kind in after}
    assert alive == []
    assert stopped_after < 60  # a 30s grace period is cut short
    assert kube_session.pids != pids
    assert kube_session.running()
    name = f"kubernetes.default.svc.{coredns.CLUSTER_DOMAIN}"
    assert coredns.query_a(cni.DNS_SERVICE_IP, name) == [cni.API_SERVICE_IP]
