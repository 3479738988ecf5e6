"""Value types exchanged with the mount layer (internal-api.md section 3).

Constants here carry the kernel's names and values so the rest of fsimpl can
say ``BOGO_DIRENT_SIZE`` or ``RENAME_EXCHANGE`` as mm/shmem.c and
include/uapi/linux/fs.h do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

PAGE_SIZE = 4096
# tmpfs's s_maxbytes = MAX_LFS_FILESIZE = LLONG_MAX on 64-bit. The kernel tmpfs accepts
# ftruncate(fd, 2**63 - 1) (checked on 6.18), so fsimpl does too; internal-api.md's
# "rounded down to a page" would make that EFBIG.
MAX_FILE_SIZE = 2**63 - 1
NAME_MAX = 255
SYMLINK_MAX = PAGE_SIZE - 1  # target + NUL must fit in a page (ENAMETOOLONG beyond)
SHORT_SYMLINK_LEN = 128  # shmem keeps shorter targets inline; longer ones cost a page
BOGO_DIRENT_SIZE = 20  # mm/shmem.c: directory i_size grows by this per entry
BOGO_INODE_SIZE = 1024  # mm/shmem.c (6.6+): ispace one inode costs
XATTR_SPACE_OVERHEAD = 40  # simple_xattr_space(): sizeof(struct simple_xattr) on 64-bit
XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536

# renameat2 flags (include/uapi/linux/fs.h)
RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1
RENAME_WHITEOUT = 1 << 2

# setxattr flags (include/uapi/linux/xattr.h)
XATTR_CREATE = 0x1
XATTR_REPLACE = 0x2

# fallocate modes (include/uapi/linux/falloc.h)
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE = 0, 1, 2, 3, 4

RELATIME_WINDOW_NS = 24 * 3600 * 10**9  # relatime: refresh an atime older than a day


@dataclass(slots=True)
class Ctx:
    """Who asks (from the FUSE request header). ``umask`` is what fsimpl
    applies to a new inode's mode when its directory has no default ACL: the
    request's umask (FUSE_DONT_MASK hands that job to the daemon); 0 when the
    mode arrives already masked."""

    uid: int
    gid: int
    pid: int
    umask: int = 0
    # The caller's supplementary groups and effective capabilities, which the
    # FUSE header does not carry: a reader ``(pid, uid, gid) -> Creds | None``
    # the mount layer supplies (mount/server/creds.py), called at most once
    # and only when a rule needs it. None answers as the header alone can:
    # groups = {gid}, capabilities = uid 0.
    creds: Callable[[int, int, int], Creds | None] | None = None
    _read: tuple[Creds | None] | None = field(default=None, init=False, repr=False,
                                             compare=False)

    def _creds(self) -> Creds | None:
        if self.creds is None:
            return None
        if self._read is None:
            self._read = (self.creds(self.pid, self.uid, self.gid),)
        return self._read[0]

    def in_group(self, gid: int) -> bool:
        """in_group_p: ``gid`` is the caller's fsgid or one of its groups."""
        if gid == self.gid:
            return True
        c = self._creds()
        return c is not None and gid in c.groups

    def capable(self, cap: int) -> bool:
        """capable(cap) of the caller in the mount's user namespace. Without
        ``creds`` uid 0 counts as capable; with creds that cannot be read
        (the caller is gone, another pid namespace) nobody does."""
        if self.creds is None:
            return self.uid == 0
        c = self._creds()
        return c is not None and bool(c.caps >> cap & 1)


CAP_CHOWN = 0
CAP_FOWNER = 3
CAP_FSETID = 4
CAP_LINUX_IMMUTABLE = 9
CAP_SYS_ADMIN = 21


@dataclass(frozen=True, slots=True)
class Creds:
    """What /proc/<pid>/status tells about a caller beyond the FUSE header."""

    groups: frozenset[int]
    caps: int  # CapEff, a bit per capability


@dataclass(slots=True)
class Attr:
    """What GETATTR returns; times in ns since the epoch."""

    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    blksize: int = 4096
    btime_ns: int = 0  # birth time (statx STATX_BTIME), tmpfs's i_crtime


@dataclass(slots=True)
class StatFs:
    """statfs(2) numbers, as shmem_statfs fills them (zeros when unlimited)."""

    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    bsize: int = 4096
    namelen: int = 255
    frsize: int = 4096


@dataclass(slots=True)
class FsOptions:
    """Mount options with tmpfs meaning; 0 means unlimited for both limits."""

    size_bytes: int = 0
    nr_inodes: int = 0
    mode: int = 0o1777
    uid: int = 0
    gid: int = 0
    #: page-table memory of all windows (fsimpl/ptbudget.py); None: size/64, >= 16 MiB
    pt_size_bytes: int | None = None


@dataclass(slots=True)
class InvalInode:
    """Ask the kernel to drop cached data (off/length, length -1 = to EOF; off -1 = attrs)."""

    ino: int
    off: int
    length: int


@dataclass(slots=True)
class StorePage:
    """Put ``data`` into the kernel's page cache of ``ino`` at ``off`` (NOTIFY_STORE)."""

    ino: int
    off: int
    data: bytes


@dataclass(slots=True)
class InvalEntry:
    """Ask the kernel to drop the dentry ``name`` under ``parent``."""

    parent: int
    name: bytes
