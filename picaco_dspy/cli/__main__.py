"""``python -m picaco_dspy.cli``."""

import sys

from picaco_dspy.cli import main

sys.exit(main())
