"""``python -m raftkv --config node.toml``."""

import sys

from raftkv.cli import main

sys.exit(main())
