"""``python -m edge`` is ``edge``."""

import sys

from edge.cli import main

sys.exit(main())
