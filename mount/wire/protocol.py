"""FUSE wire vocabulary: constants, struct layouts (``/usr/include/linux/fuse.h``) and
the typed request records that mount.wire.codec decodes into (re-exported there).

The header installed on the build machine (linux-libc-dev) is the authority; it
describes protocol 7.38, which is also the highest minor shmfs answers with (a
newer kernel, e.g. 6.18 at 7.44, speaks down to it). All layouts are
little-endian and padded to 8 bytes exactly as in the C header; every
``struct.Struct`` below is named after its C struct and checked for size by the
codec tests. Only what shmfs parses or sends is listed.

Times in requests and in ``fuse_attr`` are declared ``uint64_t`` in the header
but the kernel treats the seconds as a signed ``time64_t``; the layouts below
use signed 64-bit fields for seconds so that pre-1970 timestamps round-trip.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

# --- versions ---------------------------------------------------------------------------------

FUSE_KERNEL_VERSION = 7
FUSE_KERNEL_MINOR_VERSION = 38  # what this implementation speaks (linux/fuse.h on the build host)
FUSE_MIN_KERNEL_MINOR = 31  # oldest kernel minor accepted (Linux 5.4); layouts below assume it
FUSE_ROOT_ID = 1
FUSE_NAME_MAX = 255  # NAME_MAX; longer names are refused with ENAMETOOLONG
FUSE_PATH_MAX = 4096  # PATH_MAX including the NUL; symlink targets
XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536


class Opcode(enum.IntEnum):
    """``enum fuse_opcode``."""

    LOOKUP = 1
    FORGET = 2  # no reply
    GETATTR = 3
    SETATTR = 4
    READLINK = 5
    SYMLINK = 6
    MKNOD = 8
    MKDIR = 9
    UNLINK = 10
    RMDIR = 11
    RENAME = 12
    LINK = 13
    OPEN = 14
    READ = 15
    WRITE = 16
    STATFS = 17
    RELEASE = 18
    FSYNC = 20
    SETXATTR = 21
    GETXATTR = 22
    LISTXATTR = 23
    REMOVEXATTR = 24
    FLUSH = 25
    INIT = 26
    OPENDIR = 27
    READDIR = 28
    RELEASEDIR = 29
    FSYNCDIR = 30
    GETLK = 31
    SETLK = 32
    SETLKW = 33
    ACCESS = 34
    CREATE = 35
    INTERRUPT = 36
    BMAP = 37
    DESTROY = 38
    IOCTL = 39
    POLL = 40
    NOTIFY_REPLY = 41  # no reply
    BATCH_FORGET = 42  # no reply
    FALLOCATE = 43
    READDIRPLUS = 44
    RENAME2 = 45
    LSEEK = 46
    COPY_FILE_RANGE = 47
    SETUPMAPPING = 48
    REMOVEMAPPING = 49
    SYNCFS = 50
    TMPFILE = 51
    # Newer than the 7.38 header on the build host; a 6.18 kernel sends them anyway
    # (and remembers our ENOSYS): STATX since 7.39, COPY_FILE_RANGE_64 since 7.45.
    STATX = 52
    COPY_FILE_RANGE_64 = 53


# Requests the kernel sends without waiting for an answer: never reply to them.
NO_REPLY_OPCODES = frozenset({Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.NOTIFY_REPLY})


class NotifyCode(enum.IntEnum):
    """``enum fuse_notify_code``: the ``error`` field of a message with unique 0."""

    POLL = 1
    INVAL_INODE = 2
    INVAL_ENTRY = 3
    STORE = 4
    RETRIEVE = 5
    DELETE = 6


# --- INIT flags (fuse_init_in.flags / fuse_init_out.flags; flags2 holds bits 32..63) ----------

FUSE_ASYNC_READ = 1 << 0
FUSE_POSIX_LOCKS = 1 << 1
FUSE_FILE_OPS = 1 << 2
FUSE_ATOMIC_O_TRUNC = 1 << 3
FUSE_EXPORT_SUPPORT = 1 << 4
FUSE_BIG_WRITES = 1 << 5
FUSE_DONT_MASK = 1 << 6
FUSE_SPLICE_WRITE = 1 << 7
FUSE_SPLICE_MOVE = 1 << 8
FUSE_SPLICE_READ = 1 << 9
FUSE_FLOCK_LOCKS = 1 << 10
FUSE_HAS_IOCTL_DIR = 1 << 11
FUSE_AUTO_INVAL_DATA = 1 << 12
FUSE_DO_READDIRPLUS = 1 << 13
FUSE_READDIRPLUS_AUTO = 1 << 14
FUSE_ASYNC_DIO = 1 << 15
FUSE_WRITEBACK_CACHE = 1 << 16
FUSE_NO_OPEN_SUPPORT = 1 << 17
FUSE_PARALLEL_DIROPS = 1 << 18
FUSE_HANDLE_KILLPRIV = 1 << 19
FUSE_POSIX_ACL = 1 << 20
FUSE_ABORT_ERROR = 1 << 21
FUSE_MAX_PAGES = 1 << 22
FUSE_CACHE_SYMLINKS = 1 << 23
FUSE_NO_OPENDIR_SUPPORT = 1 << 24
FUSE_EXPLICIT_INVAL_DATA = 1 << 25
FUSE_MAP_ALIGNMENT = 1 << 26
FUSE_SUBMOUNTS = 1 << 27
FUSE_HANDLE_KILLPRIV_V2 = 1 << 28
FUSE_SETXATTR_EXT = 1 << 29
FUSE_INIT_EXT = 1 << 30
FUSE_INIT_RESERVED = 1 << 31
FUSE_SECURITY_CTX = 1 << 32
FUSE_HAS_INODE_DAX = 1 << 33
FUSE_HAS_EXPIRE_ONLY = 1 << 35
FUSE_OVER_IO_URING = 1 << 41  # 7.42: requests over io_uring (mount/server/uring_fuse.py)

# --- other flag words -------------------------------------------------------------------------

FATTR_MODE = 1 << 0
FATTR_UID = 1 << 1
FATTR_GID = 1 << 2
FATTR_SIZE = 1 << 3
FATTR_ATIME = 1 << 4
FATTR_MTIME = 1 << 5
FATTR_FH = 1 << 6
FATTR_ATIME_NOW = 1 << 7
FATTR_MTIME_NOW = 1 << 8
FATTR_LOCKOWNER = 1 << 9
FATTR_CTIME = 1 << 10
FATTR_KILL_SUIDGID = 1 << 11

FOPEN_DIRECT_IO = 1 << 0
FOPEN_KEEP_CACHE = 1 << 1
FOPEN_NONSEEKABLE = 1 << 2
FOPEN_CACHE_DIR = 1 << 3
FOPEN_STREAM = 1 << 4
FOPEN_NOFLUSH = 1 << 5
FOPEN_PARALLEL_DIRECT_WRITES = 1 << 6

FUSE_RELEASE_FLUSH = 1 << 0
FUSE_RELEASE_FLOCK_UNLOCK = 1 << 1
FUSE_GETATTR_FH = 1 << 0
FUSE_WRITE_CACHE = 1 << 0
FUSE_WRITE_LOCKOWNER = 1 << 1
FUSE_WRITE_KILL_SUIDGID = 1 << 2
FUSE_READ_LOCKOWNER = 1 << 1
FUSE_FSYNC_FDATASYNC = 1 << 0
FUSE_OPEN_KILL_SUIDGID = 1 << 0
FUSE_SETXATTR_ACL_KILL_SGID = 1 << 0
FUSE_EXPIRE_ONLY = 1 << 0

FUSE_IOCTL_COMPAT = 1 << 0
FUSE_IOCTL_UNRESTRICTED = 1 << 1
FUSE_IOCTL_RETRY = 1 << 2
FUSE_IOCTL_32BIT = 1 << 3
FUSE_IOCTL_DIR = 1 << 4
FUSE_IOCTL_COMPAT_X32 = 1 << 5
FUSE_IOCTL_MAX_IOV = 256

# --- struct layouts ---------------------------------------------------------------------------

# struct fuse_in_header: len, opcode, unique, nodeid, uid, gid, pid, total_extlen, padding
IN_HEADER = struct.Struct("<IIQQIIIHH")
# struct fuse_out_header: len, error (negative errno or notify code), unique
OUT_HEADER = struct.Struct("<IiQ")

# struct fuse_attr: ino size blocks atime mtime ctime atimensec mtimensec ctimensec
#                   mode nlink uid gid rdev blksize flags
ATTR = struct.Struct("<QQQqqqIIIIIIIIII")
# struct fuse_entry_out: nodeid generation entry_valid attr_valid entry_valid_nsec
#                        attr_valid_nsec (+ fuse_attr)
ENTRY_OUT_HEAD = struct.Struct("<QQQQII")
ENTRY_OUT_SIZE = ENTRY_OUT_HEAD.size + ATTR.size
# struct fuse_attr_out: attr_valid attr_valid_nsec dummy (+ fuse_attr)
ATTR_OUT_HEAD = struct.Struct("<QII")
# struct fuse_kstatfs: blocks bfree bavail files ffree bsize namelen frsize padding spare[6]
KSTATFS = struct.Struct("<QQQQQIIII24x")

FORGET_IN = struct.Struct("<Q")  # nlookup
BATCH_FORGET_IN = struct.Struct("<II")  # count, dummy
FORGET_ONE = struct.Struct("<QQ")  # nodeid, nlookup
GETATTR_IN = struct.Struct("<IIQ")  # getattr_flags, dummy, fh
# struct fuse_setattr_in: valid padding fh size lock_owner atime mtime ctime atimensec
#                         mtimensec ctimensec mode unused4 uid gid unused5
SETATTR_IN = struct.Struct("<IIQQQqqqIIIIIIII")
MKNOD_IN = struct.Struct("<IIII")  # mode, rdev, umask, padding
MKDIR_IN = struct.Struct("<II")  # mode, umask
RENAME_IN = struct.Struct("<Q")  # newdir
RENAME2_IN = struct.Struct("<QII")  # newdir, flags, padding
LINK_IN = struct.Struct("<Q")  # oldnodeid
OPEN_IN = struct.Struct("<II")  # flags, open_flags
CREATE_IN = struct.Struct("<IIII")  # flags, mode, umask, open_flags
OPEN_OUT = struct.Struct("<QII")  # fh, open_flags, padding
RELEASE_IN = struct.Struct("<QIIQ")  # fh, flags, release_flags, lock_owner
FLUSH_IN = struct.Struct("<QIIQ")  # fh, unused, padding, lock_owner
READ_IN = struct.Struct("<QQIIQII")  # fh offset size read_flags lock_owner flags padding
WRITE_IN = struct.Struct("<QQIIQII")  # fh offset size write_flags lock_owner flags padding
WRITE_OUT = struct.Struct("<II")  # size, padding
FSYNC_IN = struct.Struct("<QII")  # fh, fsync_flags, padding
# fuse_setxattr_in as sent when FUSE_SETXATTR_EXT is *not* negotiated
# (FUSE_COMPAT_SETXATTR_IN_SIZE): size, flags
SETXATTR_IN_COMPAT = struct.Struct("<II")
SETXATTR_IN_EXT = struct.Struct("<IIII")  # size, flags, setxattr_flags, padding
GETXATTR_IN = struct.Struct("<II")  # size, padding
GETXATTR_OUT = struct.Struct("<II")  # size, padding
ACCESS_IN = struct.Struct("<II")  # mask, padding
# struct fuse_init_in: major minor max_readahead flags (flags2 unused[11] since 7.36)
INIT_IN_BASE = struct.Struct("<IIII")
INIT_IN_FLAGS2 = struct.Struct("<I")
# struct fuse_init_out: major minor max_readahead flags max_background congestion_threshold
#                       max_write time_gran max_pages map_alignment flags2 unused[7]
INIT_OUT = struct.Struct("<IIIIHHIIHHI28x")
INTERRUPT_IN = struct.Struct("<Q")  # unique
IOCTL_IN = struct.Struct("<QIIQII")  # fh, flags, cmd, arg, in_size, out_size
IOCTL_OUT = struct.Struct("<iIII")  # result, flags, in_iovs, out_iovs
FALLOCATE_IN = struct.Struct("<QQQII")  # fh, offset, length, mode, padding
LSEEK_IN = struct.Struct("<QQII")  # fh, offset, whence, padding
LSEEK_OUT = struct.Struct("<Q")  # offset
# fh_in off_in nodeid_out fh_out off_out len flags
COPY_FILE_RANGE_IN = struct.Struct("<QQQQQQQ")
COPY_FILE_RANGE_OUT = struct.Struct("<Q")  # bytes_copied (COPY_FILE_RANGE_64, 7.45)
COPY_FILE_RANGE_MAX32 = 0xFFFFFFFF & ~0xFFF  # what fuse_write_out.size can report

# struct fuse_dirent: ino off namelen type (+ name, padded to 8)
DIRENT = struct.Struct("<QQII")
DIRENTPLUS_HEAD_SIZE = ENTRY_OUT_SIZE + DIRENT.size

NOTIFY_INVAL_INODE_OUT = struct.Struct("<Qqq")  # ino, off, len
NOTIFY_INVAL_ENTRY_OUT = struct.Struct("<QII")  # parent, namelen, flags


def dirent_align(n: int) -> int:
    """FUSE_DIRENT_ALIGN: round a record length up to 8 bytes."""
    return (n + 7) & ~7


# --- typed requests (what parse_request returns) ----------------------------------------------


@dataclass(slots=True)
class Request:
    """One decoded request: the fuse_in_header fields plus per-opcode ``args``."""

    opcode: int
    unique: int
    nodeid: int
    uid: int
    gid: int
    pid: int
    args: Any = None


@dataclass(slots=True)
class InitIn:
    major: int
    minor: int
    max_readahead: int
    flags: int  # flags | flags2 << 32 (flags2 only when the kernel set FUSE_INIT_EXT)


@dataclass(slots=True)
class NameIn:  # LOOKUP, UNLINK, RMDIR, REMOVEXATTR
    name: bytes


@dataclass(slots=True)
class ForgetIn:
    nlookup: int


@dataclass(slots=True)
class BatchForgetIn:
    forgets: list[tuple[int, int]]  # (nodeid, nlookup)


@dataclass(slots=True)
class GetattrIn:
    getattr_flags: int
    fh: int


@dataclass(slots=True)
class SetattrIn:
    valid: int  # FATTR_* bits; fields below are meaningful only when their bit is set
    fh: int
    size: int
    lock_owner: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    mode: int
    uid: int
    gid: int


@dataclass(slots=True)
class MknodIn:
    name: bytes
    mode: int
    rdev: int
    umask: int


@dataclass(slots=True)
class MkdirIn:
    name: bytes
    mode: int
    umask: int


@dataclass(slots=True)
class RenameIn:  # RENAME (flags 0) and RENAME2
    newdir: int
    name: bytes
    newname: bytes
    flags: int


@dataclass(slots=True)
class LinkIn:
    oldnodeid: int
    newname: bytes


@dataclass(slots=True)
class SymlinkIn:
    name: bytes
    target: bytes


@dataclass(slots=True)
class OpenIn:  # OPEN, OPENDIR
    flags: int
    open_flags: int


@dataclass(slots=True)
class CreateIn:  # CREATE, TMPFILE
    name: bytes
    flags: int
    mode: int
    umask: int
    open_flags: int


@dataclass(slots=True)
class ReadIn:  # READ, READDIR, READDIRPLUS
    fh: int
    offset: int
    size: int
    read_flags: int
    lock_owner: int
    flags: int


@dataclass(slots=True)
class WriteIn:
    fh: int
    offset: int
    size: int
    write_flags: int
    lock_owner: int
    flags: int
    data: memoryview  # slice of the request buffer: valid until the next read of /dev/fuse


@dataclass(slots=True)
class FlushIn:
    fh: int
    lock_owner: int


@dataclass(slots=True)
class ReleaseIn:  # RELEASE, RELEASEDIR
    fh: int
    flags: int
    release_flags: int
    lock_owner: int


@dataclass(slots=True)
class FsyncIn:  # FSYNC, FSYNCDIR
    fh: int
    fsync_flags: int


@dataclass(slots=True)
class SetxattrIn:
    name: bytes
    value: bytes
    flags: int
    setxattr_flags: int = 0  # FUSE_SETXATTR_ACL_KILL_SGID (FUSE_SETXATTR_EXT layout only)


@dataclass(slots=True)
class GetxattrIn:
    name: bytes
    size: int


@dataclass(slots=True)
class ListxattrIn:
    size: int


@dataclass(slots=True)
class AccessIn:
    mask: int


@dataclass(slots=True)
class InterruptIn:
    unique: int


@dataclass(slots=True)
class IoctlIn:
    fh: int
    flags: int
    cmd: int
    arg: int
    in_size: int
    out_size: int
    data: bytes


@dataclass(slots=True)
class FallocateIn:
    fh: int
    offset: int
    length: int
    mode: int


@dataclass(slots=True)
class LseekIn:
    fh: int
    offset: int
    whence: int


@dataclass(slots=True)
class CopyFileRangeIn:
    fh_in: int
    off_in: int
    nodeid_out: int
    fh_out: int
    off_out: int
    length: int
    flags: int
