"""Every name, label, key and default the operator shares with the cluster, MLflow and the router."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

GROUP: Final = "movierec.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "RecommenderModel"
PLURAL: Final = "recommendermodels"

TRACK_STABLE: Final = "stable"
TRACK_CANARY: Final = "canary"

# LaunchDarkly flag data the router reads (docs/CONTRACTS-internal.md, "Track assignment").
FLAG_KEY: Final = "movierec-track"
KILL_SWITCH_KEY: Final = "movierec-kill-switch"
FLAG_SALT: Final = "movierec-track"  # fixed: changing it would reshuffle every user's track
FLAG_FILE: Final = "flags.json"
WEIGHT_SCALE: Final = 1000  # LaunchDarkly weights are thousandths of a percent
# The data file's version must grow with every change: the SDK fires a change (and the router
# drops its per-user cache) only when a flag's version increases.
FLAG_VERSION_ANNOTATION: Final = "movierec.io/flag-version"

# MLflow
CHAMPION_ALIAS: Final = "champion"
TAG_OUTCOME: Final = "movierec.rollout.outcome"
TAG_REASON: Final = "movierec.rollout.reason"
TAG_TIME: Final = "movierec.rollout.time"

# Children
# The one application image (PLAN/ARCHITECTURE: `movierec <component>`); the chart passes its own.
DEFAULT_IMAGE: Final = "ghcr.io/movierec/movierec:0.1.0"
SERVE_PORT: Final = 8082
RUN_AS: Final = 10001  # the image's numeric user: `runAsNonRoot` needs a number to check
PRESTOP_SLEEP_SECONDS: Final = 5  # kube-proxy stops sending before gunicorn closes its socket
TERMINATION_GRACE_SECONDS: Final = 30  # preStop sleep + gunicorn's graceful worker shutdown
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_TRACK: Final = "movierec.io/track"
LABEL_MODEL_VERSION: Final = "movierec.io/model-version"
# on a RecommenderModel: an autoscaler owns the stable Deployment's replicas (set once, at creation)
AUTOSCALED_ANNOTATION: Final = "movierec.io/autoscaled"
APP_NAME: Final = "movierec-recommender"
MANAGER: Final = "movierec-operator"

# Defaults of the spec (mirrored in the CRD's defaults)
DEFAULT_STEPS: Final = (10, 25, 50, 100)
DEFAULT_INTERVAL: Final = "2m"
DEFAULT_MAX_FAILED_CHECKS: Final = 2
DEFAULT_MIN_SAMPLES: Final = 200
# a canary inconclusive this long (thin traffic, no data) is rolled back instead of holding forever
DEFAULT_INCONCLUSIVE_DEADLINE: Final = "1h"
DEFAULT_REPLICAS: Final = 2


class Phase(StrEnum):
    """Where a RecommenderModel's rollout is (``status.phase``)."""

    STABLE = "Stable"
    PROGRESSING = "Progressing"
    HOLDING = "Holding"
    PROMOTING = "Promoting"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class Verdict(StrEnum):
    """The outcome of one analysis check."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class Outcome(StrEnum):
    """What happened to a model version, as tagged in MLflow."""

    PROMOTED = "promoted"
    FORCE_PROMOTED = "force-promoted"
    ROLLED_BACK = "rolled-back"


# The pseudo-check the operator adds while a Deployment it built is not available; it fails only
# past the deployment deadline, and then rolls the canary back at once. No spec check may take
# the name.
DEPLOYMENT_CHECK = "deployment"
