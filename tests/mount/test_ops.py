"""Operations against a small fake ShmFs (StubStorage-style): requests go in as the
kernel's bytes, replies come out as the bytes the session would write."""

from __future__ import annotations

import errno
import logging
import stat
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from fsimpl.errors import FsError
from fsimpl.types import Attr, StatFs
from mount.server.ops import Operations, OpsConfig
from mount.wire import protocol as P
from mount.wire.codec import parse_request

UID, GID, PID = 1000, 100, 77
DT_DIR, DT_REG = 4, 8


def msg(opcode: int, body: bytes = b"", *, unique: int = 9, nodeid: int = 1) -> bytes:
    return struct.pack("<IIQQIIIHH", 40 + len(body), opcode, unique, nodeid, UID, GID, PID,
                       0, 0) + body


def joined(out: list[Any]) -> bytes:
    return b"".join(bytes(b) for b in out)


def header(out: list[Any]) -> tuple[int, int, int]:
    return struct.unpack_from("<IiQ", joined(out))


KEEP_NOFLUSH = P.FOPEN_KEEP_CACHE | P.FOPEN_NOFLUSH

class FakeFs:
    """A handful of the ShmFs contract: one flat root directory of regular files."""

    ROOT_INO = 1

    def open_drops_cache(self, ino: int) -> bool:
        return ino in self.atime_stale

    def __init__(self, names: int = 0) -> None:
        self.children: dict[bytes, int] = {}
        self.data: dict[int, bytearray] = {}
        self.nlookup: Counter[int] = Counter()
        self.calls: list[tuple[Any, ...]] = []
        self.xattrs: dict[bytes, bytes] = {}
        self.boom: Exception | None = None
        self.atime_stale: set[int] = set()  # inodes whose next read moves atime
        for i in range(names):
            self._add(f"file{i:03d}".encode())

    def _add(self, name: bytes) -> int:
        ino = 100 + len(self.children)
        self.children[name] = ino
        self.data[ino] = bytearray()
        return ino

    def _attr(self, ino: int, mode: int = stat.S_IFREG | 0o644) -> Attr:
        if ino == 1:
            mode = stat.S_IFDIR | 0o1777
        size = len(self.data.get(ino, b""))
        return Attr(ino, mode, 1, 0, 0, 0, size, 0, 1, 2, 3)

    def lookup(self, parent: int, name: bytes) -> Attr:
        if self.boom:
            raise self.boom
        if name not in self.children:
            raise FsError(errno.ENOENT)
        ino = self.children[name]
        self.nlookup[ino] += 1
        return self._attr(ino)

    def forget(self, ino: int, n: int) -> None:
        if ino == 666:
            raise RuntimeError("bad forget")
        self.nlookup[ino] -= n

    def getattr(self, ino: int) -> Attr:
        return self._attr(ino)

    def setattr(self, ino: int, ctx: Any, **kw: Any) -> Attr:
        self.calls.append(("setattr", ino, ctx, kw))
        return self._attr(ino)

    def mkdir(self, parent: int, name: bytes, mode: int, ctx: Any) -> Attr:
        self.calls.append(("mkdir", parent, name, mode, ctx))
        ino = self._add(name)
        self.nlookup[ino] += 1
        return self._attr(ino, mode)

    def create(self, parent: int, name: bytes, mode: int, flags: int, ctx: Any) -> tuple[Attr, int]:
        ino = self._add(name)
        self.nlookup[ino] += 1
        return self._attr(ino, mode), 55

    def open(self, ino: int, flags: int) -> int:
        return 44

    def read(self, ino: int, fh: int, off: int, size: int) -> list[memoryview]:
        mv = memoryview(self.data[ino])
        return [mv[off:off + size]]

    def write(self, ino: int, fh: int, off: int, data: memoryview, flags: int = 0,
              ctx: object = None) -> int:
        self.calls.append(("write", ino, fh, off, data, flags))
        buf = self.data[ino]
        buf[off:off + len(data)] = data
        return len(data)

    def release(self, ino: int, fh: int) -> None:
        self.calls.append(("release", ino, fh))

    def opendir(self, ino: int, flags: int) -> int:
        return 33

    def readdir(self, ino: int, fh: int, off: int) -> Iterator[tuple[bytes, int, int, int]]:
        entries = [(b".", 1, DT_DIR), (b"..", 1, DT_DIR)]
        entries += [(n, i, DT_REG) for n, i in self.children.items()]
        for k in range(off, len(entries)):
            name, ino, dt = entries[k]
            yield name, ino, dt, k + 1

    def statfs(self) -> StatFs:
        return StatFs(10, 9, 8, 7, 6)

    def getxattr(self, ino: int, name: bytes) -> bytes:
        if name not in self.xattrs:
            raise FsError(errno.ENODATA)
        return self.xattrs[name]

    def listxattr(self, ino: int, ctx: object = None) -> list[bytes]:
        return list(self.xattrs)

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int, *,
                 kill_sgid: bool = False) -> None:
        self.calls.append(("setxattr", ino, name, value, flags, kill_sgid))

    def removexattr(self, ino: int, name: bytes, ctx: Any = None) -> None:
        self.calls.append(("removexattr", ino, name, ctx))


@pytest.fixture
def fs() -> FakeFs:
    return FakeFs(names=3)


@pytest.fixture
def ops(fs: FakeFs) -> Operations:
    return Operations(fs, OpsConfig())


def run(ops: Operations, opcode: int, body: bytes = b"", **kw: int) -> list[Any] | None:
    return ops.handle(parse_request(memoryview(msg(opcode, body, **kw))))


def init_body(minor: int = 44, flags: int = 0xFFFFFFFF, ra: int = 131072) -> bytes:
    return struct.pack("<IIIII44x", 7, minor, ra, flags, 0xFFFFFFFF)


# --- INIT -------------------------------------------------------------------------------------


def test_init_negotiates_only_what_shmfs_implements(ops: Operations) -> None:
    out = joined(run(ops, P.Opcode.INIT, init_body()))
    assert struct.unpack_from("<IiQ", out) == (80, 0, 9)
    (major, minor, ra, flags, max_bg, congestion, max_write, gran, max_pages, _,
     flags2) = struct.unpack_from("<IIIIHHIIHHI", out, 16)
    assert (major, minor, ra) == (7, 38, 131072)
    assert flags == (P.FUSE_ASYNC_READ | P.FUSE_ATOMIC_O_TRUNC | P.FUSE_BIG_WRITES
                     | P.FUSE_DO_READDIRPLUS | P.FUSE_READDIRPLUS_AUTO | P.FUSE_PARALLEL_DIROPS
                     | P.FUSE_MAX_PAGES | P.FUSE_CACHE_SYMLINKS | P.FUSE_HANDLE_KILLPRIV_V2
                     | P.FUSE_HAS_IOCTL_DIR | P.FUSE_POSIX_ACL | P.FUSE_DONT_MASK
                     | P.FUSE_SETXATTR_EXT | P.FUSE_EXPORT_SUPPORT)
    assert flags2 == 0
    assert not flags & (P.FUSE_WRITEBACK_CACHE | P.FUSE_HANDLE_KILLPRIV
                        | P.FUSE_AUTO_INVAL_DATA | P.FUSE_INIT_EXT)
    assert (max_write, gran, max_pages) == (1 << 20, 1, 256)
    assert (max_bg, congestion) == (64, 48)
    assert ops.proto_minor == 38 and ops.init_flags == flags


def test_init_never_grants_what_the_kernel_did_not_offer(ops: Operations) -> None:
    out = joined(run(ops, P.Opcode.INIT, init_body(minor=36, flags=P.FUSE_BIG_WRITES,
                                                   ra=1 << 30)))
    _, minor, ra, flags = struct.unpack_from("<IIII", out, 16)
    assert (minor, ra, flags) == (36, 1 << 20, P.FUSE_BIG_WRITES)


def test_init_writeback_cache_is_opt_in(fs: FakeFs) -> None:
    ops = Operations(fs, OpsConfig(writeback_cache=True, cache_symlinks=False))
    flags = struct.unpack_from("<I", joined(run(ops, P.Opcode.INIT, init_body())), 28)[0]
    assert flags & P.FUSE_WRITEBACK_CACHE and not flags & P.FUSE_CACHE_SYMLINKS


def test_init_of_a_too_old_kernel_is_eproto(ops: Operations) -> None:
    assert header(run(ops, P.Opcode.INIT, init_body(minor=30))) == (16, -errno.EPROTO, 9)
    assert header(run(ops, P.Opcode.INIT, struct.pack("<II", 6, 99))) == (16, -errno.EPROTO, 9)


def test_init_of_a_newer_major_answers_ours(ops: Operations) -> None:
    out = joined(run(ops, P.Opcode.INIT, struct.pack("<IIII", 8, 0, 0, 0)))
    assert struct.unpack_from("<II", out, 16) == (7, 38)


# --- error translation ------------------------------------------------------------------------


def test_fserror_becomes_minus_errno(ops: Operations) -> None:
    assert header(run(ops, P.Opcode.LOOKUP, b"missing\0", unique=5)) == (16, -errno.ENOENT, 5)
    assert ops.statistics()["errors"] == {"ENOENT": 1}


def test_unexpected_exception_is_eio_logged_and_serving_continues(
        ops: Operations, fs: FakeFs, caplog: pytest.LogCaptureFixture) -> None:
    fs.boom = KeyError("bug")
    with caplog.at_level(logging.ERROR, logger="shmfs.ops"):
        assert header(run(ops, P.Opcode.LOOKUP, b"file000\0", unique=6)) == (16, -errno.EIO, 6)
    assert "LOOKUP" in caplog.text and "KeyError" in caplog.text
    fs.boom = None
    assert header(run(ops, P.Opcode.LOOKUP, b"file000\0", unique=7))[1:] == (0, 7)
    assert ops.statistics()["unexpected"] == 1


def test_missing_fs_method_is_eio_not_a_crash(ops: Operations) -> None:
    assert header(run(ops, P.Opcode.READLINK))[1] == -errno.EIO  # FakeFs has no readlink


@pytest.mark.parametrize(("op", "body", "err"), [
    (P.Opcode.IOCTL, struct.pack("<QIIQII", 1, 0, 0x5401, 0, 0, 0), errno.ENOTTY),
    (P.Opcode.COPY_FILE_RANGE, struct.pack("<7Q", 1, 0, 2, 3, 0, 10, 0), errno.ENOSYS),
    (P.Opcode.TMPFILE, struct.pack("<IIII", 2, 0o100600, 0, 0) + b"/\0", errno.ENOSYS),
    (P.Opcode.SYNCFS, struct.pack("<Q", 0), errno.ENOSYS),
    (P.Opcode.GETLK, bytes(48), errno.ENOSYS),
])
def test_unsupported_operations(ops: Operations, op: int, body: bytes, err: int) -> None:
    assert header(run(ops, op, body)) == (16, -err, 9)


def test_no_reply_requests(ops: Operations, fs: FakeFs) -> None:
    assert run(ops, P.Opcode.INTERRUPT, struct.pack("<Q", 3)) is None
    fs.nlookup[100] = 5
    assert run(ops, P.Opcode.FORGET, struct.pack("<Q", 2), nodeid=100) is None
    assert fs.nlookup[100] == 3
    assert run(ops, P.Opcode.FORGET, struct.pack("<Q", 1), nodeid=666) is None  # raises inside
    body = struct.pack("<II", 3, 0) + struct.pack("<4Q", 100, 1, 666, 1) + struct.pack(
        "<QQ", 101, 4)
    fs.nlookup[101] = 4
    assert run(ops, P.Opcode.BATCH_FORGET, body) is None
    assert (fs.nlookup[100], fs.nlookup[101]) == (2, 0)  # the failing one did not stop 101


def test_destroy(ops: Operations) -> None:
    assert header(run(ops, P.Opcode.DESTROY)) == (16, 0, 9) and ops.destroyed


# --- names and attributes ---------------------------------------------------------------------


def test_lookup_entry_and_timeouts(fs: FakeFs) -> None:
    ops = Operations(fs, OpsConfig(entry_timeout=2.5, attr_timeout=7))
    out = joined(run(ops, P.Opcode.LOOKUP, b"file001\0"))
    assert struct.unpack_from("<IiQ", out) == (16 + 128, 0, 9)
    assert struct.unpack_from("<QQQQII", out, 16) == (101, ops.generation, 2, 7,
                                                      500_000_000, 0)
    assert ops.generation & 1  # random per mount, never 0 (the root's)
    assert struct.unpack_from("<QQ", out, 56) == (101, 0)  # attr.ino, attr.size
    assert fs.nlookup[101] == 1


def test_negative_lookup_caching_is_configurable(fs: FakeFs) -> None:
    ops = Operations(fs, OpsConfig(negative_timeout=3.0))
    out = joined(run(ops, P.Opcode.LOOKUP, b"nope\0"))
    assert struct.unpack_from("<IiQQQQ", out) == (144, 0, 9, 0, 0, 3)


def test_getattr(ops: Operations) -> None:
    out = joined(run(ops, P.Opcode.GETATTR, struct.pack("<IIQ", 0, 0, 0), nodeid=1))
    assert struct.unpack_from("<IiQ", out) == (16 + 104, 0, 9)
    assert struct.unpack_from("<QII", out, 16) == (86400, 0, 0)
    assert struct.unpack_from("<I", out, 32 + 60)[0] == stat.S_IFDIR | 0o1777


def test_setattr_maps_valid_bits_to_keywords(ops: Operations, fs: FakeFs) -> None:
    valid = (P.FATTR_MODE | P.FATTR_SIZE | P.FATTR_ATIME | P.FATTR_ATIME_NOW | P.FATTR_MTIME
             | P.FATTR_FH | P.FATTR_LOCKOWNER)
    body = struct.pack("<IIQQQqqqIIIIIIII", valid, 0, 44, 10, 1, 5, 6, 0, 0, 7, 0, 0o600, 0,
                       3, 4, 0)
    assert header(run(ops, P.Opcode.SETATTR, body, nodeid=100))[1] == 0
    _, ino, ctx, kw = fs.calls[-1]
    assert ino == 100 and (ctx.uid, ctx.gid, ctx.pid) == (UID, GID, PID)
    assert kw == {"mode": 0o600, "size": 10, "atime_now": True, "mtime_ns": 6_000_000_007,
                  "fh": 44}


def test_mkdir_passes_a_directory_mode_and_the_umask(ops: Operations, fs: FakeFs) -> None:
    out = run(ops, P.Opcode.MKDIR, struct.pack("<II", 0o755, 0o027) + b"d\0")
    assert header(out)[0] == 16 + 128
    _, parent, name, mode, ctx = fs.calls[-1]
    assert (parent, name, mode, ctx.umask) == (1, b"d", stat.S_IFDIR | 0o755, 0o027)


# --- files ------------------------------------------------------------------------------------


def test_open_and_create_keep_cache(ops: Operations, fs: FakeFs) -> None:
    out = joined(run(ops, P.Opcode.OPEN, struct.pack("<II", 2, 0), nodeid=100))
    assert struct.unpack_from("<QII", out, 16) == (44, KEEP_NOFLUSH, 0)
    out = joined(run(ops, P.Opcode.CREATE, struct.pack("<IIII", 0o102, 0o100644, 0o22, 0)
                     + b"new\0"))
    assert struct.unpack_from("<IiQ", out) == (16 + 128 + 16, 0, 9)
    assert struct.unpack_from("<QII", out, 16 + 128) == (55, KEEP_NOFLUSH, 0)
    fs.atime_stale.add(100)  # the next read must reach the daemon to move atime
    out = joined(run(ops, P.Opcode.OPEN, struct.pack("<II", 0, 0), nodeid=100))
    assert struct.unpack_from("<QII", out, 16) == (44, P.FOPEN_NOFLUSH, 0)
    fs.atime_stale.clear()
    ops.config.keep_cache = False
    out = joined(run(ops, P.Opcode.OPEN, struct.pack("<II", 0, 0), nodeid=100))
    assert struct.unpack_from("<QII", out, 16) == (44, P.FOPEN_NOFLUSH, 0)


def test_write_passes_a_view_of_the_request_and_read_replies_with_views(
        ops: Operations, fs: FakeFs) -> None:
    payload = b"hello world" * 100
    raw = bytearray(msg(P.Opcode.WRITE, struct.pack("<QQIIQII", 44, 0, len(payload), 0, 0, 2, 0)
                        + payload, nodeid=100))
    out = ops.handle(parse_request(memoryview(raw)))
    assert joined(out) == struct.pack("<IiQII", 24, 0, 9, len(payload), 0)
    _, ino, fh, off, data, flags = fs.calls[-1]
    assert (ino, fh, off, flags) == (100, 44, 0, 0)
    assert isinstance(data, memoryview) and data.obj is raw
    out = run(ops, P.Opcode.READ, struct.pack("<QQIIQII", 44, 6, 5, 0, 0, 0, 0), nodeid=100)
    assert header(out) == (21, 0, 9)
    assert isinstance(out[1], memoryview) and out[1].obj is fs.data[100]
    assert bytes(out[1]) == b"world"


def test_release(ops: Operations, fs: FakeFs) -> None:
    assert header(run(ops, P.Opcode.RELEASE, struct.pack("<QIIQ", 44, 0, 0, 0), nodeid=100)) == (
        16, 0, 9)
    assert fs.calls[-1] == ("release", 100, 44)


def test_statfs(ops: Operations) -> None:
    out = joined(run(ops, P.Opcode.STATFS))
    assert struct.unpack_from("<QQQQQIII", out, 16) == (10, 9, 8, 7, 6, 4096, 255, 4096)


# --- directories ------------------------------------------------------------------------------


def read_body(size: int, off: int = 0) -> bytes:
    return struct.pack("<QQIIQII", 33, off, size, 0, 0, 0, 0)


def dirents(buf: bytes, plus: bool) -> list[tuple[Any, ...]]:
    """Decode a READDIR(PLUS) payload: (nodeid-or-None, ino, off, type, name) per record."""
    out, pos = [], 0
    while pos < len(buf):
        nodeid = None
        if plus:
            nodeid = struct.unpack_from("<Q", buf, pos)[0]
            pos += 128
        ino, off, namelen, typ = struct.unpack_from("<QQII", buf, pos)
        name = buf[pos + 24:pos + 24 + namelen]
        out.append((nodeid, ino, off, typ, name))
        pos += (24 + namelen + 7) & ~7
    return out


def test_readdir_packs_and_stops_when_the_next_entry_does_not_fit(ops: Operations) -> None:
    # ".": 32, "..": 32, "file000": 32 (24 + 7 -> 32): 100 bytes hold three.
    out = joined(run(ops, P.Opcode.READDIR, read_body(100)))
    assert struct.unpack_from("<I", out)[0] == 16 + 96
    ents = dirents(out[16:], plus=False)
    assert ents == [(None, 1, 1, DT_DIR, b"."), (None, 1, 2, DT_DIR, b".."),
                    (None, 100, 3, DT_REG, b"file000")]
    rest = dirents(joined(run(ops, P.Opcode.READDIR, read_body(4096, off=3)))[16:], False)
    assert [e[4] for e in rest] == [b"file001", b"file002"]
    assert joined(run(ops, P.Opcode.READDIR, read_body(4096, off=5))) == struct.pack(
        "<IiQ", 16, 0, 9)


def test_readdirplus_looks_up_only_emitted_entries_and_never_dots(
        ops: Operations, fs: FakeFs) -> None:
    # Each plus record here is 152 + 8 = 160 bytes: 400 bytes hold ".", "..", nothing more.
    out = joined(run(ops, P.Opcode.READDIRPLUS, read_body(400)))
    ents = dirents(out[16:], plus=True)
    assert [(e[0], e[4]) for e in ents] == [(0, b"."), (0, b"..")]
    assert sum(fs.nlookup.values()) == 0
    out = joined(run(ops, P.Opcode.READDIRPLUS, read_body(480)))  # three records
    ents = dirents(out[16:], plus=True)
    assert [(e[0], e[1], e[2], e[4]) for e in ents] == [
        (0, 1, 1, b"."), (0, 1, 2, b".."), (100, 100, 3, b"file000")]
    assert dict(fs.nlookup) == {100: 1}
    # the entry_out of an emitted record is complete: attr.ino matches and timeouts are set
    rec = out[16 + 320:16 + 480]
    assert struct.unpack_from("<QQQQ", rec) == (100, ops.generation, 86400, 86400)
    assert struct.unpack_from("<Q", rec, 40)[0] == 100
    run(ops, P.Opcode.READDIRPLUS, read_body(4096, off=3))
    assert dict(fs.nlookup) == {100: 1, 101: 1, 102: 1}


def test_readdirplus_of_a_vanished_name_sends_nodeid_zero(ops: Operations, fs: FakeFs) -> None:
    fs.lookup = lambda parent, name: (_ for _ in ()).throw(FsError(errno.ENOENT))  # type: ignore
    ents = dirents(joined(run(ops, P.Opcode.READDIRPLUS, read_body(4096)))[16:], plus=True)
    assert [e[0] for e in ents] == [0, 0, 0, 0, 0] and ents[2][1] == 100


# --- xattrs -----------------------------------------------------------------------------------


def test_getxattr_size_probe_erange_and_value(ops: Operations, fs: FakeFs) -> None:
    fs.xattrs[b"user.k"] = b"0123456789"
    q = struct.pack("<II", 0, 0) + b"user.k\0"
    assert joined(run(ops, P.Opcode.GETXATTR, q)) == struct.pack("<IiQII", 24, 0, 9, 10, 0)
    q = struct.pack("<II", 9, 0) + b"user.k\0"
    assert header(run(ops, P.Opcode.GETXATTR, q)) == (16, -errno.ERANGE, 9)
    q = struct.pack("<II", 10, 0) + b"user.k\0"
    assert joined(run(ops, P.Opcode.GETXATTR, q)) == struct.pack("<IiQ", 26, 0, 9) + b"0123456789"
    q = struct.pack("<II", 100, 0) + b"user.none\0"
    assert header(run(ops, P.Opcode.GETXATTR, q)) == (16, -errno.ENODATA, 9)


def test_listxattr_size_probe_erange_and_list(ops: Operations, fs: FakeFs) -> None:
    fs.xattrs.update({b"user.a": b"1", b"user.bb": b"2"})
    names = b"user.a\0user.bb\0"
    out = joined(run(ops, P.Opcode.LISTXATTR, struct.pack("<II", 0, 0)))
    assert struct.unpack_from("<II", out, 16) == (len(names), 0)
    assert header(run(ops, P.Opcode.LISTXATTR, struct.pack("<II", 5, 0)))[1] == -errno.ERANGE
    assert joined(run(ops, P.Opcode.LISTXATTR, struct.pack("<II", 64, 0)))[16:] == names


def test_setxattr_passes_the_acl_kill_sgid_flag(ops: Operations, fs: FakeFs) -> None:
    # FUSE_SETXATTR_EXT layout: size, flags, setxattr_flags, padding
    body = struct.pack("<IIII", 3, 0, P.FUSE_SETXATTR_ACL_KILL_SGID, 0)
    run(ops, P.Opcode.SETXATTR, body + b"system.posix_acl_access\0abc", nodeid=100)
    run(ops, P.Opcode.SETXATTR, struct.pack("<II", 1, 2) + b"user.k\0v", nodeid=100)
    assert fs.calls == [
        ("setxattr", 100, b"system.posix_acl_access", b"abc", 0, True),
        ("setxattr", 100, b"user.k", b"v", 2, False),
    ]


def test_removexattr_tells_the_fs_who_asks(ops: Operations, fs: FakeFs) -> None:
    # removing an access ACL may drop S_ISGID, depending on the caller's group
    assert header(run(ops, P.Opcode.REMOVEXATTR, b"user.k\0", nodeid=100)) == (16, 0, 9)
    (_, ino, name, ctx), = fs.calls
    assert (ino, name, ctx.uid, ctx.gid, ctx.pid) == (100, b"user.k", UID, GID, PID)


class RememberingFs(FakeFs):
    """A fake that, like fsimpl, offers remember(ino) and tmpfile()."""

    def remember(self, ino: int) -> Attr:
        self.calls.append(("remember", ino))
        self.nlookup[ino] += 1
        return self._attr(ino)

    def lookup(self, parent: int, name: bytes) -> Attr:
        raise AssertionError("READDIRPLUS must not look names up when remember() exists")

    def tmpfile(self, parent: int, mode: int, flags: int, ctx: Any) -> tuple[Attr, int]:
        self.calls.append(("tmpfile", parent, mode, flags, ctx.umask))
        return self._attr(500, mode), 66


def test_readdirplus_uses_remember_when_the_fs_has_it() -> None:
    fs = RememberingFs(names=2)
    ops = Operations(fs)
    ents = dirents(joined(run(ops, P.Opcode.READDIRPLUS, read_body(4096)))[16:], plus=True)
    assert [e[0] for e in ents] == [0, 0, 100, 101]
    assert fs.calls == [("remember", 100), ("remember", 101)]


def test_tmpfile_when_the_fs_has_it() -> None:
    fs = RememberingFs()
    ops = Operations(fs)
    out = joined(run(ops, P.Opcode.TMPFILE, struct.pack("<IIII", 0o20200002, 0o100700, 0o22, 0)
                     + b"/\0", nodeid=1))
    assert struct.unpack_from("<IiQQ", out) == (16 + 128 + 16, 0, 9, 500)
    assert struct.unpack_from("<QII", out, 16 + 128) == (66, KEEP_NOFLUSH, 0)
    assert fs.calls == [("tmpfile", 1, 0o100700, 0o20200002, 0o22)]
