"""Delete the release's RecommenderModels while the operator still runs (helm pre-delete hook).

Kopf keeps a finalizer on every RecommenderModel; deleted after the operator, one would stay
forever. The operator removes the finalizer and Kubernetes collects the children it owns.
"""

import os
import sys
import time

from kubernetes import client, config

GROUP, VERSION, PLURAL = "movierec.io", "v1alpha1", "recommendermodels"
NAMESPACE = os.environ["POD_NAMESPACE"]
SELECTOR = f"app.kubernetes.io/instance={os.environ['RELEASE']}"
DEADLINE_S = float(os.environ.get("CLEANUP_DEADLINE_SECONDS", "120"))

config.load_incluster_config()
api = client.CustomObjectsApi()
api.delete_collection_namespaced_custom_object(
    GROUP, VERSION, NAMESPACE, PLURAL, label_selector=SELECTOR
)
stop = time.monotonic() + DEADLINE_S
while True:
    left = api.list_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, label_selector=SELECTOR
    )["items"]
    if not left:
        print("every RecommenderModel of the release is gone")
        break
    if time.monotonic() > stop:
        names = ", ".join(item["metadata"]["name"] for item in left)
        # never block the uninstall: say what is left and how to remove it
        print(
            f"still present after {DEADLINE_S:.0f} s: {names}; is the operator running? "
            "Remove the finalizer with kubectl patch rm NAME --type=merge "
            "-p '{\"metadata\":{\"finalizers\":null}}'",
            file=sys.stderr,
        )
        break
    time.sleep(2)
