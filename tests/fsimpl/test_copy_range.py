"""ShmFs.copy_file_range: the checks of generic_copy_file_checks, timestamps,
size= accounting (the copy is charged like tmpfs), and the COPY_FILE_RANGE(_64)
requests through mount.server.ops with the real ShmFs."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable

from fsimpl import ShmFs
from mount.server.ops import Operations, OpsConfig
from mount.wire import protocol as P
from mount.wire.codec import parse_request

from .conftest import ROOT, Clock
from .test_files import new, raises

P4 = 4096


def _data(fs: ShmFs, ino: int, fh: int) -> bytes:
    size = fs.getattr(ino).size
    return b"".join(fs.read(ino, fh, 0, size))


def test_copy_shares_and_updates_times(fs: ShmFs, clock: Clock) -> None:
    a, fa = new(fs, b"a")
    b, fb = new(fs, b"b")
    fs.write(a, fa, 0, memoryview(b"x" * 3 * P4 + b"tail"))
    t0 = fs.getattr(b).mtime_ns
    clock.tick()
    assert fs.copy_file_range(a, fa, 0, b, fb, 0, 1 << 40) == 3 * P4 + 4
    assert _data(fs, b, fb) == b"x" * 3 * P4 + b"tail"
    attr = fs.getattr(b)
    assert attr.size == 3 * P4 + 4 and attr.mtime_ns > t0 and attr.ctime_ns == attr.mtime_ns
    assert attr.blocks == fs.getattr(a).blocks
    assert fs.copy_file_range(a, fa, 10 * P4, b, fb, 0, 5) == 0  # past the source's EOF


def test_source_atime_moves_and_its_cached_attributes_are_dropped(fs: ShmFs,
                                                                  clock: Clock) -> None:
    """tmpfs moves the source's atime (relatime: atime <= mtime). The kernel
    refreshes only the destination's attributes after COPY_FILE_RANGE, so the
    daemon must ask it to drop the source's (InvalInode with off -1), else stat
    shows the old atime (found by tests/posix copy.cfr_times_and_suid)."""
    from fsimpl import InvalInode

    a, fa = new(fs, b"a")
    b, fb = new(fs, b"b")
    fs.write(a, fa, 0, memoryview(b"s" * 100))
    fs.setattr(a, ROOT, atime_ns=10**9, mtime_ns=10**9)
    fs.drain_events()
    clock.tick()
    assert fs.copy_file_range(a, fa, 0, b, fb, 0, 50) == 50
    assert fs.getattr(a).atime_ns > 10**9
    assert InvalInode(a, -1, 0) in fs.drain_events()
    clock.tick()
    assert fs.copy_file_range(a, fa, 0, b, fb, 0, 50) == 50  # relatime: atime > mtime now
    assert InvalInode(a, -1, 0) not in fs.drain_events()


def test_checks(fs: ShmFs) -> None:
    a, fa = new(fs, b"a")
    b, fb = new(fs, b"b")
    fs.write(a, fa, 0, memoryview(b"y" * 4 * P4))
    ro = fs.open(b, os.O_RDONLY)
    wo = fs.open(a, os.O_WRONLY)
    app = fs.open(b, os.O_WRONLY | os.O_APPEND)
    raises(errno.EINVAL, fs.copy_file_range, a, fa, 0, b, fb, 0, 10, 1)  # flags
    raises(errno.EBADF, fs.copy_file_range, a, fa, 0, b, ro, 0, 10)
    raises(errno.EBADF, fs.copy_file_range, a, wo, 0, b, fb, 0, 10)
    raises(errno.EBADF, fs.copy_file_range, a, fa, 0, b, app, 0, 10)
    raises(errno.EBADF, fs.copy_file_range, a, fb, 0, b, fb, 0, 10)  # fh of another inode
    raises(errno.EINVAL, fs.copy_file_range, a, fa, -1, b, fb, 0, 10)
    raises(errno.EINVAL, fs.copy_file_range, a, fa, 0, a, fa, P4, 2 * P4)  # overlap
    assert fs.copy_file_range(a, fa, 0, a, fa, 2 * P4, 2 * P4) == 2 * P4  # disjoint
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    dh = fs.opendir(d, os.O_RDONLY)
    raises(errno.EISDIR, fs.copy_file_range, d, dh, 0, b, fb, 0, 10)
    raises(errno.EFBIG, fs.copy_file_range, a, fa, 0, b, fb, 2**63 - 1, 10)


def test_enospc_is_never_lost(make_fs: Callable[..., ShmFs]) -> None:
    fs = make_fs(size_bytes=10 * P4)
    a, fa = new(fs, b"a")
    b, fb = new(fs, b"b")
    fs.write(a, fa, 0, memoryview(b"z" * 6 * P4))
    assert fs.copy_file_range(a, fa, 0, b, fb, 0, 6 * P4) == 4 * P4  # short: 4 pages free
    assert fs.statfs().bfree == 0  # shared frames count once per file
    raises(errno.ENOSPC, fs.copy_file_range, a, fa, 4 * P4, b, fb, 4 * P4, P4)
    fs.write(b, fb, 0, memoryview(b"w" * 4 * P4))  # breaking shares needs no block
    assert _data(fs, a, fa) == b"z" * 6 * P4
    fs.setattr(a, ROOT, size=0)
    assert fs.statfs().bfree == 6


def _msg(opcode: int, body: bytes, nodeid: int, unique: int = 5) -> memoryview:
    hdr = P.IN_HEADER.pack(P.IN_HEADER.size + len(body), opcode, unique, nodeid, 0, 0, 1, 0, 0)
    return memoryview(hdr + body)


def test_ops_copy_file_range_and_64(fs: ShmFs) -> None:
    ops = Operations(fs, OpsConfig())
    a, fa = new(fs, b"a")
    b, fb = new(fs, b"b")
    fs.write(a, fa, 0, memoryview(b"o" * 2 * P4))
    body = struct.pack("<7Q", fa, 0, b, fb, 0, 2 * P4, 0)
    out = b"".join(ops.handle(parse_request(_msg(P.Opcode.COPY_FILE_RANGE, body, a))))
    assert struct.unpack_from("<IiQ", out) == (24, 0, 5)
    assert struct.unpack_from("<I", out, 16)[0] == 2 * P4  # fuse_write_out.size
    body = struct.pack("<7Q", fa, 0, b, fb, 2 * P4, 1 << 40, 0)
    out = b"".join(ops.handle(parse_request(_msg(P.Opcode.COPY_FILE_RANGE_64, body, a))))
    assert struct.unpack_from("<IiQQ", out) == (24, 0, 5, 2 * P4)  # bytes_copied, u64
    body = struct.pack("<7Q", fa, 0, a, fa, P4, P4 * 2, 0)
    out = b"".join(ops.handle(parse_request(_msg(P.Opcode.COPY_FILE_RANGE_64, body, a))))
    assert struct.unpack_from("<Ii", out) == (16, -errno.EINVAL)
    assert _data(fs, b, fb) == b"o" * 4 * P4
