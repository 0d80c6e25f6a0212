"""`python -m benchmarks run [SUITE ...] [--quick] [--out DIR]`; `... report`."""

import sys

from benchmarks.runner import main

sys.exit(main())
