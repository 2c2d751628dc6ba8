"""``python -m lambdamr.cli``."""

import sys

from . import main

sys.exit(main())
