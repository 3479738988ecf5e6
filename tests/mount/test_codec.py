"""Byte-level tests of the FUSE codec.

Requests are built with ``struct.pack`` from the C layouts in linux/fuse.h
(written out here independently of mount.wire.protocol), the way the kernel lays
them out; replies are taken apart field by field.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsimpl.types import Attr
from mount.wire import codec as C
from mount.wire import protocol as P
from mount.wire.codec import CodecError, parse_request

UID, GID, PID = 1000, 100, 4242


def msg(opcode: int, body: bytes = b"", *, unique: int = 77, nodeid: int = 5,
        extlen: int = 0, length: int | None = None) -> bytes:
    """A request exactly as the kernel writes it: fuse_in_header + body."""
    n = 40 + len(body) if length is None else length
    return struct.pack("<IIQQIIIHH", n, opcode, unique, nodeid, UID, GID, PID, extlen, 0) + body


def parse(opcode: int, body: bytes = b"", **kw: int) -> C.Request:
    req = parse_request(memoryview(msg(opcode, body, **kw)))
    assert (req.opcode, req.uid, req.gid, req.pid) == (opcode, UID, GID, PID)
    assert req.unique == kw.get("unique", 77)
    assert req.nodeid == kw.get("nodeid", 5)
    return req


def out_header(buf: bytes) -> tuple[int, int, int]:
    return struct.unpack_from("<IiQ", buf)


@dataclass
class FakeAttr:
    ino: int = 12
    mode: int = 0o100644
    nlink: int = 2
    uid: int = 1000
    gid: int = 100
    rdev: int = 0x0801
    size: int = 123456
    blocks: int = 248
    atime_ns: int = 1_700_000_000_123_456_789
    mtime_ns: int = -1_500_000_000  # before the epoch: -2 s + 500 ms
    ctime_ns: int = 5
    blksize: int = 4096


ATTR_FMT = "<QQQqqqIIIIIIIIII"


def check_attr(buf: bytes, off: int, a: FakeAttr) -> None:
    f = struct.unpack_from(ATTR_FMT, buf, off)
    assert f == (a.ino, a.size, a.blocks, 1_700_000_000, -2, 0, 123_456_789, 500_000_000, 5,
                 a.mode, a.nlink, a.uid, a.gid, a.rdev, 4096, 0)


# --- struct sizes (sizeof() from linux/fuse.h, measured with gcc on the build host) -----------


@pytest.mark.parametrize(("s", "size"), [
    (P.IN_HEADER, 40), (P.OUT_HEADER, 16), (P.ATTR, 88), (P.KSTATFS, 80), (P.SETATTR_IN, 88),
    (P.READ_IN, 40), (P.WRITE_IN, 40), (P.INIT_OUT, 64), (P.IOCTL_IN, 32), (P.IOCTL_OUT, 16),
    (P.FALLOCATE_IN, 32), (P.LSEEK_IN, 24), (P.COPY_FILE_RANGE_IN, 56), (P.DIRENT, 24),
    (P.RELEASE_IN, 24), (P.FLUSH_IN, 24), (P.MKNOD_IN, 16), (P.CREATE_IN, 16), (P.OPEN_OUT, 16),
    (P.NOTIFY_INVAL_INODE_OUT, 24), (P.NOTIFY_INVAL_ENTRY_OUT, 16), (P.RENAME2_IN, 16),
    (P.FSYNC_IN, 16), (P.GETATTR_IN, 16),
])
def test_struct_sizes_match_fuse_h(s: struct.Struct, size: int) -> None:
    assert s.size == size


def test_composite_sizes() -> None:
    assert P.ENTRY_OUT_SIZE == 128  # sizeof(struct fuse_entry_out)
    assert P.ATTR_OUT_HEAD.size + P.ATTR.size == 104  # sizeof(struct fuse_attr_out)
    assert P.DIRENTPLUS_HEAD_SIZE == 152  # FUSE_NAME_OFFSET_DIRENTPLUS


# --- requests ---------------------------------------------------------------------------------


def test_init_with_flags2() -> None:
    flags = P.FUSE_ASYNC_READ | P.FUSE_INIT_EXT | P.FUSE_MAX_PAGES
    body = struct.pack("<IIIII44x", 7, 44, 131072, flags, 0b101)
    a = parse(P.Opcode.INIT, body, nodeid=0).args
    assert (a.major, a.minor, a.max_readahead) == (7, 44, 131072)
    assert a.flags == flags | (0b101 << 32)


def test_init_without_init_ext_ignores_flags2() -> None:
    body = struct.pack("<IIIII44x", 7, 38, 4096, P.FUSE_ASYNC_READ, 0xFF)
    assert parse(P.Opcode.INIT, body).args.flags == P.FUSE_ASYNC_READ


def test_init_of_an_ancient_kernel_carries_major_minor_only() -> None:
    a = parse(P.Opcode.INIT, struct.pack("<II", 7, 5)).args
    assert (a.major, a.minor, a.max_readahead, a.flags) == (7, 5, 0, 0)


@pytest.mark.parametrize("op", [P.Opcode.LOOKUP, P.Opcode.UNLINK, P.Opcode.RMDIR])
def test_name_requests(op: int) -> None:
    assert parse(op, b"file.txt\0").args.name == b"file.txt"


def test_forget_and_batch_forget() -> None:
    assert parse(P.Opcode.FORGET, struct.pack("<Q", 3)).args.nlookup == 3
    body = struct.pack("<II", 2, 0) + struct.pack("<QQ", 10, 1) + struct.pack("<QQ", 11, 7)
    assert parse(P.Opcode.BATCH_FORGET, body).args.forgets == [(10, 1), (11, 7)]


def test_getattr() -> None:
    a = parse(P.Opcode.GETATTR, struct.pack("<IIQ", P.FUSE_GETATTR_FH, 0, 99)).args
    assert (a.getattr_flags, a.fh) == (P.FUSE_GETATTR_FH, 99)


def test_setattr_every_field() -> None:
    valid = P.FATTR_MODE | P.FATTR_SIZE | P.FATTR_ATIME | P.FATTR_MTIME | P.FATTR_CTIME
    body = struct.pack("<IIQQQqqqIIIIIIII", valid, 0, 9, 4096, 0xABC, 10, -3, 30,
                       1, 999_999_999, 3, 0o104755, 0, 501, 502, 0)
    a = parse(P.Opcode.SETATTR, body).args
    assert a.valid == valid and a.fh == 9 and a.size == 4096 and a.lock_owner == 0xABC
    assert a.atime_ns == 10_000_000_001
    assert a.mtime_ns == -3_000_000_000 + 999_999_999
    assert a.ctime_ns == 30_000_000_003
    assert (a.mode, a.uid, a.gid) == (0o104755, 501, 502)


def test_mknod_mkdir_create() -> None:
    a = parse(P.Opcode.MKNOD, struct.pack("<IIII", 0o20644, 0x0103, 0o022, 0) + b"dev\0").args
    assert (a.name, a.mode, a.rdev, a.umask) == (b"dev", 0o20644, 0x0103, 0o022)
    a = parse(P.Opcode.MKDIR, struct.pack("<II", 0o755, 0o002) + b"d\0").args
    assert (a.name, a.mode, a.umask) == (b"d", 0o755, 0o002)
    a = parse(P.Opcode.CREATE, struct.pack("<IIII", 0o102, 0o100600, 0o077, 1) + b"f\0").args
    assert (a.name, a.flags, a.mode, a.umask, a.open_flags) == (b"f", 0o102, 0o100600, 0o077, 1)
    a = parse(P.Opcode.TMPFILE, struct.pack("<IIII", 0o20000002, 0o100600, 0, 0) + b"/\0").args
    assert (a.name, a.flags) == (b"/", 0o20000002)


def test_rename_rename2_link_symlink() -> None:
    a = parse(P.Opcode.RENAME, struct.pack("<Q", 8) + b"old\0new\0").args
    assert (a.newdir, a.name, a.newname, a.flags) == (8, b"old", b"new", 0)
    a = parse(P.Opcode.RENAME2, struct.pack("<QII", 9, 2, 0) + b"a\0b\0").args
    assert (a.newdir, a.name, a.newname, a.flags) == (9, b"a", b"b", 2)
    a = parse(P.Opcode.LINK, struct.pack("<Q", 42) + b"hard\0").args
    assert (a.oldnodeid, a.newname) == (42, b"hard")
    a = parse(P.Opcode.SYMLINK, b"lnk\0../some/target\0").args
    assert (a.name, a.target) == (b"lnk", b"../some/target")


@pytest.mark.parametrize("op", [P.Opcode.OPEN, P.Opcode.OPENDIR])
def test_open(op: int) -> None:
    a = parse(op, struct.pack("<II", 0o1102, 0)).args
    assert (a.flags, a.open_flags) == (0o1102, 0)


@pytest.mark.parametrize("op", [P.Opcode.READ, P.Opcode.READDIR, P.Opcode.READDIRPLUS])
def test_read(op: int) -> None:
    body = struct.pack("<QQIIQII", 3, 1 << 40, 1 << 20, P.FUSE_READ_LOCKOWNER, 77, 0o2, 0)
    a = parse(op, body).args
    assert (a.fh, a.offset, a.size, a.read_flags, a.lock_owner, a.flags) == (
        3, 1 << 40, 1 << 20, P.FUSE_READ_LOCKOWNER, 77, 0o2)


def test_write_data_is_a_view_of_the_request_buffer() -> None:
    payload = bytes(range(256)) * 16
    raw = bytearray(msg(P.Opcode.WRITE, struct.pack("<QQIIQII", 4, 8192, len(payload),
                                                    P.FUSE_WRITE_KILL_SUIDGID, 0, 0o2002, 0)
                        + payload))
    a = parse_request(memoryview(raw)).args
    assert (a.fh, a.offset, a.size, a.write_flags, a.flags) == (
        4, 8192, 4096, P.FUSE_WRITE_KILL_SUIDGID, 0o2002)
    assert isinstance(a.data, memoryview) and a.data == payload
    raw[80] ^= 0xFF  # the view aliases the buffer: no copy was made
    assert a.data[0] == 0xFF


@pytest.mark.parametrize("op", [P.Opcode.RELEASE, P.Opcode.RELEASEDIR])
def test_release(op: int) -> None:
    a = parse(op, struct.pack("<QIIQ", 6, 0o2, P.FUSE_RELEASE_FLUSH, 123)).args
    assert (a.fh, a.flags, a.release_flags, a.lock_owner) == (6, 0o2, P.FUSE_RELEASE_FLUSH, 123)


def test_flush_fsync() -> None:
    a = parse(P.Opcode.FLUSH, struct.pack("<QIIQ", 6, 0, 0, 55)).args
    assert (a.fh, a.lock_owner) == (6, 55)
    for op in (P.Opcode.FSYNC, P.Opcode.FSYNCDIR):
        a = parse(op, struct.pack("<QII", 6, 1, 0)).args
        assert (a.fh, a.fsync_flags) == (6, 1)


def test_xattr_requests() -> None:
    a = parse(P.Opcode.SETXATTR, struct.pack("<II", 5, 1) + b"user.k\0value").args
    assert (a.name, a.value, a.flags) == (b"user.k", b"value", 1)
    a = parse(P.Opcode.SETXATTR, struct.pack("<II", 0, 2) + b"user.empty\0").args
    assert (a.name, a.value, a.flags) == (b"user.empty", b"", 2)
    assert a.setxattr_flags == 0
    a = parse(P.Opcode.GETXATTR, struct.pack("<II", 64, 0) + b"user.k\0").args
    assert (a.name, a.size) == (b"user.k", 64)
    assert parse(P.Opcode.LISTXATTR, struct.pack("<II", 0, 0)).args.size == 0
    assert parse(P.Opcode.REMOVEXATTR, b"user.k\0").args.name == b"user.k"


@pytest.mark.parametrize("name", [b"u", b"user.k", b"system.posix_acl_access", b"n" * 255])
@pytest.mark.parametrize("value", [b"", b"v", b"\0" * 20])
@pytest.mark.parametrize("kill", [0, P.FUSE_SETXATTR_ACL_KILL_SGID])
def test_setxattr_in_both_layouts(name: bytes, value: bytes, kill: int) -> None:
    """FUSE_SETXATTR_EXT's 16-byte header and the old 8-byte one decode alike
    (the layout is told by where the name's NUL falls)."""
    ext = struct.pack("<IIII", len(value), 1, kill, 0) + name + b"\0" + value
    a = parse(P.Opcode.SETXATTR, ext).args
    assert (a.name, a.value, a.flags, a.setxattr_flags) == (name, value, 1, kill)
    compat = struct.pack("<II", len(value), 1) + name + b"\0" + value
    a = parse(P.Opcode.SETXATTR, compat).args
    assert (a.name, a.value, a.flags, a.setxattr_flags) == (name, value, 1, 0)


def test_misc_requests() -> None:
    assert parse(P.Opcode.ACCESS, struct.pack("<II", 4, 0)).args.mask == 4
    assert parse(P.Opcode.INTERRUPT, struct.pack("<Q", 1234)).args.unique == 1234
    a = parse(P.Opcode.FALLOCATE, struct.pack("<QQQII", 2, 4096, 8192, 3, 0)).args
    assert (a.fh, a.offset, a.length, a.mode) == (2, 4096, 8192, 3)
    a = parse(P.Opcode.LSEEK, struct.pack("<QQII", 2, 100, 3, 0)).args
    assert (a.fh, a.offset, a.whence) == (2, 100, 3)
    a = parse(P.Opcode.COPY_FILE_RANGE, struct.pack("<7Q", 1, 2, 3, 4, 5, 6, 7)).args
    assert (a.fh_in, a.off_in, a.nodeid_out, a.fh_out, a.off_out, a.length, a.flags) == (
        1, 2, 3, 4, 5, 6, 7)
    a = parse(P.Opcode.IOCTL, struct.pack("<QIIQII", 3, P.FUSE_IOCTL_32BIT, 0xC0105401,
                                          0xDEAD, 4, 8) + b"abcd").args
    assert (a.fh, a.flags, a.cmd, a.arg, a.in_size, a.out_size, a.data) == (
        3, P.FUSE_IOCTL_32BIT, 0xC0105401, 0xDEAD, 4, 8, b"abcd")


@pytest.mark.parametrize("op", [P.Opcode.STATFS, P.Opcode.READLINK, P.Opcode.DESTROY,
                                P.Opcode.SYNCFS, P.Opcode.POLL, P.Opcode.GETLK])
def test_bodyless_and_unimplemented_known_opcodes_decode(op: int) -> None:
    assert parse(op, bytes(16 if op in (P.Opcode.POLL,) else 0)).args is None


def test_extensions_are_stripped_from_the_end() -> None:
    ext = struct.pack("<II", 16, 32) + bytes(8)  # one 16-byte extension, total_extlen 2
    a = parse(P.Opcode.MKDIR, struct.pack("<II", 0o700, 0) + b"x\0" + ext, extlen=2).args
    assert a.name == b"x"


# --- malformed input --------------------------------------------------------------------------


def codec_error(buf: bytes) -> CodecError:
    with pytest.raises(CodecError) as ei:
        parse_request(memoryview(buf))
    return ei.value


def test_short_header() -> None:
    e = codec_error(msg(P.Opcode.GETATTR)[:39])
    assert (e.errno, e.unique) == (errno.EINVAL, 77)
    assert codec_error(b"\x01\x02").unique == 0


def test_length_mismatch() -> None:
    e = codec_error(msg(P.Opcode.LOOKUP, b"a\0", length=100))
    assert (e.errno, e.unique) == (errno.EINVAL, 77)


def test_extlen_larger_than_the_request() -> None:
    assert codec_error(msg(P.Opcode.LOOKUP, b"a\0", extlen=1)).errno == errno.EINVAL


def test_unknown_opcode_is_enosys() -> None:
    e = codec_error(msg(4096))
    assert (e.errno, e.unique) == (errno.ENOSYS, 77)


@pytest.mark.parametrize(("op", "body"), [
    (P.Opcode.LOOKUP, b"noterminator"),
    (P.Opcode.LOOKUP, b"\0"),  # empty name
    (P.Opcode.RENAME, struct.pack("<Q", 1) + b"only-one\0"),
    (P.Opcode.SYMLINK, b"name\0target-without-nul"),
    (P.Opcode.GETATTR, bytes(15)),
    (P.Opcode.SETATTR, bytes(87)),
    (P.Opcode.READ, bytes(39)),
    (P.Opcode.WRITE, struct.pack("<QQIIQII", 1, 0, 10, 0, 0, 0, 0) + b"short"),
    (P.Opcode.WRITE, struct.pack("<QQIIQII", 1, 0, 2, 0, 0, 0, 0) + b"long"),
    (P.Opcode.BATCH_FORGET, struct.pack("<II", 3, 0) + bytes(32)),
    (P.Opcode.SETXATTR, struct.pack("<II", 100, 0) + b"user.x\0short"),
    (P.Opcode.IOCTL, struct.pack("<QIIQII", 0, 0, 0, 0, 64, 0) + bytes(10)),
    (P.Opcode.INIT, bytes(4)),
    (P.Opcode.CREATE, struct.pack("<III", 0, 0, 0)),
    (P.Opcode.FORGET, b""),
])
def test_truncated_structs_are_einval(op: int, body: bytes) -> None:
    assert codec_error(msg(op, body)).errno == errno.EINVAL


def test_no_reply_opcodes_carry_unique_zero() -> None:
    assert codec_error(msg(P.Opcode.FORGET, b"")).unique == 0
    assert codec_error(msg(P.Opcode.BATCH_FORGET, bytes(4))).unique == 0


def test_names_longer_than_name_max() -> None:
    assert parse(P.Opcode.LOOKUP, b"n" * 255 + b"\0").args.name == b"n" * 255
    assert codec_error(msg(P.Opcode.LOOKUP, b"n" * 256 + b"\0")).errno == errno.ENAMETOOLONG
    body = struct.pack("<Q", 1) + b"ok\0" + b"m" * 300 + b"\0"
    assert codec_error(msg(P.Opcode.RENAME, body)).errno == errno.ENAMETOOLONG
    assert codec_error(msg(P.Opcode.SYMLINK, b"l\0" + b"t" * 4096 + b"\0")).errno == (
        errno.ENAMETOOLONG)
    assert parse(P.Opcode.SYMLINK, b"l\0" + b"t" * 4095 + b"\0").args.target == b"t" * 4095
    e = codec_error(msg(P.Opcode.GETXATTR, struct.pack("<II", 0, 0) + b"x" * 256 + b"\0"))
    assert e.errno == errno.ERANGE


def test_xattr_value_over_size_max() -> None:
    body = struct.pack("<II", 65537, 0) + b"user.x\0" + bytes(65537)
    assert codec_error(msg(P.Opcode.SETXATTR, body)).errno == errno.E2BIG


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_codec_error(data: bytes) -> None:
    try:
        parse_request(data)
    except CodecError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([*P.Opcode, 0, 4096, 2**32 - 1]), st.binary(max_size=120),
       st.integers(0, 3))
def test_arbitrary_bodies_with_valid_headers(opcode: int, body: bytes, extlen: int) -> None:
    try:
        parse_request(memoryview(msg(opcode, body, extlen=extlen)))
    except CodecError as e:
        assert e.errno > 0


# --- replies ----------------------------------------------------------------------------------


def test_reply_error_and_ok() -> None:
    assert out_header(C.reply_error(9, errno.ENOENT)) == (16, -errno.ENOENT, 9)
    r = C.reply(10, b"abc")
    assert out_header(r) == (19, 0, 10) and r[16:] == b"abc"
    assert C.reply(11) == struct.pack("<IiQ", 16, 0, 11)


def test_reply_iov_does_not_copy() -> None:
    page = bytearray(b"x" * 4096)
    views = [memoryview(page), memoryview(page)[:100]]
    out = C.reply_iov(5, views)
    assert out_header(out[0]) == (16 + 4196, 0, 5)
    assert out[1] is views[0] and out[2] is views[1]


def test_entry_out() -> None:
    a = FakeAttr()
    b = C.entry_out(a, 86400.0, 1.5)
    assert len(b) == 128
    assert struct.unpack_from("<QQQQII", b) == (12, 0, 86400, 1, 0, 500_000_000)
    check_attr(b, 40, a)


def test_negative_entry_out() -> None:
    b = C.negative_entry_out(2.25)
    assert struct.unpack_from("<QQQQII", b) == (0, 0, 2, 0, 250_000_000, 0)
    assert b[40:] == bytes(88)


def test_attr_out() -> None:
    a = FakeAttr(nlink=2**40)  # clamped to u32
    b = C.attr_out(a, 0.0)
    assert len(b) == 104 and struct.unpack_from("<QII", b) == (0, 0, 0)
    assert struct.unpack_from("<I", b, 16 + 64)[0] == 0xFFFFFFFF  # nlink


def test_small_payloads() -> None:
    assert struct.unpack("<QII", C.open_out(7, P.FOPEN_KEEP_CACHE)) == (7, 2, 0)
    assert struct.unpack("<II", C.write_out(4096)) == (4096, 0)
    assert struct.unpack("<II", C.getxattr_out(17)) == (17, 0)
    assert struct.unpack("<Q", C.lseek_out(1 << 33)) == (1 << 33,)
    assert struct.unpack("<iIII", C.ioctl_out(-25)) == (-25, 0, 0, 0)


def test_statfs_out() -> None:
    @dataclass
    class S:
        blocks: int = 100
        bfree: int = 90
        bavail: int = 80
        files: int = 1000
        ffree: int = 999
        bsize: int = 4096
        namelen: int = 255
        frsize: int = 4096

    b = C.statfs_out(S())
    assert len(b) == 80
    assert struct.unpack_from("<QQQQQIIII", b) == (100, 90, 80, 1000, 999, 4096, 255, 4096, 0)
    assert b[56:] == bytes(24)


def test_init_out() -> None:
    b = C.init_out(major=7, minor=38, max_readahead=131072, flags=(1 << 33) | 5,
                   max_background=64, congestion_threshold=48, max_write=1 << 20,
                   time_gran=1, max_pages=256)
    assert len(b) == 64
    assert struct.unpack_from("<IIIIHHIIHHI", b) == (
        7, 38, 131072, 5, 64, 48, 1 << 20, 1, 256, 0, 2)
    assert b[36:] == bytes(28)


def test_dirent_packing_alignment_and_limit() -> None:
    buf = C.DirentBuffer(64)
    assert buf.fits(b".")
    buf.add(b".", 1, 4, 1)  # 24 + 1 -> 32
    assert len(buf) == 32
    assert buf.fits(b"12345678")  # 24 + 8 = 32 -> exactly fills 64
    assert not buf.fits(b"123456789")
    buf.add(b"12345678", 9, 8, 2)
    v = buf.getvalue()
    assert struct.unpack_from("<QQII", v, 0) == (1, 1, 1, 4) and v[24:32] == b".\0\0\0\0\0\0\0"
    assert struct.unpack_from("<QQII", v, 32) == (9, 2, 8, 8) and v[56:64] == b"12345678"
    assert not buf.fits(b"x")


def test_direntplus_packing() -> None:
    a = FakeAttr(ino=30)
    buf = C.DirentBuffer(4096, plus=True)
    buf.add(b"abc", 30, 8, 7, C.entry_out(a, 1, 1))
    v = buf.getvalue()
    assert len(v) == 160  # 152 + 3 -> 155 -> aligned 160
    assert struct.unpack_from("<Q", v)[0] == 30
    check_attr(v, 40, a)
    assert struct.unpack_from("<QQII", v, 128) == (30, 7, 3, 8)
    assert v[152:160] == b"abc" + bytes(5)
    with pytest.raises(ValueError):
        buf.add(b"x", 1, 8, 8)


def test_notify_inval_inode_and_entry() -> None:
    @dataclass
    class InvalInode:
        ino: int
        off: int
        length: int

    @dataclass
    class InvalEntry:
        parent: int
        name: bytes

    b = C.encode_notify(InvalInode(12, -1, -1))
    assert out_header(b) == (40, P.NotifyCode.INVAL_INODE, 0)
    assert struct.unpack_from("<Qqq", b, 16) == (12, -1, -1)
    b = C.encode_notify(InvalEntry(1, b"gone"))
    assert out_header(b) == (16 + 16 + 5, P.NotifyCode.INVAL_ENTRY, 0)
    assert struct.unpack_from("<QII", b, 16) == (1, 4, 0)
    assert b[32:] == b"gone\0"


def test_notify_accepts_fsimpl_event_types() -> None:
    from fsimpl.types import InvalEntry, InvalInode

    assert len(C.encode_notify(InvalInode(3, 0, 4096))) == 40
    assert C.encode_notify(InvalEntry(1, b"n")).endswith(b"n\0")


def test_newer_kernels_opcodes_decode_for_a_quiet_enosys() -> None:
    # A 6.18 kernel sends STATX (52) even at protocol 7.38; it must not look malformed.
    assert parse(52, bytes(24)).args is None
    # COPY_FILE_RANGE_64 (53) is implemented: the same fuse_copy_file_range_in as 47
    a = parse(53, struct.pack("<7Q", 1, 2, 3, 4, 5, 6, 7)).args
    assert (a.fh_in, a.nodeid_out, a.length, a.flags) == (1, 3, 6, 7)


_ATTRS = st.builds(
    Attr, ino=st.integers(1, 2**64 - 1), mode=st.integers(0, 2**32 - 1),
    nlink=st.integers(0, 2**40), uid=st.integers(0, 2**32 - 1), gid=st.integers(0, 2**32 - 1),
    rdev=st.integers(0, 2**32 - 1), size=st.integers(0, 2**63 - 1),
    blocks=st.integers(0, 2**63 - 1), atime_ns=st.integers(-(2**62), 2**62),
    mtime_ns=st.integers(-(2**62), 2**62), ctime_ns=st.integers(-(2**62), 2**62))
_TIMEOUTS = st.sampled_from([0.0, 0.5, 1.0, 86400.0, 1e-9, 3.25])


@given(_ATTRS, st.integers(0, 2**64 - 1), _TIMEOUTS, _TIMEOUTS, st.integers(0, 2**64 - 1),
       st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1))
def test_one_pack_replies_are_the_composed_ones(attr, unique, et, at, gen, fh, oflags) -> None:
    """attr_reply / entry_reply / create_reply (one struct each, the fast path's and
    the generic path's) give exactly the bytes of reply() around attr_out / entry_out
    (+ open_out), times before 1970 included."""
    assert C.attr_reply(unique, attr, at) == C.reply(unique, C.attr_out(attr, at))
    assert C.entry_reply(unique, attr, et, at, gen) == C.reply(
        unique, C.entry_out(attr, et, at, gen))
    assert C.create_reply(unique, attr, et, at, gen, fh, oflags) == C.reply(
        unique, C.entry_out(attr, et, at, gen) + C.open_out(fh, oflags))
