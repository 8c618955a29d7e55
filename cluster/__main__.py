"""``python -m cluster ...`` is the same as the ``blastradius`` command."""

import sys

from blastradius.cluster.cli import main

sys.exit(main())
