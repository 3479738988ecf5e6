"""remap_file_pages (mm/fremap.c of Linux 2.6.23/24) and install_file_pte.

The checks run in the order of kernel-semantics.md §2.1, 2.6.23 column; the
first failing row wins:

1. ``prot != 0`` -> EINVAL (unless the per-page-protection extension is on and
   ``MAP_CHGPROT`` is given);
2. ``start`` and ``size`` are rounded down to pages, but ``end`` is computed
   from the *unrounded* values and used in the range check (row 10);
3. ``start + size <= start`` (zero after rounding, or wrap) -> EINVAL;
4. (no pgoff-wrap check in 2.6.23);
5. ``pgoff + npages >= 1 << PTE_FILE_MAX_BITS`` -> EINVAL;
6. ``find_vma(start)`` is NULL -> EINVAL;
7. not VM_SHARED -> EINVAL;
8. ``vm_private_data`` set on a linear VMA -> EINVAL;
9. no VM_CAN_NONLINEAR -> EINVAL;
10. ``start < vm_start`` or ``end > vm_end`` -> EINVAL;
11. linear VMA and pgoff already the linear position -> return 0, nothing done;
12. a dirty-accountable mapping (write-notify) -> a new *linear* VMA over the
    range (mmap_region, SZ's fallback), no prefault;
then the VMA becomes VM_NONLINEAR (never cleared again), every page gets a file
PTE (populate_range), and unless MAP_NONBLOCK the range is prefaulted through
fault() (make_pages_present, result ignored).  Remapping beyond EOF succeeds;
the access gets SIGBUS.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

import numpy as np

from vmcore.errors import VmError
from vmcore.pagetable import PAGE_SHIFT, PAGE_SIZE, PTE_PRESENT, Zapped
from vmcore.rmap import rmap_of
from vmcore.vma import MAP_CHGPROT, MAP_NONBLOCK, PagerExt, Vma, VmFlags

if TYPE_CHECKING:
    from vmcore.mm import Mm

_PAGE_MASK = ~(PAGE_SIZE - 1)


_SHARED, _CAN_NONLINEAR = int(VmFlags.SHARED), int(VmFlags.CAN_NONLINEAR)
_MANYPROTS = int(VmFlags.MANYPROTS)


def _einval(rule: int, what: str) -> VmError:
    return VmError(errno.EINVAL, f"remap_file_pages: {what} (§2.1 row {rule})")


def install_file_pte(mm: Mm, vma: Vma, vpn: int, pgoff: int, prot: int | None) -> bool:
    """Zap the old PTE (a present one is released), then leave a file PTE.

    Returns whether a present PTE was zapped (the caller reports the change).
    """
    bits, frame, old_pgoff, _old_prot = vma.pt.get(vpn)
    if bits & PTE_PRESENT:
        z = Zapped(
            np.array([vpn], np.int64),
            np.array([frame], np.int64),
            np.array([old_pgoff], np.int64),
            np.array([bits], np.uint8),
        )
        vma.pt.set_file(vpn, pgoff, prot)
        mm._after_zap(vma, z, "remap", notify=False)
        return True
    vma.pt.set_file(vpn, pgoff, prot)
    return False


def remap_file_pages(mm: Mm, start: int, size: int, prot: int, pgoff: int, flags: int) -> int:
    """sys_remap_file_pages of the 2.6.23 model; returns 0 or raises VmError."""
    chgprot = bool(flags & MAP_CHGPROT) and bool(mm.ext & PagerExt.PER_PAGE_PROT)
    if prot and not chgprot:
        raise _einval(1, "prot must be 0")
    end = start + size  # from the unrounded values, as 2.6.23 does
    start &= _PAGE_MASK
    size &= _PAGE_MASK
    if start + size <= start:
        raise _einval(3, "zero-sized or wrapping range")
    npages = size >> PAGE_SHIFT
    if pgoff + npages >= 1 << mm.pte_file_max_bits:
        raise _einval(5, f"pgoff does not fit in {mm.pte_file_max_bits} pte bits")
    if pgoff < 0:
        raise _einval(5, "negative pgoff")
    vma = mm.find_vma(start)
    if vma is None:
        raise _einval(6, "no vma at or after start")
    vmf = int(vma.flags)  # plain int: IntFlag & costs ~3 us
    if not vmf & _SHARED:
        raise _einval(7, "not a shared mapping")
    if vma.private_data is not None and not vma.nonlinear:
        raise _einval(8, "vm_private_data in use")
    if not vmf & _CAN_NONLINEAR:
        raise _einval(9, "mapping cannot be nonlinear")
    if end <= start or start < vma.start or end > vma.end:
        raise _einval(10, "range not inside one vma")
    if chgprot and prot & ~vma.prot:
        raise VmError(errno.EACCES, "remap_file_pages: page prot exceeds the vma's")

    if not vma.nonlinear:
        if pgoff == vma.linear_pgoff(start) and not chgprot:
            mm.stats.remap_shortcuts += 1
            return 0  # row 11: already there, nothing prefaulted
        dirty_accountable = bool(getattr(vma.mapping, "write_notify", False)) or (
            getattr(vma.mapping, "page_mkwrite", None) is not None
        )
        if dirty_accountable and not mm.ext & PagerExt.NONLINEAR_WRITENOTIFY:
            # row 12 (SZ): page_mkclean cannot see nonlinear vmas, emulate linearly
            mm.mmap_region(vma.mapping, start, size, vma.flags, vma.prot, pgoff)
            mm.stats.remap_linear_fallbacks += 1
            mm._notify(vma_at(mm, start), 0, npages, "remap")
            return 0
        vma.flags |= VmFlags.NONLINEAR
        rmap_of(vma.mapping).make_nonlinear(vma)
        mm.stats.nonlinear_conversions += 1

    # populate_range: a file PTE for every page
    own = prot if chgprot else None
    if chgprot and not vmf & _MANYPROTS:
        vma.flags |= VmFlags.MANYPROTS
    vpn = start >> PAGE_SHIFT
    if npages == 1:
        install_file_pte(mm, vma, vpn, pgoff, own)
    else:  # vectorised: zap the present PTEs of the range, then file PTEs
        mm._after_zap(vma, vma.pt.zap(vpn, vpn + npages), "remap", notify=False)
        vma.pt.set_file_range(vpn, vpn + npages, pgoff, own)
    mm.stats.remaps += 1
    mm.stats.remap_pages += npages
    mm._notify(vma, vpn - vma.start_vpn, npages, "remap")
    if not flags & MAP_NONBLOCK:
        mm.make_pages_present(start, start + size)
    return 0


def vma_at(mm: Mm, address: int) -> Vma:
    v = mm.find_vma(address)
    assert v is not None and v.start <= address
    return v


_VEC_MAX = 1 << 60


def remap_file_pages_vec(mm: Mm, entries: Any) -> tuple[int, VmError | None]:
    """Many remap_file_pages calls, ``entries`` of (start, size, prot, pgoff, flags), in
    order, exactly as calling :func:`remap_file_pages` for each until the first that
    fails: returns (entries applied, the error of the first failing one or None).

    The common batch -- every entry MAP_NONBLOCK, inside one VMA that is already
    nonlinear, on a mapping without write-notify -- is checked and applied with
    numpy in one pass (a guest switching page tables remaps hundreds of scattered
    pages; per-call Python costs ~15-35 µs a page, the vector ~1 µs).  Anything else
    (populate, a linear or split VMA, a fallback row) goes entry by entry.
    ``entries`` may be an (n, 5) int64 array."""
    n = len(entries)
    if n == 0:
        return 0, None
    if isinstance(entries, np.ndarray):
        a = entries.astype(np.int64, copy=False).reshape(n, 5)
        if (a < 0).any() or (a >= _VEC_MAX).any():
            return _remap_each(mm, [tuple(e) for e in a.tolist()])
        entries = a
    else:
        if any(v < 0 or v >= _VEC_MAX for e in entries for v in e):
            return _remap_each(mm, entries)  # values numpy's int64 could overflow on
        a = np.array(entries, dtype=np.int64).reshape(n, 5)
    start, size, prot, pgoff, flags = (a[:, k] for k in range(5))
    vma = mm.find_vma(int(start[0]) & _PAGE_MASK)
    simple = (
        vma is not None
        and vma.nonlinear
        and bool(vma.flags & VmFlags.SHARED)
        and bool(vma.flags & VmFlags.CAN_NONLINEAR)
        and bool((flags & MAP_NONBLOCK).all())
        and not getattr(vma.mapping, "write_notify", False)
        and getattr(vma.mapping, "page_mkwrite", None) is None
    )
    if not simple:
        return _remap_each(mm, entries)
    assert vma is not None
    ext_prot = bool(mm.ext & PagerExt.PER_PAGE_PROT)
    chg = ((flags & MAP_CHGPROT) != 0) & ext_prot
    end = start + size
    s = start & _PAGE_MASK
    sz = size & _PAGE_MASK
    npg = sz >> PAGE_SHIFT
    # the rows of §2.1 in order, the first failing row of the first failing entry wins
    bad = np.zeros(n, np.int64)  # 0 ok, else the row (EACCES: 99)
    checks = [
        (1, (prot != 0) & ~chg),
        (3, s + sz <= s),
        (5, (pgoff + npg >= (1 << mm.pte_file_max_bits)) | (pgoff < 0)),
        # rows 6-9 hold for the vma found; another vma (or none) at an entry -> row 10
        (10, (end <= s) | (s < vma.start) | (end > vma.end)),
        (99, chg & ((prot & ~vma.prot) != 0)),
    ]
    for row, cond in checks:
        bad = np.where((bad == 0) & cond, row, bad)
    failing = np.flatnonzero(bad)
    k = int(failing[0]) if len(failing) else n
    if k < n and bad[k] == 10:
        return _remap_each(mm, entries)  # another VMA (a split window) or none: per entry
    err: VmError | None = None
    if k < n:
        row = int(bad[k])
        err = (VmError(errno.EACCES, "remap_file_pages: page prot exceeds the vma's")
               if row == 99 else _einval(row, f"vector entry {k}"))
    if k:
        _apply_vec(mm, vma, s[:k] >> PAGE_SHIFT, npg[:k], pgoff[:k], prot[:k], chg[:k])
    return k, err


def _remap_each(mm: Mm, entries: Any) -> tuple[int, VmError | None]:
    if isinstance(entries, np.ndarray):
        entries = entries.tolist()
    for i, (start, size, prot, pgoff, flags) in enumerate(entries):
        try:
            remap_file_pages(mm, start, size, prot, pgoff, flags)
        except VmError as e:
            return i, e
    return len(entries), None


def _apply_vec(mm: Mm, vma: Vma, vpn0: np.ndarray, npg: np.ndarray, pgoff: np.ndarray,
               prot: np.ndarray, chg: np.ndarray) -> None:
    """populate_range for checked entries: one file PTE per page, later entries win."""
    total = int(npg.sum())
    rep = np.repeat(np.arange(len(npg)), npg)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(npg) - npg, npg)
    vpns = vpn0[rep] + within
    pgs = pgoff[rep] + within
    own = chg[rep]
    prots = np.where(own, prot[rep], 0)
    # later entries win: keep the last occurrence of each vpn, in vpn order
    order = np.argsort(vpns, kind="stable")
    v_sorted = vpns[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = v_sorted[1:] != v_sorted[:-1]
    sel = order[last]
    vpns, pgs, own, prots = vpns[sel], pgs[sel], own[sel], prots[sel]
    if own.any():
        vma.flags |= VmFlags.MANYPROTS
    z = vma.pt.set_file_pages(vpns, pgs, own, prots)
    mm._after_zap(vma, z, "remap", notify=False)
    mm.stats.remaps += len(npg)
    mm.stats.remap_pages += total
    rel = vpns - vma.start_vpn
    brk = np.flatnonzero(np.diff(rel) != 1) + 1
    firsts = rel[np.concatenate(([0], brk))].tolist()
    counts = np.diff(np.concatenate(([0], brk, [len(rel)]))).tolist()
    for f, c in zip(firsts, counts, strict=True):
        mm._notify(vma, f, c, "remap")
