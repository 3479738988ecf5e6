"""Attributes, lookup counts, statfs, remount, access, events, statistics."""

from __future__ import annotations

import errno
import os
import stat

from . import acl, fsflags, privs
from .errors import FsError
from .inode import Inode
from .state import FsCore, counted
from .types import (
    BOGO_INODE_SIZE,
    CAP_FOWNER,
    MAX_FILE_SIZE,
    PAGE_SIZE,
    Attr,
    Ctx,
    InvalEntry,
    InvalInode,
    StatFs,
)


class AttrOps(FsCore):
    """getattr/setattr and the lifetime entry points (remember/forget)."""

    # ------------------------------------------------------------ lookup counts
    @counted
    def remember(self, ino: int) -> Attr:
        """READDIRPLUS hands the kernel an entry: the mount layer calls this for
        every entry it actually puts in the reply, except '.' and '..' (the kernel's
        fuse_direntplus_link skips those and never FORGETs them). nlookup += 1."""
        return self._entry(self._get(ino))

    @counted
    def forget(self, ino: int, nlookup: int) -> None:
        """FORGET / BATCH_FORGET: the kernel dropped ``nlookup`` references."""
        inode = self._inodes.get(ino)
        if inode is None:
            return
        inode.nlookup = max(0, inode.nlookup - nlookup)
        self._maybe_evict(inode, later=self.defer_evictions)

    # ------------------------------------------------------------------- attrs
    @counted
    def getattr(self, ino: int) -> Attr:
        return self._get(ino).attr()

    @counted
    def setattr(
        self,
        ino: int,
        ctx: Ctx,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        atime_ns: int | None = None,
        mtime_ns: int | None = None,
        atime_now: bool = False,
        mtime_now: bool = False,
        ctime_ns: int | None = None,
        fh: int | None = None,
        kill_suidgid: bool = False,
        chown: bool = False,
    ) -> Attr:
        """SETATTR as notify_change + shmem_setattr do it.

        - chown (uid or gid given, or ``chown``) of a non-directory without an
          explicit mode drops S_ISUID always (root too) and S_ISGID by
          setattr_should_drop_sgid: group-exec set, or the caller neither in
          the file's old group nor holding CAP_FSETID (fsimpl/privs.py).
        - ``size`` only on regular files (EISDIR on dirs, EINVAL otherwise);
          any size set -- even to the same size -- sets mtime and ctime (6.18
          tmpfs does so for truncate(2) and ftruncate(2) alike).
        - ``kill_suidgid`` (FATTR_KILL_SUIDGID with HANDLE_KILLPRIV_V2 on a
          truncate: the caller lacks CAP_FSETID) drops the bits as a write does
          (privs.modify_kill). On a chown the kernel sets it always; the chown
          rule decides then.
        - ``chown`` marks an empty SETATTR: chown(f, -1, -1), or the kernel's
          file_remove_privs before a write or fallocate (both look the same).
          The chown rule applies; EPERM when it would drop a bit of another
          user's file that nobody has open for writing (_may_remove_privs).
        - a new ``mode`` rewrites the access ACL's owner, mask (or group) and
          other entries (posix_acl_chmod); named entries stay.
        - ctime becomes now (or ``ctime_ns``) on every call, even one that sets
          nothing: notify_change always stamps ATTR_CTIME, and 6.18 tmpfs moves
          ctime on chown(f, -1, -1), which reaches FUSE as an empty SETATTR.
        """
        inode = self._get(ino)
        if size is not None:
            if inode.is_dir:
                raise FsError(errno.EISDIR)
            if not inode.is_reg:
                raise FsError(errno.EINVAL)
            if size < 0:
                raise FsError(errno.EINVAL)
            if size > MAX_FILE_SIZE:
                raise FsError(errno.EFBIG)
        if inode.fsflags:  # notify_change, do_sys_truncate / do_ftruncate
            if size is not None:
                fsflags.check_truncate(inode, by_fd=fh is not None)
            if mode is not None or uid is not None or gid is not None:
                fsflags.check_modify(inode)
            if atime_ns is not None or mtime_ns is not None:
                fsflags.check_times(inode, explicit=True)
            elif atime_now or mtime_now:
                fsflags.check_times(inode, explicit=False)
        if chown and not self._may_remove_privs(inode, ctx):
            raise FsError(errno.EPERM, "chown(-1, -1) would change the mode of another's file")
        now = self._now()
        if size is not None:
            assert inode.mapping is not None
            w = self._windows
            if w is not None and ino in w.wins:
                raise FsError(errno.EINVAL, "a window's size is fixed by ATTACH")
            old = inode.mapping.size
            inode.mapping.truncate(size)
            inode.mtime_ns = now
            if w is not None and size < old and size % PAGE_SIZE:
                # the zeroed tail of the new last page: windows showing it
                w.object_changed(ino, size, PAGE_SIZE - size % PAGE_SIZE)
        if uid is not None or gid is not None or chown:
            # the chown rule, evaluated on the old owner and group; with FUSE
            # the kernel folds it into ``mode`` only without KILLPRIV_V2
            kill = privs.chown_kill(inode, ctx) if mode is None else 0
            if uid is not None:
                inode.uid = uid
            if gid is not None:
                inode.gid = gid
            inode.mode &= ~kill
        elif kill_suidgid and mode is None:
            inode.mode &= ~privs.modify_kill(inode, ctx)
        if mode is not None:
            inode.mode = stat.S_IFMT(inode.mode) | (mode & 0o7777)
            if inode.acl_access is not None:  # shmem_setattr -> posix_acl_chmod
                inode.acl_access = acl.chmod(inode.acl_access, inode.mode)
        if atime_now or atime_ns is not None:
            inode.atime_ns = now if atime_now else int(atime_ns)  # type: ignore[arg-type]
        if mtime_now or mtime_ns is not None:
            inode.mtime_ns = now if mtime_now else int(mtime_ns)  # type: ignore[arg-type]
        inode.ctime_ns = now if ctime_ns is None else ctime_ns
        if inode.target is not None and self._atime_stale(inode):
            # the kernel caches symlink targets (FUSE_CACHE_SYMLINKS): make the
            # next readlink ask, so that it can move atime (fsimpl/atime.py)
            self._queue(InvalInode(ino, 0, -1))
        return inode.attr()

    def _may_remove_privs(self, inode: Inode, ctx: Ctx) -> bool:
        """An empty SETATTR is chown(f, -1, -1) or file_remove_privs before a
        write/fallocate; the kernel sends it in both cases. When it would
        drop a bit, tmpfs lets only the owner or CAP_FOWNER do the chown
        (notify_change turns ATTR_KILL_S*ID into ATTR_MODE, which
        setattr_prepare checks), while file_remove_privs passes ATTR_FORCE --
        and needs a file open for writing. So: allowed to the owner, to
        CAP_FOWNER, or while the inode has a writable open handle."""
        if not privs.chown_kill(inode, ctx) or ctx.uid == inode.uid:
            return True
        if ctx.capable(CAP_FOWNER):
            return True
        return any(h.ino == inode.ino and h.flags & os.O_ACCMODE != os.O_RDONLY
                   for h in self._handles.values())

    # ------------------------------------------------------------------ access
    @counted
    def access(self, ino: int, mask: int, ctx: Ctx) -> None:
        """access(2) by owner/group/other bits, or through the access ACL when
        there is one (supplementary groups unknown here). Root passes R/W
        always and X when any x bit is set or it is a directory."""
        inode = self._get(ino)
        mask &= os.R_OK | os.W_OK | os.X_OK
        if not mask:
            return
        if ctx.uid == 0:
            if mask & os.X_OK and not inode.is_dir and not inode.mode & 0o111:
                raise FsError(errno.EACCES)
            return
        if inode.acl_access is not None and ctx.uid != inode.uid:
            if not acl.permission(inode.acl_access, mask, ctx.uid, {ctx.gid},
                                  inode.uid, inode.gid):
                raise FsError(errno.EACCES)
            return
        if ctx.uid == inode.uid:
            perm = (inode.mode >> 6) & 7
        elif ctx.gid == inode.gid:
            perm = (inode.mode >> 3) & 7
        else:
            perm = inode.mode & 7
        if mask & ~perm:
            raise FsError(errno.EACCES)

    # ------------------------------------------------------------------ statfs
    @counted
    def statfs(self) -> StatFs:
        """shmem_statfs: the block and inode fields stay 0 when unlimited (checked on
        6.18: size=0,nr_inodes=0 gives f_blocks=f_bfree=f_files=f_ffree=0)."""
        max_pages = self.budget.max_pages
        free = max_pages - self.budget.used_pages if max_pages else 0
        if self.max_inodes:
            files, ffree = self.max_inodes, self.free_ispace // BOGO_INODE_SIZE
        else:
            files = ffree = 0
        return StatFs(blocks=max_pages, bfree=free, bavail=free, files=files, ffree=ffree)

    @counted
    def remount(self, size_bytes: int | None = None, nr_inodes: int | None = None) -> None:
        """``mount -o remount,size=,nr_inodes=`` as shmem_reconfigure: EINVAL when
        below current use ("Too small a size for current use" on 6.18) or when
        limiting a mount that was unlimited ("Cannot retroactively limit ...")."""
        new_pages = self.budget.max_pages
        if size_bytes is not None:
            if size_bytes < 0:
                raise FsError(errno.EINVAL)
            new_pages = -(-size_bytes // PAGE_SIZE)
            if new_pages and new_pages < self.budget.used_pages:
                raise FsError(errno.EINVAL, "Too small a size for current use")
            if new_pages and not self.budget.max_pages:
                raise FsError(errno.EINVAL, "Cannot retroactively limit size")
        new_inodes = self.max_inodes
        used_ispace = self.max_inodes * BOGO_INODE_SIZE - self.free_ispace
        if nr_inodes is not None:
            if nr_inodes < 0:
                raise FsError(errno.EINVAL)
            if nr_inodes and nr_inodes * BOGO_INODE_SIZE < used_ispace:
                raise FsError(errno.EINVAL, "Too few inodes for current use")
            if nr_inodes and not self.max_inodes:
                raise FsError(errno.EINVAL, "Cannot retroactively limit inodes")
            new_inodes = nr_inodes
        self.budget.resize(new_pages)
        self.opts.size_bytes = new_pages * PAGE_SIZE
        if new_inodes != self.max_inodes:
            self.free_ispace = new_inodes * BOGO_INODE_SIZE - used_ispace if new_inodes else 0
            self.max_inodes = new_inodes
            self.opts.nr_inodes = new_inodes

    # ------------------------------------------------------------------ events
    def drain_events(self) -> list[InvalInode | InvalEntry]:
        """Events to send after the current reply; the queue is cleared."""
        events, self._events = self._events, []
        return events

    def notify_data_changed(self, ino: int, off: int = 0, length: int = -1) -> None:
        """Hook for changes made behind the kernel's back (window writes, punches
        through a window): queue InvalInode so the kernel drops its cache.
        Changes requested by the kernel itself (write, truncate, fallocate) need none."""
        if ino in self._inodes:
            self._queue(InvalInode(ino, off, length))

    def notify_entry_changed(self, parent: int, name: bytes) -> None:
        """Hook for namespace changes made behind the kernel's back."""
        self._queue(InvalEntry(parent, name))

    # -------------------------------------------------------------- statistics
    def statistics(self) -> dict:
        """Inode counts, page use and per-operation counters."""
        self.reap()  # exact counts: no eviction left pending
        # One pass over the inodes, counting by S_IFMT (the STATS ioctl runs this in
        # the request loop: three passes and stat.filemode per inode cost ~1.5 us an
        # inode, docs/performance.md change 11)
        by_fmt: dict[int, int] = {}
        unlinked_alive = awaiting_forget = 0
        for inode in self._inodes.values():
            fmt = inode.mode & 0o170000
            by_fmt[fmt] = by_fmt.get(fmt, 0) + 1
            if inode.reclaimed:
                awaiting_forget += 1
            elif inode.nlink == 0:
                unlinked_alive += 1
        kinds = {stat.filemode(fmt)[0]: n for fmt, n in by_fmt.items()}
        st = self.statfs()
        return {
            "inodes": len(self._inodes),
            "inodes_by_type": kinds,
            "inodes_evicted": self._evicted,
            "inodes_reclaimed": self._reclaimed,
            "inodes_unlinked_alive": unlinked_alive,
            "inodes_awaiting_forget": awaiting_forget,
            "free_ispace": self.free_ispace,
            "max_inodes": self.max_inodes,
            "used_pages": self.budget.used_pages,
            "max_pages": self.budget.max_pages,
            "open_handles": len(self._handles),
            "events_pending": len(self._events),
            "statfs": {
                "blocks": st.blocks,
                "bfree": st.bfree,
                "files": st.files,
                "ffree": st.ffree,
            },
            "ops": dict(self._ops),
        }
