"""``movierec operator``: the Kopf operator as a subcommand of the one ``movierec`` CLI (the image's
entrypoint; the chart runs ``movierec operator``)."""

from __future__ import annotations

import argparse

from movierec_operator.__main__ import LIVENESS, run


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "operator",
        help="run the RecommenderModel operator (Kopf, standalone)",
        description="Run the operator (kopf run --standalone). Settings: MOVIEREC_OPERATOR_* "
        "(docs/operator.md).",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="namespace to watch (repeatable; default: $MOVIEREC_OPERATOR_NAMESPACE, else all)",
    )
    where.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--liveness", default=LIVENESS, help=f"health endpoint (default {LIVENESS})"
    )
    parser.add_argument("--debug", action="store_true", help="Kopf's debug logging")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    kopf_args = [f"--liveness={args.liveness}"]
    kopf_args += [f"--namespace={n}" for n in args.namespace or ()]
    if args.all_namespaces:
        kopf_args.append("--all-namespaces")
    if args.debug:
        kopf_args.append("--debug")
    run(kopf_args)
    return 0
