"""``python -m runner --config node.toml``."""

import sys

from runner.cli import main

sys.exit(main())
