"""Coherence of window files with the kernel's page cache (mixin of WindowTable).

Whatever changes what a window page shows queues ranged InvalInode events for
exactly the window pages the kernel may hold, and for the object's own range
when a window store changes object pages; see fsimpl/windows.py and
docs/windows.md for the rules and why they are safe against FUSE's page locks.
"""


from __future__ import annotations

import os
from typing import Any

import numpy as np

from vmcore.errors import VmError
from vmcore.memory import handle_mm_fault
from vmcore.pagetable import PTE_FILE, PTE_OWNPROT, PTE_PRESENT
from vmcore.vma import (
    PROT_READ,
    Vma,
)

from .types import InvalInode, StorePage
from .windowstate import (
    DISCARD,
    PAGE_SHIFT,
    TableState,
    WinState,
    _runs,
)

COALESCE_GAP = 16  # pages: one notification costs about what dropping 16 pages does
# A punch of whole object pages skips object_changed's reverse-map lookup (it can find no
# cached window page: object_punched); ``SHMFS_WINPUNCH=0`` in the daemon's environment
# (or setting this to False, as the twin test does) keeps the lookup (A/B runs)
WINPUNCH = os.environ.get("SHMFS_WINPUNCH", "1") != "0"


def _merge_runs(runs: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """Merge sorted (first, count) runs separated by at most ``gap`` pages."""
    out: list[tuple[int, int]] = []
    for first, n in runs:
        if out and first - (out[-1][0] + out[-1][1]) <= gap:
            out[-1] = (out[-1][0], first + n - out[-1][0])
        else:
            out.append((first, n))
    return out


class WindowCoherence(TableState):
    """Page-state snapshots, invalidation and the zap listener of WindowTable."""

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
        """Invalidate the object's cached pages among ``pgoffs``; else, with ``attrs``,
        only its attributes (st_blocks after a fault allocated or a punch freed a page:
        an INVAL of pages drops the attributes too, fuse_reverse_inval_inode).  One
        attribute-only INVAL per object per request: a second one changes nothing."""
        ostate = self.objs.get(obj_ino)
        hit = [] if ostate is None else [p for p in pgoffs if p in ostate.cached]
        if hit:
            ostate.cached.difference_update(hit)  # type: ignore[union-attr]
            self._inval(obj_ino, hit)
        elif attrs:
            ev = InvalInode(obj_ino, -1, 0)
            if ev not in self.fs._events:
                self.fs._queue(ev)

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

    def _changed(self, ws: WinState, before: dict[int, tuple[int, int]],
                 coalesce: bool = False) -> set[int]:
        """After a remap/mprotect: invalidate the cached pages whose pgoff or prot moved,
        remembering where a write-back of each must still go. Returns the cached pages
        that did not move (_push must not overwrite them).

        A cached page that still shows the same thing keeps its place in the kernel's
        cache, but the remap left it a file PTE; it is faulted in again, because only
        present PTEs are reported by the zaps of a later truncate or punch (the
        invariant: a page the kernel may cache has a present PTE)."""
        moved: dict[int, tuple[int, int]] = {}
        for i, old in before.items():
            if self._page_state(ws, i) != old or not self._refault(ws, i):
                moved[i] = old
        if moved:
            self._drop_cached(ws, list(moved), moved, coalesce=coalesce)
        return {i for i in before if i not in moved}

    def _changed_vec(self, ws: WinState, pages: np.ndarray,
                     before: tuple[np.ndarray, ...]) -> set[int]:
        """_changed for a vector remap: ``before`` = (pgoff, prot, bits) of the cached
        ``pages`` (sorted) before it, compared as arrays; the invalidations of the call
        are merged into as few ranged notifications as the layout allows. Returns the
        cached pages that did not move (also those a merged notification dropped: the
        kernel writes a dirty one back where it shows, after any store queued now)."""
        if not len(pages):
            return set()
        pg_a, eff_a, bits_a = self._states_of(ws, pages)  # type: ignore[attr-defined]
        pg_b, eff_b, _bits_b = before
        moved = (pg_a != pg_b) | (eff_a != eff_b)
        # unchanged but left a file PTE by the remap: present again (the invariant)
        again = np.flatnonzero(~moved & ((bits_a & PTE_PRESENT) == 0))
        for k in again.tolist():
            if not self._refault(ws, int(pages[k])):
                moved[k] = True
        idx = np.flatnonzero(moved)
        if len(idx):
            mv = pages[idx].tolist()
            old = dict(zip(mv, zip(pg_b[idx].tolist(), eff_b[idx].tolist(), strict=True),
                           strict=True))
            self._drop_cached(ws, mv, old, coalesce=True)
        return set(pages[~moved].tolist())

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

    # ------------------------------------------------------------ NOTIFY_STORE
    def _push(self, ws: WinState, pages: Any, unchanged: set[int] | frozenset = frozenset()
              ) -> None:
        """Give the pages a populating remap just made present to the kernel's page
        cache (NOTIFY_STORE, queued after the remap's invalidations): the access that
        follows is a minor fault with no READ.  Pages that cannot be read (beyond the
        object's end, no read permission) are left to fault as before, and so are
        the ``unchanged`` ones: the kernel may hold them dirty (a store through the
        mmap not yet written back), and a store of the object's page would overwrite
        that; remap_file_pages onto the page already shown keeps its data.  Not on a
        restartable mount (``fs.push_stores`` False, mount/server/daemon.py): a dead
        server's queued stores may or may not have reached the kernel, and the
        write-back routing of ``pushed`` pages depends on which."""
        if not getattr(self.fs, "push_stores", True):
            return
        arena = ws.obj.mapping.arena
        for i in pages:
            if i in unchanged:
                continue
            a = ws.addr + (i << PAGE_SHIFT)
            vma = ws.window.mm.vma_at(a)
            if vma is None:
                continue
            bits, frame, _pg, prot = vma.pt.get(a >> PAGE_SHIFT)
            if not bits & PTE_PRESENT:
                continue  # populate did not fault it in (beyond EOF, no permission)
            if not (prot if bits & PTE_OWNPROT else vma.prot) & PROT_READ:
                continue  # a READ would fail: leave the access to fault and fail
            data = bytes(arena.view(frame))  # the present PTE's page, as READ would send
            self._settle(ws, i)
            ws.cached.add(i)
            ws.pushed.add(i)
            self.fs._queue(StorePage(ws.ino, i << PAGE_SHIFT, data))
            self.stats["pushed_pages"] += 1

    def _settle(self, ws: WinState, i: int) -> None:
        """Page i was pushed: once the store has reached the kernel (the session says it
        is no longer queued), the copy the remap replaced -- and its launder -- are
        gone, so a later write-back is of the pushed copy: drop ``pending``."""
        if i in ws.pushed:
            queued = getattr(self.fs, "store_queued", None)
            if queued is None or not queued(ws.ino, i):
                ws.pushed.discard(i)
                ws.pending.pop(i, None)

    def _drop_cached(self, ws: WinState, pages: Any,
                     old: dict[int, tuple[int, int]] | None = None,
                     discard: bool = False, coalesce: bool = False) -> None:
        """Invalidate the cached ones of ``pages``; remember where a write-back must go
        (``old``), or that it must be dropped (``discard``).  Set operations, not a
        Python loop per page: a whole-window zap is 4096 pages (docs/performance.md)."""
        if isinstance(pages, np.ndarray):
            pages = pages.tolist()
        hit = ws.cached.intersection(pages)
        if not hit:
            return
        if ws.pushed:
            for i in hit.intersection(ws.pushed):
                self._settle(ws, i)
        ws.cached.difference_update(hit)
        if discard or old is not None:
            pending = ws.pending
            fresh = [i for i in hit if i not in pending]  # older stores keep their target
            if discard:
                pending.update(dict.fromkeys(fresh, DISCARD))
            else:
                pending.update((i, old[i]) for i in fresh)  # type: ignore[index]
        if not coalesce:
            self._inval(ws.ino, sorted(hit))
            return
        # one notification per run, runs closer than COALESCE_GAP pages merged: the
        # kernel then also drops the unchanged pages in between (a dirty one is written
        # back where it shows, which has not changed), so they are no longer cached
        for first, n in _merge_runs(_runs(sorted(hit)), COALESCE_GAP):
            ws.cached.difference_update(range(first, first + n))
            self.fs._queue(InvalInode(ws.ino, first << PAGE_SHIFT, n << PAGE_SHIFT))
            self.stats["inval_events"] += 1
            self.stats["inval_pages"] += n

    def _zapped(self, ws: WinState, vma: Vma, first: int, nr: int, reason: str) -> None:
        """Zap listener: truncate/punch ('unmap') and MADV_DONTNEED change what pages show."""
        if reason not in ("unmap", "dontneed"):
            return  # 'remap' is handled by the caller; 'munmap' only at destruction
        lo = ((vma.start - ws.addr) >> PAGE_SHIFT) + first
        pages = range(lo, lo + nr) if nr <= 4 * len(ws.cached) + 64 else self._cached_in(
            ws, lo, lo + nr)
        self._drop_cached(ws, pages, None, discard=reason == "unmap")

    def object_punched(self, obj_ino: int, off: int, length: int) -> None:
        """A hole punched in the object (FALLOCATE PUNCH_HOLE), after the pager's punch.

        Whole pages only (``off`` and ``length`` page-aligned): no byte of a page that
        stays was zeroed, and every window page that showed a punched page and that the
        kernel may cache had a present PTE (docs/windows.md, "Coherence": a cached
        window page always does), which the punch's zap reported and _zapped dropped.
        object_changed's reverse-map lookup would find only uncached pages and change
        nothing (it costs ~200 µs a one-page punch of uml_physmem's physmem,
        docs/performance.md change 36), so only its object_cached part is done: the
        object's own punched pages are marked as object_changed marks them. Anything
        else (zeroed partial edges) goes through object_changed."""
        if WINPUNCH and not (off | length) & ((1 << PAGE_SHIFT) - 1):
            self.object_cached(obj_ino, off, length)
        else:
            self.object_changed(obj_ino, off, length)

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

