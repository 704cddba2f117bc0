"""The harness's single-node cluster runs real pods: pod IPs, Services through kube-proxy, DNS, logs."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from harness import cni, coredns, node_images
from harness import kube as node
from harness.kube import KubeCluster, leftovers
from harness.process import ServiceError
from harness.session import KubeNamespace

POD = f"""
apiVersion: v1
kind: Pod
metadata: {{name: sleeper, labels: {{app: sleeper}}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 65534
    seccompProfile: {{type: RuntimeDefault}}
  containers:
    - name: pause
      image: {node_images.PAUSE_IMAGE}
      imagePullPolicy: Never
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {{drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata: {{name: sleeper}}
spec:
  selector: {{app: sleeper}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def _pod(kube: KubeNamespace, name: str) -> dict:
    return json.loads(kube.kubectl("get", "pod", name, "-o", "json"))


def test_a_pod_runs_with_an_ip_from_the_pod_cidr(kube: KubeNamespace) -> None:
    kube.kubectl("apply", "-f", "-", stdin=POD)

    kube.kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=90s", timeout=100)
    pod = _pod(kube, "sleeper")

    assert pod["status"]["phase"] == "Running"
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(cni.POD_CIDR)
    assert pod["status"]["podIP"] in cni.reserved_ips()


def test_the_node_is_ready_and_schedulable(kube_session: KubeCluster) -> None:
    node = json.loads(kube_session.kubectl("get", "node", kube_session.node_name, "-o", "json"))

    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    assert not node["spec"].get("unschedulable")
    assert {"type": "InternalIP", "address": kube_session.node_ip} in node["status"]["addresses"]


def test_cluster_dns_answers_through_the_service_ip(kube: KubeNamespace) -> None:
    # From the host to the kube-dns clusterIP: kube-proxy's DNAT to the CoreDNS pod. CoreDNS
    # itself lists Services through the `kubernetes` Service with its token, so an answer
    # also shows pods reach the API server.
    kube.kubectl("apply", "-f", "-", stdin=POD)
    service_ip = kube.kubectl("get", "service", "sleeper", "-o", "jsonpath={.spec.clusterIP}")
    name = f"sleeper.{kube.namespace}.svc.{coredns.CLUSTER_DOMAIN}"

    deadline = time.monotonic() + 30
    answer: list[str] = []
    while not answer and time.monotonic() < deadline:  # CoreDNS sees new Services within ~1s
        answer = coredns.query_a(cni.DNS_SERVICE_IP, name)
        time.sleep(0.3)

    assert answer == [service_ip]
    kubernetes = coredns.query_a(
        cni.DNS_SERVICE_IP, f"kubernetes.default.svc.{coredns.CLUSTER_DOMAIN}"
    )
    assert kubernetes == [cni.API_SERVICE_IP]


def test_logs_and_port_forward_reach_a_pod(kube_session: KubeCluster) -> None:
    # API server -> kubelet with the apiserver-kubelet-client certificate.
    logs = kube_session.kubectl("-n", "kube-system", "logs", "deployment/coredns")
    assert f"CoreDNS-{node_images.COREDNS_VERSION.lstrip('v')}" in logs

    forward = subprocess.Popen(
        [
            str(kube_session.kubectl_path),
            f"--kubeconfig={kube_session.kubeconfig}",
            "-n",
            "kube-system",
            "port-forward",
            "--address=127.0.0.1",
            "service/kube-dns",
            ":9153",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, line
        url = f"http://127.0.0.1:{match[1]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
    finally:
        forward.terminate()
        forward.wait(timeout=10)
    assert "coredns_build_info" in body


def _settled_leftovers(timeout: float = 120) -> dict[str, list[str]]:
    """The node's host state once kube-proxy and CNI have caught up with earlier tests.

    Deleting a namespace ends its pods and Services asynchronously, and kube-proxy rewrites its
    per-Service chains on its own period, so a snapshot is only comparable once two taken a few
    seconds apart agree.
    """
    deadline = time.monotonic() + timeout
    previous = leftovers()
    while True:
        time.sleep(3)
        current = leftovers()
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current


def test_a_second_node_is_refused_and_leaves_the_first_alone(
    kube_session: KubeCluster, tmp_path: Path
) -> None:
    before = _settled_leftovers()

    with pytest.raises(ServiceError, match="already serves"):
        node.start(tmp_path / "second")

    assert kube_session.running()
    assert leftovers()["netns"] == before["netns"]
    assert leftovers()["iptables chains"] == before["iptables chains"]
    name = f"kubernetes.default.svc.{coredns.CLUSTER_DOMAIN}"
    assert coredns.query_a(cni.DNS_SERVICE_IP, name) == [cni.API_SERVICE_IP]
