"""Runs the harness command line: `python -m harness up|down|status|build`."""

import sys

from harness.cli import main

sys.exit(main())
