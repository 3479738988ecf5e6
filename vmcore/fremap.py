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
from typing import TYPE_CHECKING

import numpy as np

from vmcore.errors import VmError
from vmcore.pagetable import PAGE_SHIFT, PAGE_SIZE, PTE_PRESENT, Zapped
from vmcore.rmap import rmap_of
from vmcore.vma import MAP_CHGPROT, MAP_NONBLOCK, PagerExt, Vma, VmFlags

if TYPE_CHECKING:
    from vmcore.mm import Mm

_PAGE_MASK = ~(PAGE_SIZE - 1)


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
    if not vma.flags & VmFlags.SHARED:
        raise _einval(7, "not a shared mapping")
    if vma.private_data is not None and not vma.nonlinear:
        raise _einval(8, "vm_private_data in use")
    if not vma.flags & VmFlags.CAN_NONLINEAR:
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
    if chgprot:
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
