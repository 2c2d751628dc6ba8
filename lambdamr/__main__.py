"""``python -m lambdamr``: the ``lambdamr`` command line.

Driver-only, like ``lambdamr.cli``: not among ``REMOTE_MODULES``, so it is not in the
function package, and ``import lambdamr`` never imports it.
"""

import sys

from lambdamr.cli import main

if __name__ == "__main__":
    sys.exit(main())
