"""FS_IOC_GETFLAGS/SETFLAGS and FSGETXATTR/FSSETXATTR through Operations on a
real fsimpl: the exact commands the kernel sends, the caller checks, and that
look-alike commands are not served (mount/server/fileattr.py)."""

from __future__ import annotations

import errno
import os
import stat
import struct

from fsimpl import ShmFs
from fsimpl.fsflags import FS_APPEND_FL, FS_IMMUTABLE_FL, FS_NODUMP_FL
from fsimpl.types import Ctx
from mount.server import fileattr
from mount.server.ops import Operations
from mount.wire import protocol as P

from .test_ops import header, joined, run

ROOT = Ctx(0, 0, 1)


def _setup() -> tuple[Operations, int, int]:
    fs = ShmFs()
    ino = fs.mknod(1, b"f", stat.S_IFREG | 0o644, 0, Ctx(1000, 100, 1)).ino  # test_ops' UID
    fh = fs.open(ino, os.O_RDONLY)
    return Operations(fs), ino, fh


def _ioctl(ops: Operations, ino: int, fh: int, cmd: int, data: bytes = b"",
           out_size: int = 0) -> list:
    body = P.IOCTL_IN.pack(fh, 0, cmd, 0, len(data), out_size) + data
    return run(ops, P.Opcode.IOCTL, body, nodeid=ino)


def test_getflags_setflags_round_trip() -> None:
    ops, ino, fh = _setup()
    out = _ioctl(ops, ino, fh, fileattr.FS_IOC_SETFLAGS, struct.pack("<I", FS_NODUMP_FL))
    assert header(out)[1] == 0
    out = joined(_ioctl(ops, ino, fh, fileattr.FS_IOC_GETFLAGS, out_size=4))
    assert struct.unpack_from("<I", out, 16 + 16)[0] == FS_NODUMP_FL
    out = joined(_ioctl(ops, ino, fh, fileattr.FS_IOC_FSGETXATTR, out_size=28))
    assert struct.unpack_from("<I", out, 16 + 16)[0] == 0x80  # FS_XFLAG_NODUMP


def test_owner_without_cap_linux_immutable_is_refused() -> None:
    """The header's uid 1000 owns the file but (creds unreadable for pid 77 with
    these ids) has no capabilities: nodump yes, append/immutable EPERM."""
    ops, ino, fh = _setup()
    for fl in (FS_APPEND_FL, FS_IMMUTABLE_FL):
        out = _ioctl(ops, ino, fh, fileattr.FS_IOC_SETFLAGS, struct.pack("<I", fl))
        assert header(out)[1] == -errno.EPERM
    assert ops.fs.get_flags(ino) == 0
    ops.fs.set_flags(ino, FS_IMMUTABLE_FL, ROOT)
    assert ops.fs.get_flags(ino) == FS_IMMUTABLE_FL


def test_unsupported_flags_and_lookalike_commands() -> None:
    ops, ino, fh = _setup()
    out = _ioctl(ops, ino, fh, fileattr.FS_IOC_SETFLAGS, struct.pack("<I", 0x8))  # FS_SYNC_FL
    assert header(out)[1] == -errno.EOPNOTSUPP
    # _IOW('f', 2, int): not what the kernel sends for chattr; not served here
    out = _ioctl(ops, ino, fh, 0x40046602, struct.pack("<I", FS_APPEND_FL))
    assert header(out)[1] == -errno.ENOTTY
    out = _ioctl(ops, ino, fh, fileattr.FS_IOC_SETFLAGS, b"\0")  # too short
    assert header(out)[1] == -errno.EINVAL
    assert ops.fs.get_flags(ino) == 0
