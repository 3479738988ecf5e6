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
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vmcore.errors import Sigbus, Sigsegv, VmError
from vmcore.memory import handle_mm_fault
from vmcore.pagetable import PTE_DIRTY, PTE_FILE, PTE_OWNPROT, PTE_PRESENT
from vmcore.vma import (
    MADV_DONTNEED,
    MADV_NORMAL,
    MADV_REMOVE,
    MADV_WILLNEED,
    MAP_CHGPROT,
    MAP_NONBLOCK,
    MAP_POPULATE,
    PROT_READ,
    PROT_WRITE,
    PagerExt,
    Vma,
    VmFlags,
)
from vmcore.window import Window

from .errors import FsError
from .types import PAGE_SIZE, Ctx, InvalInode

if TYPE_CHECKING:
    from .inode import Inode

PAGE_SHIFT = 12
DISCARD = None  # pending marker: the object page is gone, drop the write-back
FUSE_WRITE_CACHE = 1 << 0  # write_flags of a write-back (writepage/launder) WRITE
WINDOW_EXT = PagerExt.PER_PAGE_PROT | PagerExt.MADV_REMOVE_NONLINEAR
REMAP_POPULATE = MAP_POPULATE
REMAP_FLAGS = REMAP_POPULATE | MAP_NONBLOCK | MAP_CHGPROT
MPROTECT_VMA = 0x1
_PROT_BITS = PROT_READ | PROT_WRITE

# QUERY page flags (docs/windows.md, mount/winioctl.py)
PAGE_PRESENT, PAGE_FILE, PAGE_DIRTY, PAGE_OWNPROT = 0x01, 0x02, 0x04, 0x08
PAGE_BEYOND_EOF, PAGE_RESIDENT, PAGE_CACHED = 0x10, 0x20, 0x40


@dataclass(slots=True)
class WinState:
    """One attached window."""

    ino: int
    obj: Inode
    window: Window
    prot: int
    pgoff: int
    npages: int
    cached: set[int] = field(default_factory=set)
    pending: dict[int, tuple[int, int] | None] = field(default_factory=dict)

    @property
    def addr(self) -> int:
        return self.window.address

    @property
    def size(self) -> int:
        return self.npages << PAGE_SHIFT


def _runs(pages: Any) -> list[tuple[int, int]]:
    """(first, count) of each run of consecutive values, in sorted order."""
    if isinstance(pages, range) and pages.step == 1:
        return [(pages.start, len(pages))] if len(pages) else []
    if isinstance(pages, np.ndarray) and len(pages) > 64:
        a = np.unique(pages.astype(np.int64))
        brk = np.flatnonzero(np.diff(a) != 1) + 1
        return [(int(r[0]), len(r)) for r in np.split(a, brk)]
    out: list[tuple[int, int]] = []
    for p in sorted({int(x) for x in pages}):
        if out and out[-1][0] + out[-1][1] == p:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((p, 1))
    return out


@dataclass(slots=True)
class ObjState:
    """An object some window shows: how many windows, and which of its pages the
    kernel may cache (tracked from the first ATTACH on, which invalidates them all)."""

    wins: set[int] = field(default_factory=set)  # inode numbers of its windows
    cached: set[int] = field(default_factory=set)


def _vm(e: VmError) -> FsError:
    return FsError(e.errno, str(e))


def _store_errno(e: VmError) -> int:
    """pwrite's errno for a store fault: EACCES (protection), ENOSPC (size= limit),
    EIO (past the object's end: SIGBUS for an mmap store)."""
    if isinstance(e, Sigsegv):
        return errno.EACCES
    if isinstance(e, Sigbus):
        return errno.ENOSPC if e.errno == errno.ENOSPC else errno.EIO
    return e.errno


class WindowTable:
    """Every window of one ShmFs (``windows_of(fs)``)."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self.wins: dict[int, WinState] = {}
        self._by_mm: dict[int, WinState] = {}
        self.objs: dict[int, ObjState] = {}
        self.stats: Counter[str] = Counter()

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
    def attach(self, ino: int, fh: int, ctx: Ctx, object_ino: int, size: int, pgoff: int,
               prot: int, flags: int = 0) -> None:
        """Make the empty regular file ``ino`` a window of ``size`` bytes over ``object_ino``."""
        inode = self.fs._get(ino)
        if inode.is_dir:
            raise FsError(errno.EISDIR)
        self._writable_fh(ino, fh)
        if ino in self.wins:
            raise FsError(errno.EBUSY, "already a window")
        if flags or prot & ~_PROT_BITS or size <= 0 or size % PAGE_SIZE:
            raise FsError(errno.EINVAL, "bad flags, prot or size")
        if not inode.is_reg or inode.mapping is None or inode.mapping.size or inode.blocks:
            raise FsError(errno.EINVAL, "only an empty regular file can become a window")
        obj = self.fs._inodes.get(object_ino)
        if obj is None or obj.reclaimed:
            raise FsError(errno.ENOENT, f"no object inode {object_ino}")
        if not obj.is_reg or obj.mapping is None or object_ino in self.wins or obj is inode:
            raise FsError(errno.EINVAL, "the object must be another regular file")
        mask = os.R_OK | (os.W_OK if prot & PROT_WRITE else 0)
        self.fs.access(object_ino, mask, ctx)
        npages = size >> PAGE_SHIFT
        try:
            window = Window(obj.mapping, npages, prot, pgoff, ext=WINDOW_EXT)
        except VmError as e:
            raise _vm(e) from e
        ws = WinState(ino, obj, window, prot, pgoff, npages)
        window.mm.add_zap_listener(
            lambda vma, first, nr, why: self._zapped(ws, vma, first, nr, why))
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
        inode.mtime_ns = inode.ctime_ns = self.fs._now()
        self.fs._queue(InvalInode(ino, -1, 0))  # attributes changed behind the kernel
        self.stats["attached"] += 1

    def release(self, ino: int) -> None:
        """The window inode is reclaimed (unlinked, last close): exit_mmap, drop the object."""
        ws = self.wins.pop(ino, None)
        if ws is None:
            return
        self._by_mm.pop(id(ws.window.mm), None)
        ws.window.mm.exit_mmap()
        ws.obj.nopen -= 1
        ostate = self.objs[ws.obj.ino]
        ostate.wins.discard(ino)
        if not ostate.wins:
            del self.objs[ws.obj.ino]
        self.fs._maybe_evict(ws.obj)
        self.stats["destroyed"] += 1

    # ------------------------------------------------------------- page state
    def _state(self, ws: WinState, lo: int, hi: int) -> tuple[np.ndarray, ...]:
        """(pgoff, effective prot, PTE bits) of window pages [lo, hi), across VMAs."""
        n = max(0, hi - lo)
        pg = np.zeros(n, np.int64)
        eff = np.zeros(n, np.int64)
        bits = np.zeros(n, np.int64)
        base = ws.addr >> PAGE_SHIFT
        for vma in ws.window.vmas:
            v0 = max(lo, vma.start_vpn - base)
            v1 = min(hi, vma.end_vpn - base)
            if v0 >= v1:
                continue
            b, _f, p, pr = vma.pt.lookup(base + v0, base + v1)
            linear = np.arange(v0, v1, dtype=np.int64) + (base - vma.start_vpn) + vma.pgoff
            s = slice(v0 - lo, v1 - lo)
            pg[s] = np.where((b & (PTE_PRESENT | PTE_FILE)) != 0, p, linear)
            eff[s] = np.where((b & PTE_OWNPROT) != 0, pr, vma.prot)
            bits[s] = b
        return pg, eff, bits

    # ----------------------------------------------------------- invalidation
    def object_cached(self, obj_ino: int, off: int, length: int) -> None:
        """The kernel now caches object bytes [off, off+length) (READ or write(2) of it)."""
        ostate = self.objs.get(obj_ino)
        if ostate is not None and length > 0:
            ostate.cached.update(range(off >> PAGE_SHIFT, ((off + length - 1) >> PAGE_SHIFT) + 1))

    def _inval_object(self, obj_ino: int, pgoffs: Any, attrs: bool = False) -> None:
        """Invalidate the object's cached pages among ``pgoffs`` (or only its attributes)."""
        ostate = self.objs.get(obj_ino)
        hit = [] if ostate is None else [p for p in pgoffs if p in ostate.cached]
        if hit:
            ostate.cached.difference_update(hit)  # type: ignore[union-attr]
            self._inval(obj_ino, hit)
        elif attrs:
            self.fs._queue(InvalInode(obj_ino, -1, 0))

    def _inval(self, ino: int, pages: Any) -> None:
        for first, n in _runs(pages):
            self.fs._queue(InvalInode(ino, first << PAGE_SHIFT, n << PAGE_SHIFT))
            self.stats["inval_events"] += 1
            self.stats["inval_pages"] += n

    def _cached_in(self, ws: WinState, lo: int, hi: int) -> list[int]:
        """The pages of [lo, hi) the kernel may cache, sorted (cheap for huge ranges)."""
        if hi - lo <= len(ws.cached):
            return [i for i in range(lo, hi) if i in ws.cached]
        return sorted(i for i in ws.cached if lo <= i < hi)

    def _page_state(self, ws: WinState, i: int) -> tuple[int, int]:
        """(pgoff shown, effective prot) of window page i."""
        a = ws.addr + (i << PAGE_SHIFT)
        vma = ws.window.mm.vma_at(a)
        assert vma is not None
        bits, _f, pgoff, prot = vma.pt.get(a >> PAGE_SHIFT)
        pg = pgoff if bits & (PTE_PRESENT | PTE_FILE) else vma.linear_pgoff(a)
        return pg, prot if bits & PTE_OWNPROT else vma.prot

    def _snapshot(self, ws: WinState, lo: int, hi: int) -> dict[int, tuple[int, int]]:
        """What the cached pages of [lo, hi) show, before a change."""
        return {i: self._page_state(ws, i) for i in self._cached_in(ws, lo, hi)}

    def _changed(self, ws: WinState, before: dict[int, tuple[int, int]]) -> None:
        """After a remap/mprotect: invalidate the cached pages whose pgoff or prot moved,
        remembering where a write-back of each must still go.

        A cached page that still shows the same thing keeps its place in the kernel's
        cache, but the remap left it a file PTE; it is faulted in again, because only
        present PTEs are reported by the zaps of a later truncate or punch (the
        invariant: a page the kernel may cache has a present PTE)."""
        moved: dict[int, tuple[int, int]] = {}
        for i, old in before.items():
            if self._page_state(ws, i) != old or not self._refault(ws, i):
                moved[i] = old
        if moved:
            self._drop_cached(ws, list(moved), moved)

    def _refault(self, ws: WinState, i: int) -> bool:
        """Make window page i's PTE present again (a read prefault); False if it cannot be."""
        a = ws.addr + (i << PAGE_SHIFT)
        vma = ws.window.mm.vma_at(a)
        if vma is None:
            return False
        if vma.pt.get(a >> PAGE_SHIFT)[0] & PTE_PRESENT:
            return True
        try:
            handle_mm_fault(ws.window.mm, vma, a, False, prefault=True)
        except VmError:
            return False
        return True

    def _drop_cached(self, ws: WinState, pages: Any,
                     old: dict[int, tuple[int, int]] | None = None,
                     discard: bool = False) -> None:
        """Invalidate the cached ones of ``pages``; remember where a write-back must go
        (``old``), or that it must be dropped (``discard``)."""
        hit = [int(i) for i in pages if int(i) in ws.cached]
        if not hit:
            return
        for i in hit:
            ws.cached.discard(i)
            if i in ws.pending:
                continue  # a store older than this change still has its old target
            if discard:
                ws.pending[i] = DISCARD
            elif old is not None:
                ws.pending[i] = old[i]
        self._inval(ws.ino, hit)

    def _zapped(self, ws: WinState, vma: Vma, first: int, nr: int, reason: str) -> None:
        """Zap listener: truncate/punch ('unmap') and MADV_DONTNEED change what pages show."""
        if reason not in ("unmap", "dontneed"):
            return  # 'remap' is handled by the caller; 'munmap' only at destruction
        lo = ((vma.start - ws.addr) >> PAGE_SHIFT) + first
        self._drop_cached(ws, self._cached_in(ws, lo, lo + nr), None, discard=reason == "unmap")

    def object_changed(self, obj_ino: int, off: int, length: int,
                       writer: WinState | None = None, written: range = range(0)) -> None:
        """Object bytes [off, off+length) changed (write(2), punch edges, a window store):
        invalidate the cached window pages of every window that show them -- except the
        pages ``written`` of the ``writer`` window, whose kernel copies are the new data."""
        ostate = self.objs.get(obj_ino)
        if ostate is None or length <= 0:
            return
        if writer is None:  # write(2), punch, truncate of the object itself
            self.object_cached(obj_ino, off, length)
        obj = self.fs._inodes.get(obj_ino)
        if obj is None or obj.mapping is None or obj.mapping.rmap is None:
            return
        for vma, idx in obj.mapping.rmap.lookup_bytes(off, length):
            ws = self._by_mm.get(id(vma.mm))
            if ws is None:
                continue
            lo = (vma.start - ws.addr) >> PAGE_SHIFT
            pages = (idx + lo).tolist()
            if ws is writer:
                pages = [i for i in pages if i not in written]
            self._drop_cached(ws, pages, None)

    # ---------------------------------------------------------------- ioctls
    def remap(self, ino: int, fh: int, start: int, size: int, pgoff: int, prot: int,
              flags: int) -> None:
        """remap_file_pages(window + start, size, prot, pgoff, flags) (docs/windows.md)."""
        ws = self._win(ino)
        self._writable_fh(ino, fh)
        if flags & ~REMAP_FLAGS:
            raise FsError(errno.EINVAL, "unknown remap flags")
        vm_flags = flags & (MAP_NONBLOCK | MAP_CHGPROT)
        if not flags & REMAP_POPULATE:
            vm_flags |= MAP_NONBLOCK
        lo = min(start >> PAGE_SHIFT, ws.npages)
        before = self._snapshot(ws, lo, min(lo + (size >> PAGE_SHIFT) + 1, ws.npages))
        try:
            ws.window.mm.remap_file_pages(ws.addr + start, size, prot, pgoff, vm_flags)
        except VmError as e:
            raise _vm(e) from e
        self._changed(ws, before)
        self.stats["remaps"] += 1

    def mprotect(self, ino: int, fh: int, start: int, size: int, prot: int, flags: int) -> None:
        """Per-page protection of a range (runs of MAP_CHGPROT remaps to the pgoffs the
        pages already show) or, with MPROTECT_VMA, mprotect(2) of the VMA."""
        ws = self._win(ino)
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
        before = self._snapshot(ws, lo, lo + npages)
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
            self._changed(ws, before)
        self.stats["mprotects"] += 1

    def _chgprot_vma(self, ws: WinState, vma: Vma, lo: int, hi: int, pg: np.ndarray,
                     prot: int) -> None:
        base = (vma.start - ws.addr) >> PAGE_SHIFT
        v0, v1 = max(lo, base), min(hi, base + vma.npages)
        if v0 >= v1:
            return
        seg = pg[v0 - lo : v1 - lo]
        brk = np.flatnonzero(np.diff(seg) != 1) + 1
        pos = v0
        for run in np.split(seg, brk):
            ws.window.mm.remap_file_pages(ws.addr + (pos << PAGE_SHIFT), len(run) << PAGE_SHIFT,
                                          prot, int(run[0]), MAP_CHGPROT | MAP_NONBLOCK)
            pos += len(run)

    def madvise(self, ino: int, fh: int, start: int, size: int, advice: int) -> None:
        """madvise(2) on the window's VMA (MADV_REMOVE punches the object pages shown)."""
        ws = self._win(ino)
        if advice not in (MADV_NORMAL, MADV_WILLNEED):
            self._writable_fh(ino, fh)
        else:
            self.fs._handle(fh, ino)
        if advice not in (MADV_NORMAL, MADV_WILLNEED, MADV_DONTNEED, MADV_REMOVE):
            raise FsError(errno.EINVAL, f"unsupported advice {advice}")
        lo = min(start >> PAGE_SHIFT, ws.npages)
        hi = min((start + size + PAGE_SIZE - 1) >> PAGE_SHIFT, ws.npages)
        shown = self._state(ws, lo, hi)[0] if advice == MADV_REMOVE else None
        obj = ws.obj
        blocks = obj.blocks
        try:
            ws.window.mm.madvise(ws.addr + start, size, advice)
        except VmError as e:
            raise _vm(e) from e
        finally:
            if shown is not None and obj.blocks != blocks:
                # the object's own cache and attributes (st_blocks) changed behind the kernel
                self._inval_object(obj.ino, shown.tolist(), attrs=True)
                obj.mtime_ns = obj.ctime_ns = self.fs._now()
        self.stats[f"madvise_{advice}"] += 1

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

    # -------------------------------------------------------------- data path
    def read(self, ino: int, off: int, size: int) -> list[memoryview]:
        """READ of a window: views of the object pages the window shows (faults as loads).
        A page that cannot be read fails the whole READ (never a short one): EIO past the
        object's end, EACCES without read permission."""
        ws = self._win(ino)
        size = max(0, min(size, ws.size - off))
        if size <= 0:
            return []
        lo, hi = off >> PAGE_SHIFT, ((off + size - 1) >> PAGE_SHIFT) + 1
        # No events from a READ (not even the object's st_blocks after a read fault
        # allocated a hole): a READ's reply must never wait behind a notification,
        # which may itself wait for pages another request holds (docs/windows.md).
        try:
            views = ws.window.read_views(off, size)
        except Sigbus as e:
            self.stats["read_sigbus"] += 1
            raise FsError(errno.EIO, str(e)) from e
        except Sigsegv as e:
            self.stats["read_sigsegv"] += 1
            raise FsError(errno.EACCES, str(e)) from e
        except VmError as e:
            raise _vm(e) from e
        for i in range(lo, hi):
            ws.pending.pop(i, None)
        ws.cached.update(range(lo, hi))
        self.stats["reads"] += 1
        self.stats["read_bytes"] += size
        return views

    def write(self, ino: int, off: int, data: memoryview, write_flags: int = 0) -> int:
        """WRITE of a window (write(2), or a write-back of mmap stores with FUSE_WRITE_CACHE).
        Returns the bytes written; a short count stops at the first page that refused."""
        ws = self._win(ino)
        n = max(0, min(len(data), ws.size - off))
        if n <= 0:
            return 0
        data = data[:n]
        cache = bool(write_flags & FUSE_WRITE_CACHE)
        lo, hi = off >> PAGE_SHIFT, ((off + n - 1) >> PAGE_SHIFT) + 1
        if cache and any(i in ws.pending for i in range(lo, hi)):
            return self._write_back_pending(ws, off, data)
        done = 0
        err: VmError | None = None
        try:
            views = ws.window.write_views(off, n)
        except VmError:
            views = []
            for i in range(lo, hi):  # page by page up to the one that refuses
                a = max(off, i << PAGE_SHIFT)
                b = min(off + n, (i + 1) << PAGE_SHIFT)
                try:
                    views.extend(ws.window.write_views(a, b - a))
                except VmError as e:
                    err = e
                    break
        for v in views:
            k = len(v)
            v[:] = data[done : done + k]
            done += k
        if done:
            self._stored(ws, off, done)
        if not cache:
            for i in range(lo, hi):
                ws.pending.pop(i, None)
        first_refused = hi if err is None else (off + done) >> PAGE_SHIFT
        ws.cached.update(range(lo, first_refused))
        if err is not None:
            # The kernel already copied the refused bytes into its folios (write(2)) or
            # holds them in its cache (write-back): drop those pages, after our reply.
            self.stats["write_refused"] += 1
            self._refused(ws, range(first_refused, hi))
            if not done:
                raise FsError(_store_errno(err), str(err))
        self.stats["writes"] += 1
        self.stats["write_bytes"] += done
        return done

    def _stored(self, ws: WinState, off: int, n: int) -> None:
        """A window store changed object pages: invalidate the object's and other windows'
        cached copies of them."""
        lo, hi = off >> PAGE_SHIFT, ((off + n - 1) >> PAGE_SHIFT) + 1
        pg = self._state(ws, lo, hi)[0]
        self._inval_object(ws.obj.ino, pg.tolist())
        written = range(lo, hi)
        wins = [self.wins[i] for i in self.objs[ws.obj.ino].wins]
        shown = set(pg.tolist())
        if sum(len(w.cached) for w in wins) <= 8 * len(shown) + 64:
            # few cached pages: ask each what it shows (aliases in this window included)
            for w in wins:
                hits = [i for i in w.cached if not (w is ws and i in written)
                        and self._page_state(w, i)[0] in shown]
                self._drop_cached(w, hits, None)
            return
        for first, cnt in _runs(pg):
            self.object_changed(ws.obj.ino, first << PAGE_SHIFT, cnt << PAGE_SHIFT, ws, written)

    def _write_back_pending(self, ws: WinState, off: int, data: memoryview) -> int:
        """A write-back of pages whose view changed since they were stored: each page
        goes to the object page it showed then, or nowhere if that page was dropped."""
        mapping = ws.obj.mapping
        pos = 0
        while pos < len(data):
            a = off + pos
            i = a >> PAGE_SHIFT
            k = min(len(data) - pos, ((i + 1) << PAGE_SHIFT) - a)
            if i not in ws.pending:
                n = self.write(ws.ino, a, data[pos : pos + k], FUSE_WRITE_CACHE)
                if n < k:
                    return pos + n
            else:
                target = ws.pending[i]
                if target is DISCARD:
                    self.stats["writeback_discarded"] += 1
                elif not target[1] & PROT_WRITE:
                    self.stats["write_refused"] += 1
                    self._refused(ws, range(i, i + 1))
                    if not pos:
                        raise FsError(errno.EACCES, "page was read-only when stored")
                    return pos
                else:
                    dst = (target[0] << PAGE_SHIFT) + (a & (PAGE_SIZE - 1))
                    m = max(0, min(k, mapping.size - dst))  # never extends the object
                    if m:
                        try:
                            mapping.write(dst, data[pos : pos + m])
                        except VmError as e:
                            raise _vm(e) from e
                        self._inval_object(ws.obj.ino, [target[0]])
                        self.object_changed(ws.obj.ino, dst, m, ws, range(i, i + 1))
                    self.stats["writeback_redirected"] += 1
            pos += k
        return pos

    def _refused(self, ws: WinState, pages: range) -> None:
        """Invalidate window pages whose WRITE was refused (the session sends a WRITE's
        invalidations of its own inode after the reply, when the kernel has let go of
        the pages); until then a mapping may still show the refused bytes."""
        ws.cached.difference_update(pages)
        self._inval(ws.ino, pages)

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
            "pager": dict(mm_tot),
        }


def windows_of(fs: Any) -> WindowTable:
    """The WindowTable of ``fs`` (created on first use)."""
    table = getattr(fs, "_windows", None)
    if table is None:
        table = WindowTable(fs)
        fs._windows = table
    return table
