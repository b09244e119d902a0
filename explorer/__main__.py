"""``python -m explorer``: the command line (see explorer/cli.py)."""

import sys

from .cli import main

sys.exit(main())
