"""`python -m nodecfg` runs the command-line interface."""

import sys

from nodecfg.cli import main

sys.exit(main(sys.argv[1:]))
