"""The FUSE wire codec: bytes in -> typed requests, replies -> bytes. Pure, no I/O.

API (what the session and ops.py use)::

    parse_request(buf: memoryview | bytes) -> Request      # raises CodecError only
    class CodecError(Exception): errno: int; unique: int   # unique 0 = do not reply
    class Request: opcode, unique, nodeid, uid, gid, pid, args (one of the *In classes
                   below, or None for opcodes without a body: GETATTR-less ones such as
                   READLINK, STATFS, DESTROY)
    reply_error(unique, errno) -> bytes                     # fuse_out_header only
    reply(unique, payload=b"") -> bytes                     # header + one payload
    reply_iov(unique, parts) -> list[bytes | memoryview]    # header + parts, no copy
    encode_notify(event) -> bytes        # fsimpl InvalInode / InvalEntry, unique 0
    pack_attr, entry_out, negative_entry_out, attr_out, open_out, write_out, statfs_out,
    getxattr_out, lseek_out, init_out, ioctl_out, copy_file_range_out           # reply payloads
    DirentBuffer(size, plus=False)                          # READDIR(PLUS) packing

Why a stateless parser: every layout that depends on negotiation is fixed by the
INIT reply ops.py sends (protocol minor 7.38, no FUSE_SECURITY_CTX), so a request
can be decoded without knowing the connection. The one exception, SETXATTR
(FUSE_SETXATTR_EXT is granted only when a 7.33+ kernel offers it), carries its
layout in its own length (see _p_setxattr).
Extensions (``total_extlen``) are stripped from the end of the body and ignored.

Malformed input never escapes as anything but ``CodecError(errno, unique)``:
EINVAL for a short header, a length mismatch, a truncated struct or a name
without its NUL; ENAMETOOLONG for names over 255 bytes (ERANGE for xattr names,
as setxattr(2)); ENOSYS for an opcode shmfs does not know. For requests the
kernel does not expect an answer to (FORGET, BATCH_FORGET, NOTIFY_REPLY) the
error carries ``unique=0`` so the session writes nothing.

WRITE data is a memoryview slice of the request buffer (no copy); READ replies
are ``[header, *views]`` for ``os.writev`` (no copy of page data).
"""

from __future__ import annotations

import errno as E
import struct
from collections.abc import Callable, Sequence
from typing import Any

from mount.wire import protocol as P
from mount.wire.protocol import (  # the typed requests, re-exported for callers of the codec
    AccessIn,
    BatchForgetIn,
    CopyFileRangeIn,
    CreateIn,
    FallocateIn,
    FlushIn,
    ForgetIn,
    FsyncIn,
    GetattrIn,
    GetxattrIn,
    InitIn,
    InterruptIn,
    IoctlIn,
    LinkIn,
    ListxattrIn,
    LseekIn,
    MkdirIn,
    MknodIn,
    NameIn,
    OpenIn,
    ReadIn,
    ReleaseIn,
    RenameIn,
    Request,
    SetattrIn,
    SetxattrIn,
    SymlinkIn,
    WriteIn,
)

Buffer = bytes | bytearray | memoryview


class CodecError(Exception):
    """A request that cannot be decoded; answer ``-errno`` to ``unique`` (if nonzero)."""

    def __init__(self, errno: int, unique: int, msg: str = "") -> None:
        super().__init__(errno, unique, msg)
        self.errno = errno
        self.unique = unique
        self.msg = msg

    def __str__(self) -> str:
        return f"{E.errorcode.get(self.errno, self.errno)}: {self.msg}"


# --- parsing ----------------------------------------------------------------------------------


class _Malformed(Exception):
    """Internal: carries an errno up to parse_request, which adds the unique."""

    def __init__(self, errno: int, msg: str) -> None:
        super().__init__(msg)
        self.errno = errno


def _unpack(s: Any, body: memoryview, off: int = 0) -> tuple[int, ...]:
    if len(body) < off + s.size:
        raise _Malformed(E.EINVAL, f"truncated: need {off + s.size} bytes, have {len(body)}")
    return s.unpack_from(body, off)


def _names(body: memoryview, off: int, count: int, limit: int = P.FUSE_NAME_MAX,
           too_long: int = E.ENAMETOOLONG) -> tuple[list[bytes], int]:
    """``count`` NUL-terminated strings starting at ``off``; returns them and the end offset."""
    raw = bytes(body[off:])
    out: list[bytes] = []
    pos = 0
    for _ in range(count):
        nul = raw.find(b"\0", pos)
        if nul < 0:
            raise _Malformed(E.EINVAL, "name without NUL")
        name = raw[pos:nul]
        if not name:
            raise _Malformed(E.EINVAL, "empty name")
        if len(name) > limit:
            raise _Malformed(too_long, f"name of {len(name)} bytes")
        out.append(name)
        pos = nul + 1
    return out, off + pos


def plain_name(body: Buffer, off: int = 0) -> bytes | None:
    """The NUL-terminated name at ``off`` when it is well formed (1 to
    FUSE_NAME_MAX bytes, terminated), else None. Shared by the codec and
    Operations.handle_fast, which must decline exactly what the codec rejects."""
    raw = bytes(body[off:])
    nul = raw.find(b"\0")
    return raw[:nul] if 0 < nul <= P.FUSE_NAME_MAX else None


def _name(body: memoryview, off: int = 0) -> bytes:
    """One NUL-terminated name (LOOKUP, UNLINK, CREATE ...): _names without the loop."""
    name = plain_name(body, off)
    if name is not None:
        return name
    return _names(body, off, 1)[0][0]  # the error cases, with their messages


def _p_init(b: memoryview) -> InitIn:
    major, minor, ra, flags = _unpack(P.INIT_IN_BASE, b)
    if flags & P.FUSE_INIT_EXT and len(b) >= P.INIT_IN_BASE.size + 4:
        flags |= P.INIT_IN_FLAGS2.unpack_from(b, P.INIT_IN_BASE.size)[0] << 32
    return InitIn(major, minor, ra, flags)


def _p_init_compat(b: memoryview) -> InitIn:
    # A kernel older than 7.6 sends only major and minor; ops answers EPROTO to it.
    if len(b) >= P.INIT_IN_BASE.size:
        return _p_init(b)
    if len(b) < 8:
        raise _Malformed(E.EINVAL, "truncated fuse_init_in")
    major, minor = struct.unpack_from("<II", b)
    return InitIn(major, minor, 0, 0)


def _p_batch_forget(b: memoryview) -> BatchForgetIn:
    count, _ = _unpack(P.BATCH_FORGET_IN, b)
    need = P.BATCH_FORGET_IN.size + count * P.FORGET_ONE.size
    if len(b) < need:
        raise _Malformed(E.EINVAL, f"batch_forget of {count} needs {need} bytes, has {len(b)}")
    return BatchForgetIn(list(P.FORGET_ONE.iter_unpack(b[P.BATCH_FORGET_IN.size:need])))


def _ns(sec: int, nsec: int) -> int:
    return sec * 1_000_000_000 + nsec


def _p_setattr(b: memoryview) -> SetattrIn:
    (valid, _, fh, size, lock_owner, atime, mtime, ctime, atimensec, mtimensec, ctimensec,
     mode, _, uid, gid, _) = _unpack(P.SETATTR_IN, b)
    for bit, nsec in ((P.FATTR_ATIME, atimensec), (P.FATTR_MTIME, mtimensec),
                      (P.FATTR_CTIME, ctimensec)):
        if valid & bit and nsec >= 1_000_000_000:
            # utimensat's EINVAL (the kernel never sends one). Stored, an atime of
            # 2^63-1 s + 4.29 s no longer fitted fuse_attr: every GETATTR then failed.
            raise _Malformed(E.EINVAL, f"setattr: {nsec} nanoseconds")
    return SetattrIn(valid, fh, size, lock_owner, _ns(atime, atimensec), _ns(mtime, mtimensec),
                     _ns(ctime, ctimensec), mode, uid, gid)


def _p_mknod(b: memoryview) -> MknodIn:
    mode, rdev, umask, _ = _unpack(P.MKNOD_IN, b)
    return MknodIn(_name(b, P.MKNOD_IN.size), mode, rdev, umask)


def _p_mkdir(b: memoryview) -> MkdirIn:
    mode, umask = _unpack(P.MKDIR_IN, b)
    return MkdirIn(_name(b, P.MKDIR_IN.size), mode, umask)


def _p_rename(b: memoryview) -> RenameIn:
    (newdir,) = _unpack(P.RENAME_IN, b)
    (name, newname), _ = _names(b, P.RENAME_IN.size, 2)
    return RenameIn(newdir, name, newname, 0)


def _p_rename2(b: memoryview) -> RenameIn:
    newdir, flags, _ = _unpack(P.RENAME2_IN, b)
    (name, newname), _ = _names(b, P.RENAME2_IN.size, 2)
    return RenameIn(newdir, name, newname, flags)


def _p_link(b: memoryview) -> LinkIn:
    (old,) = _unpack(P.LINK_IN, b)
    return LinkIn(old, _name(b, P.LINK_IN.size))


def _p_symlink(b: memoryview) -> SymlinkIn:
    # Entry name first, then the target (fuse_symlink's in_args order).
    (name,), end = _names(b, 0, 1)
    (target,), _ = _names(b, end, 1, limit=P.FUSE_PATH_MAX - 1)
    return SymlinkIn(name, target)


def _p_create(b: memoryview) -> CreateIn:
    flags, mode, umask, open_flags = _unpack(P.CREATE_IN, b)
    return CreateIn(_name(b, P.CREATE_IN.size), flags, mode, umask, open_flags)


def _p_read(b: memoryview) -> ReadIn:
    fh, off, size, read_flags, lock_owner, flags, _ = _unpack(P.READ_IN, b)
    return ReadIn(fh, off, size, read_flags, lock_owner, flags)


def _p_write(b: memoryview) -> WriteIn:
    fh, off, size, write_flags, lock_owner, flags, _ = _unpack(P.WRITE_IN, b)
    start = P.WRITE_IN.size
    if len(b) - start != size:
        raise _Malformed(E.EINVAL, f"write of {size} bytes carries {len(b) - start}")
    return WriteIn(fh, off, size, write_flags, lock_owner, flags, b[start:])


def _p_setxattr(b: memoryview) -> SetxattrIn:
    """Both layouts of fuse_setxattr_in: the 16-byte one (size, flags,
    setxattr_flags, padding) that FUSE_SETXATTR_EXT brings (7.33+, granted
    whenever offered) and the 8-byte one of older kernels. The body ends with
    name\0 + ``size`` bytes of value in both, so the name's NUL sits at
    len - size - 1; in the short layout everything between offset 8 and it is
    the (NUL-free) name, in the long one offset 9 is a NUL (setxattr_flags is
    0 or 1). That tells them apart without knowing what INIT granted."""
    size, flags = _unpack(P.SETXATTR_IN_COMPAT, b)
    if size > P.XATTR_SIZE_MAX:
        raise _Malformed(E.E2BIG, f"xattr value of {size} bytes")
    start, setxattr_flags = P.SETXATTR_IN_COMPAT.size, 0
    name_nul = len(b) - size - 1
    if name_nul > P.SETXATTR_IN_EXT.size and b"\0" in bytes(b[start:name_nul]):
        setxattr_flags = _unpack(P.SETXATTR_IN_EXT, b)[2]
        start = P.SETXATTR_IN_EXT.size
    (name,), end = _names(b, start, 1, P.XATTR_NAME_MAX, E.ERANGE)
    if len(b) - end < size:
        raise _Malformed(E.EINVAL, f"xattr value of {size} bytes truncated")
    return SetxattrIn(name, bytes(b[end:end + size]), flags, setxattr_flags)


def _p_getxattr(b: memoryview) -> GetxattrIn:
    size, _ = _unpack(P.GETXATTR_IN, b)
    (name,), _ = _names(b, P.GETXATTR_IN.size, 1, P.XATTR_NAME_MAX, E.ERANGE)
    return GetxattrIn(name, size)


def _p_removexattr(b: memoryview) -> NameIn:
    (name,), _ = _names(b, 0, 1, P.XATTR_NAME_MAX, E.ERANGE)
    return NameIn(name)


def _p_ioctl(b: memoryview) -> IoctlIn:
    fh, flags, cmd, arg, in_size, out_size = _unpack(P.IOCTL_IN, b)
    start = P.IOCTL_IN.size
    if len(b) - start < in_size:
        raise _Malformed(E.EINVAL, f"ioctl in_size {in_size} truncated")
    return IoctlIn(fh, flags, cmd, arg, in_size, out_size, bytes(b[start:start + in_size]))


def _simple(s: Any, cls: Callable[..., Any], keep: Sequence[int]) -> Callable[[memoryview], Any]:
    """Parser for a fixed struct: pass the fields at positions ``keep`` to ``cls``."""

    def parse(b: memoryview) -> Any:
        fields = _unpack(s, b)
        return cls(*(fields[i] for i in keep))

    return parse


def _none(b: memoryview) -> None:
    return None


_O = P.Opcode
_PARSERS: dict[int, Callable[[memoryview], Any]] = {
    _O.INIT: _p_init_compat,
    _O.DESTROY: _none,
    _O.LOOKUP: lambda b: NameIn(_name(b)),
    _O.FORGET: _simple(P.FORGET_IN, ForgetIn, (0,)),
    _O.BATCH_FORGET: _p_batch_forget,
    _O.GETATTR: _simple(P.GETATTR_IN, GetattrIn, (0, 2)),
    _O.SETATTR: _p_setattr,
    _O.READLINK: _none,
    _O.SYMLINK: _p_symlink,
    _O.MKNOD: _p_mknod,
    _O.MKDIR: _p_mkdir,
    _O.UNLINK: lambda b: NameIn(_name(b)),
    _O.RMDIR: lambda b: NameIn(_name(b)),
    _O.RENAME: _p_rename,
    _O.RENAME2: _p_rename2,
    _O.LINK: _p_link,
    _O.OPEN: _simple(P.OPEN_IN, OpenIn, (0, 1)),
    _O.OPENDIR: _simple(P.OPEN_IN, OpenIn, (0, 1)),
    _O.CREATE: _p_create,
    _O.TMPFILE: _p_create,
    _O.READ: _p_read,
    _O.READDIR: _p_read,
    _O.READDIRPLUS: _p_read,
    _O.WRITE: _p_write,
    _O.STATFS: _none,
    _O.RELEASE: _simple(P.RELEASE_IN, ReleaseIn, (0, 1, 2, 3)),
    _O.RELEASEDIR: _simple(P.RELEASE_IN, ReleaseIn, (0, 1, 2, 3)),
    _O.FLUSH: _simple(P.FLUSH_IN, FlushIn, (0, 3)),
    _O.FSYNC: _simple(P.FSYNC_IN, FsyncIn, (0, 1)),
    _O.FSYNCDIR: _simple(P.FSYNC_IN, FsyncIn, (0, 1)),
    _O.SETXATTR: _p_setxattr,
    _O.GETXATTR: _p_getxattr,
    _O.LISTXATTR: _simple(P.GETXATTR_IN, ListxattrIn, (0,)),
    _O.REMOVEXATTR: _p_removexattr,
    _O.ACCESS: _simple(P.ACCESS_IN, AccessIn, (0,)),
    _O.INTERRUPT: _simple(P.INTERRUPT_IN, InterruptIn, (0,)),
    _O.IOCTL: _p_ioctl,
    _O.FALLOCATE: _simple(P.FALLOCATE_IN, FallocateIn, (0, 1, 2, 3)),
    _O.LSEEK: _simple(P.LSEEK_IN, LseekIn, (0, 1, 2)),
    _O.COPY_FILE_RANGE: _simple(P.COPY_FILE_RANGE_IN, CopyFileRangeIn, range(7)),
    _O.COPY_FILE_RANGE_64: _simple(P.COPY_FILE_RANGE_IN, CopyFileRangeIn, range(7)),
    _O.NOTIFY_REPLY: _none,
}
# Known opcodes shmfs does not implement: decoded (body ignored) so that ops answers
# ENOSYS -- which the kernel remembers for most of them -- without a codec warning.
for _op in (_O.GETLK, _O.SETLK, _O.SETLKW, _O.BMAP, _O.POLL, _O.SETUPMAPPING,
            _O.REMOVEMAPPING, _O.SYNCFS, _O.STATX):
    _PARSERS[_op] = _none


_IN_HEADER_SIZE = P.IN_HEADER.size
_unpack_header = P.IN_HEADER.unpack_from
_NO_REPLY = frozenset(int(op) for op in P.NO_REPLY_OPCODES)  # plain ints: cheaper to hash


def parse_request(buf: Buffer) -> Request:
    """Decode one message read from /dev/fuse. Raises only CodecError."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    n = len(mv)
    if n < _IN_HEADER_SIZE:
        unique = P.OUT_HEADER.unpack_from(mv)[2] if n >= 16 else 0
        raise CodecError(E.EINVAL, unique, f"short header: {n} bytes")
    length, opcode, unique, nodeid, uid, gid, pid, extlen, _ = _unpack_header(mv)
    if length != n:
        raise CodecError(E.EINVAL, 0 if opcode in _NO_REPLY else unique,
                         f"header says {length} bytes, read {n}")
    end = n - extlen * 8 if extlen else n
    if end < _IN_HEADER_SIZE:
        raise CodecError(E.EINVAL, 0 if opcode in _NO_REPLY else unique,
                         f"total_extlen {extlen} exceeds the request")
    parser = _PARSERS.get(opcode)
    if parser is None:
        raise CodecError(E.ENOSYS, 0 if opcode in _NO_REPLY else unique, f"opcode {opcode}")
    try:
        args = parser(mv[_IN_HEADER_SIZE:end])
    except _Malformed as e:
        name = P.Opcode(opcode).name
        raise CodecError(e.errno, 0 if opcode in _NO_REPLY else unique, f"{name}: {e}") from None
    return Request(opcode, unique, nodeid, uid, gid, pid, args)


# --- replies ----------------------------------------------------------------------------------


def reply_error(unique: int, errno: int) -> bytes:
    """A bare fuse_out_header answering ``-errno``."""
    return P.OUT_HEADER.pack(P.OUT_HEADER.size, -errno, unique)


def reply(unique: int, payload: Buffer = b"") -> bytes:
    """A success reply carrying one payload (copied: use reply_iov for page data)."""
    return P.OUT_HEADER.pack(P.OUT_HEADER.size + len(payload), 0, unique) + payload


def reply_iov(unique: int, parts: Sequence[Buffer]) -> list[Buffer]:
    """A success reply as ``[header, *parts]`` for os.writev; the parts are not copied."""
    total = sum(len(p) if not isinstance(p, memoryview) else p.nbytes for p in parts)
    return [P.OUT_HEADER.pack(P.OUT_HEADER.size + total, 0, unique), *parts]


_TIMEOUTS: dict[float, tuple[int, int]] = {}  # the few timeouts in use, split once


def _split_timeout(seconds: float) -> tuple[int, int]:
    split = _TIMEOUTS.get(seconds)
    if split is not None:
        return split
    if seconds <= 0:
        split = (0, 0)
    else:
        sec = int(seconds)
        split = (sec, min(round((seconds - sec) * 1e9), 999_999_999))
    if len(_TIMEOUTS) < 64:
        _TIMEOUTS[seconds] = split
    return split


_pack_attr = P.ATTR.pack
_NS = 1_000_000_000
_U32 = 0xFFFFFFFF


def _attr_fields(attr: Any) -> tuple[int, ...]:
    """struct fuse_attr's fields from an fsimpl Attr (times in ns, split into sec + nsec)."""
    at, mt, ct = attr.atime_ns, attr.mtime_ns, attr.ctime_ns
    return (attr.ino, attr.size, attr.blocks, at // _NS, mt // _NS, ct // _NS,
            at % _NS, mt % _NS, ct % _NS, attr.mode & _U32, min(attr.nlink, _U32),
            attr.uid & _U32, attr.gid & _U32, attr.rdev & _U32, attr.blksize, 0)


def pack_attr(attr: Any) -> bytes:
    """struct fuse_attr from an fsimpl Attr (times in ns, split into sec + nsec)."""
    return _pack_attr(*_attr_fields(attr))


# Whole replies in one pack (header + fuse_attr_out / fuse_entry_out [+ fuse_open_out]):
# the same bytes as reply(unique, attr_out(...)) etc., without three packs and two
# concatenations per GETATTR / LOOKUP / CREATE (0.5 us of ~7; docs/performance.md)
_ATTR_FMT = P.ATTR.format.lstrip("<")
_ATTR_REPLY = struct.Struct("<IiQ" + P.ATTR_OUT_HEAD.format.lstrip("<") + _ATTR_FMT)
_ENTRY_REPLY = struct.Struct("<IiQ" + P.ENTRY_OUT_HEAD.format.lstrip("<") + _ATTR_FMT)
_CREATE_REPLY = struct.Struct(_ENTRY_REPLY.format + P.OPEN_OUT.format.lstrip("<"))


def attr_reply(unique: int, attr: Any, attr_timeout: float) -> bytes:
    """The whole GETATTR/SETATTR reply: ``reply(unique, attr_out(attr, attr_timeout))``."""
    a_s, a_n = _split_timeout(attr_timeout)
    return _ATTR_REPLY.pack(_ATTR_REPLY.size, 0, unique, a_s, a_n, 0, *_attr_fields(attr))


def entry_reply(unique: int, attr: Any, entry_timeout: float, attr_timeout: float,
                generation: int = 0) -> bytes:
    """The whole reply carrying one entry:
    ``reply(unique, entry_out(attr, entry_timeout, attr_timeout, generation))``."""
    e_s, e_n = _split_timeout(entry_timeout)
    a_s, a_n = _split_timeout(attr_timeout)
    return _ENTRY_REPLY.pack(_ENTRY_REPLY.size, 0, unique, attr.ino, generation, e_s, a_s,
                             e_n, a_n, *_attr_fields(attr))


def create_reply(unique: int, attr: Any, entry_timeout: float, attr_timeout: float,
                 generation: int, fh: int, open_flags: int) -> bytes:
    """The whole CREATE reply: ``reply(unique, entry_out(...) + open_out(fh, open_flags))``."""
    e_s, e_n = _split_timeout(entry_timeout)
    a_s, a_n = _split_timeout(attr_timeout)
    return _CREATE_REPLY.pack(_CREATE_REPLY.size, 0, unique, attr.ino, generation, e_s, a_s,
                              e_n, a_n, *_attr_fields(attr), fh, open_flags, 0)


def entry_out(attr: Any, entry_timeout: float, attr_timeout: float, generation: int = 0) -> bytes:
    """struct fuse_entry_out for LOOKUP/MKNOD/MKDIR/SYMLINK/LINK/CREATE (nodeid = ino)."""
    e_s, e_n = _split_timeout(entry_timeout)
    a_s, a_n = _split_timeout(attr_timeout)
    return P.ENTRY_OUT_HEAD.pack(attr.ino, generation, e_s, a_s, e_n, a_n) + pack_attr(attr)


def negative_entry_out(entry_timeout: float) -> bytes:
    """fuse_entry_out with nodeid 0: "no such name", cached for ``entry_timeout``."""
    e_s, e_n = _split_timeout(entry_timeout)
    return P.ENTRY_OUT_HEAD.pack(0, 0, e_s, 0, e_n, 0) + bytes(P.ATTR.size)


def attr_out(attr: Any, attr_timeout: float) -> bytes:
    """struct fuse_attr_out for GETATTR/SETATTR."""
    a_s, a_n = _split_timeout(attr_timeout)
    return P.ATTR_OUT_HEAD.pack(a_s, a_n, 0) + pack_attr(attr)


def open_out(fh: int, open_flags: int) -> bytes:
    return P.OPEN_OUT.pack(fh, open_flags, 0)


def write_out(size: int) -> bytes:
    return P.WRITE_OUT.pack(size, 0)


def statfs_out(st: Any) -> bytes:
    """struct fuse_kstatfs from an fsimpl StatFs."""
    return P.KSTATFS.pack(st.blocks, st.bfree, st.bavail, st.files, st.ffree, st.bsize,
                          st.namelen, st.frsize, 0)


def getxattr_out(size: int) -> bytes:
    return P.GETXATTR_OUT.pack(size, 0)


def copy_file_range_out(bytes_copied: int) -> bytes:
    return P.COPY_FILE_RANGE_OUT.pack(bytes_copied)


def lseek_out(offset: int) -> bytes:
    return P.LSEEK_OUT.pack(offset)


def ioctl_out(result: int, flags: int = 0, in_iovs: int = 0, out_iovs: int = 0) -> bytes:
    return P.IOCTL_OUT.pack(result, flags, in_iovs, out_iovs)


def init_out(*, major: int, minor: int, max_readahead: int, flags: int, max_background: int,
             congestion_threshold: int, max_write: int, time_gran: int, max_pages: int) -> bytes:
    """struct fuse_init_out (64 bytes; flags2 carries bits 32..63 of ``flags``)."""
    return P.INIT_OUT.pack(major, minor, max_readahead, flags & 0xFFFFFFFF, max_background,
                           congestion_threshold, max_write, time_gran, max_pages, 0,
                           flags >> 32)


class DirentBuffer:
    """Packs fuse_dirent (or fuse_direntplus) records, 8-byte aligned, into ``size`` bytes.

    ``fits(name)`` says whether the next record still fits; callers check it
    *before* doing anything with side effects (READDIRPLUS bumps nlookup), then
    ``add`` it. ``off`` is the cookie that resumes the listing after this entry.
    """

    __slots__ = ("_buf", "plus", "size")

    def __init__(self, size: int, plus: bool = False) -> None:
        self.size = size
        self.plus = plus
        self._buf = bytearray()

    def record_size(self, name: bytes) -> int:
        head = P.DIRENTPLUS_HEAD_SIZE if self.plus else P.DIRENT.size
        return P.dirent_align(head + len(name))

    def fits(self, name: bytes) -> bool:
        return len(self._buf) + self.record_size(name) <= self.size

    def add(self, name: bytes, ino: int, d_type: int, off: int, entry: bytes = b"") -> None:
        """Append one record; ``entry`` is the fuse_entry_out for READDIRPLUS."""
        if self.plus:
            if len(entry) != P.ENTRY_OUT_SIZE:
                raise ValueError("READDIRPLUS record needs a fuse_entry_out")
            self._buf += entry
        rec = P.DIRENT.pack(ino, off, len(name), d_type) + name
        self._buf += rec
        self._buf += bytes(P.dirent_align(len(rec)) - len(rec))

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def __len__(self) -> int:
        return len(self._buf)


def encode_notify(event: Any) -> bytes:
    """A FUSE notification (unique 0, error = notify code) for an fsimpl event.

    InvalInode(ino, off, length): off -1 invalidates attributes only, length -1
    (or 0) to EOF. InvalEntry(parent, name): the name is followed by its NUL.
    """
    if hasattr(event, "data"):
        body = struct.pack("<QQII", event.ino, event.off, len(event.data), 0) + event.data
        code = P.NotifyCode.STORE
    elif hasattr(event, "name"):
        name = bytes(event.name)
        body = P.NOTIFY_INVAL_ENTRY_OUT.pack(event.parent, len(name), 0) + name + b"\0"
        code = P.NotifyCode.INVAL_ENTRY
    else:
        body = P.NOTIFY_INVAL_INODE_OUT.pack(event.ino, event.off, event.length)
        code = P.NotifyCode.INVAL_INODE
    return P.OUT_HEADER.pack(P.OUT_HEADER.size + len(body), code, 0) + body
