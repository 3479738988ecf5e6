"""ops.handle_fast answers GETATTR, LOOKUP, FORGET, UNLINK, RELEASE and WRITE exactly as
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
            ops.statistics()["errors"], ops.statistics()["unexpected"])


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
        assert took_fast == 74  # every well-formed one; the rest went the generic way


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([GETATTR, LOOKUP, FORGET, UNLINK, RELEASE, WRITE]),
                          st.integers(0, 6), st.sampled_from(NAMES), st.integers(0, 3)),
                max_size=30))
def test_random_sequences_agree(steps: list[tuple[int, int, bytes, int]]) -> None:
    fs_a, ops_a = twin()
    fs_b, ops_b = twin()
    for opcode, nodeid, name, k in steps:
        body = {GETATTR: bytes(16), LOOKUP: name + b"\0", FORGET: struct.pack("<Q", k),
                UNLINK: name + b"\0", RELEASE: struct.pack("<QIIQ", k, 1, 0, 0),
                WRITE: struct.pack("<QQIIQII", k, k * 4093, len(name), 0, 0, 1, 0) + name}[opcode]
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
