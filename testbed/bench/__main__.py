"""python -m testbed.bench: see the package's docstring."""

import sys

from testbed.bench.runs import main

sys.exit(main(sys.argv[1:]))
