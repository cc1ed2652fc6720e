"""``python -m opreg``: the same as the ``opreg`` command."""

import sys

from opreg.cli import main

sys.exit(main())
