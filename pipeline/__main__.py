"""``python -m pipeline`` runs the ``irmsia`` CLI."""

import sys

from pipeline.cli import main

sys.exit(main())
