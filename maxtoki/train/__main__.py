"""``python -m maxtoki.train config.yaml [key=value …]`` (also under ``torchrun``)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
