"""``python -m edgevision``: the same as the ``edgevision`` command."""

import sys

from edgevision.cli import main

sys.exit(main())
