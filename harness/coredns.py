"""Cluster DNS: CoreDNS as a kube-system Deployment behind the kube-dns Service at a fixed clusterIP."""

from __future__ import annotations

import random
import socket
import struct

from harness.cni import DNS_SERVICE_IP
from harness.node_images import COREDNS_IMAGE

CLUSTER_DOMAIN = "cluster.local"
# Non-root: CoreDNS listens on 1053 and the Service maps 53 to it.
LISTEN_PORT = 1053


def manifests(image: str = COREDNS_IMAGE, cluster_ip: str = DNS_SERVICE_IP) -> str:
    """ServiceAccount, RBAC, Corefile, Deployment and Service, as one YAML stream."""
    return f"""apiVersion: v1
kind: ServiceAccount
metadata: {{name: coredns, namespace: kube-system}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "system:coredns"}}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "system:coredns"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}}
subjects: [{{kind: ServiceAccount, name: coredns, namespace: kube-system}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: coredns, namespace: kube-system}}
data:
  Corefile: |
    .:{LISTEN_PORT} {{
        errors
        health :8080 {{
            lameduck 2s
        }}
        ready :8181
        kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }}
        prometheus :9153
        forward . /etc/resolv.conf {{
            max_concurrent 1000
        }}
        cache 30
        loop
        reload
        loadbalance
    }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {{k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {{matchLabels: {{k8s-app: kube-dns}}}}
  template:
    metadata: {{labels: {{k8s-app: kube-dns}}}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default  # upstream is the node's resolv.conf, not itself
      terminationGracePeriodSeconds: 5
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {{type: RuntimeDefault}}
      containers:
        - name: coredns
          image: {image}
          imagePullPolicy: Never
          args: ["-conf", "/etc/coredns/Corefile"]
          ports:
            - {{name: dns, containerPort: {LISTEN_PORT}, protocol: UDP}}
            - {{name: dns-tcp, containerPort: {LISTEN_PORT}, protocol: TCP}}
            - {{name: metrics, containerPort: 9153, protocol: TCP}}
          livenessProbe:
            httpGet: {{path: /health, port: 8080}}
            initialDelaySeconds: 5
            periodSeconds: 10
          readinessProbe:
            httpGet: {{path: /ready, port: 8181}}
            periodSeconds: 1
          resources:
            requests: {{cpu: 20m, memory: 32Mi}}
            limits: {{memory: 128Mi}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: [ALL]}}
          volumeMounts:
            - {{name: config, mountPath: /etc/coredns, readOnly: true}}
      volumes:
        - name: config
          configMap: {{name: coredns, items: [{{key: Corefile, path: Corefile}}]}}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {{k8s-app: kube-dns, kubernetes.io/name: CoreDNS}}
spec:
  selector: {{k8s-app: kube-dns}}
  clusterIP: {cluster_ip}
  ports:
    - {{name: dns, port: 53, targetPort: {LISTEN_PORT}, protocol: UDP}}
    - {{name: dns-tcp, port: 53, targetPort: {LISTEN_PORT}, protocol: TCP}}
    - {{name: metrics, port: 9153, targetPort: 9153, protocol: TCP}}
"""


def query_a(server: str, name: str, *, port: int = 53, timeout: float = 3) -> list[str]:
    """IPv4 addresses for ``name`` asked over UDP from ``server`` (a minimal stdlib DNS client)."""
    ident = random.randrange(1 << 16)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, port))
        reply, _ = sock.recvfrom(4096)
    answer_id, flags, _qd, answers = struct.unpack(">HHHH", reply[:8])
    if answer_id != ident or flags & 0x000F:
        return []
    offset = 12 + len(question) + 4
    found = []
    for _ in range(answers):
        if reply[offset] & 0xC0 == 0xC0:  # compressed name pointer
            offset += 2
        else:
            while reply[offset]:
                offset += reply[offset] + 1
            offset += 1
        kind, _cls, _ttl, length = struct.unpack(">HHIH", reply[offset : offset + 10])
        offset += 10
        if kind == 1 and length == 4:
            found.append(socket.inet_ntoa(reply[offset : offset + 4]))
        offset += length
    return found
