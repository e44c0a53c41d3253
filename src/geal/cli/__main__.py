"""``python -m geal.cli``: the ``geal`` command."""

import sys

from geal.cli import main

sys.exit(main())
