"""Extended attributes, as tmpfs 6.6+ (shmem_xattr_handler_set, simple_xattr).

- namespaces: ``user.`` (regular files and directories only, since 6.6),
  ``trusted.``, ``security.``; ``system.posix_acl_*`` and anything else ->
  EOPNOTSUPP (fsimpl implements no POSIX ACLs; the kernel then falls back to
  mode bits, as with ``noacl``). trusted.* needs CAP_SYS_ADMIN: the kernel checks
  that before FUSE sees the request.
- names: the full name over 255 bytes -> ERANGE; an empty suffix -> EINVAL;
  values over 65536 bytes -> E2BIG (the VFS limits).
- user.* on other file types: EPERM to set/remove, ENODATA to get
  (xattr_permission).
- space: when nr_inodes is limited, each xattr costs 40 + len(full name) +
  len(value) bytes of ispace, charged before the old value is refunded (6.18
  tmpfs with nr_inodes=3: "user.a" with 978 bytes fits exactly in the 1024
  left, 979 gives ENOSPC, and replacing 900 bytes by 900 bytes gives ENOSPC).
- listxattr: insertion order. setxattr/removexattr set ctime.
"""

from __future__ import annotations

import errno

from .errors import FsError
from .files import FileOps
from .inode import Inode
from .state import counted
from .types import (
    XATTR_CREATE,
    XATTR_NAME_MAX,
    XATTR_REPLACE,
    XATTR_SIZE_MAX,
    XATTR_SPACE_OVERHEAD,
    Ctx,
)

NAMESPACES = (b"user.", b"trusted.", b"security.")


def xattr_space(name: bytes, value: bytes) -> int:
    """simple_xattr_space(): what one xattr costs of the ispace pool."""
    return XATTR_SPACE_OVERHEAD + len(name) + len(value)


class XattrOps(FileOps):
    """setxattr/getxattr/listxattr/removexattr."""

    @staticmethod
    def _check_xattr_name(name: bytes) -> bytes:
        if len(name) > XATTR_NAME_MAX:
            raise FsError(errno.ERANGE)
        for prefix in NAMESPACES:
            if name.startswith(prefix):
                if len(name) == len(prefix):
                    raise FsError(errno.EINVAL, "empty xattr name")
                return prefix
        raise FsError(errno.EOPNOTSUPP, f"xattr namespace of {name!r}")

    def _xattr_inode(self, ino: int, name: bytes, write: bool) -> Inode:
        inode = self._get(ino)
        prefix = self._check_xattr_name(name)
        if prefix == b"user." and not (inode.is_reg or inode.is_dir):
            raise FsError(errno.EPERM if write else errno.ENODATA)
        return inode

    @counted
    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int) -> None:
        if flags & ~(XATTR_CREATE | XATTR_REPLACE):
            raise FsError(errno.EINVAL)
        inode = self._xattr_inode(ino, name, write=True)
        if len(value) > XATTR_SIZE_MAX:
            raise FsError(errno.E2BIG)
        old = inode.xattrs.get(name)
        if old is not None and flags & XATTR_CREATE:
            raise FsError(errno.EEXIST)
        if old is None and flags & XATTR_REPLACE:
            raise FsError(errno.ENODATA)
        value = bytes(value)
        if self.max_inodes:
            cost = xattr_space(name, value)
            self._reserve_ispace(cost)
            inode.xattr_space += cost
            if old is not None:
                refund = xattr_space(name, old)
                self._unreserve_ispace(refund)
                inode.xattr_space -= refund
        inode.xattrs[name] = value
        inode.ctime_ns = self._now()

    @counted
    def getxattr(self, ino: int, name: bytes) -> bytes:
        inode = self._xattr_inode(ino, name, write=False)
        value = inode.xattrs.get(name)
        if value is None:
            raise FsError(errno.ENODATA)
        return value

    @counted
    def listxattr(self, ino: int, ctx: Ctx | None = None) -> list[bytes]:
        """All names; trusted.* only for root when ``ctx`` is given (the VFS
        hides them from callers without CAP_SYS_ADMIN; 6.18 tmpfs lists only
        security.* to uid 1000). Without ``ctx`` nothing is hidden."""
        names = list(self._get(ino).xattrs)
        if ctx is not None and ctx.uid != 0:
            names = [n for n in names if not n.startswith(b"trusted.")]
        return names

    @counted
    def removexattr(self, ino: int, name: bytes) -> None:
        inode = self._xattr_inode(ino, name, write=True)
        old = inode.xattrs.pop(name, None)
        if old is None:
            raise FsError(errno.ENODATA)
        if self.max_inodes:
            refund = xattr_space(name, old)
            self._unreserve_ispace(refund)
            inode.xattr_space -= refund
        inode.ctime_ns = self._now()
