"""Restartable mounts (``-o restartable``): what outlives the serving process.

``Persist`` (core.py) keeps the file data in a memfd arena and the metadata in
a redo journal plus snapshots, in memfds a supervisor holds across the
server's deaths; a new server recovers the exact state from them
(docs/restart-design.md). Importing this package imports neither fsimpl nor
vmcore: the supervisor may create the memfds (``make_memfds``) without them.
"""

from mount.server.persist.core import Persist, RecoveryInfo, make_memfds

__all__ = ["Persist", "RecoveryInfo", "make_memfds"]
