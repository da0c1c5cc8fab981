"""``python -m pyrovae``: the same command line as the ``pyrovae`` script."""

import sys

from pyrovae.cli import main

sys.exit(main())
