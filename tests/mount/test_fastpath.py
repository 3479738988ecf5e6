"""ops.handle_fast answers GETATTR, LOOKUP, FORGET, UNLINK, RELEASE, CREATE, READ and WRITE
exactly as
the generic path (parse_request + Operations.handle) does, or declines; a declined message then
goes the generic way untouched. Both paths run on twin filesystems built by the
same steps, and every reply, error counter, lookup count and file's bytes must agree."""

from __future__ import annotations

import os
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from fsimpl import FsOptions, ShmFs
from fsimpl.types import Ctx
from mount.server.ops import Operations, OpsConfig
from mount.wire.codec import CodecError, parse_request, reply_error

GETATTR, LOOKUP, FORGET, UNLINK, RELEASE, RMDIR, WRITE = 3, 1, 2, 10, 18, 11, 16
READ, CREATE = 15, 35
CTX = Ctx(0, 0, 1, 0o022)


def msg(opcode: int, body: bytes, *, nodeid: int = 1, unique: int = 7, extlen: int = 0,
        length: int | None = None) -> bytes:
    n = 40 + len(body) if length is None else length
    return struct.pack("<IIQQIIIHH", n, opcode, unique, nodeid, 0, 0, 1, extlen, 0) + body


def twin(negative_timeout: float = 0.0) -> tuple[ShmFs, Operations]:
    """Root, dir (ino 2) with file (3, closed) and open (4, open as fh 2)."""
    fs = ShmFs(FsOptions(size_bytes=1 << 24, nr_inodes=100, mode=0o1777, uid=0, gid=0),
               clock=lambda: 1_700_000_000_123_456_789)  # twins: the same timestamps
    d = fs.mkdir(1, b"dir", 0o755, CTX)
    a, fh = fs.create(d.ino, b"file", 0o100644, os.O_WRONLY, CTX)
    fs.release(a.ino, fh)
    b, fh2 = fs.create(d.ino, b"open", 0o100644, os.O_WRONLY, CTX)
    assert (a.ino, b.ino, fh2) == (3, 4, 2)
    return fs, Operations(fs, OpsConfig(negative_timeout=negative_timeout, generation=7))


def release(fh: int, nodeid: int) -> bytes:
    return msg(RELEASE, struct.pack("<QIIQ", fh, os.O_WRONLY, 0, 0), nodeid=nodeid)


def write(fh: int, off: int, data: bytes, *, nodeid: int = 4, size: int | None = None,
          flags: int = 0) -> bytes:
    n = len(data) if size is None else size
    return msg(WRITE, struct.pack("<QQIIQII", fh, off, n, flags, 0, os.O_WRONLY, 0) + data,
               nodeid=nodeid)


def read(fh: int, off: int, size: int, *, nodeid: int = 4) -> bytes:
    return msg(READ, struct.pack("<QQIIQII", fh, off, size, 0, 0, os.O_RDONLY, 0), nodeid=nodeid)


def create(name: bytes, *, nodeid: int = 2, flags: int = os.O_WRONLY | os.O_CREAT,
           mode: int = 0o100644, umask: int = 0o022) -> bytes:
    return msg(CREATE, struct.pack("<IIII", flags, mode, umask, 0) + name, nodeid=nodeid)


def generic(ops: Operations, m: bytes) -> list[bytes] | None:
    try:
        req = parse_request(memoryview(m))
    except CodecError as e:  # what the session answers for a message it cannot decode
        return [reply_error(e.unique, e.errno)] if e.unique else None
    out = ops.handle(req)
    return None if out is None else [bytes(b) for b in out]


def fast_or_generic(ops: Operations, m: bytes) -> tuple[bool, list[bytes] | None]:
    fast = ops.handle_fast(memoryview(m))
    if fast is None:
        return False, generic(ops, m)
    out = fast[1]
    return True, None if out is None else [bytes(b) for b in out]


def state(fs: ShmFs, ops: Operations) -> tuple[object, ...]:
    return (sorted((i, n.nlookup) for i, n in fs._inodes.items()),
            sorted((i, n.mtime_ns, n.mode, n.mapping.size,  # file data and its times
                    b"".join(bytes(v) for v in n.mapping.read(0, min(n.mapping.size, 1 << 16))))
                   for i, n in fs._inodes.items() if n.mapping is not None),
            ops.statistics()["errors"], ops.statistics()["unexpected"],
            sorted((i, n.atime_ns, n.mapping.fstats.as_dict())  # read(2): atime, fault counts
                   for i, n in fs._inodes.items() if n.mapping is not None),
            sorted(fs._handles), fs._ops)


NAMES = [b"dir", b"file", b"open", b"nope", b".", b"..", b"x" * 255, b"x" * 256, b""]
MESSAGES = (
    [msg(GETATTR, bytes(16), nodeid=n) for n in (1, 2, 3, 99)]
    + [msg(LOOKUP, name + b"\0", nodeid=n) for name in NAMES for n in (1, 2, 3, 99)]
    + [msg(LOOKUP, b"file", nodeid=2), msg(LOOKUP, b"fi\0le\0", nodeid=2)]  # no NUL / two
    + [msg(FORGET, struct.pack("<Q", k), nodeid=n) for n in (2, 3, 99) for k in (1, 5)]
    + [msg(GETATTR, bytes(8)), msg(GETATTR, bytes(24)), msg(FORGET, bytes(4), nodeid=3),
       msg(GETATTR, bytes(16), extlen=1) + bytes(8), msg(GETATTR, bytes(16), length=99),
       msg(LOOKUP, b"file\0", nodeid=2, extlen=1) + bytes(8), msg(RMDIR, b"dir\0"),
       msg(GETATTR, b"")[:30]]
    + [release(2, 4), release(2, 4), release(9, 4), release(1, 3), release(2, 4)[:60]]
    + [msg(UNLINK, name + b"\0", nodeid=n) for name in NAMES for n in (2, 1, 3)]
    + [msg(UNLINK, b"file", nodeid=2)]
    + [msg(GETATTR, bytes(16), nodeid=n) for n in (3, 4)]
    + [write(2, 0, b"hello"), write(2, 3 * 4096 + 7, b"x" * 5000), write(2, 5, b""),
       write(9, 0, b"bad fh"), write(2, 0, b"wrong inode", nodeid=3),
       write(2, 0, b"a dir", nodeid=2), write(2, 2**63 - 1, b"EFBIG"),
       write(2, 1, b"kill", flags=4), write(2, 0, b"short", size=10),
       write(2, 0, b"long", size=2), write(2, 0, b"")[:70],
       msg(WRITE, struct.pack("<QQIIQII", 2, 0, 3, 0, 0, 1, 0) + b"abc", nodeid=4, extlen=1)
       + bytes(8)]
    # READ: resident, partial, holes (pages 1-2), past EOF, straddling, bad handles
    + [read(2, off, size) for off, size in ((0, 4096), (3, 10), (4096, 4096), (8192, 100),
                                            (3 * 4096, 4096), (3 * 4096 + 4000, 200),
                                            (0, 1 << 20), (1 << 20, 4096), (2**63, 4096),
                                            (5, 0))]
    + [read(9, 0, 4096), read(2, 0, 4096, nodeid=3), read(2, 0, 4096, nodeid=2),
       read(2, 0, 4096, nodeid=99), read(2, 0, 4096)[:70], read(2, 0, 4096) + b"x",
       msg(READ, struct.pack("<QQIIQII", 2, 0, 4096, 0, 0, 0, 0), nodeid=4, extlen=1)
       + bytes(8)]
    # CREATE: new names, existing ones (with and without O_EXCL), a directory, bad names
    + [create(name + b"\0", nodeid=n, flags=f) for name in NAMES for n in (2, 1, 3)
       for f in (os.O_WRONLY | os.O_CREAT, os.O_RDWR | os.O_CREAT | os.O_EXCL)]
    + [create(b"c1\0", umask=0o777), create(b"c2\0", mode=0o106755, umask=0),
       create(b"c3\0", flags=os.O_RDWR | os.O_CREAT | os.O_APPEND), create(b"c4"),
       create(b""), create(b"c5\0")[:50], create(b"c6\0", nodeid=99),
       create(b"c7\0")[:-1] + b"\0\0"]
    + [read(k, 0, 4096, nodeid=n) for k in (3, 4, 5, 6) for n in range(5, 9)]
)


def test_every_kind_of_message_gets_the_generic_paths_answer() -> None:
    for negative in (0.0, 5.0):
        fs_a, ops_a = twin(negative)
        fs_b, ops_b = twin(negative)
        took_fast = 0
        for m in MESSAGES:
            want = generic(ops_a, m)
            fast, got = fast_or_generic(ops_b, m)
            took_fast += fast
            assert got == want, (m, fast)
            assert state(fs_b, ops_b) == state(fs_a, ops_a), (m, fast)
        assert took_fast == 150  # every well-formed one; the rest went the generic way


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([GETATTR, LOOKUP, FORGET, UNLINK, RELEASE, WRITE,
                                           READ, CREATE]),
                          st.integers(0, 6), st.sampled_from(NAMES), st.integers(0, 3)),
                max_size=30))
def test_random_sequences_agree(steps: list[tuple[int, int, bytes, int]]) -> None:
    fs_a, ops_a = twin()
    fs_b, ops_b = twin()
    for opcode, nodeid, name, k in steps:
        body = {GETATTR: bytes(16), LOOKUP: name + b"\0", FORGET: struct.pack("<Q", k),
                UNLINK: name + b"\0", RELEASE: struct.pack("<QIIQ", k, 1, 0, 0),
                WRITE: struct.pack("<QQIIQII", k, k * 4093, len(name), 0, 0, 1, 0) + name,
                READ: struct.pack("<QQIIQII", k, k * 2039, 17 << k, 0, 0, 0, 0),
                CREATE: struct.pack("<IIII", 0o101 | k << 9, 0o100640 | k, 0o22, 0) + name + b"\0",
                }[opcode]
        m = msg(opcode, body, nodeid=nodeid)
        assert fast_or_generic(ops_b, m)[1] == generic(ops_a, m)
        assert state(fs_b, ops_b) == state(fs_a, ops_a)


def test_an_unexpected_exception_is_logged_and_answered_eio(caplog) -> None:
    fs, ops = twin()

    def boom(ino: int) -> None:
        raise RuntimeError("injected")

    fs.getattr = boom  # type: ignore[method-assign]
    opcode, out = ops.handle_fast(memoryview(msg(GETATTR, bytes(16), unique=42)))
    assert opcode == GETATTR and out == [reply_error(42, 5)]
    assert ops.statistics()["unexpected"] == 1 and "injected" in caplog.text


def test_a_read_or_write_with_a_store_queued_cancels_it_in_the_session() -> None:
    """While NOTIFY_STOREs are queued the session sends READ and WRITE down the
    generic path, whose _cancel_stores drops a store the reply supersedes (the
    kernel gets newer data from this request); the fast path would skip it."""
    from pathlib import Path

    from mount.server.session import Session

    fs, ops = twin()
    out = os.open(os.devnull, os.O_WRONLY)
    try:
        s = Session(out, ops, Path("/nonexistent"))
        for m, page in ((write(2, 4096 + 5, b"new"), 1), (read(2, 0, 100), 0)):
            s._stores[(4, page)] = 1
            s._stores[(4, 7)] = 2  # a page this request does not touch
            s._handle(memoryview(m))
            assert (4, page) not in s._stores and s._stores[(4, 7)] == 2
            s._stores.clear()
        assert s.stats.requests[WRITE][0] == 1 and s.stats.requests[READ][0] == 1
        assert fs.read(4, 2, 4096 + 5, 3)[0].tobytes() == b"new"
    finally:
        os.close(out)
