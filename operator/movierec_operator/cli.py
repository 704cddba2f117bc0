"""``movierec operator``: the Kopf operator as a subcommand of the one ``movierec`` CLI (the image's
entrypoint; the chart runs ``movierec operator``)."""

from __future__ import annotations

import argparse

from movierec_operator.__main__ import run


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "operator",
        help="run the RecommenderModel operator (Kopf, standalone)",
        description="Run the operator: kopf run --standalone, watching "
        "$MOVIEREC_OPERATOR_NAMESPACE (else every namespace), health on :8080/healthz. "
        "Settings: MOVIEREC_OPERATOR_* (docs/operator.md). Extra arguments go to `kopf run`.",
    )
    parser.add_argument("kopf_args", nargs=argparse.REMAINDER, help="options for `kopf run`")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    run(args.kopf_args)
    return 0
