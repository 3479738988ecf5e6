"""The FSYNC of a file answered by the window engine (native/winfsync.c) against the
Python path.

uml_physmem's guests msync every store through a mapping; the kernel writes the pages
back (window WRITEs, already the engine's) and then sends FUSE_FSYNC, which Python
answered through its generic path.  fsimpl's fsync is tmpfs's noop_fsync: the inode
must exist (ENOENT otherwise) and ``_ops["fsync"]`` counts it; the reply is empty and
follows every notification queued before it.  The twins of
tests/windows/test_winfast_twin.py (the same filesystem with and without the engine)
must give the kernel the same bytes and leave the same state; what the engine does not
take (an unknown inode, a malformed message, the switch off) is declined untouched.
"""

from __future__ import annotations

import fcntl
import os
import select

import pytest

from mount.server import winfast
from mount.wire import protocol as P
from tests.windows.test_winfast_twin import P4, POPULATE, Twin

pytestmark = pytest.mark.skipif(not winfast.available(),
                                reason="the C extension is not built (scripts/bootstrap.sh)")

F_SETPIPE_SZ = 1031


def _fsync_msg(tw: Twin, ino: int, fh: int, flags: int = 0, extra: bytes = b"",
               extlen: int = 0) -> bytes:
    tw.unique += 1
    body = P.FSYNC_IN.pack(fh, flags, 0) + extra
    return P.IN_HEADER.pack(40 + len(body), int(P.Opcode.FSYNC), tw.unique, ino, 0, 0, 1,
                            extlen, 0) + body


def _fsync(tw: Twin, ino: int, fh: int, **kw: object) -> tuple[bool, list[bytes]]:
    """FUSE_FSYNC as the session hands it: to Engine.remap first, else Python."""
    msg = _fsync_msg(tw, ino, fh, **kw)  # type: ignore[arg-type]
    if tw.engine is not None:
        n = tw.engine.remap(memoryview(bytearray(msg)))
        if n is not None:
            assert n == 0  # an FSYNC queues no notification of its own
            got = tw._drain()
            assert len(got) == 1
            return True, got
    return False, tw._python(msg)


def test_fsync_of_window_and_object_is_native_and_exact() -> None:
    """FSYNC and FDATASYNC of the window (read-write and read-only handles) and of the
    object: answered by the engine, the same reply bytes, the same counters and state."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):  # some state to compare: a populated, stored-into page
            tw.ioctl(P4, P4, 9, 0, POPULATE)
            tw.launder(1, 0x61, flags=0, size=P4)
        cases = [(a.win, a.wfh, 0), (a.win, a.wfh, 1), (a.win, a.rofh, 0), (a.obj, a.ofh, 1)]
        for ino, fh, flags in cases:
            na, ga = _fsync(a, ino, fh, flags=flags)
            nb, gb = _fsync(b, ino, fh, flags=flags)
            assert na and not nb, (ino, fh, flags)
            assert ga == gb, (ino, fh, flags)
            assert len(ga[0]) == 16 and int.from_bytes(ga[0][4:8], "little", signed=True) == 0
            assert a.state() == b.state()
        assert a.fs._ops["fsync"] == b.fs._ops["fsync"] == len(cases)
        st = a.engine.statistics()["fsync"]
        assert st == {"answered": len(cases), "queued": 0, "declined": 0}
    finally:
        a.close()
        b.close()


def test_fsync_declines_untouched() -> None:
    """An inode the filesystem does not know (Python: ENOENT), a message with trailing
    bytes or an extension length, a short one: declined, nothing counted, and Python's
    answer is what the Python twin gives."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        bad = [dict(ino=999, fh=a.wfh), dict(ino=a.win, fh=a.wfh, extra=b"\0" * 8),
               dict(ino=a.win, fh=a.wfh, extlen=1)]
        for kw in bad:
            msg = _fsync_msg(a, **kw)  # type: ignore[arg-type]
            assert a.engine.remap(memoryview(bytearray(msg))) is None, kw
            assert a.fs._ops["fsync"] == 0
        short = _fsync_msg(a, a.win, a.wfh)[:48]
        short = len(short).to_bytes(4, "little") + short[4:]
        assert a.engine.remap(memoryview(bytearray(short))) is None
        assert a.engine.statistics()["fsync"]["declined"] == len(bad) + 1
        b.unique = a.unique  # the same request on both twins
        na, ga = _fsync(a, 999, a.wfh)
        nb, gb = _fsync(b, 999, b.wfh)
        assert not na and not nb and ga == gb
        assert int.from_bytes(ga[0][4:8], "little", signed=True) == -2  # ENOENT
        assert a.state() == b.state()
    finally:
        a.close()
        b.close()


def test_fsync_switch_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """SHMFS_WINFAST_FSYNC=0: every FSYNC declined (the A/B runs)."""
    monkeypatch.setenv("SHMFS_WINFAST_FSYNC", "0")
    a = Twin(native=True)
    try:
        msg = _fsync_msg(a, a.win, a.wfh)
        assert a.engine.remap(memoryview(bytearray(msg))) is None
        assert a.fs._ops["fsync"] == 0
    finally:
        a.close()


def _read_messages(fd: int, want: int) -> list[bytes]:
    """``want`` whole messages from the (non-blocking) pipe, waiting for the writer."""
    buf, out = b"", []
    while len(out) < want:
        if not select.select([fd], [], [], 10)[0]:
            raise AssertionError(f"the writer thread wrote {len(out)} of {want} messages")
        buf += os.read(fd, 1 << 16)
        while len(buf) >= 4 and len(buf) >= int.from_bytes(buf[:4], "little"):
            n = int.from_bytes(buf[:4], "little")
            out.append(buf[:n])
            buf = buf[n:]
    assert buf == b""
    return out


def test_fsync_reply_follows_queued_batches() -> None:
    """With the writer thread held up (a one-page pipe, a populating two-page REMAP's
    NOTIFY_STOREs in it), an FSYNC's reply is queued behind them, never written ahead:
    fsync(2) returns only after every earlier notification reached the kernel."""
    a = Twin(native=True)
    try:
        a.ioctl(20 * P4, P4, 7, 0, POPULATE)  # nonlinear (the first remap is Python's)
        a.ioctl(P4, P4, 9, 0, POPULATE)  # the kernel caches page 1: the next remap INVALs it
        fcntl.fcntl(a.wfd, F_SETPIPE_SZ, 4096)
        unique = a.unique + 1
        n = a.engine.remap(memoryview(bytearray(_remap_msg(a, 0, 2 * P4, 30))))
        assert n is not None and n >= 2, a.engine.statistics()["last_decline"]
        # an INVAL and two STOREs (4 KiB each) queued
        assert a.engine.pending() > 0  # the writer is blocked on the full pipe
        assert a.engine.remap(memoryview(bytearray(_fsync_msg(a, a.win, a.wfh)))) == 0
        st = a.engine.statistics()["fsync"]
        assert st["queued"] == 1 and st["answered"] == 1
        got = _read_messages(a.rfd, n + 2)
        assert int.from_bytes(got[n][8:16], "little") == unique  # the REMAP's reply
        assert got[n + 1] == P.OUT_HEADER.pack(16, 0, unique + 1)  # then the FSYNC's
        assert [int.from_bytes(m[4:8], "little") for m in got[:n]].count(4) == 2  # STOREs
    finally:
        a.close()


def _remap_msg(tw: Twin, start: int, size: int, pgoff: int) -> bytes:
    import struct

    from tests.windows.test_winfast_twin import REMAP_CMD

    tw.unique += 1
    body = P.IOCTL_IN.pack(tw.wfh, 0, REMAP_CMD, 0, 32, 0)
    body += struct.pack("<QQQII", start, size, pgoff, 0, POPULATE)
    return P.IN_HEADER.pack(40 + len(body), int(P.Opcode.IOCTL), tw.unique, tw.win, 0, 0, 1,
                            0, 0) + body
