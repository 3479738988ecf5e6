"""madvise and msync (mm/madvise.c, mm/msync.c of the 2.6.23 model).

madvise walks the VMAs of the range (a gap is ENOMEM at the end; an error in
one VMA stops the walk, earlier VMAs keep the advice):

* MADV_DONTNEED zaps the range (EINVAL on locked VMAs); in a nonlinear VMA
  pages away from their linear position become file PTEs, so their pgoff is
  kept; private COW copies are discarded.
* MADV_WILLNEED is a readahead-like PREFAULT through fault() of the pages the
  range shows; it installs no PTE and, like read(2), allocates nothing.
* MADV_REMOVE: EINVAL on locked or nonlinear VMAs (unless
  PagerExt.MADV_REMOVE_NONLINEAR), EACCES unless shared and writable, then a
  hole punch of the object range (modern tmpfs: COW copies survive).

msync follows sys_msync: EINVAL for unknown flags, an unaligned start or
MS_ASYNC|MS_SYNC; ENOMEM for unmapped parts (after the mapped ones); EBUSY for
MS_INVALIDATE on locked memory; MS_SYNC on a shared VMA is fsync of the whole
object, which only write-notify mappings notice (page_mkclean).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

import numpy as np

from vmcore import pagetable
from vmcore.errors import VmError
from vmcore.fault import VmFault, fault
from vmcore.flags import FaultFlags
from vmcore.pagetable import PAGE_SHIFT, PAGE_SIZE, PTE_ANON, PTE_FILE, PTE_PRESENT
from vmcore.vma import (
    MADV_DONTNEED,
    MADV_NORMAL,
    MADV_REMOVE,
    MADV_WILLNEED,
    MS_ASYNC,
    MS_INVALIDATE,
    MS_SYNC,
    PagerExt,
    Vma,
    VmFlags,
)

if TYPE_CHECKING:
    from vmcore.mm import Mm

_PAGE_MASK = PAGE_SIZE - 1


def _err(code: int, msg: str) -> VmError:
    return VmError(code, msg)


def _page_align(n: int) -> int:
    return (n + _PAGE_MASK) & ~_PAGE_MASK


# -- madvise
def sys_madvise(mm: Mm, start: int, length: int, advice: int) -> None:
    if advice not in (MADV_NORMAL, MADV_WILLNEED, MADV_DONTNEED, MADV_REMOVE):
        raise _err(errno.EINVAL, f"madvise: unsupported advice {advice}")
    if start & _PAGE_MASK:
        raise _err(errno.EINVAL, "madvise: unaligned start")
    length = _page_align(length)
    end = start + length
    if end < start:
        raise _err(errno.EINVAL, "madvise: wrapping range")
    if end == start:
        return
    unmapped = False
    pos = start
    for vma in mm._overlapping(start, end):
        if vma.start > pos:
            unmapped = True
        s, e = max(start, vma.start), min(end, vma.end)
        _madvise_vma(mm, vma, s, e, advice)
        pos = e
    if pos < end:
        unmapped = True
    if unmapped:
        raise _err(errno.ENOMEM, "madvise: range has an unmapped gap")


def _madvise_vma(mm: Mm, vma: Vma, s: int, e: int, advice: int) -> None:
    lo, hi = s >> PAGE_SHIFT, e >> PAGE_SHIFT
    if advice == MADV_DONTNEED:
        if vma.flags & VmFlags.LOCKED:
            raise _err(errno.EINVAL, "MADV_DONTNEED on a locked vma")
        if vma.nonlinear:
            z = vma.pt.zap(lo, hi, nonlinear_base=(vma.start_vpn, vma.pgoff))
        else:
            z = vma.pt.zap(lo, hi)
        mm._after_zap(vma, z, "dontneed")
    elif advice == MADV_WILLNEED:
        # readahead into the page cache only; tmpfs has no backing store, so
        # this is a read(2)-like prefault that allocates nothing, no PTEs
        for pgoff in _pgoffs_shown(mm, vma, lo, hi).tolist():
            vmf = VmFault(FaultFlags.PREFAULT, int(pgoff), 1)
            fault(vma.mapping, vmf)
    elif advice == MADV_REMOVE:
        _madvise_remove(mm, vma, s, e)


def _madvise_remove(mm: Mm, vma: Vma, s: int, e: int) -> None:
    """madvise_remove: 2.6.23 checks, modern punch (COWs survive, row 13)."""
    if vma.flags & VmFlags.LOCKED:
        raise _err(errno.EINVAL, "MADV_REMOVE on a locked vma")
    nl_ok = bool(mm.ext & PagerExt.MADV_REMOVE_NONLINEAR)
    if vma.nonlinear and not nl_ok:
        raise _err(errno.EINVAL, "MADV_REMOVE on a nonlinear vma (row 10)")
    if (vma.flags & (VmFlags.SHARED | VmFlags.WRITE)) != (VmFlags.SHARED | VmFlags.WRITE):
        raise _err(errno.EACCES, "MADV_REMOVE needs a shared writable mapping (row 11)")
    mapping = vma.mapping
    if not vma.nonlinear:
        off = (s - vma.start) + (vma.pgoff << PAGE_SHIFT)
        mapping.punch_hole(off, e - s)
        return
    # extension: punch every object page the window shows, in runs
    if e - s == PAGE_SIZE and pagetable.WINMADV:  # one page (a guest freeing a frame)
        one = _pgoff_shown1(vma, s >> PAGE_SHIFT)
        if one is not None:
            mapping.punch_hole(one << PAGE_SHIFT, PAGE_SIZE)
        return
    pg = sorted_unique(_pgoffs_shown(mm, vma, s >> PAGE_SHIFT, e >> PAGE_SHIFT))
    if not len(pg):
        return
    brk = np.flatnonzero(np.diff(pg) != 1) + 1
    punch_pages = getattr(mapping, "punch_pages", None)
    if len(brk) > 2 and punch_pages is not None:
        punch_pages(pg)  # scattered: one pass over the VMAs and the page cache
        return
    for run in np.split(pg, brk):
        mapping.punch_hole(int(run[0]) << PAGE_SHIFT, len(run) << PAGE_SHIFT)


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """np.unique of a 1-d int array without its first-call cost (np.unique imports
    numpy.ma lazily: ~40 ms inside the first MADV_REMOVE a daemon serves)."""
    a = np.sort(a.astype(np.int64, copy=False))
    if len(a) > 1:
        a = a[np.concatenate(([True], a[1:] != a[:-1]))]
    return a


def _pgoff_shown1(vma: Vma, vpn: int) -> int | None:
    """``_pgoffs_shown`` of the one page ``vpn``: its object page, None for a COW copy."""
    bits, _f, pgoff, _p = vma.pt.get(vpn)
    if bits & PTE_ANON:
        return None
    return pgoff if bits & (PTE_PRESENT | PTE_FILE) else vpn - vma.start_vpn + vma.pgoff


def _pgoffs_shown(mm: Mm, vma: Vma, lo: int, hi: int) -> np.ndarray:
    """The object page each window page in vpns [lo, hi) shows (COW copies excluded)."""
    bits, _f, pgoff, _p = vma.pt.lookup(lo, hi)
    linear = np.arange(lo, hi, dtype=np.int64) - vma.start_vpn + vma.pgoff
    shown = np.where((bits & (PTE_PRESENT | PTE_FILE)) != 0, pgoff, linear)
    return shown[(bits & PTE_ANON) == 0]


# -- msync
def sys_msync(mm: Mm, start: int, length: int, flags: int) -> None:
    if flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC):
        raise _err(errno.EINVAL, "msync: unknown flags")
    if start & _PAGE_MASK:
        raise _err(errno.EINVAL, "msync: unaligned start")
    if flags & MS_ASYNC and flags & MS_SYNC:
        raise _err(errno.EINVAL, "msync: MS_ASYNC and MS_SYNC together")
    length = _page_align(length)
    end = start + length
    if end == start:
        return
    unmapped = False
    vma = mm.find_vma(start)
    while True:
        if vma is None:
            raise _err(errno.ENOMEM, "msync: range not mapped")
        if start < vma.start:
            start = vma.start
            if start >= end:
                raise _err(errno.ENOMEM, "msync: range not mapped")
            unmapped = True
        if flags & MS_INVALIDATE and vma.flags & VmFlags.LOCKED:
            raise _err(errno.EBUSY, "msync: MS_INVALIDATE on locked memory")
        start = vma.end
        if flags & MS_SYNC and vma.shared:
            _fsync(mm, vma.mapping)
        if start >= end:
            break
        vma = mm.find_vma(start)
    if unmapped:
        raise _err(errno.ENOMEM, "msync: range has an unmapped gap")


def _fsync(mm: Mm, mapping: Any) -> None:
    """do_fsync: write back the whole object.  Only write-notify mappings
    track dirtiness through PTEs: page_mkclean re-protects them."""
    if mapping.rmap is None:
        return
    if getattr(mapping, "write_notify", False) or getattr(mapping, "page_mkwrite", None):
        mapping.rmap.mkclean(bool(mm.ext & PagerExt.NONLINEAR_WRITENOTIFY))
