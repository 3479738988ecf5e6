"""FsError: the one exception fsimpl raises for an expected failure.

The mount layer turns it into a FUSE error reply (``-errno``) in exactly one
place; anything else escaping fsimpl is a bug and becomes EIO there.
"""

from __future__ import annotations

import errno as _errno
import os


class FsError(Exception):
    """An operation failed the way the kernel's tmpfs would fail it."""

    def __init__(self, errno: int, msg: str = "") -> None:
        super().__init__(errno, msg or os.strerror(errno))
        self.errno = errno
        self.msg = msg

    def __repr__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        return f"FsError({name}{', ' + repr(self.msg) if self.msg else ''})"

    __str__ = __repr__
