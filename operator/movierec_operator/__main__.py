"""``python -m movierec_operator [kopf run options]`` (also ``movierec operator``): run the operator
in standalone mode.

The same as ``kopf run -m movierec_operator.handlers --standalone --liveness=...``; without
namespace options it watches ``$MOVIEREC_OPERATOR_NAMESPACE`` (or every namespace if unset).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

LIVENESS = "http://0.0.0.0:8080/healthz"  # the chart's probes: /healthz on port 8080


def kopf_argv(args: Sequence[str]) -> list[str]:
    """``kopf run`` arguments for the operator plus the caller's own options. Namespaces given
    here also go to ``$MOVIEREC_OPERATOR_NAMESPACE`` (comma-separated), which the operator's
    start-up and health checks read."""
    extra = list(args)
    given = [a.split("=", 1)[1] for a in extra if a.startswith("--namespace=")]
    if given and not os.environ.get("MOVIEREC_OPERATOR_NAMESPACE"):
        os.environ["MOVIEREC_OPERATOR_NAMESPACE"] = ",".join(given)
    if not any(a.startswith(("-n", "--namespace", "-A", "--all-namespaces")) for a in extra):
        namespace = os.environ.get("MOVIEREC_OPERATOR_NAMESPACE")
        names = [n for n in (namespace or "").split(",") if n]
        extra += [f"--namespace={n}" for n in names] if names else ["--all-namespaces"]
    if not any(a.startswith("--liveness") for a in extra):
        extra.append(f"--liveness={LIVENESS}")
    return ["run", "-m", "movierec_operator.handlers", "--standalone", *extra]


def run(args: Sequence[str] | None = None) -> None:
    """Run Kopf in this process until it stops (it exits with its own status)."""
    from kopf.cli import main

    sys.argv = ["kopf", *kopf_argv(sys.argv[1:] if args is None else args)]
    main()


if __name__ == "__main__":
    run()
