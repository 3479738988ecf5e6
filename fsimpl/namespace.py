"""Names: lookup, mknod/mkdir/symlink/link, unlink/rmdir, rename, readdir.

Every operation that hands the kernel an entry (lookup, mknod, mkdir, symlink,
link; create in files.py) raises the inode's nlookup by one. Modes arrive as
the caller asked for them: the mount layer negotiates FUSE_DONT_MASK, and
fsimpl applies ``ctx.umask`` itself -- or, when the directory has a default
ACL, ignores the umask and lets the ACL shape the mode (state._new_child,
acl.inherit), as tmpfs does under SB_POSIXACL.

ispace rules (mm/shmem.c 6.6+, checked on 6.18 with nr_inodes=8: the root takes
one slot, 7 files fit, then create, link and setxattr all give ENOSPC):
every new inode reserves one slot, ``link`` reserves one too (shmem_link), and
unlinking a name of a non-directory that keeps other links gives it back
(shmem_unlink); the last name's slot returns at eviction.
"""

from __future__ import annotations

import errno
import stat
from collections.abc import Iterator

from . import fsflags
from .attrs import AttrOps
from .errors import FsError
from .inode import Inode
from .state import counted
from .types import (
    BOGO_INODE_SIZE,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    RENAME_WHITEOUT,
    SHORT_SYMLINK_LEN,
    SYMLINK_MAX,
    Attr,
    Ctx,
)

_MKNOD_TYPES = (stat.S_IFREG, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK)
DT_DIR = stat.S_IFDIR >> 12


class NamespaceOps(AttrOps):
    """Directory-entry operations of ShmFs."""

    # ----------------------------------------------------------------- helpers
    def _link_child(self, parent: Inode, name: bytes, child: Inode) -> None:
        """d_instantiate + the parent's times; directories bump the parent's nlink."""
        assert parent.dir is not None
        parent.dir.add(name, child.ino)
        if child.is_dir:
            child.parent = parent.ino
            child.nlink = 2
            parent.nlink += 1
        else:
            child.nlink += 1
        parent.mtime_ns = parent.ctime_ns = self._now()

    def _prepare_new(self, parent_ino: int, name: bytes) -> Inode:
        parent = self._dir(parent_ino)
        self._check_name(name)
        assert parent.dir is not None
        if name in parent.dir:
            raise FsError(errno.EEXIST)
        if parent.nlink == 0:
            raise FsError(errno.ENOENT, "directory was removed")
        fsflags.check_dir_create(parent)
        return parent

    def _drop_link(self, dir_inode: Inode, victim: Inode, now: int) -> None:
        """What shmem_unlink/shmem_rmdir do to the victim once its name is gone."""
        if victim.is_dir:
            victim.nlink = 0
            dir_inode.nlink -= 1
        else:
            if victim.nlink > 1:
                self._unreserve_ispace(BOGO_INODE_SIZE)
            victim.nlink -= 1
        victim.ctime_ns = now
        self._maybe_evict(victim)

    # ----------------------------------------------------------------- lookups
    @counted
    def lookup(self, parent: int, name: bytes) -> Attr:
        """LOOKUP. "." and ".." reach a FUSE daemon only from the export
        operations (fuse_get_dentry, fuse_get_parent: open_by_handle_at, NFS),
        with ``parent`` the node id from a file handle, of any type: "." is
        that inode itself, ".." a directory's parent. An inode without links
        is ENOENT, which the kernel turns into ESTALE: a handle outlives its
        file only while the kernel still holds the inode, as on tmpfs."""
        if name == b"." or name == b"..":
            inode = self._get(parent)
            if inode.nlink == 0:
                raise FsError(errno.ENOENT, "no links: a stale handle")
            if name == b".":
                return self._entry(inode)
            if inode.dir is None:
                raise FsError(errno.ENOTDIR)
            return self._entry(self._get(inode.parent))
        p = self._dir(parent)
        assert p.dir is not None
        if len(name) > 255:
            raise FsError(errno.ENAMETOOLONG)
        ino = p.dir.get(name)
        if ino is None:
            raise FsError(errno.ENOENT)
        return self._entry(self._inodes[ino])

    # ---------------------------------------------------------------- creation
    @counted
    def mknod(self, parent: int, name: bytes, mode: int, rdev: int, ctx: Ctx) -> Attr:
        """Regular files, FIFOs, sockets and device nodes (rdev kept for chr/blk).
        A type of 0 means a regular file (as vfs_mknod is called by mknod(2))."""
        return self._entry(self._mknod(parent, name, mode, rdev, ctx))

    def _mknod(self, parent: int, name: bytes, mode: int, rdev: int, ctx: Ctx) -> Inode:
        fmt = stat.S_IFMT(mode) or stat.S_IFREG
        if fmt not in _MKNOD_TYPES:
            raise FsError(errno.EINVAL, "mknod of that type")
        p = self._prepare_new(parent, name)
        child = self._new_child(p, fmt | (mode & 0o7777), ctx)
        if fmt in (stat.S_IFCHR, stat.S_IFBLK):
            child.rdev = rdev
        self._link_child(p, name, child)
        return child

    @counted
    def mkdir(self, parent: int, name: bytes, mode: int, ctx: Ctx) -> Attr:
        p = self._prepare_new(parent, name)
        child = self._new_child(p, stat.S_IFDIR | (mode & 0o7777), ctx)
        self._link_child(p, name, child)
        return self._entry(child)

    @counted
    def symlink(self, parent: int, name: bytes, target: bytes, ctx: Ctx) -> Attr:
        """Targets up to 4095 bytes (ENAMETOOLONG beyond); 128 bytes and longer live
        in a page charged to size= (6.18 tmpfs: 127 -> st_blocks 0, 128 -> 8)."""
        if len(target) > SYMLINK_MAX:
            raise FsError(errno.ENAMETOOLONG)
        if not target:
            raise FsError(errno.ENOENT)  # symlink(2) with "" fails so in the VFS
        p = self._prepare_new(parent, name)
        pages = 1 if len(target) >= SHORT_SYMLINK_LEN else 0
        if pages and self.budget.charge(1) != 1:
            raise FsError(errno.ENOSPC)
        try:
            child = self._new_child(p, stat.S_IFLNK | 0o777, ctx)
        except BaseException:
            if pages:
                self.budget.uncharge(1)
            raise
        child.target = bytes(target)
        child.symlink_pages = pages
        self._link_child(p, name, child)
        return self._entry(child)

    @counted
    def readlink(self, ino: int) -> bytes:
        inode = self._get(ino)
        if inode.target is None:
            raise FsError(errno.EINVAL)
        self._touch_atime(inode)  # 6.18 tmpfs: readlink moves atime (relatime)
        return inode.target

    @counted
    def link(self, ino: int, newparent: int, newname: bytes) -> Attr:
        inode = self._get(ino)
        if inode.is_dir:
            raise FsError(errno.EPERM)
        p = self._prepare_new(newparent, newname)
        fsflags.check_modify(inode)  # vfs_link: not of an append-only or immutable inode
        if inode.nlink == 0 and not inode.linkable:
            raise FsError(errno.ENOENT)  # vfs_link: no new names for an unlinked inode
        if inode.nlink:
            self._reserve_ispace(BOGO_INODE_SIZE)  # the first link of an O_TMPFILE is free
        inode.linkable = False
        self._link_child(p, newname, inode)
        inode.ctime_ns = p.mtime_ns
        return self._entry(inode)

    # ----------------------------------------------------------------- removal
    @counted
    def unlink(self, parent: int, name: bytes) -> None:
        p = self._dir(parent)
        assert p.dir is not None
        ino = p.dir.get(name)
        if ino is None:
            raise FsError(errno.ENOENT)
        victim = self._inodes[ino]
        fsflags.check_dir_remove(p, victim)
        if victim.is_dir:
            raise FsError(errno.EISDIR)
        p.dir.remove(name)
        now = self._now()
        p.mtime_ns = p.ctime_ns = now
        self._drop_link(p, victim, now)

    @counted
    def rmdir(self, parent: int, name: bytes) -> None:
        if name == b".":
            raise FsError(errno.EINVAL)
        if name == b"..":
            raise FsError(errno.ENOTEMPTY)
        p = self._dir(parent)
        assert p.dir is not None
        ino = p.dir.get(name)
        if ino is None:
            raise FsError(errno.ENOENT)
        victim = self._inodes[ino]
        fsflags.check_dir_remove(p, victim)
        if victim.dir is None:
            raise FsError(errno.ENOTDIR)
        if len(victim.dir):
            raise FsError(errno.ENOTEMPTY)
        p.dir.remove(name)
        now = self._now()
        p.mtime_ns = p.ctime_ns = now
        self._drop_link(p, victim, now)

    # ------------------------------------------------------------------ rename
    def _is_ancestor(self, anc: Inode, ino: int) -> bool:
        """True if directory ``anc`` is ``ino`` or one of its ancestors."""
        while True:
            if ino == anc.ino:
                return True
            inode = self._inodes[ino]
            if inode.parent == ino or inode.parent == 0:
                return False
            ino = inode.parent

    @counted
    def rename(
        self,
        parent: int,
        name: bytes,
        newparent: int,
        newname: bytes,
        flags: int = 0,
        ctx: Ctx | None = None,
    ) -> None:
        """renameat2 as shmem_rename2 + vfs_rename check it. ``ctx`` owns a
        RENAME_WHITEOUT's whiteout (root when not given)."""
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT):
            raise FsError(errno.EINVAL, "unknown rename flags")
        if flags & RENAME_EXCHANGE and flags & (RENAME_NOREPLACE | RENAME_WHITEOUT):
            raise FsError(errno.EINVAL)
        op = self._dir(parent)
        np = self._dir(newparent)
        assert op.dir is not None and np.dir is not None
        self._check_name(newname)
        src_ino = op.dir.get(name)
        if src_ino is None:
            raise FsError(errno.ENOENT)
        src = self._inodes[src_ino]
        dst_ino = np.dir.get(newname)
        dst = self._inodes[dst_ino] if dst_ino is not None else None
        if flags & RENAME_EXCHANGE:
            if dst is None:
                raise FsError(errno.ENOENT)
            fsflags.check_dir_remove(op, src)
            fsflags.check_dir_remove(np, dst)
            return self._exchange(op, name, src, np, newname, dst)
        if dst is not None and flags & RENAME_NOREPLACE:
            raise FsError(errno.EEXIST)
        if src.is_dir and self._is_ancestor(src, np.ino):
            raise FsError(errno.EINVAL, "rename into its own subtree")
        if dst is src:
            return None  # two names of one inode: POSIX says do nothing
        fsflags.check_dir_remove(op, src)  # may_delete, then may_create / may_delete
        if dst is None:
            fsflags.check_dir_create(np)
        else:
            fsflags.check_dir_remove(np, dst)
        if dst is not None:
            if dst.is_dir and not src.is_dir:
                raise FsError(errno.EISDIR)
            if src.is_dir and not dst.is_dir:
                raise FsError(errno.ENOTDIR)
            if dst.dir is not None and len(dst.dir):
                raise FsError(errno.ENOTEMPTY)
            if dst.is_dir and self._is_ancestor(dst, op.ino):
                raise FsError(errno.ENOTEMPTY)
        whiteout: Inode | None = None
        if flags & RENAME_WHITEOUT:
            c = ctx if ctx is not None else Ctx(uid=0, gid=0, pid=0)
            whiteout = self._new_child(op, stat.S_IFCHR, c)  # 0/0 char device
        now = self._now()
        if dst is not None:
            np.dir.remove(newname)
            self._drop_link(np, dst, now)
        op.dir.remove(name)
        np.dir.add(newname, src.ino)
        if src.is_dir and op is not np:
            op.nlink -= 1
            np.nlink += 1
            src.parent = np.ino
        if whiteout is not None:
            self._link_child(op, name, whiteout)
        src.ctime_ns = now
        op.mtime_ns = op.ctime_ns = np.mtime_ns = np.ctime_ns = now
        return None

    def _exchange(
        self, op: Inode, name: bytes, src: Inode, np: Inode, newname: bytes, dst: Inode
    ) -> None:
        """RENAME_EXCHANGE: both names keep their readdir cookies, the inodes swap;
        '..' and the parents' nlink follow directories that changed parent."""
        assert op.dir is not None and np.dir is not None
        if src is dst:
            return
        if src.is_dir and self._is_ancestor(src, np.ino):
            raise FsError(errno.EINVAL)
        if dst.is_dir and self._is_ancestor(dst, op.ino):
            raise FsError(errno.EINVAL)
        op.dir.replace(name, dst.ino)
        np.dir.replace(newname, src.ino)
        if op is not np:
            if src.is_dir:
                src.parent = np.ino
                op.nlink -= 1
                np.nlink += 1
            if dst.is_dir:
                dst.parent = op.ino
                np.nlink -= 1
                op.nlink += 1
        now = self._now()
        src.ctime_ns = dst.ctime_ns = now
        op.mtime_ns = op.ctime_ns = np.mtime_ns = np.ctime_ns = now

    # ----------------------------------------------------------------- readdir
    @counted
    def readdir(self, ino: int, fh: int, off: int) -> Iterator[tuple[bytes, int, int, int]]:
        """(name, ino, d_type, next_off) from ``off`` on; '.' (next 1) and '..'
        (next 2) first; entry cookies never change (see directory.py).
        Plain READDIR does not touch nlookup; for READDIRPLUS the mount layer
        calls ``remember(ino)`` for each entry it sends, except '.' and '..'."""
        inode = self._dir(ino)
        h = self._handle(fh, ino)
        assert inode.dir is not None
        if off == 0:  # opened or rewound: the listing ends where the directory is now
            h.dir_end = inode.dir.next_cookie
        self._touch_atime(inode)  # iterate_dir -> file_accessed (relatime)
        return self._readdir_gen(inode, off, h.dir_end)

    def _readdir_gen(self, inode: Inode, off: int,
                     end: int | None = None) -> Iterator[tuple[bytes, int, int, int]]:
        assert inode.dir is not None
        if off < 1:
            yield b".", inode.ino, DT_DIR, 1
        if off < 2:
            yield b"..", inode.parent, DT_DIR, 2
        if inode.nlink == 0:
            return  # an rmdir'ed directory lists nothing but '.' and '..'
        for name, child, cookie in inode.dir.entries_after(max(off, 2), end):
            child_inode = self._inodes.get(child)
            if child_inode is None:
                continue
            yield name, child, child_inode.d_type(), cookie
