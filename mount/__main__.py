"""``python -m mount`` is the ``shmfs`` command."""

import sys

from mount.cli.main import main

sys.exit(main())
