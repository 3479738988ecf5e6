"""mprotect and mlock (mm/mprotect.c, mm/mlock.c): change vm_flags over a range.

Both split the VMAs at the edges of the range, change every VMA inside it up
to the first unmapped gap (then ENOMEM, with the earlier changes kept, as the
kernel does), and merge the results with their neighbours (vma_merge).
mprotect also rewrites the writable bit of present PTEs (change_pte_range):
shared VMAs get writable PTEs unless they want write-notify (then only dirty
ones), private VMAs only for their own COW copies.  With the per-page
protection extension, mprotect resets the pages' own protections in its range.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from vmcore.errors import VmError
from vmcore.pagetable import PAGE_SIZE, PTE_ANON, PTE_DIRTY, PTE_PRESENT, PTE_WRITE
from vmcore.vma import PROT_EXEC, PROT_READ, PROT_WRITE, Vma, VmFlags, prot_to_vmflags

if TYPE_CHECKING:
    from vmcore.mm import Mm

_PAGE_MASK = PAGE_SIZE - 1
_PROT_BITS = VmFlags.READ | VmFlags.WRITE | VmFlags.EXEC


def _err(code: int, msg: str) -> VmError:
    return VmError(code, msg)


def _page_align(n: int) -> int:
    return (n + _PAGE_MASK) & ~_PAGE_MASK


# -- range walks
def _fixup_range(mm: Mm, start: int, length: int, what: str) -> tuple[list[Vma], bool]:
    """Split VMAs at the edges of [start, start+length); return the VMAs
    inside and whether the range had an unmapped gap."""
    end = start + length
    vmas = mm._overlapping(start, end)
    gap = False
    pos = start
    out = []
    for vma in vmas:
        if vma.start > pos:
            gap = True
            break  # callers stop at the first hole (mprotect, mlock)
        if vma.start < start:
            vma = mm.split_vma(vma, start)
        if vma.end > end:
            mm.split_vma(vma, end)
        out.append(vma)
        pos = vma.end
    if pos < end:
        gap = True
    return out, gap


# -- mprotect
def sys_mprotect(mm: Mm, start: int, length: int, prot: int) -> None:
    if start & _PAGE_MASK:
        raise _err(errno.EINVAL, "mprotect: unaligned start")
    if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC):
        raise _err(errno.EINVAL, "mprotect: unknown prot bits")
    length = _page_align(length)
    if length == 0:
        return
    first = mm.vma_at(start)
    if first is None:
        raise _err(errno.ENOMEM, "mprotect: start not mapped")
    vmas, gap = _fixup_range(mm, start, length, "mprotect")
    for vma in vmas:
        _change_protection(mm, vma, prot)
    for vma in vmas:
        if vma in mm._vmas:
            mm._merge_around(vma)
    if gap:
        raise _err(errno.ENOMEM, "mprotect: range has an unmapped gap")


def _change_protection(mm: Mm, vma: Vma, prot: int) -> None:
    """mprotect_fixup + change_pte_range for a whole VMA."""
    vma.flags = (vma.flags & ~_PROT_BITS) | prot_to_vmflags(prot)
    vma.prot = prot
    lo, hi = vma.start_vpn, vma.end_vpn
    if vma.flags & VmFlags.MANYPROTS:
        vma.pt.reset_prot(lo, hi)  # extension: mprotect resets own protections
        vma.flags &= ~VmFlags.MANYPROTS
    vma.pt.clear_bits(lo, hi, PTE_WRITE)
    if prot & PROT_WRITE:
        if not vma.shared:
            vma.pt.set_bits_where(lo, hi, PTE_WRITE, PTE_PRESENT | PTE_ANON)
        elif vma.wants_writenotify():
            vma.pt.set_bits_where(lo, hi, PTE_WRITE, PTE_PRESENT | PTE_DIRTY)
        else:
            vma.pt.set_bits_where(lo, hi, PTE_WRITE, PTE_PRESENT)


# -- mlock
def sys_mlock(mm: Mm, start: int, length: int) -> None:
    _set_locked(mm, start, length, True)
    mm.make_pages_present(start & ~_PAGE_MASK, start + _page_align(length))


def sys_munlock(mm: Mm, start: int, length: int) -> None:
    _set_locked(mm, start, length, False)


def _set_locked(mm: Mm, start: int, length: int, on: bool) -> None:
    length = _page_align(length + (start & _PAGE_MASK))
    start &= ~_PAGE_MASK
    if mm.vma_at(start) is None and length:
        raise _err(errno.ENOMEM, "mlock: not mapped")
    vmas, gap = _fixup_range(mm, start, length, "mlock")
    for vma in vmas:
        if on:
            vma.flags |= VmFlags.LOCKED
        else:
            vma.flags &= ~VmFlags.LOCKED
    for vma in vmas:
        if vma in mm._vmas:
            mm._merge_around(vma)
    if gap:
        raise _err(errno.ENOMEM, "mlock: range has an unmapped gap")
