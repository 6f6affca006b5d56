"""`python -m scaffold` runs the CLI (the copier tasks call it this way)."""

import sys

from scaffold.cli import main

sys.exit(main())
