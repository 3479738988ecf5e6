"""Extended attributes, as tmpfs 6.6+ (shmem_xattr_handler_set, simple_xattr).

- namespaces: ``user.`` (regular files and directories only, since 6.6),
  ``trusted.``, ``security.``, and the two POSIX ACLs
  ``system.posix_acl_access`` / ``system.posix_acl_default`` (below); anything
  else -> EOPNOTSUPP. trusted.* needs CAP_SYS_ADMIN: the kernel checks that
  before FUSE sees the request.
- POSIX ACLs, as simple_set_acl on tmpfs (the rules are in acl.py): they live
  in the inode, not among the xattrs, and cost no ispace. Setting one ignores
  XATTR_CREATE/REPLACE, as the VFS does; an empty value or a bare header
  removes it, and removing an absent one succeeds. An access ACL that says no
  more than the mode is not kept: only the mode changes (getxattr then gives
  ENODATA); an extended one sets the mode's rwx bits from its owner, mask and
  other entries. ``kill_sgid`` (FUSE_SETXATTR_ACL_KILL_SGID: the caller is
  neither in the file's group nor has CAP_FSETID) drops S_ISGID with an
  access ACL (posix_acl_update_mode); removal has no such flag, so the caller
  in ``ctx`` decides (primary group only). A default ACL on a non-directory is
  EACCES (removing one is a no-op); symlinks have no ACLs (EOPNOTSUPP to set,
  ENODATA to get). The kernel has already checked ownership and validity:
  fsimpl checks validity again and nothing else.
- names: the full name over 255 bytes -> ERANGE; an empty suffix -> EINVAL;
  values over 65536 bytes -> E2BIG (the VFS limits).
- user.* on other file types: EPERM to set/remove, ENODATA to get
  (xattr_permission).
- space: when nr_inodes is limited, each xattr costs 40 + len(full name) +
  len(value) bytes of ispace, charged before the old value is refunded (6.18
  tmpfs with nr_inodes=3: "user.a" with 978 bytes fits exactly in the 1024
  left, 979 gives ENOSPC, and replacing 900 bytes by 900 bytes gives ENOSPC).
- listxattr: the ACLs first (access, default), then the others in insertion
  order. setxattr/removexattr set ctime.
"""

from __future__ import annotations

import errno
import stat

from . import acl, fsflags
from .errors import FsError
from .files import FileOps
from .inode import Inode
from .state import counted
from .types import (
    CAP_FSETID,
    XATTR_CREATE,
    XATTR_NAME_MAX,
    XATTR_REPLACE,
    XATTR_SIZE_MAX,
    XATTR_SPACE_OVERHEAD,
    Ctx,
)

NAMESPACES = (b"user.", b"trusted.", b"security.")
ACL_NAMES = (acl.XATTR_POSIX_ACL_ACCESS, acl.XATTR_POSIX_ACL_DEFAULT)


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
    def setxattr(
        self, ino: int, name: bytes, value: bytes, flags: int, *, kill_sgid: bool = False
    ) -> None:
        """Set ``name``; ``kill_sgid`` only matters for the access ACL (see above)."""
        if flags & ~(XATTR_CREATE | XATTR_REPLACE):
            raise FsError(errno.EINVAL)
        fsflags.check_modify(self._get(ino))  # xattr_permission
        if name in ACL_NAMES:
            if len(value) > XATTR_SIZE_MAX:
                raise FsError(errno.E2BIG)
            self._set_acl(self._get(ino), name, acl.from_xattr(value), kill_sgid)
            return
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
        if name in ACL_NAMES:
            found = self._acl_of(self._get(ino), name)
            if found is None:
                raise FsError(errno.ENODATA)
            return acl.to_xattr(found)
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
        inode = self._get(ino)
        names = [n for n in ACL_NAMES if self._acl_of(inode, n) is not None]
        names += inode.xattrs
        if ctx is not None and ctx.uid != 0:
            names = [n for n in names if not n.startswith(b"trusted.")]
        return names

    @counted
    def removexattr(self, ino: int, name: bytes, ctx: Ctx | None = None) -> None:
        """Remove ``name``; ``ctx`` (the caller) only matters for the access
        ACL of a setgid file (see above)."""
        fsflags.check_modify(self._get(ino))  # xattr_permission
        if name in ACL_NAMES:
            inode = self._get(ino)
            # posix_acl_update_mode: not in the group and no CAP_FSETID
            kill = ctx is not None and not (ctx.in_group(inode.gid)
                                            or ctx.capable(CAP_FSETID))
            self._set_acl(inode, name, None, kill)
            return
        inode = self._xattr_inode(ino, name, write=True)
        old = inode.xattrs.pop(name, None)
        if old is None:
            raise FsError(errno.ENODATA)
        if self.max_inodes:
            refund = xattr_space(name, old)
            self._unreserve_ispace(refund)
            inode.xattr_space -= refund
        inode.ctime_ns = self._now()

    # ---------------------------------------------------------------- POSIX ACLs
    @staticmethod
    def _acl_of(inode: Inode, name: bytes) -> acl.Acl | None:
        return inode.acl_access if name == acl.XATTR_POSIX_ACL_ACCESS else inode.acl_default

    def _set_acl(self, inode: Inode, name: bytes, new: acl.Acl | None, kill_sgid: bool) -> None:
        """set_posix_acl + simple_set_acl: ``new`` None removes the ACL."""
        if inode.is_lnk:
            raise FsError(errno.EOPNOTSUPP, "symlinks have no ACLs")
        is_default = name == acl.XATTR_POSIX_ACL_DEFAULT
        if is_default and not inode.is_dir:
            if new is not None:
                raise FsError(errno.EACCES, "default ACL on a non-directory")
            return
        if new is not None:
            acl.check_valid(new)
        if is_default:
            inode.acl_default = new
        else:
            if new is not None:
                inode.mode, extended = acl.equiv_mode(new, inode.mode)
                if not extended:
                    new = None
            if kill_sgid:
                inode.mode &= ~stat.S_ISGID
            inode.acl_access = new
        inode.ctime_ns = self._now()
