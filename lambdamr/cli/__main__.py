"""``python -m lambdamr.cli``."""

import sys

from lambdamr.cli import main

sys.exit(main())
