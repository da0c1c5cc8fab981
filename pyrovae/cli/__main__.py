"""``python -m pyrovae.cli``: the same command line as ``python -m pyrovae``."""

import sys

from pyrovae.cli import main

sys.exit(main())
