"""Linux syscalls the os module lacks, for shmfs's tools and tests.

``fallocate(2)`` with its modes (os has only posix_fallocate) and
``renameat2(2)`` with its flags: the demo, the stress and window tools and the
tests all use them, so they live once, here, next to the other code that talks
to the kernel.
"""

from __future__ import annotations

import ctypes
import os

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2); raises OSError with the kernel's errno."""
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1
RENAME_WHITEOUT = 1 << 2
AT_FDCWD = -100

_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_uint]


def renameat2(old: str | os.PathLike[str], new: str | os.PathLike[str], flags: int,
              olddirfd: int = AT_FDCWD, newdirfd: int = AT_FDCWD) -> None:
    """renameat2(2) (NOREPLACE, EXCHANGE, WHITEOUT); raises OSError naming both paths."""
    if _libc.renameat2(olddirfd, os.fsencode(old), newdirfd, os.fsencode(new), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fspath(old), None, os.fspath(new))
