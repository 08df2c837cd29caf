"""``python -m mgnm.cli``: the same as the ``mgnm`` command."""

import sys

from mgnm.cli import main

sys.exit(main())
