"""The restart protocol's pieces without a mount (mount/server/restart.py): the INIT
check for FUSE_HAS_RESEND, the exactly-once rule for resent requests, the unique
of a resent request's reply, the notifications a restarted server sends first, and
the test hook's grammar."""

from __future__ import annotations

import errno
import struct

import pytest

from mount.server import restart as R
from mount.wire import protocol as P

RESEND = R.FUSE_UNIQUE_RESEND


def request(opcode: int, unique: int, body: bytes = b"", nodeid: int = 1) -> bytearray:
    return bytearray(P.IN_HEADER.pack(40 + len(body), opcode, unique, nodeid, 0, 0, 0, 0, 0)
                     + body)


def init(flags: int, flags2: int) -> bytearray:
    # fuse_init_in: major, minor, max_readahead, flags, flags2, unused[11]
    body = struct.pack("<IIIII", 7, 40, 1 << 20, flags, flags2) + bytes(44)
    return request(int(P.Opcode.INIT), 2, body)


def test_init_offers_resend_reads_flags2_only_with_init_ext() -> None:
    has = R.FUSE_HAS_RESEND >> 32
    assert R.init_offers_resend(init(P.FUSE_INIT_EXT, has))
    assert not R.init_offers_resend(init(P.FUSE_INIT_EXT, 0))
    assert not R.init_offers_resend(init(0, has))  # flags2 means nothing without INIT_EXT
    assert not R.init_offers_resend(init(P.FUSE_INIT_EXT, has)[:50])  # cut short


def test_notifications_of_a_restarted_server() -> None:
    assert R.resend_notification() == struct.pack("<IiQ", 16, 7, 0)
    msg = R.inval_inode_notification(42)
    assert struct.unpack("<IiQQqq", msg) == (40, 2, 0, 42, 0, 0)  # whole inode, attrs too


class FakePersist:
    def __init__(self) -> None:
        self.begun: list[int] = []
        self.committed: list[tuple[int, object]] = []
        self.snapshots = 0

    def maybe_snapshot(self, ops: object) -> None:
        self.snapshots += 1

    def begin(self, msg: memoryview) -> bool:
        self.begun.append(int.from_bytes(msg[8:16], "little"))
        return True

    def commit(self, unique: int, reply: object) -> None:
        self.committed.append((unique, reply))


class FakeInfo:
    def __init__(self, replies: dict[int, bytes]) -> None:
        self.replies = replies

    def reply_for(self, unique: int) -> bytes | None:
        r = self.replies.get(unique & ~RESEND)
        return None if r is None else r[:8] + unique.to_bytes(8, "little") + r[16:]


class FakeSession:
    def __init__(self) -> None:
        self.ops = object()
        self.written: list[bytes] = []
        self._pending = 0
        self._done = False
        self.refused = False

    def _write(self, bufs: list) -> None:
        self.written.append(b"".join(bytes(b) for b in bufs))


def hooks(replies: dict[int, bytes] | None = None) -> tuple[R.RestartHooks, FakeSession,
                                                             FakePersist]:
    s, p = FakeSession(), FakePersist()
    info = FakeInfo(replies) if replies is not None else None
    return R.RestartHooks(s, p, info, None), s, p  # type: ignore[arg-type]


def test_a_resent_request_with_a_commit_record_is_answered_and_not_applied() -> None:
    recorded = struct.pack("<IiQ", 16, 0, 77)
    h, s, p = hooks({77: recorded})
    msg = request(int(P.Opcode.RENAME), 77 | RESEND)
    assert h.before(memoryview(msg)) is True  # done: the session does not handle it
    assert p.begun == []  # nothing journalled, nothing applied
    assert s.written == [struct.pack("<IiQ", 16, 0, 77 | RESEND)]  # the kernel's unique
    assert h.resent_replayed == 1


def test_a_resent_request_without_a_record_runs_as_new_under_its_plain_unique() -> None:
    h, s, p = hooks({})
    msg = request(int(P.Opcode.CREATE), 91 | RESEND)
    assert h.before(memoryview(msg)) is False  # the session handles it
    assert int.from_bytes(msg[8:16], "little") == 91  # bit 63 cleared for the handler
    assert p.begun == [91]
    out = h.after(int(P.Opcode.CREATE), [struct.pack("<IiQ", 20, 0, 91), b"abcd"])
    assert p.committed == [(91, struct.pack("<IiQ", 20, 0, 91) + b"abcd")]  # plain unique
    assert out is not None
    wire = b"".join(bytes(b) for b in out)
    assert wire == struct.pack("<IiQ", 20, 0, 91 | RESEND) + b"abcd"  # the resent unique
    assert h.resent_handled == 1 and s.written == []


def test_a_read_reply_is_committed_as_buffers_not_copied() -> None:
    h, _s, p = hooks(None)
    msg = request(int(P.Opcode.READ), 5)
    assert h.before(memoryview(msg)) is False
    data = memoryview(bytearray(b"x" * 4096))
    out = [struct.pack("<IiQ", 16 + 4096, 0, 5), data]
    assert h.after(int(P.Opcode.READ), out) is out
    assert p.committed[0][1] is out


def test_init_without_resend_is_refused_with_a_reason() -> None:
    reasons: list[str] = []
    s, p = FakeSession(), FakePersist()
    h = R.RestartHooks(s, p, None, reasons.append)  # type: ignore[arg-type]
    assert h.before(memoryview(init(P.FUSE_INIT_EXT, 0))) is True
    assert s.written == [struct.pack("<IiQ", 16, -errno.EPROTO, 2)]
    assert s._done and s.refused
    assert "FUSE_HAS_RESEND" in reasons[0] and "6.9" in reasons[0]
    assert p.begun == []


def test_kill_hook_grammar() -> None:
    k = R.KillHook("IOCTL:0x40285302:after_commit:2")
    assert k.opcode == int(P.Opcode.IOCTL) and k.cmd == 0x40285302 and k.nth == 2
    k = R.KillHook("write:before_record:1")
    assert k.opcode == int(P.Opcode.WRITE) and k.cmd is None
    for bad in ("WRITE:sometime:1", "WRITE:1", "NOPE:after_commit:1"):
        with pytest.raises((ValueError, KeyError)):
            R.KillHook(bad)


def test_replies_from_the_journal_carry_expired_attributes() -> None:
    """A recorded reply's attributes are as of its commit; later commits may have changed
    the inode, so the kernel must not cache them: every timeout goes to 0."""
    from types import SimpleNamespace

    from mount.wire import codec as C

    attr = SimpleNamespace(ino=7, size=4096, blocks=8, atime_ns=1, mtime_ns=2, ctime_ns=3,
                           mode=0o100644, nlink=1, uid=0, gid=0, rdev=0, blksize=4096, flags=0)
    entry = C.reply(9, C.entry_out(attr, 86400.0, 86400.0, 5))
    out = R.expire_attrs(int(P.Opcode.LOOKUP), entry)
    head = P.ENTRY_OUT_HEAD.unpack_from(out, 16)
    assert head == (7, 5, 0, 0, 0, 0)  # nodeid and generation kept, timeouts 0
    assert out[16 + P.ENTRY_OUT_HEAD.size:] == entry[16 + P.ENTRY_OUT_HEAD.size:]
    got = R.expire_attrs(int(P.Opcode.SETATTR), C.reply(9, C.attr_out(attr, 86400.0)))
    assert P.ATTR_OUT_HEAD.unpack_from(got, 16)[:2] == (0, 0)
    err = C.reply_error(9, errno.ENOENT)
    assert R.expire_attrs(int(P.Opcode.LOOKUP), err) == err


def test_readdirplus_from_the_journal_expires_every_entry() -> None:
    from types import SimpleNamespace

    from mount.wire import codec as C

    buf = C.DirentBuffer(4096, plus=True)
    for i, name in enumerate([b"a", b"longer-name", b"xyz"]):
        attr = SimpleNamespace(ino=10 + i, size=i, blocks=0, atime_ns=1, mtime_ns=2, ctime_ns=3,
                               mode=0o100644, nlink=1, uid=0, gid=0, rdev=0, blksize=4096,
                               flags=0)
        buf.add(name, 10 + i, 8, i + 1, C.entry_out(attr, 86400.0, 86400.0, 1))
    reply = C.reply(3, buf.getvalue())
    out = R.expire_attrs(int(P.Opcode.READDIRPLUS), reply)
    assert len(out) == len(reply)
    off, seen = 16, []
    while off < len(out):
        head = P.ENTRY_OUT_HEAD.unpack_from(out, off)
        assert head[2:] == (0, 0, 0, 0)
        ino, _o, namelen, _t = P.DIRENT.unpack_from(out, off + P.ENTRY_OUT_SIZE)
        seen.append((head[0], ino, out[off + P.ENTRY_OUT_SIZE + 24:][:namelen]))
        off += P.ENTRY_OUT_SIZE + P.dirent_align(24 + namelen)
    assert seen == [(10, 10, b"a"), (11, 11, b"longer-name"), (12, 12, b"xyz")]


def test_replies_from_the_journal_carry_the_current_attributes() -> None:
    """A CREATE's recorded attributes (size 0) are those of its commit; the kernel
    applies an entry reply's size without a version check, so a resent CREATE of a
    file that has since become a window (or grown) must carry the size it has now."""
    from types import SimpleNamespace

    from mount.wire import codec as C

    def attr(ino: int, size: int) -> SimpleNamespace:
        return SimpleNamespace(ino=ino, size=size, blocks=0, atime_ns=1, mtime_ns=2,
                               ctime_ns=3, mode=0o100600, nlink=1, uid=0, gid=0, rdev=0,
                               blksize=4096, flags=0)

    now = {7: C.pack_attr(attr(7, 65536)), 12: C.pack_attr(attr(12, 99))}
    entry = C.reply(9, C.entry_out(attr(7, 0), 86400.0, 86400.0, 5))
    out = R.expire_attrs(int(P.Opcode.CREATE), entry, now.get)
    assert P.ENTRY_OUT_HEAD.unpack_from(out, 16) == (7, 5, 0, 0, 0, 0)
    assert P.ATTR.unpack_from(out, 16 + P.ENTRY_OUT_HEAD.size)[:2] == (7, 65536)
    gone = R.expire_attrs(int(P.Opcode.CREATE), C.reply(9, C.entry_out(attr(8, 3), 1.0, 1.0, 1)),
                          now.get)
    assert P.ATTR.unpack_from(gone, 16 + P.ENTRY_OUT_HEAD.size)[:2] == (8, 3)  # gone: as recorded
    got = R.expire_attrs(int(P.Opcode.SETATTR), C.reply(9, C.attr_out(attr(12, 1), 86400.0)),
                         now.get)
    assert P.ATTR.unpack_from(got, 16 + P.ATTR_OUT_HEAD.size)[:2] == (12, 99)
    buf = C.DirentBuffer(4096, plus=True)
    buf.add(b"w", 7, 8, 1, C.entry_out(attr(7, 0), 86400.0, 86400.0, 1))
    buf.add(b"f", 12, 8, 2, C.entry_out(attr(12, 0), 86400.0, 86400.0, 1))
    plus = R.expire_attrs(int(P.Opcode.READDIRPLUS), C.reply(3, buf.getvalue()), now.get)
    second = 16 + P.ENTRY_OUT_SIZE + P.dirent_align(24 + 1)
    assert P.ATTR.unpack_from(plus, 16 + P.ENTRY_OUT_HEAD.size)[:2] == (7, 65536)
    assert P.ATTR.unpack_from(plus, second + P.ENTRY_OUT_HEAD.size)[:2] == (12, 99)
