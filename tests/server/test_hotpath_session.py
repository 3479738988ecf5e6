"""The C hot path inside the real Session: malformed or refused READ/WRITE/GETATTR
get the Python path's errno and the session keeps serving; the engine is really
taken for well-formed ones; and the modes where it must not run (--debug, -o
uring, -o restartable, SHMFS_HOTPATH=0) do not build it.

The session runs in its own process over a socketpair (tests/reliability
session_driver), exactly as it serves /dev/fuse."""

from __future__ import annotations

import errno as E
import os
import struct
from pathlib import Path

import pytest

from fsimpl import FsOptions, ShmFs
from mount.server import hotpath
from mount.server.ops import Operations
from mount.server.session import Session
from tests.reliability import wire as W

_needs_engine = pytest.mark.skipif(not hotpath.available(), reason="_hotpath not built")


def rw_in(fh: int, off: int, size: int, flags: int = 0) -> bytes:
    return struct.pack("<QQIIQII", fh, off, size, flags, 0, os.O_RDWR, 0)


@_needs_engine
def test_malformed_and_refused_requests_get_errnos_and_the_session_serves_on() -> None:
    with W.served_session() as ch:
        ino, fh = ch.create(10)
        r = ch.call(W.WRITE, 11, ino, rw_in(fh, 0, 5000) + b"h" * 5000)
        assert r.error == 0 and struct.unpack_from("<I", r.payload)[0] == 5000
        r = ch.call(W.READ, 12, ino, rw_in(fh, 4000, 4096))
        assert r.error == 0 and r.payload == b"h" * 1000
        r = ch.call(W.READ, 13, ino, rw_in(fh, 1 << 40, 4096))  # past EOF: empty
        assert r.error == 0 and r.payload == b""
        bad = [
            (W.READ, ino, rw_in(fh + 99, 0, 10), -E.EBADF),  # unknown handle
            (W.READ, ino + 99, rw_in(fh, 0, 10), -E.ENOENT),  # unknown node
            (W.READ, 1, rw_in(fh, 0, 10), -E.EISDIR),  # the root: not a regular file
            (W.WRITE, ino, rw_in(fh, 0, 9000) + b"x" * 10, -E.EINVAL),  # size > data
            (W.WRITE, ino, rw_in(fh, (1 << 63) - 1, 1) + b"x", -E.EFBIG),
            (W.WRITE, ino, rw_in(fh, 0, 0), 0),  # nothing to write
            (W.READ, ino, rw_in(fh, 0, 10)[:-4], -E.EINVAL),  # short body
            (W.GETATTR, ino + 99, bytes(16), -E.ENOENT),
            (W.GETATTR, ino, bytes(4), -E.EINVAL),
        ]
        for i, (op, nodeid, body, err) in enumerate(bad):
            r = ch.call(op, 100 + i, nodeid, body)
            assert r.error == err, (i, r)
        r = ch.call(W.READ, 14, ino, rw_in(fh, 0, 8192))
        assert r.error == 0 and r.payload == b"h" * 5000
    hot = ch.final_stats["session"]["hotpath"]  # type: ignore[index]
    assert hot["engaged"] and hot["write"] >= 1 and hot["read"] >= 3 and hot["getattr"] > 0
    assert hot["errors"] == 0 and hot["declined"] >= len(bad)


@_needs_engine
def test_lookup_misses_opens_and_releases_through_the_session() -> None:
    """Misses, OPEN and RELEASE are answered by the engine inside the real Session,
    odd ones get the Python path's answer, and a miss is still an ENOENT in the ops'
    error counts (`shmfs stat`)."""
    with W.served_session() as ch:
        ino, fh = ch.create(10)
        assert ch.call(W.LOOKUP, 11, 1, b"nope\0").error == -E.ENOENT
        o = ch.call(W.OPEN, 12, ino, struct.pack("<II", os.O_RDONLY, 0))
        assert o.error == 0 and len(o.payload) == 16
        fh2, oflags = struct.unpack_from("<QI", o.payload)
        assert fh2 != fh and oflags & (1 << 5)  # FOPEN_NOFLUSH
        cases = [
            (W.OPEN, ino + 99, struct.pack("<II", os.O_RDONLY, 0), -E.ENOENT),
            (W.OPEN, ino, struct.pack("<II", os.O_RDWR | os.O_TRUNC, 0), 0),  # Python's
            (W.OPEN, ino, struct.pack("<I", 0), -E.EINVAL),  # short
            (W.LOOKUP, ino, b"x\0", -E.ENOTDIR),  # a miss in a file
            (W.LOOKUP, ino + 99, b"x\0", -E.ENOENT),  # in no inode
            (W.RELEASE, ino, struct.pack("<QIIQ", fh2, 0, 0, 0), 0),
            (W.RELEASE, ino, struct.pack("<QIIQ", fh2, 0, 0, 0), 0),  # again: unknown fh
            (W.RELEASE, ino, struct.pack("<QII", fh, 0, 0), -E.EINVAL),  # short
            (W.RELEASE, ino, struct.pack("<QIIQ", fh, 0, 0, 0), 0),
        ]
        for i, (op, nodeid, body, err) in enumerate(cases):
            r = ch.call(op, 100 + i, nodeid, body)
            assert r.error == err, (i, r)
    st = ch.final_stats
    hot = st["session"]["hotpath"]  # type: ignore[index]
    assert hot["lookup_miss"] == 1 and hot["open"] == 1 and hot["release"] == 2
    assert hot["errors"] == 0
    assert st["ops"]["errors"]["ENOENT"] >= 3  # type: ignore[index]

@_needs_engine
def test_creates_unlinks_and_forgets_through_the_session() -> None:
    """CREATE, UNLINK, FORGET and BATCH_FORGET answered by the engine inside the real
    Session: the replies (none for the forgets: a stray empty message would be a
    protocol violation), the Python path's errnos for the declined ones, and the
    session's own request counts."""
    with W.served_session() as ch:
        made = []
        for i in range(3):
            c = ch.call(W.CREATE, 10 + i, 1,
                        struct.pack("<IIII", os.O_RDWR | os.O_CREAT, 0o100644, 0o022, 0)
                        + b"f%d\0" % i)
            assert c.error == 0 and len(c.payload) == 144
            made.append(struct.unpack_from("<Q", c.payload)[0])
            assert struct.unpack_from("<I", c.payload, 40 + 60)[0] == 0o100644
        cases = [
            (W.CREATE, 1, struct.pack("<IIII", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644, 0, 0)
             + b"f0\0", -E.EEXIST),  # Python's
            (W.CREATE, made[0], struct.pack("<IIII", os.O_RDWR, 0o644, 0, 0) + b"x\0",
             -E.ENOTDIR),
            (W.UNLINK, 1, b"nope\0", -E.ENOENT),
            (W.UNLINK, 1, b"f1\0", 0),
            (W.UNLINK, 1, b"f1\0", -E.ENOENT),
            (W.UNLINK, 1, b"f2\0", 0),
        ]
        for i, (op, nodeid, body, err) in enumerate(cases):
            r = ch.call(op, 100 + i, nodeid, body)
            assert r.error == err, (i, r)
        assert ch.exchange(W.request(W.FORGET, 200, made[1], struct.pack("<Q", 1))) == []
        batch = struct.pack("<II", 2, 0) + struct.pack("<QQQQ", made[2], 1, made[0], 1)
        assert ch.exchange(W.request(W.BATCH_FORGET, 201, 0, batch)) == []
        r = ch.call(W.LOOKUP, 202, 1, b"f0\0")  # f0 still named: found again
        assert r.error == 0 and struct.unpack_from("<Q", r.payload)[0] == made[0]
    st = ch.final_stats
    hot = st["session"]["hotpath"]  # type: ignore[index]
    assert (hot["create"], hot["unlink"], hot["forget"]) == (3, 2, 3)
    assert hot["errors"] == 0 and hot["write_errors"] == 0
    reqs = st["session"]["requests"]  # type: ignore[index]
    assert reqs[str(W.FORGET)]["count"] == 1 and reqs[str(W.BATCH_FORGET)]["count"] == 1


def _session(**kw: object) -> Session:
    fs = ShmFs(FsOptions())
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        return Session(fd, Operations(fs), Path("/nonexistent"), **kw)  # type: ignore[arg-type]
    finally:
        os.close(fd)


@_needs_engine
def test_the_modes_that_must_not_use_the_engine_do_not_build_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert _session()._hotpath is not None
    # --debug logs every request; uring replies into ring entries; restartable journals
    # every request before its reply leaves (docs/decisions.md)
    assert _session(debug=True)._hotpath is None
    assert _session(uring=True)._hotpath is None
    assert _session(persist=object())._hotpath is None
    # a fault-injection test replaces a ShmFs method: the engine must not bypass it
    with monkeypatch.context() as m:
        m.setattr(ShmFs, "write", lambda self, *a: None)
        assert _session()._hotpath is None
    fs = ShmFs(FsOptions())
    fs.read = lambda *a: []  # type: ignore[method-assign]
    assert hotpath.replaced_methods(fs) == ["read"]
    assert _session()._hotpath is not None  # the class is fsimpl's own again
    monkeypatch.setenv("SHMFS_HOTPATH", "0")
    s = _session()
    assert s._hotpath is None
    assert s.statistics()["hotpath"] == {"available": True, "engaged": False}


def test_the_extension_is_built_where_a_compiler_is() -> None:
    """The tests above skip without the extension; a checkout with a C compiler must
    have built it (scripts/bootstrap.sh), or the claim of this file is untested."""
    import shutil
    import sysconfig

    if shutil.which("cc") and os.path.exists(sysconfig.get_paths()["include"]):
        assert hotpath.available()
