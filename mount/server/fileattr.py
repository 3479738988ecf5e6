"""FS_IOC_GETFLAGS / SETFLAGS and FS_IOC_FSGETXATTR / FSSETXATTR over FUSE_IOCTL.

The kernel turns chattr/lsattr's ioctls into these requests itself
(fs/fuse/ioctl.c fuse_fileattr_get/set, after vfs_fileattr_set checked the
owner and CAP_LINUX_IMMUTABLE): it opens a private O_RDONLY handle, sends the
ioctl with the 64-bit command numbers but a 4-byte ``unsigned int`` for the
flags, or a 28-byte ``struct fsxattr``. Only those exact commands are served
here (routed before the shmfs window ioctls, mount/server/ioctl.py); fsimpl
(fsimpl/fsflags.py) holds the flags and enforces them.
"""

from __future__ import annotations

import errno as E
import struct
from typing import Any

from fsimpl.errors import FsError
from fsimpl.fsflags import FSXATTR
from mount.wire import codec


def _ioc(direction: int, typ: str, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | ord(typ) << 8 | nr


FS_IOC_GETFLAGS = _ioc(2, "f", 1, 8)  # _IOR('f', 1, long): 0x80086601
FS_IOC_SETFLAGS = _ioc(1, "f", 2, 8)  # _IOW('f', 2, long): 0x40086602
FS_IOC_FSGETXATTR = _ioc(2, "X", 31, FSXATTR.size)  # 0x801c581f
FS_IOC_FSSETXATTR = _ioc(1, "X", 32, FSXATTR.size)  # 0x401c5820
COMMANDS = frozenset({FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR})
_U32 = struct.Struct("<I")


def serve(ops: Any, req: Any, ctx: Any) -> list[bytes]:
    """The reply to one of COMMANDS (``req.args``: IoctlIn)."""
    a = req.args
    cmd = a.cmd & 0xFFFFFFFF
    fs = ops.fs
    if cmd == FS_IOC_GETFLAGS:
        if a.out_size < _U32.size:
            raise FsError(E.EINVAL, "GETFLAGS: out_size")
        payload = _U32.pack(fs.get_flags(req.nodeid))
    elif cmd == FS_IOC_FSGETXATTR:
        if a.out_size < FSXATTR.size:
            raise FsError(E.EINVAL, "FSGETXATTR: out_size")
        payload = fs.get_fsxattr(req.nodeid)
    elif cmd == FS_IOC_SETFLAGS:
        if len(a.data) < _U32.size:
            raise FsError(E.EINVAL, "SETFLAGS: in_size")
        fs.set_flags(req.nodeid, _U32.unpack_from(a.data)[0], ctx)
        payload = b""
    else:
        if len(a.data) < FSXATTR.size:
            raise FsError(E.EINVAL, "FSSETXATTR: in_size")
        fs.set_fsxattr(req.nodeid, bytes(a.data), ctx)
        payload = b""
    return [codec.reply(req.unique, codec.ioctl_out(0) + payload)]
