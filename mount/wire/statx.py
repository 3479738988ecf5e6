"""FUSE_STATX (protocol 7.39): ``struct fuse_statx_out`` from an fsimpl Attr.

Why a module of its own: the build host's linux/fuse.h is 7.38 and has no
STATX layouts; they are written out here from the 7.39 header. The kernel
(fs/fuse/dir.c fuse_update_get_attr -> fuse_do_statx) sends FUSE_STATX only
when a caller asks for more than the basic stats -- STATX_BTIME -- and falls
back to GETATTR for good after one ENOSYS. The request body (getattr_flags,
fh, sx_flags, sx_mask) changes nothing here: every answer has all fields.
"""

from __future__ import annotations

import struct
from typing import Any

STATX_BASIC_STATS = 0x7FF
STATX_BTIME = 0x800

# struct fuse_statx_out: attr_valid, attr_valid_nsec, flags, spare[2]
STATX_OUT_HEAD = struct.Struct("<QII16x")
# struct fuse_statx: mask blksize attributes nlink uid gid mode pad ino size blocks
# attributes_mask, then atime btime ctime mtime (fuse_sx_time: sec, nsec, pad),
# rdev_major rdev_minor dev_major dev_minor, spare[14]
FUSE_STATX = struct.Struct("<IIQIIIHxxQQQQ" + "qIxxxx" * 4 + "IIII112x")
assert STATX_OUT_HEAD.size == 32 and FUSE_STATX.size == 256


def _ts(ns: int) -> tuple[int, int]:
    return divmod(ns, 1_000_000_000)


# statx attributes tmpfs reports for its inode flags (shmem_getattr); the
# FS_*_FL and STATX_ATTR_* values coincide for these three
STATX_ATTR_FLAGS = 0x10 | 0x20 | 0x40  # IMMUTABLE, APPEND, NODUMP


def statx_out(attr: Any, attr_timeout: float, fsflags: int = 0) -> bytes:
    """The reply payload: basic stats and btime (mask = BASIC_STATS | BTIME),
    and the chattr flags as attributes (6.18's fuse_do_statx does not pass
    those on yet; newer kernels do)."""
    secs = int(attr_timeout)
    nsec = int((attr_timeout - secs) * 1e9)
    rdev = attr.rdev  # new_encode_dev form, as in fuse_attr
    major, minor = (rdev & 0xFFF00) >> 8, (rdev & 0xFF) | ((rdev >> 12) & 0xFFF00)
    a, m, c, b = _ts(attr.atime_ns), _ts(attr.mtime_ns), _ts(attr.ctime_ns), _ts(attr.btime_ns)
    return STATX_OUT_HEAD.pack(secs, nsec, 0) + FUSE_STATX.pack(
        STATX_BASIC_STATS | STATX_BTIME, attr.blksize, fsflags & STATX_ATTR_FLAGS,
        min(attr.nlink, 0xFFFFFFFF), attr.uid & 0xFFFFFFFF, attr.gid & 0xFFFFFFFF,
        attr.mode & 0xFFFF, attr.ino, attr.size, attr.blocks, STATX_ATTR_FLAGS,
        a[0], a[1], b[0], b[1], c[0], c[1], m[0], m[1],
        major, minor, 0, 0)
