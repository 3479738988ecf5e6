"""When S_ISUID and S_ISGID go: the kernel's rules, for the daemon to apply.

With FUSE_HANDLE_KILLPRIV_V2 the kernel leaves dropping the set-id bits to
the filesystem, and tells it the part of the decision it alone can make (the
caller lacks CAP_FSETID) with FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID on a
truncate and FUSE_OPEN_KILL_SUIDGID. The rest is decided here, as fs/attr.c
and fs/inode.c decide it for tmpfs (Linux 6.18):

- ``modify_kill`` -- write, truncate, open(O_TRUNC), fallocate and punch by a
  caller without CAP_FSETID (setattr_should_drop_suidgid via
  file_remove_privs / dentry_needs_remove_privs): regular files only;
  S_ISUID always; S_ISGID when group-exec is set or the caller is not in the
  file's group (in_group_p, supplementary groups included).
- ``chown_kill`` -- chown/chgrp, also chown(f, -1, -1), of a non-directory
  (chown_common: ATTR_KILL_SUID | setattr_should_drop_sgid): S_ISUID always,
  even for root; S_ISGID when group-exec is set, or the caller is neither in
  the file's (old) group nor has CAP_FSETID.

Where the kernel's answer does not reach the daemon (an empty SETATTR, from
chown(f, -1, -1) or from file_remove_privs before a write or fallocate; the
group membership), ``Ctx.in_group`` / ``Ctx.capable`` ask the caller's
credentials (mount/server/creds.py).
"""

from __future__ import annotations

import stat

from .inode import Inode
from .types import CAP_FSETID, Ctx


def should_drop_sgid(inode: Inode, ctx: Ctx | None) -> bool:
    """setattr_should_drop_sgid: S_ISGID set and (group-exec set, or the caller
    is neither in the file's group nor has CAP_FSETID). ``ctx`` None: a caller
    without capabilities outside every group."""
    mode = inode.mode
    if not mode & stat.S_ISGID:
        return False
    if mode & stat.S_IXGRP:
        return True
    if ctx is None:
        return True
    return not (ctx.in_group(inode.gid) or ctx.capable(CAP_FSETID))


def modify_kill(inode: Inode, ctx: Ctx | None) -> int:
    """Bits a data change by a caller *without* CAP_FSETID removes."""
    if not inode.is_reg:
        return 0
    mode = inode.mode
    kill = mode & stat.S_ISUID
    if mode & stat.S_ISGID and (mode & stat.S_IXGRP or ctx is None
                                or not ctx.in_group(inode.gid)):
        kill |= stat.S_ISGID
    return kill


def chown_kill(inode: Inode, ctx: Ctx | None) -> int:
    """Bits a chown of ``inode`` by ``ctx`` removes (evaluate before the change)."""
    if inode.is_dir:
        return 0
    kill = inode.mode & stat.S_ISUID
    if should_drop_sgid(inode, ctx):
        kill |= stat.S_ISGID
    return kill
