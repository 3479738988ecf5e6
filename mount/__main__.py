"""``python -m mount`` is the ``shmfs`` command."""

import sys

from mount.cli import main

sys.exit(main())
