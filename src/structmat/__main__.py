"""``python -m structmat`` runs the CLI."""

import sys

from structmat.cli import main

if __name__ == "__main__":
    sys.exit(main())
