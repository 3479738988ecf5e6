"""FsCore: the state every ShmFs operation shares, and the rules about it.

- the inode table (inode number = FUSE node id, root 1, numbers never reused:
  a monotonic counter, so a FORGET racing a new inode can never hit the wrong one);
- the lookup-count lifetime (see inode.py): *reclaim* (the space given back to
  size= and nr_inodes=) once nlink == 0 and no handle is open, *eviction* (pages,
  xattrs and the inode number freed) once nlookup is 0 too;
- ispace accounting of nr_inodes= as tmpfs 6.6+ does it: every inode costs
  BOGO_INODE_SIZE (1024) bytes of a pool of nr_inodes * 1024, xattrs are charged
  to the same pool, statfs reports free_ispace // 1024 as f_ffree;
- the open-handle table and the event queue the mount layer drains.
"""

from __future__ import annotations

import errno
import functools
import inspect
import stat
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from vmcore.budget import Budget

from . import acl
from .atime import RELATIME, AtimeMode, atime_needs_update
from .backing import Backing
from .errors import FsError
from .inode import Inode
from .types import (
    BOGO_INODE_SIZE,
    NAME_MAX,
    PAGE_SIZE,
    RELATIME_WINDOW_NS,
    Ctx,
    FsOptions,
    InvalEntry,
    InvalInode,
)

F = TypeVar("F", bound=Callable[..., Any])
# evictions left for later never pile up beyond this (a client that never pauses)
EVICT_LATER_MAX = 256


def counted(fn: F) -> F:
    """Count calls per operation name for statistics().

    The wrapper has ``fn``'s own parameters (generated once, at import) rather
    than ``*args, **kwargs``: packing and unpacking those cost 0.37 µs of the
    0.73 the counting added to every operation (docs/performance.md, change 21).
    Signatures with ``*args``, keyword-only or positional-only parameters get
    the generic wrapper."""
    name = fn.__name__
    params = list(inspect.signature(fn).parameters.values())
    if params and params[0].name == "self" and all(
            p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params):
        env: dict[str, Any] = {"_counted_fn": fn}
        heads = []
        for p in params:
            if p.default is inspect.Parameter.empty:
                heads.append(p.name)
            else:
                env[f"_counted_default_{p.name}"] = p.default
                heads.append(f"{p.name}=_counted_default_{p.name}")
        names = ", ".join(p.name for p in params)
        exec(f"def wrapper({', '.join(heads)}):\n"  # our own source, built once
             f"    self._ops[{name!r}] += 1\n"
             f"    return _counted_fn({names})\n", env)
        return functools.wraps(fn)(env["wrapper"])  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(self: FsCore, *args: Any, **kwargs: Any) -> Any:
        self._ops[name] += 1
        return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(slots=True)
class Handle:
    """An open file or directory (what FUSE calls fh)."""

    ino: int
    flags: int
    is_dir: bool
    dir_end: int = 0  # directories: where a listing stops (directory.py)


class FsCore:
    """Shared state and helpers; the operations live in the mixins of ShmFs."""

    ROOT_INO = 1

    def __init__(
        self,
        opts: FsOptions | None = None,
        *,
        backing: Backing | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.opts = opts = opts if opts is not None else FsOptions()
        if opts.size_bytes < 0 or opts.nr_inodes < 0:
            raise FsError(errno.EINVAL, "negative limit")
        # tmpfs rounds size= up to whole pages (shmem_parse_one: DIV_ROUND_UP)
        max_pages = -(-opts.size_bytes // PAGE_SIZE)
        self._backing = backing if backing is not None else Backing(max_pages)
        self._backing.budget.resize(max_pages)
        self.budget = self._backing.budget
        self._clock = clock
        self._inodes: dict[int, Inode] = {}
        self._next_ino = self.ROOT_INO
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._events: list[InvalInode | InvalEntry] = []
        self._ops: Counter[str] = Counter()
        self._evicted = 0
        self._reclaimed = 0
        # FORGET-driven evictions the owner asked to run later (defer_evictions):
        # the session reaps them between requests (reap), off the critical path
        self.defer_evictions = False
        self.evict_later: deque[Inode] = deque()
        self._windows: Any = None  # fsimpl.windows.WindowTable, made by the first ATTACH
        # the mount's atime options, asked at each access (fsimpl/atime.py)
        self.atime_mode: Callable[[], AtimeMode] = lambda: RELATIME
        self.max_inodes = opts.nr_inodes
        self.free_ispace = opts.nr_inodes * BOGO_INODE_SIZE
        root = self._alloc_inode(stat.S_IFDIR | (opts.mode & 0o7777), opts.uid, opts.gid)
        root.nlink = 2
        root.parent = root.ino
        root.nlookup = 1  # the kernel holds the root without a LOOKUP; never forgotten to 0

    # ------------------------------------------------------------------ helpers
    def _now(self) -> int:
        return self._clock()

    def _get(self, ino: int) -> Inode:
        inode = self._inodes.get(ino)
        if inode is None:
            raise FsError(errno.ENOENT, f"no inode {ino}")
        return inode

    def _dir(self, ino: int) -> Inode:
        inode = self._get(ino)
        if inode.dir is None:
            raise FsError(errno.ENOTDIR)
        return inode

    @staticmethod
    def _check_name(name: bytes) -> None:
        """Names the kernel would never send are EINVAL; too long is ENAMETOOLONG."""
        if not name or b"/" in name or b"\0" in name or name in (b".", b".."):
            raise FsError(errno.EINVAL, f"bad name {name!r}")
        if len(name) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG)

    def _reserve_ispace(self, n: int) -> None:
        """shmem_reserve_inode / the xattr charge: ENOSPC when the pool is short."""
        if self.max_inodes:
            if self.free_ispace < n:
                raise FsError(errno.ENOSPC, "out of inodes (ispace)")
            self.free_ispace -= n

    def _unreserve_ispace(self, n: int) -> None:
        if self.max_inodes:
            self.free_ispace += n

    def _alloc_inode(self, mode: int, uid: int, gid: int) -> Inode:
        """A fresh inode with an ispace reservation (raises ENOSPC first)."""
        self._reserve_ispace(BOGO_INODE_SIZE)
        ino = self._next_ino
        self._next_ino += 1
        inode = Inode(ino, mode, uid, gid, self._now())
        if inode.is_reg:
            try:
                inode.mapping = self._backing.new_mapping()
            except BaseException:
                self._unreserve_ispace(BOGO_INODE_SIZE)
                raise
        self._inodes[ino] = inode
        return inode

    def _new_child(self, parent: Inode, mode: int, ctx: Ctx) -> Inode:
        """inode_init_owner: uid from the caller, gid from an S_ISGID parent
        (and new subdirectories inherit S_ISGID), else the caller's gid.
        Then simple_acl_create: the parent's default ACL, if any, shapes the
        permission bits and gives the child its ACLs; else ``ctx.umask``
        applies (acl.inherit; symlinks take neither)."""
        gid = ctx.gid
        if parent.mode & stat.S_ISGID:
            gid = parent.gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        mode, access, default = acl.inherit(parent.acl_default, mode, ctx.umask)
        inode = self._alloc_inode(mode, ctx.uid, gid)
        inode.acl_access, inode.acl_default = access, default
        return inode

    def _maybe_evict(self, inode: Inode, later: bool = False) -> None:
        """Uncharge, then evict, as the counters allow (see the module docstring)."""
        if inode.ino == self.ROOT_INO:
            return
        if inode.nlink == 0 and inode.nopen == 0 and not inode.reclaimed:
            self._reclaim(inode)
        if inode.evictable():
            if later:
                self.evict_later.append(inode)
                if len(self.evict_later) > EVICT_LATER_MAX:
                    self.reap(len(self.evict_later) - EVICT_LATER_MAX)
                return
            self._drop(inode)

    def _drop(self, inode: Inode) -> None:
        """Evict an inode and forget its number."""
        self._evict(inode)
        del self._inodes[inode.ino]
        self._evicted += 1

    def reap(self, limit: int | None = None) -> int:
        """Evict (up to ``limit`` of) the inodes a FORGET left for later; returns
        how many. Why later: freeing an inode's pages and objects is a third of a
        FORGET's cost, and the kernel reads FORGETs ahead of the request a client
        waits for (an unlink's directory GETATTR). Nothing can reach such an inode
        meanwhile: no name, no open file, no kernel reference."""
        pending = self.evict_later
        n = 0
        while pending and (limit is None or n < limit):
            inode = pending.popleft()
            if inode.evictable() and self._inodes.get(inode.ino) is inode:
                self._drop(inode)
                n += 1
        return n

    def _reclaim(self, inode: Inode) -> None:
        """Give the space of a nameless, closed inode back to size= and nr_inodes=.

        Only the *accounting* goes now: statfs(2) right after close(2) or
        unlink(2) must show the space free, as on tmpfs, and FUSE delivers the
        FORGET a moment later. The pages themselves stay until eviction: while
        the kernel holds a lookup reference it can still OPEN the inode (an
        O_PATH descriptor through /proc/self/fd, an open racing an unlink or a
        rename over the name), and that open must read the old data. Such a
        reopen charges the space again (``_recharge``)."""
        inode.reclaimed = True
        mapping = inode.mapping
        if mapping is not None and mapping.budget is self.budget:
            self.budget.uncharge(mapping.nrpages)
            private = Budget(0)
            private.used_pages = mapping.nrpages
            mapping.budget = private
        if inode.symlink_pages:
            self.budget.uncharge(inode.symlink_pages)
        self._unreserve_ispace(BOGO_INODE_SIZE + inode.xattr_space)
        self._reclaimed += 1

    def _recharge(self, inode: Inode) -> None:
        """A reclaimed inode was opened again: it holds space once more (forced:
        its pages exist, so a full filesystem may overshoot for a while)."""
        inode.reclaimed = False
        mapping = inode.mapping
        if mapping is not None and mapping.budget is not self.budget:
            self.budget.used_pages += mapping.nrpages
            mapping.budget = self.budget
        if inode.symlink_pages:
            self.budget.used_pages += inode.symlink_pages
        if self.max_inodes:
            self.free_ispace -= BOGO_INODE_SIZE + inode.xattr_space

    def _evict(self, inode: Inode) -> None:
        """shmem_evict_inode's work once the kernel forgot the inode: free the
        pages, the window, the long-symlink page and the xattrs."""
        if not inode.reclaimed:
            self._reclaim(inode)
        inode.linkable = False
        if self._windows is not None:  # a window goes with its inode (exit_mmap)
            self._windows.release(inode.ino)
        if inode.mapping is not None:
            inode.mapping.release()
        inode.symlink_pages = 0
        inode.xattr_space = 0
        inode.xattrs.clear()
        inode.acl_access = inode.acl_default = None

    def _touch_atime(self, inode: Inode) -> None:
        """touch_atime(): refresh atime if the mount's atime options say so
        (atime_needs_update: noatime, nodiratime, relatime or strictatime)."""
        if inode.fsflags & 0x80:  # FS_NOATIME_FL (fsflags.py): touch_atime skips it
            return
        now = self._now()
        if atime_needs_update(self.atime_mode(), inode.dir is not None, inode.atime_ns,
                              inode.mtime_ns, inode.ctime_ns, now):
            inode.atime_ns = now

    def open_drops_cache(self, ino: int) -> bool:
        """Should OPEN drop the kernel's page cache of ino (no FOPEN_KEEP_CACHE) so
        that the next read reaches the daemon and can move atime? A read the
        kernel answers from its cache never does (fsimpl/atime.py).

        Yes when the next read must move atime and either the mount is
        strictatime or atime is at least a day old. Not for the commonest
        relatime case, a read soon after write(2): the written pages are in
        the kernel's cache, and re-reading them all through the daemon made
        the first read after a write 3.4 times slower (docs/decisions.md)."""
        inode = self._inodes.get(ino)
        if inode is None:
            return False
        mode = self.atime_mode()  # once: in the daemon each call is a poll(2) of mountinfo
        if not self._atime_stale(inode, mode):
            return False
        now = self._now()
        return (not mode.relatime
                or now // 10**9 - inode.atime_ns // 10**9 >= RELATIME_WINDOW_NS // 10**9)

    def _atime_stale(self, inode: Inode, mode: AtimeMode | None = None) -> bool:
        if inode.fsflags & 0x80:  # FS_NOATIME_FL: the next read moves no atime
            return False
        return atime_needs_update(self.atime_mode() if mode is None else mode,
                                  inode.dir is not None, inode.atime_ns,
                                  inode.mtime_ns, inode.ctime_ns, self._now() + 1)

    def _entry(self, inode: Inode) -> Any:
        """Hand an entry to the kernel: nlookup += 1, return its Attr."""
        inode.nlookup += 1
        return inode.attr()

    def _queue(self, event: InvalInode | InvalEntry) -> None:
        self._events.append(event)

    def _window_of(self, ino: int) -> Any:
        """The WindowTable when ``ino`` is a window file (docs/windows.md), else None."""
        w = self._windows
        return w if w is not None and ino in w.wins else None

    def _handle(self, fh: int, ino: int) -> Handle:
        h = self._handles.get(fh)
        if h is None or h.ino != ino:
            raise FsError(errno.EBADF, f"bad fh {fh} for inode {ino}")
        return h

    def _new_handle(self, inode: Inode, flags: int, is_dir: bool) -> int:
        if inode.reclaimed:
            self._recharge(inode)
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = Handle(inode.ino, flags, is_dir)
        inode.nopen += 1
        return fh

    def _drop_handle(self, ino: int, fh: int) -> None:
        h = self._handles.pop(fh, None)
        if h is None:
            return  # RELEASE of an unknown fh: nothing to undo
        if self._windows is not None:  # attach tokens die with their handle
            self._windows.grants.handle_released(fh)
        inode = self._inodes.get(h.ino)
        if inode is not None:
            inode.nopen -= 1
            self._maybe_evict(inode)
