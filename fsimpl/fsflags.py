"""Inode flags (chattr/lsattr): the set tmpfs supports, and their enforcement.

tmpfs (mm/shmem.c: SHMEM_FL_USER_MODIFIABLE) keeps FS_IMMUTABLE_FL,
FS_APPEND_FL, FS_NODUMP_FL and FS_NOATIME_FL; anything else is EOPNOTSUPP, as
are the fsxattr fields that have no flag (extent sizes, project ids). The
kernel enforces S_IMMUTABLE / S_APPEND through inode->i_flags, which a FUSE
inode never has (fuse_attr carries no such flags), so every check the VFS
makes on them is made here instead, at the request that reaches the daemon
(fs/namei.c may_open, may_delete, may_create via inode_permission; fs/attr.c
notify_change; fs/open.c do_sys_truncate/do_ftruncate; vfs_fallocate;
vfs_link; xattr_permission). The kernel itself checks the capability rules
before it sends FS_IOC_SETFLAGS / FS_IOC_FSSETXATTR (vfs_fileattr_set:
owner or CAP_FOWNER, CAP_LINUX_IMMUTABLE to change append/immutable); they
are checked here again because a FUSE ioctl carries the caller.
"""

from __future__ import annotations

import errno
import os
import struct

from .errors import FsError
from .inode import Inode
from .state import FsCore, counted
from .types import CAP_FOWNER, CAP_LINUX_IMMUTABLE, Ctx

FS_IMMUTABLE_FL = 0x00000010
FS_APPEND_FL = 0x00000020
FS_NODUMP_FL = 0x00000040
FS_NOATIME_FL = 0x00000080
MODIFIABLE = FS_IMMUTABLE_FL | FS_APPEND_FL | FS_NODUMP_FL | FS_NOATIME_FL

FS_XFLAG_IMMUTABLE = 0x00000008
FS_XFLAG_APPEND = 0x00000010
FS_XFLAG_NODUMP = 0x00000080
FS_XFLAG_NOATIME = 0x00000040
_XFLAG_OF = {FS_IMMUTABLE_FL: FS_XFLAG_IMMUTABLE, FS_APPEND_FL: FS_XFLAG_APPEND,
             FS_NODUMP_FL: FS_XFLAG_NODUMP, FS_NOATIME_FL: FS_XFLAG_NOATIME}

# struct fsxattr: xflags, extsize, nextents, projid, cowextsize, pad[8]
FSXATTR = struct.Struct("<IIIII8x")

STICKY_LIKE = FS_IMMUTABLE_FL | FS_APPEND_FL  # "no unlink, rename or link"


def to_xflags(flags: int) -> int:
    return sum(x for f, x in _XFLAG_OF.items() if flags & f)


def from_xflags(xflags: int) -> int | None:
    """Inode flags for ``xflags``; None when some bit has no tmpfs flag."""
    flags = 0
    rest = xflags
    for f, x in _XFLAG_OF.items():
        if xflags & x:
            flags |= f
            rest &= ~x
    return None if rest else flags


# ---------------------------------------------------------------- enforcement
def _eperm(what: str) -> FsError:
    return FsError(errno.EPERM, what)


def check_open(inode: Inode, flags: int) -> None:
    """may_open: no write access or O_TRUNC to an immutable file; an append-only
    file opens for writing only with O_APPEND, never with O_TRUNC."""
    f = inode.fsflags
    if not f & STICKY_LIKE:
        return
    writing = flags & os.O_ACCMODE != os.O_RDONLY
    if f & FS_IMMUTABLE_FL and (writing or flags & os.O_TRUNC):
        raise _eperm("immutable")
    if f & FS_APPEND_FL and ((writing and not flags & os.O_APPEND) or flags & os.O_TRUNC):
        raise _eperm("append-only")


def check_truncate(inode: Inode, by_fd: bool) -> None:
    """truncate(2) needs write permission (EPERM when immutable) and is refused
    on append-only files (do_sys_truncate); ftruncate(2) only the latter
    (do_ftruncate). Writes through a descriptor opened before the flag was
    set are not checked at all on tmpfs, so they are not here either."""
    f = inode.fsflags
    if f & FS_APPEND_FL or (f & FS_IMMUTABLE_FL and not by_fd):
        raise _eperm("immutable or append-only")


def check_modify(inode: Inode) -> None:
    """truncate, chmod, chown, explicit times, xattr changes, links, removal:
    refused on an immutable or append-only inode."""
    if inode.fsflags & STICKY_LIKE:
        raise _eperm("immutable or append-only")


def check_dir_create(parent: Inode) -> None:
    """may_create: an immutable directory takes no new entries."""
    if parent.fsflags & FS_IMMUTABLE_FL:
        raise _eperm("immutable directory")


def check_dir_remove(parent: Inode, victim: Inode) -> None:
    """may_delete: nothing leaves an append-only or immutable directory, and an
    immutable or append-only inode keeps its name."""
    if parent.fsflags & STICKY_LIKE or victim.fsflags & STICKY_LIKE:
        raise _eperm("immutable or append-only")


def check_times(inode: Inode, explicit: bool) -> None:
    """utimensat: explicit times need neither flag (notify_change's
    ATTR_TIMES_SET); "now" is a write, refused only when immutable."""
    if explicit:
        check_modify(inode)
    elif inode.fsflags & FS_IMMUTABLE_FL:
        raise _eperm("immutable")


# ------------------------------------------------------------------ the ioctls
class FlagOps(FsCore):
    """FS_IOC_GETFLAGS / SETFLAGS and FS_IOC_FSGETXATTR / FSSETXATTR."""

    @counted
    def get_flags(self, ino: int) -> int:
        return self._get(ino).fsflags

    @counted
    def set_flags(self, ino: int, flags: int, ctx: Ctx | None = None) -> None:
        """shmem_fileattr_set: only the four flags (else EOPNOTSUPP), ctime moves.
        ``ctx``: owner or CAP_FOWNER; CAP_LINUX_IMMUTABLE to change append or
        immutable (vfs_fileattr_set, repeated here: the ioctl carries the caller)."""
        inode = self._get(ino)
        if not (inode.is_reg or inode.is_dir):
            raise FsError(errno.ENOTTY)
        if ctx is not None:
            if ctx.uid != inode.uid and not ctx.capable(CAP_FOWNER):
                raise FsError(errno.EPERM, "not the owner")
            if (flags ^ inode.fsflags) & STICKY_LIKE and not ctx.capable(CAP_LINUX_IMMUTABLE):
                raise FsError(errno.EPERM, "CAP_LINUX_IMMUTABLE")
        if flags & ~MODIFIABLE:
            raise FsError(errno.EOPNOTSUPP, f"flags {flags & ~MODIFIABLE:#x}")
        inode.fsflags = flags
        inode.ctime_ns = self._now()

    @counted
    def get_fsxattr(self, ino: int) -> bytes:
        return FSXATTR.pack(to_xflags(self._get(ino).fsflags), 0, 0, 0, 0)

    @counted
    def set_fsxattr(self, ino: int, data: bytes, ctx: Ctx | None = None) -> None:
        """FS_IOC_FSSETXATTR: the xflags that map to tmpfs's flags; any other
        field or flag (fileattr_has_fsx) is EOPNOTSUPP."""
        xflags, extsize, _nextents, projid, cowextsize = FSXATTR.unpack(data[:FSXATTR.size])
        flags = from_xflags(xflags)
        if flags is None or extsize or projid or cowextsize:
            inode = self._get(ino)
            if ctx is not None and ctx.uid != inode.uid and not ctx.capable(CAP_FOWNER):
                raise FsError(errno.EPERM, "not the owner")
            raise FsError(errno.EOPNOTSUPP, "fsxattr fields tmpfs has not")
        self.set_flags(ino, flags, ctx)
