"""``python -m movierec_operator [kopf run options]``: run the operator in standalone mode.

The same as ``kopf run -m movierec_operator.handlers --standalone --liveness=...``; without
namespace options it watches ``$MOVIEREC_OPERATOR_NAMESPACE`` (or every namespace if unset).
"""

from __future__ import annotations

import os
import sys

from kopf.cli import main


def run() -> None:
    args = sys.argv[1:]
    if not any(a.startswith(("-n", "--namespace", "-A", "--all-namespaces")) for a in args):
        namespace = os.environ.get("MOVIEREC_OPERATOR_NAMESPACE")
        args += [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
    sys.argv = [
        "kopf",
        "run",
        "-m",
        "movierec_operator.handlers",
        "--standalone",
        "--liveness=http://0.0.0.0:8080/healthz",
        *args,
    ]
    main()


if __name__ == "__main__":
    run()
