"""FUSE_STATX replies (mount/wire/statx.py): layout and the btime round trip."""

from __future__ import annotations

import stat
import struct

from fsimpl.types import Attr
from mount.server.ops import Operations
from mount.wire import protocol as P
from mount.wire.statx import FUSE_STATX, STATX_BTIME, STATX_OUT_HEAD, statx_out

from .test_ops import FakeFs, header, joined, run


def test_statx_out_layout() -> None:
    a = Attr(ino=7, mode=stat.S_IFCHR | 0o600, nlink=1, uid=5, gid=6, rdev=(1 << 8) | 3,
             size=9, blocks=8, atime_ns=1_000_000_001, mtime_ns=2_000_000_002,
             ctime_ns=3_000_000_003, btime_ns=-4_999_999_999)
    out = statx_out(a, 1.5, 0x10)
    assert len(out) == STATX_OUT_HEAD.size + FUSE_STATX.size == 288
    assert STATX_OUT_HEAD.unpack_from(out) == (1, 500_000_000, 0)
    f = FUSE_STATX.unpack_from(out, 32)
    assert f[0] & STATX_BTIME and f[2] == 0x10  # mask, attributes
    assert f[3:11] == (1, 5, 6, stat.S_IFCHR | 0o600, 7, 9, 8, 0x70)
    assert f[11:19] == (1, 1, -5, 1, 3, 3, 2, 2)  # atime, btime (pre-1970), ctime, mtime
    assert f[19:21] == (1, 3)  # rdev major, minor


def test_statx_is_answered_from_getattr() -> None:
    ops = Operations(FakeFs())
    out = run(ops, P.Opcode.STATX, bytes(24), nodeid=1)
    assert header(out)[1] == 0 and len(joined(out)) == 16 + 288
    assert struct.unpack_from("<I", joined(out), 16 + 32)[0] & STATX_BTIME
