"""`python -m runtime.cli`: the same as the `edgeloop` command."""

import sys

from runtime.cli.app import app

sys.exit(app())
