"""``python -m kferry``."""

import sys

from kferry.cli.main import main

sys.exit(main())
