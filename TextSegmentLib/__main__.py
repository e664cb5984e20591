"""``python -m TextSegmentLib``: the command line (see ``--help``)."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
