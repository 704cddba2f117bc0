"""The `movierec` command line: registers each component's subcommands and maps errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from movierec_ingestor.errors import BadInputError

# Each module exposes `register(subparsers)` that adds its subcommands and sets `func` on them.
# The modules keep heavy imports (mlflow, scipy, flask) inside their run functions so that
# `movierec --help` and argument errors stay fast.
COMMAND_MODULES = (
    "movierec_simulator.cli",
    "movierec_ingestor.cli",
    "movierec_recommender.cli",
    "movierec_operator.cli",
    "movierec.demo_cli",
)

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="movierec", description="Movie recommendations with a full MLOps loop.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # component not installed in this image (extras per component)
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args) or 0)
    except BadInputError as exc:
        print(f"movierec {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except (
        Exception
    ) as exc:  # the CLI's last line of defence: one readable line, details in the log
        logging.getLogger("movierec").debug("command failed", exc_info=True)
        print(f"movierec {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
