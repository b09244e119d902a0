"""``python -m explorer``: the command line (see explorer/cli/)."""

import sys

from explorer.cli.main import main

sys.exit(main())
