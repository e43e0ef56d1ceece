import sys

from edgeops.training.run import main

sys.exit(main())
