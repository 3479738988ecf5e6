"""Reverse map and invalidation: ``i_mmap``, ``i_mmap_nonlinear`` and
``unmap_mapping_range``.

Design
------
When an object shrinks, or a hole is punched in it, every PTE that shows one of
the dropped pages must go before the page's frame is reused.  The page cache
knows pages; the VMAs know addresses; the reverse map answers the question in
between: *which PTEs, in which address spaces, show page pgoff of this
object?*  Linux 2.6.23 answers it in two ways, and so does this module.

A *linear* VMA shows page ``vm_pgoff + i`` at its i-th page, so the answer is
arithmetic once you know which linear VMAs cover pgoff: ``i_mmap`` is an
interval index over ``[vm_pgoff, vm_pgoff + npages)`` (the kernel's prio tree,
here a treap augmented with the largest end in each subtree, vmcore.interval),
and ``unmap_mapping_range`` zaps exactly the virtual subrange of each
overlapping VMA (``unmap_mapping_range_tree``).  Cost: O(log n + k) to find the
k VMAs, then a vectorised zap of the pages that really are in range.

A *nonlinear* VMA (after remap_file_pages) may show any pgoff at any page, so
arithmetic cannot find them.  The kernel keeps such VMAs on the
``i_mmap_nonlinear`` list and searches every page of every one of them
("exhaustive search across *all* the pages", ``unmap_mapping_range_list``).
The model does the same, but vectorised: each 512-entry chunk of a nonlinear
VMA's page table is tested with one numpy comparison of its pgoff array against
``[first, last]``.  The cost is therefore linear in the populated window
pages -- never quadratic in the number of windows -- and it is the price the
kernel also paid for nonlinear VMAs (Nick Piggin in the thread: "if you can
truncate these things then you still need to force unmap so you still need
i_mmap_nonlinear").

What a zap does to one PTE is §3.1 of kernel-semantics.md, and it is the one
subtle rule of this module:

* a present PTE whose page lies in ``[first, last]`` is cleared -- unless it is
  a private COW copy and ``even_cows`` is false (hole punch keeps COWs,
  truncate does not);
* in a nonlinear VMA, a cleared PTE whose pgoff is not its linear position
  becomes a *file PTE keeping that pgoff*, so the window keeps showing "page
  pgoff of the object": a later access faults with FAULT_FLAG_NONLINEAR and
  gets SIGBUS if pgoff is now beyond EOF, or a fresh zero page after the object
  grew back (§6 rows 8-9).  A PTE at its linear position just becomes none,
  which means the same thing;
* file PTEs (and none entries) are left alone: they hold no frame.

The same walk serves the reverse lookup (:meth:`Rmap.lookup`) that the mount
layer uses to tell the kernel which window pages show a changed object page,
and every zap is reported to the owning Mm's listeners as ranges of window
pages (Mm.add_zap_listener), so ranged invalidations can be sent.

Truncate and punch call in here through the Mapping's ``rmap`` hook, in the
kernel's order (truncate_pagecache: unmap even_cows, drop, unmap again;
punch_hole: unmap without even_cows, drop, unmap again).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vmcore.interval import IntervalIndex
from vmcore.pagetable import PAGE_SHIFT, PAGE_SIZE, PTE_ANON, PTE_PRESENT

try:  # native/winscan.c: which nonlinear VMAs a zap can change, in one C call
    from vmcore._ptscan import vmas_hit as _vmas_hit
except ImportError:  # built without a C compiler (or an older build)
    _vmas_hit = None
# ``SHMFS_WINUNMAP=0`` in the daemon's environment (or setting this to False, as the
# twin tests do) walks every nonlinear VMA in Python as before (docs/decisions.md,
# "The nonlinear VMAs a punch cannot change, skipped in one C call").  Same results.
WINUNMAP = os.environ.get("SHMFS_WINUNMAP", "1") != "0"

if TYPE_CHECKING:
    from vmcore.vma import Vma

_ALL = (1 << 62) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


@dataclass(slots=True)
class RmapStats:
    unmap_calls: int = 0
    ptes_zapped: int = 0
    vmas_visited: int = 0
    nonlinear_pages_scanned: int = 0
    lookups: int = 0


class Rmap:
    """The reverse map of one Mapping (``mapping.rmap``): i_mmap and i_mmap_nonlinear."""

    def __init__(self, mapping: Any) -> None:
        self.mapping = mapping
        self.i_mmap: IntervalIndex[Vma] = IntervalIndex()
        self.i_mmap_nonlinear: dict[int, Vma] = {}  # insertion order = list_add_tail
        self.stats = RmapStats()

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled (a restartable mount's snapshot): nonlinear VMAs are new
        objects, keyed again by their identity, in the same order."""
        self.__dict__.update(state)
        self.i_mmap_nonlinear = {id(v): v for v in state["i_mmap_nonlinear"].values()}

    # ------------------------------------------------------------ membership
    def add_vma(self, vma: Vma) -> None:
        """vma_link: a linear VMA goes into i_mmap, a nonlinear one onto the list."""
        if vma.nonlinear:
            self.i_mmap_nonlinear[id(vma)] = vma
        else:
            self.i_mmap.add(vma.pgoff, vma.pgoff + vma.npages, vma)

    def remove_vma(self, vma: Vma) -> None:
        """__remove_shared_vm_struct."""
        if id(vma) in self.i_mmap_nonlinear:
            del self.i_mmap_nonlinear[id(vma)]
        elif vma in self.i_mmap:
            self.i_mmap.remove(vma)

    def make_nonlinear(self, vma: Vma) -> None:
        """remap_file_pages' conversion: prio-tree remove, nonlinear insert."""
        self.i_mmap.remove(vma)
        self.i_mmap_nonlinear[id(vma)] = vma

    @property
    def nr_vmas(self) -> int:
        return len(self.i_mmap) + len(self.i_mmap_nonlinear)

    def vmas(self) -> list[Vma]:
        return list(self.i_mmap) + list(self.i_mmap_nonlinear.values())

    # ---------------------------------------------------------- invalidation
    def unmap_mapping_range(
        self, first_pgoff: int, nr_pages: int | None, even_cows: bool, reason: str = "unmap"
    ) -> int:
        """Zap every PTE showing a page of [first_pgoff, first_pgoff + nr_pages).

        ``nr_pages`` None means to the end of the object.  Returns the number
        of present PTEs zapped (file PTEs are never touched).
        """
        self.stats.unmap_calls += 1
        if nr_pages is not None and nr_pages <= 0:
            return 0
        first = first_pgoff
        last = _ALL if nr_pages is None else min(first_pgoff + nr_pages - 1, _ALL)
        total = 0
        for vma in self.i_mmap.overlapping(first, last + 1):
            self.stats.vmas_visited += 1
            lo, hi = _linear_vpns(vma, first, last)
            z = vma.pt.zap(lo, hi, skip_anon=not even_cows)
            total += len(z)
            vma.mm._after_zap(vma, z, reason)
        for vma in self._nonlinear_to_zap(first, last):
            z = vma.pt.zap(
                vma.start_vpn,
                vma.end_vpn,
                pg_first=first,
                pg_last=last,
                skip_anon=not even_cows,
                nonlinear_base=(vma.start_vpn, vma.pgoff),
            )
            total += len(z)
            vma.mm._after_zap(vma, z, reason)
        self.stats.ptes_zapped += total
        return total

    def unmap_pages(self, pgoffs: np.ndarray, even_cows: bool, reason: str = "unmap") -> int:
        """unmap_mapping_range for a scattered set of object pages (sorted, unique):
        every VMA is walked once, its present PTEs showing one of ``pgoffs`` zapped
        in one vectorised pass (instead of one walk per run of pages)."""
        self.stats.unmap_calls += 1
        if not len(pgoffs):
            return 0
        first, last = int(pgoffs[0]), int(pgoffs[-1])
        total = 0
        for vma in self.i_mmap.overlapping(first, last + 1):
            self.stats.vmas_visited += 1
            lo, hi = _linear_vpns(vma, first, last)
            z = vma.pt.zap(lo, hi, skip_anon=not even_cows, pg_set=pgoffs)
            total += len(z)
            vma.mm._after_zap(vma, z, reason)
        for vma in self._nonlinear_to_zap(first, last):
            z = vma.pt.zap(vma.start_vpn, vma.end_vpn, skip_anon=not even_cows,
                           nonlinear_base=(vma.start_vpn, vma.pgoff), pg_set=pgoffs)
            total += len(z)
            vma.mm._after_zap(vma, z, reason)
        self.stats.ptes_zapped += total
        return total

    def _nonlinear_to_zap(self, first: int, last: int) -> Iterator[Vma]:
        """The nonlinear VMAs, in list order, whose zap over object pages [first, last]
        may change something, counting ``vmas_visited`` and ``nonlinear_pages_scanned``
        for every VMA of the list as the walk always did.

        A zap changes a table only where a chunk holds a present entry showing a page
        of the range, or is empty (``_maybe_free``); the C filter (``vmas_hit``) finds
        the VMAs with such a chunk in one call, so the others -- most of them, for a
        one-page punch of the object (uml_physmem frees a guest frame at a time) --
        cost no Python at all.  Their zap would have returned an empty result, which
        ``Mm._after_zap`` ignores.  A zap cannot make another VMA's table gain a present
        entry or keep an empty chunk, so the filter's answer, taken before the first
        zap, stays right; tables shared between VMAs (vmas_hit's None) are walked one
        by one, since a zap could free a chunk the next VMA's count includes."""
        vmas = list(self.i_mmap_nonlinear.values())
        if WINUNMAP and _vmas_hit is not None and vmas:
            got = _vmas_hit(vmas, max(first, _I64_MIN), min(last, _I64_MAX), PTE_PRESENT)
            if got is not None:
                idx, nch = got
                self.stats.vmas_visited += len(vmas)
                self.stats.nonlinear_pages_scanned += nch * 512
                for i in idx:
                    yield vmas[i]
                return
        for vma in vmas:
            self.stats.vmas_visited += 1
            self.stats.nonlinear_pages_scanned += vma.pt.nchunks * 512
            yield vma

    def mkclean(self, include_nonlinear: bool = False) -> int:
        """page_mkclean over the whole object: dirty PTEs become clean and
        read-only again, so the next write is a write-notify fault.  Like the
        kernel, only i_mmap is walked unless ``include_nonlinear`` (extension).
        Returns the number of PTEs cleaned."""
        from vmcore.pagetable import PTE_DIRTY, PTE_WRITE

        n = 0
        vmas = list(self.i_mmap)
        if include_nonlinear:
            vmas += list(self.i_mmap_nonlinear.values())
        for vma in vmas:
            if not vma.wants_writenotify():
                continue
            lo, hi = vma.start_vpn, vma.end_vpn
            n += vma.pt.count(PTE_DIRTY, lo, hi)
            vma.pt.clear_bits(lo, hi, PTE_DIRTY | PTE_WRITE)
        return n

    # -------------------------------------------------------------- lookups
    def lookup(self, first_pgoff: int, nr_pages: int = 1) -> list[tuple[Vma, np.ndarray]]:
        """Which (vma, window page indices) show an object page in the range?

        For linear VMAs every page of the overlap shows it (mapped or not yet
        faulted); for nonlinear VMAs the pages whose PTE (present or file)
        holds such a pgoff, plus none entries whose linear position does.
        Private COW copies are not included (they no longer show the object).
        """
        self.stats.lookups += 1
        last = first_pgoff + nr_pages - 1
        out: list[tuple[Vma, np.ndarray]] = []
        for vma in self.i_mmap.overlapping(first_pgoff, last + 1):
            zba = max(first_pgoff, vma.pgoff)
            zea = min(last, vma.pgoff + vma.npages - 1)
            idx = np.arange(zba - vma.pgoff, zea - vma.pgoff + 1, dtype=np.int64)
            if not vma.shared:  # drop private COW copies
                lo = vma.start_vpn + int(idx[0])
                bits = vma.pt.lookup(lo, lo + len(idx))[0]
                idx = idx[(bits & PTE_ANON) == 0]
            if len(idx):
                out.append((vma, idx))
        for vma in self.i_mmap_nonlinear.values():
            vpns, _pg = vma.pt.find_pgoffs(first_pgoff, last)
            idx = vpns - vma.start_vpn
            # none entries at their linear position
            zba = max(first_pgoff, vma.pgoff)
            zea = min(last, vma.pgoff + vma.npages - 1)
            if zba <= zea:
                lin = np.arange(zba - vma.pgoff, zea - vma.pgoff + 1, dtype=np.int64)
                base = vma.start_vpn
                bits, _f, _p, _pr = vma.pt.lookup(base + int(lin[0]), base + int(lin[-1]) + 1)
                idx = np.sort(np.concatenate((idx, lin[bits == 0])))  # disjoint: no union1d
            if len(idx):
                out.append((vma, idx))
        return out

    def lookup_bytes(self, off: int, length: int) -> list[tuple[Vma, np.ndarray]]:
        """lookup() for a byte range of the object."""
        if length <= 0:
            return []
        first = off >> PAGE_SHIFT
        last = (off + length - 1) >> PAGE_SHIFT
        return self.lookup(first, last - first + 1)

    def statistics(self) -> dict[str, int]:
        st = {
            "vmas_linear": len(self.i_mmap),
            "vmas_nonlinear": len(self.i_mmap_nonlinear),
        }
        st.update(
            {
                "unmap_calls": self.stats.unmap_calls,
                "ptes_zapped": self.stats.ptes_zapped,
                "vmas_visited": self.stats.vmas_visited,
                "nonlinear_pages_scanned": self.stats.nonlinear_pages_scanned,
                "lookups": self.stats.lookups,
            }
        )
        return st


def rmap_of(mapping: Any) -> Rmap:
    """The mapping's Rmap, attached on first use (first mmap)."""
    r = mapping.rmap
    if r is None:
        r = Rmap(mapping)
        mapping.rmap = r
    return r


def unmap_mapping_range(mapping: Any, holebegin: int, holelen: int, even_cows: bool) -> int:
    """Byte interface of §3.1: first = holebegin >> PAGE_SHIFT (rounded down),
    ``holelen`` rounded up to pages, 0 = to the end of the object."""
    if mapping.rmap is None:
        return 0
    first = holebegin >> PAGE_SHIFT
    nr = None if holelen == 0 else (holelen + PAGE_SIZE - 1) >> PAGE_SHIFT
    return mapping.rmap.unmap_mapping_range(first, nr, even_cows)


def _linear_vpns(vma: Vma, first: int, last: int) -> tuple[int, int]:
    """The vpns [lo, hi) of a linear VMA that map object pages first..last (clipped
    to the VMA): the zap_page_range span unmap_mapping_range computes."""
    zba = max(first, vma.pgoff)
    zea = min(last, vma.pgoff + vma.npages - 1)
    return vma.start_vpn + (zba - vma.pgoff), vma.start_vpn + (zea - vma.pgoff) + 1
