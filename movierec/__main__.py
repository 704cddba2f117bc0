"""`python -m movierec` runs the CLI."""

import sys

from movierec.cli import main

sys.exit(main())
