"""``python -m maxtoki``: the ``maxtoki`` command (see ``maxtoki --help``)."""

import sys

from ._cli import main

sys.exit(main())
