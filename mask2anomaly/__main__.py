"""``python -m mask2anomaly`` runs the command-line tool."""

import sys

from mask2anomaly.cli.main import main

sys.exit(main())
