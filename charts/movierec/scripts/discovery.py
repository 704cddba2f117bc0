"""Pod discovery for a Prometheus without kubernetes_sd (Debian's build): every few seconds,
write the release namespace's pods annotated prometheus.io/scrape=true as a file_sd target file.

The targets and labels are those the chart's kubernetes_sd relabelling produces.
"""

import json
import os
import time
from pathlib import Path

from kubernetes import client, config

NAMESPACE = os.environ["POD_NAMESPACE"]
OUT = Path(os.environ.get("TARGETS_FILE", "/sd/pods.json"))
INTERVAL_S = float(os.environ.get("INTERVAL_SECONDS", "5"))


def targets(pods: list) -> list[dict]:
    found = []
    for pod in pods:
        notes = pod.metadata.annotations or {}
        if notes.get("prometheus.io/scrape") != "true" or pod.status.phase != "Running":
            continue
        if not pod.status.pod_ip or not notes.get("prometheus.io/port"):
            continue
        labels = pod.metadata.labels or {}
        meta = {
            "__metrics_path__": notes.get("prometheus.io/path", "/metrics"),
            "namespace": NAMESPACE,
            "pod": pod.metadata.name,
            "app": labels.get("app.kubernetes.io/name", ""),
            "pod_track": labels.get("movierec.io/track", ""),
        }
        address = f"{pod.status.pod_ip}:{notes['prometheus.io/port']}"
        found.append({"targets": [address], "labels": {k: v for k, v in meta.items() if v}})
    return sorted(found, key=lambda t: t["targets"][0])


def main() -> None:
    config.load_incluster_config()
    api = client.CoreV1Api()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    last = None
    while True:
        try:
            text = json.dumps(targets(api.list_namespaced_pod(NAMESPACE, _request_timeout=10).items))
        except Exception as exc:  # noqa: BLE001 - keep the last good file and retry
            print(f"listing pods failed: {exc}", flush=True)
        else:
            if text != last:
                tmp = OUT.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(OUT)  # atomic: Prometheus never reads half a file
                last = text
        time.sleep(INTERVAL_S)


if __name__ == "__main__":
    main()
