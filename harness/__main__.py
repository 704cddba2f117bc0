"""Runs the harness command line: `python -m harness up|down|status|build|images`."""

import sys

if sys.argv[1:2] == ["images"]:
    from harness.images import main as images_main

    sys.exit(images_main(sys.argv[2:]))

from harness.cli import main

sys.exit(main())
