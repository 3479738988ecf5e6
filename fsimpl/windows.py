"""Window files: inodes that show an object's pages through a nonlinear page table.

A window (docs/windows.md) is a regular file that ATTACH turned into one vmcore
:class:`~vmcore.window.Window` -- its own ``Mm`` with one shared VMA over the
*object*'s Mapping, with the pager's PER_PAGE_PROT and MADV_REMOVE_NONLINEAR
extensions on.  This module keeps every window of a filesystem
(:class:`WindowTable`, reached with :func:`windows_of`) and does three jobs:

* the window calls (attach, remap, mprotect, madvise, query, info), with the
  checks a kernel would make on the file descriptor and the caller;
* the data path: READ/WRITE of a window inode resolve each page through the
  window's page table (``Mm.views``: a load or store fault through fault());
* coherence: whatever changes what a window page shows queues ranged
  InvalInode events (sent by the session before the reply) for exactly the
  window pages the kernel may have cached, and for the object's own range when
  a window store changes object pages.

Two small pieces of state per window make FUSE's page cache behave:

``cached``
    window pages the kernel may hold: added when a page is served (READ or
    WRITE), removed when invalidated.  A change to a page the kernel never saw
    needs no notification.
``pushed``
    pages a REMAP with SHMFS_REMAP_POPULATE gave to the kernel's page cache with
    NOTIFY_STORE (the touch that follows is a minor fault, no READ).  Until that
    store has reached the kernel, a write-back of the page is the launder of the
    copy the remap replaced and follows ``pending``; after, it is of the pushed
    copy and follows the page table (``_settle``).
``pending``
    when a change invalidates a cached page, the kernel writes it back first if
    a process dirtied it through an mmap (launder).  That write-back (a WRITE
    with FUSE_WRITE_CACHE) must land where the store was made, not where the
    page table points now: ``pending[i]`` keeps the old (pgoff, prot), or
    DISCARD when the object page was truncated or punched away, until the
    kernel reads the page again (or write(2) replaces it).

No I/O, no trio, no mount: the mount layer calls in and drains fs events.
"""

from __future__ import annotations

import errno
import functools
import os
from collections import Counter
from typing import Any

import numpy as np

from vmcore import pagetable
from vmcore.errors import VmError
from vmcore.pagetable import PTE_DIRTY, PTE_FILE, PTE_OWNPROT, PTE_PRESENT
from vmcore.vma import (
    MADV_DONTNEED,
    MADV_NORMAL,
    MADV_REMOVE,
    MADV_WILLNEED,
    MAP_CHGPROT,
    MAP_NONBLOCK,
    PROT_WRITE,
    Vma,
    VmFlags,
)
from vmcore.window import Window

from .errors import FsError
from .fsflags import FS_APPEND_FL
from .ptbudget import PtBudget, default_pt_size
from .types import MAX_FILE_SIZE, PAGE_SIZE, Ctx, InvalInode, StorePage
from .wincoherence import WindowCoherence
from .windowio import WindowIO
from .windowstate import (
    _PROT_BITS,
    MPROTECT_VMA,
    PAGE_BEYOND_EOF,
    PAGE_CACHED,
    PAGE_DIRTY,
    PAGE_FILE,
    PAGE_OWNPROT,
    PAGE_PRESENT,
    PAGE_RESIDENT,
    PAGE_SHIFT,
    REMAP_FLAGS,
    REMAP_POPULATE,
    WINDOW_EXT,
    ObjState,
    WinState,
    _vm,
)
from .winextent import WindowExtent
from .wingrant import GrantTable

#: REMAPV vectors up to this long are applied as REMAPs one by one: a vector pass has
#: a fixed cost of ~50 numpy calls (~0.3-1 ms here), a REMAP ~30-100 µs
REMAPV_SCALAR_MAX = 8


class WindowTable(WindowCoherence, WindowIO, WindowExtent):
    """Every window of one ShmFs (``windows_of(fs)``)."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self.wins: dict[int, WinState] = {}
        self._by_mm: dict[int, WinState] = {}
        self.objs: dict[int, ObjState] = {}
        self.stats: Counter[str] = Counter()
        self.grants = GrantTable()
        opts = getattr(fs, "opts", None)
        pt = getattr(opts, "pt_size_bytes", None)
        size = getattr(opts, "size_bytes", 0)
        self.budget = PtBudget(default_pt_size(size) if pt is None else pt)

    # ---------------------------------------------------------------- lookup
    def is_window(self, ino: int) -> bool:
        return ino in self.wins

    def _win(self, ino: int) -> WinState:
        ws = self.wins.get(ino)
        if ws is None:
            self.fs._get(ino)  # ENOENT for an unknown inode
            raise FsError(errno.ENOTTY, f"inode {ino} is not a window")
        return ws

    def _writable_fh(self, ino: int, fh: int) -> None:
        h = self.fs._handle(fh, ino)
        if h.flags & os.O_ACCMODE == os.O_RDONLY:
            raise FsError(errno.EBADF, "descriptor not open for writing")

    # ------------------------------------------------------------ life cycle
    def grant(self, ino: int, fh: int, ctx: Ctx, prot: int, flags: int = 0) -> bytes:
        """GRANT on a handle of the object: a single-use token for ATTACH by ``ctx.uid``.

        The kernel checked open(2) of the object when it made the handle; like mmap(2)
        of a descriptor, the handle must be open for reading, and for reading and
        writing when ``prot`` has PROT_WRITE (EACCES otherwise)."""
        inode = self.fs._get(ino)
        if inode.is_dir:
            raise FsError(errno.EISDIR)
        h = self.fs._handle(fh, ino)
        if flags or prot & ~_PROT_BITS:
            raise FsError(errno.EINVAL, "bad grant flags or prot")
        if not inode.is_reg or inode.mapping is None or ino in self.wins:
            raise FsError(errno.EINVAL, "only a regular file that is not a window is an object")
        mode = h.flags & os.O_ACCMODE
        if mode == os.O_WRONLY or (prot & PROT_WRITE and mode != os.O_RDWR):
            raise FsError(errno.EACCES, "descriptor not open for the protection asked")
        _no_shared_write_of_append_only(inode, prot)
        self.stats["grants"] += 1
        return self.grants.mint(ino, fh, ctx.uid, prot)

    def attach(self, ino: int, fh: int, ctx: Ctx, token: bytes, size: int, pgoff: int,
               prot: int, flags: int = 0) -> None:
        """Make the empty regular file ``ino`` a window of ``size`` bytes over the object
        that ``token`` (from GRANT) names.  Only the file's owner (or root, as
        CAP_FOWNER) may: the window changes what the file is, as chmod does."""
        inode = self.fs._get(ino)
        if inode.is_dir:
            raise FsError(errno.EISDIR)
        self._writable_fh(ino, fh)
        if ctx.uid != 0 and ctx.uid != inode.uid:
            raise FsError(errno.EPERM, "only the file's owner may make it a window")
        if ino in self.wins:
            raise FsError(errno.EBUSY, "already a window")
        if flags or prot & ~_PROT_BITS or size <= 0 or size % PAGE_SIZE:
            raise FsError(errno.EINVAL, "bad flags, prot or size")
        if size > MAX_FILE_SIZE or pgoff > (MAX_FILE_SIZE - size) >> PAGE_SHIFT:
            # mmap's file_mmap_ok: the mapping must end within the largest file. Without
            # it a pgoff near 2^52 overflowed int64 arithmetic after the window existed
            # (an EIO, the window left attached).
            raise FsError(errno.EOVERFLOW, "size and pgoff beyond the largest file")
        if not inode.is_reg or inode.mapping is None or inode.mapping.size or inode.blocks:
            raise FsError(errno.EINVAL, "only an empty regular file can become a window")
        g = self.grants.take(token, ctx.uid)  # spent from here on, whatever follows
        if prot & ~g.prot:
            raise FsError(errno.EACCES, "protection beyond what the token grants")
        _no_shared_write_of_append_only(self.fs._get(g.ino), prot)
        object_ino = g.ino
        obj = self.fs._inodes.get(object_ino)
        if obj is None or obj.reclaimed:  # pragma: no cover - the live handle holds it
            raise FsError(errno.EACCES, "the token's object is gone")
        if not obj.is_reg or obj.mapping is None or object_ino in self.wins or obj is inode:
            raise FsError(errno.EINVAL, "the object must be another regular file")
        npages = size >> PAGE_SHIFT
        try:
            self.budget.charge_window()
        except VmError as e:
            raise _vm(e) from e
        try:
            window = Window(obj.mapping, npages, prot, pgoff, ext=WINDOW_EXT,
                            mm=self.budget.new_mm(WINDOW_EXT))
        except VmError as e:
            self.budget.uncharge_window()
            raise _vm(e) from e
        ws = WinState(ino, obj, window, prot, pgoff, npages)
        # a partial, not a lambda: a restartable mount pickles it with the window
        window.mm.add_zap_listener(functools.partial(self._zapped, ws))
        self.wins[ino] = ws
        self._by_mm[id(window.mm)] = ws
        obj.nopen += 1  # the window holds its object as a VMA holds its file
        ostate = self.objs.get(object_ino)
        if ostate is None:
            # from now on the object's kernel-cached pages are tracked; what the kernel
            # cached before is unknown, so drop it all once
            ostate = self.objs[object_ino] = ObjState()
            self.fs._queue(InvalInode(object_ino, 0, -1))
        ostate.wins.add(ino)
        inode.mapping.size = size  # st_size of the window file
        inode.window_blocks = functools.partial(self.blocks_of, ino)  # st_blocks: what it shows
        inode.mtime_ns = inode.ctime_ns = self.fs._now()
        self.fs._queue(InvalInode(ino, -1, 0))  # attributes changed behind the kernel
        self.fs._queue(self.size_store(ino))
        self.stats["attached"] += 1

    def size_store(self, ino: int) -> StorePage:
        """A one-byte NOTIFY_STORE ending at the window's end: it sets the kernel's
        i_size of the window (fuse_notify_store raises i_size to a store's end, with
        no attr_version check), which CREATE left at 0.  Without it the kernel learnt
        the size only from a GETATTR, and drops a GETATTR reply when an invalidation
        of the inode lands while it is in flight (a restart's invalidation of every
        inode, a remap's, a write(2) to the object's): the read that sent it then
        returned 0 or a store's end bytes (docs/reliability.md 4b).  Sent at ATTACH
        and, for every window, by a restarted server (mount/server/restart.py).
        The byte is the one a READ would give (so the store is harmless should a
        READ fill that page first); it lands in a page the kernel does not hold
        as up to date (offset 4095: never marked so), or the session skips it
        when a READ or write(2) of that page was answered after it was queued."""
        ws = self._win(ino)
        pg, _eff, _bits = self._state(ws, ws.npages - 1, ws.npages)
        byte = b"".join(ws.obj.mapping.read((int(pg[0]) << PAGE_SHIFT) + PAGE_SIZE - 1, 1))
        return StorePage(ino, ws.size - 1, bytes(byte) or b"\0")

    def release(self, ino: int) -> None:
        """The window inode is reclaimed (unlinked, last close): exit_mmap, drop the object."""
        ws = self.wins.pop(ino, None)
        if ws is None:
            return
        inode = self.fs._inodes.get(ino)
        if inode is not None:
            inode.window_blocks = None
        self._by_mm.pop(id(ws.window.mm), None)
        nchunks = sum(v.pt.nchunks for v in ws.window.vmas)
        self.budget.release(ws.window.mm)
        ws.window.mm.exit_mmap()
        ws.obj.nopen -= 1
        ostate = self.objs[ws.obj.ino]
        ostate.wins.discard(ino)
        if not ostate.wins:
            del self.objs[ws.obj.ino]
        self.fs._maybe_evict(ws.obj)
        self.stats["destroyed"] += 1
        self.budget.trim(nchunks)

    # ---------------------------------------------------------------- ioctls
    def remap(self, ino: int, fh: int, start: int, size: int, pgoff: int, prot: int,
              flags: int) -> None:
        """remap_file_pages(window + start, size, prot, pgoff, flags) (docs/windows.md)."""
        ws = self._win(ino)
        ws.epoch += 1
        self._writable_fh(ino, fh)
        if flags & ~REMAP_FLAGS:
            raise FsError(errno.EINVAL, "unknown remap flags")
        vm_flags = flags & (MAP_NONBLOCK | MAP_CHGPROT)
        if not flags & REMAP_POPULATE:
            vm_flags |= MAP_NONBLOCK
        lo = min(start >> PAGE_SHIFT, ws.npages)
        before = self._snapshot(ws, lo, min(lo + (size >> PAGE_SHIFT) + 1, ws.npages))
        unchanged: set[int] = set()
        blocks = ws.obj.blocks
        try:
            ws.window.mm.remap_file_pages(ws.addr + start, size, prot, pgoff, vm_flags)
        except VmError as e:
            raise _vm(e) from e
        finally:  # a remap refused part way (ENOMEM: pt_size=) has still changed pages
            unchanged = self._changed(ws, before)
            self._blocks_changed(ws, blocks)
        if not vm_flags & MAP_NONBLOCK:
            self._push(ws, range(lo, min(lo + (size >> PAGE_SHIFT), ws.npages)), unchanged)
        self.stats["remaps"] += 1

    def _blocks_changed(self, ws: WinState, blocks: int) -> None:
        """A populating remap's prefault allocated holes of the object: its st_blocks
        changed behind the kernel, so one attribute-only INVAL of it, after the
        window's INVALs and before the stores (one per REMAP, as the C engine sends
        it for each entry of a short REMAPV; docs/windows.md "Coherence")."""
        if ws.obj.blocks != blocks:
            self.fs._queue(InvalInode(ws.obj.ino, -1, 0))

    def remapv(self, ino: int, fh: int, entries: list[tuple[int, int, int, int, int]]) -> int:
        """SHMFS_IOC_WIN_REMAPV: (start, size, pgoff, prot, flags) entries, each exactly a
        REMAP, applied in order until one fails.  Returns how many were applied; a failing
        entry raises FsError with ``done`` set (the entries before it stay applied, as
        madvise(2) over several VMAs leaves the earlier ones advised).

        One snapshot of the kernel-cached pages the entries touch, one vector remap in
        vmcore, one comparison: the invalidations of the whole call go out as few ranged
        notifications as the layout allows (runs with small gaps are merged)."""
        ws = self._win(ino)
        ws.epoch += 1  # what pages show may change: the cached st_blocks/SEEK layout goes
        self._writable_fh(ino, fh)
        if len(entries) <= REMAPV_SCALAR_MAX:  # numpy's fixed cost exceeds the loop's
            return self._remapv_each(ws, fh, [tuple(int(x) for x in e) for e in entries])
        a = np.array(entries, dtype=np.uint64).reshape(-1, 5)
        if len(a) and int(a.max()) >= 1 << 60:  # no int64 arithmetic on these: one by one
            return self._remapv_each(ws, fh, [tuple(int(x) for x in e) for e in a.tolist()])
        a = a.astype(np.int64)
        start, size, pgoff, prot, flags = (a[:, k] for k in range(5))
        bad_flags = np.flatnonzero(flags & ~REMAP_FLAGS)
        n = int(bad_flags[0]) if len(bad_flags) else len(a)
        vm_flags = (flags & (MAP_NONBLOCK | MAP_CHGPROT)) | np.where(
            flags & REMAP_POPULATE, 0, MAP_NONBLOCK)
        vm = np.stack([ws.addr + start, size, prot, pgoff, vm_flags], axis=1)[:n]
        hit = self._cached_ranges(ws, start[:n] >> PAGE_SHIFT, size[:n] >> PAGE_SHIFT)
        before = self._states_of(ws, hit)
        blocks = ws.obj.blocks
        done, err = ws.window.mm.remap_file_pages_vec(vm)
        unchanged = self._changed_vec(ws, hit, before)
        self._blocks_changed(ws, blocks)
        pop = np.flatnonzero((vm_flags[:done] & MAP_NONBLOCK) == 0)
        if len(pop):
            first = np.minimum(start[pop] >> PAGE_SHIFT, ws.npages)
            last = np.minimum(first + (size[pop] >> PAGE_SHIFT), ws.npages)
            self._push(ws, sorted({i for a, b in zip(first.tolist(), last.tolist(), strict=True)
                                   for i in range(a, b)}), unchanged)
        self.stats["remaps"] += done
        self.stats["remapv_calls"] += 1
        if err is not None or n < len(a):
            e = _vm(err) if err is not None else FsError(errno.EINVAL, "unknown remap flags")
            e.done = done  # type: ignore[attr-defined]
            raise e
        return done

    def _remapv_each(self, ws: WinState, fh: int,
                     entries: list[tuple[int, ...]]) -> int:
        """REMAPV entry by entry (values beyond int64 arithmetic): REMAP's own checks."""
        for k, (start, size, pgoff, prot, flags) in enumerate(entries):
            try:
                self.remap(ws.ino, fh, start, size, pgoff, prot, flags)
            except FsError as e:
                e.done = k  # type: ignore[attr-defined]
                raise
        return len(entries)

    def _cached_ranges(self, ws: WinState, first: np.ndarray, npages: np.ndarray
                       ) -> np.ndarray:
        """The cached pages (sorted) in the union of [first, first+npages+1) -- the +1:
        REMAP's end comes from the unrounded size -- vectorised over the entries."""
        if not ws.cached or not len(first):
            return np.zeros(0, np.int64)
        lo = np.minimum(first, ws.npages)
        hi = np.minimum(lo + npages + 1, ws.npages)
        order = np.argsort(lo, kind="stable")
        lo_s, reach = lo[order], np.maximum.accumulate(hi[order])
        cached = np.sort(np.fromiter(ws.cached, dtype=np.int64, count=len(ws.cached)))
        at = np.searchsorted(lo_s, cached, side="right") - 1
        return cached[(at >= 0) & (cached < reach[np.maximum(at, 0)])]

    def _states_of(self, ws: WinState, pages: np.ndarray) -> tuple[np.ndarray, ...]:
        """(pgoff shown, effective prot, PTE bits) of the given sorted window pages: one
        _state over their span when it is dense enough, else page by page (memory stays
        proportional to the pages asked about, never to the window)."""
        if not len(pages):
            z = np.zeros(0, np.int64)
            return z, z, z
        lo, hi = int(pages[0]), int(pages[-1]) + 1
        if hi - lo <= 64 * len(pages) + 512:
            pg, eff, bits = self._state(ws, lo, hi)
            k = pages - lo
            return pg[k], eff[k], bits[k]
        rows = [self._state(ws, int(i), int(i) + 1) for i in pages.tolist()]
        return tuple(np.concatenate([r[j] for r in rows]) for j in range(3))

    def mprotect(self, ino: int, fh: int, start: int, size: int, prot: int, flags: int) -> None:
        """Per-page protection of a range (runs of MAP_CHGPROT remaps to the pgoffs the
        pages already show) or, with MPROTECT_VMA, mprotect(2) of the VMA."""
        ws = self._win(ino)
        ws.epoch += 1
        self._writable_fh(ino, fh)
        if flags & ~MPROTECT_VMA or prot & ~_PROT_BITS or start % PAGE_SIZE:
            raise FsError(errno.EINVAL, "bad mprotect flags, prot or start")
        if prot & ~ws.prot:
            raise FsError(errno.EACCES, "protection beyond the window's")
        npages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT
        lo = start >> PAGE_SHIFT
        if lo + npages > ws.npages:
            raise FsError(errno.ENOMEM, "range outside the window")
        if npages == 0:
            return
        hit = np.array(self._cached_in(ws, lo, lo + npages), dtype=np.int64)
        before = self._states_of(ws, hit)  # arrays: a whole window may be cached
        mm = ws.window.mm
        try:
            if flags & MPROTECT_VMA:
                mm.mprotect(ws.addr + start, npages << PAGE_SHIFT, prot)
            else:
                shown = self._state(ws, lo, lo + npages)[0]
                for vma in ws.window.vmas:
                    self._chgprot_vma(ws, vma, lo, lo + npages, shown, prot)
        except VmError as e:
            raise _vm(e) from e
        finally:
            self._changed_vec(ws, hit, before)
        self.stats["mprotects"] += 1

    def _chgprot_vma(self, ws: WinState, vma: Vma, lo: int, hi: int, pg: np.ndarray,
                     prot: int) -> None:
        base = (vma.start - ws.addr) >> PAGE_SHIFT
        v0, v1 = max(lo, base), min(hi, base + vma.npages)
        if v0 >= v1:
            return
        seg = pg[v0 - lo : v1 - lo]
        brk = np.flatnonzero(np.diff(seg) != 1) + 1
        starts = np.concatenate(([0], brk))
        counts = np.diff(np.concatenate((starts, [len(seg)])))
        # one vector remap of all the runs (a scattered window is one run a page)
        ents = np.stack([ws.addr + ((v0 + starts) << PAGE_SHIFT), counts << PAGE_SHIFT,
                         np.full(len(starts), prot), seg[starts],
                         np.full(len(starts), MAP_CHGPROT | MAP_NONBLOCK)], axis=1)
        if len(ents) <= REMAPV_SCALAR_MAX:
            ents = [tuple(e) for e in ents.tolist()]
        _done, err = ws.window.mm.remap_file_pages_vec(ents)
        if err is not None:
            raise err

    def madvise(self, ino: int, fh: int, start: int, size: int, advice: int) -> None:
        """madvise(2) on the window's VMA (MADV_REMOVE punches the object pages shown)."""
        ws = self._win(ino)
        ws.epoch += 1
        if advice not in (MADV_NORMAL, MADV_WILLNEED):
            self._writable_fh(ino, fh)
        else:
            self.fs._handle(fh, ino)
        if advice not in (MADV_NORMAL, MADV_WILLNEED, MADV_DONTNEED, MADV_REMOVE):
            raise FsError(errno.EINVAL, f"unsupported advice {advice}")
        lo = min(start >> PAGE_SHIFT, ws.npages)
        hi = min((start + size + PAGE_SIZE - 1) >> PAGE_SHIFT, ws.npages)
        shown = self._shown(ws, lo, hi) if advice == MADV_REMOVE else None
        obj = ws.obj
        blocks = obj.blocks
        try:
            ws.window.mm.madvise(ws.addr + start, size, advice)
        except VmError as e:
            raise _vm(e) from e
        finally:
            if shown is not None and obj.blocks != blocks:
                # the object's own cache and attributes (st_blocks) changed behind the kernel
                self._inval_object(obj.ino, shown, attrs=True)
                obj.mtime_ns = obj.ctime_ns = self.fs._now()
        self.stats[f"madvise_{advice}"] += 1

    def _shown(self, ws: WinState, lo: int, hi: int) -> list[int]:
        """The object page each window page of [lo, hi) shows (``_state``'s pgoffs); one
        page without numpy (uml_physmem's guests free one frame at a time)."""
        if hi - lo == 1 and pagetable.WINMADV:
            a = ws.addr + (lo << PAGE_SHIFT)
            if ws.window.mm.vma_at(a) is not None:
                return [self._page_state(ws, lo)[0]]
        return self._state(ws, lo, hi)[0].tolist()

    def query(self, ino: int, fh: int, first: int, count: int) -> tuple[int, int, list]:
        """(window pages, object size, [(pgoff, flags, prot)]) for pages from ``first``."""
        ws = self._win(ino)
        self.fs._handle(fh, ino)
        lo = min(first, ws.npages)
        hi = min(lo + count, ws.npages)
        pg, eff, bits = self._state(ws, lo, hi)
        mapping = ws.obj.mapping
        eof_pages = (mapping.size + PAGE_SIZE - 1) >> PAGE_SHIFT
        out = []
        for k in range(hi - lo):
            b, p = int(bits[k]), int(pg[k])
            f = 0
            f |= PAGE_PRESENT if b & PTE_PRESENT else 0
            f |= PAGE_FILE if b & PTE_FILE else 0
            f |= PAGE_DIRTY if b & PTE_DIRTY else 0
            f |= PAGE_OWNPROT if b & PTE_OWNPROT else 0
            f |= PAGE_BEYOND_EOF if p >= eof_pages else 0
            f |= PAGE_RESIDENT if int(mapping.pages.lookup_range(p, 1)[0]) >= 0 else 0
            f |= PAGE_CACHED if lo + k in ws.cached else 0
            out.append((p, f, int(eff[k])))
        self.stats["queries"] += 1
        return ws.npages, mapping.size, out

    def info(self, ino: int, fh: int) -> dict[str, int]:
        ws = self._win(ino)
        self.fs._handle(fh, ino)
        vmas = ws.window.vmas
        flags = (1 if any(v.nonlinear for v in vmas) else 0) | (
            2 if any(v.flags & VmFlags.MANYPROTS for v in vmas) else 0)
        return {"object_ino": ws.obj.ino, "size": ws.size, "pgoff": ws.pgoff,
                "object_size": ws.obj.mapping.size, "prot": ws.prot, "flags": flags,
                "nr_vmas": len(vmas)}

    # -------------------------------------------------------------- statistics
    def statistics(self) -> dict[str, Any]:
        mm_tot: Counter[str] = Counter()
        for ws in self.wins.values():
            for k, v in ws.window.mm.statistics().items():
                mm_tot[k] += v
        return {
            "windows": len(self.wins),
            "window_pages": sum(ws.npages for ws in self.wins.values()),
            "kernel_cached_pages": sum(len(ws.cached) for ws in self.wins.values()),
            "pending_writebacks": sum(len(ws.pending) for ws in self.wins.values()),
            "counters": dict(self.stats),
            "attach_tokens": len(self.grants),
            "page_tables": self.budget.statistics(),
            "pager": dict(mm_tot),
        }


def _no_shared_write_of_append_only(obj: Any, prot: int) -> None:
    """do_mmap(): a shared writable mapping of an append-only (chattr +a) file is
    EACCES; a writable window is one."""
    if prot & PROT_WRITE and obj.fsflags & FS_APPEND_FL:
        raise FsError(errno.EACCES, "the object is append-only")


def windows_of(fs: Any) -> WindowTable:
    """The WindowTable of ``fs`` (created on first use)."""
    table = getattr(fs, "_windows", None)
    if table is None:
        table = WindowTable(fs)
        fs._windows = table
    return table

