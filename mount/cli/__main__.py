"""``python -m mount.cli`` is the ``shmfs`` command (the tools start the daemon this way)."""

import sys

from mount.cli.main import main

sys.exit(main())
