"""`python -m edgeops.datasets`: the collector of a Dataset's collection Job."""

import sys

from edgeops.datasets.job import main

sys.exit(main())
