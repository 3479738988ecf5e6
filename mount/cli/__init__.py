"""The ``shmfs`` command: ``main`` (mount, dispatch), ``window`` (``shmfs window`` and
``shmfs stat``), ``remount``."""
