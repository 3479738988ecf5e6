"""The PTE fault path of the 2.6.23 model (mm/memory.c's handle_pte_fault,
__do_fault, do_wp_page), as a dispatch table.

``handle_mm_fault(mm, vma, address, write)`` looks at the PTE and picks a
handler by (PTE kind, write?, shared VMA?), exactly as handle_pte_fault does:

==============  =====  =======  ============================================
PTE             write  shared   handler
==============  =====  =======  ============================================
none            any    any      do_linear_fault: pgoff = linear position
file            any    any      do_nonlinear_fault: pgoff = pte_to_pgoff,
                                FAULT_FLAG_NONLINEAR
present, RO     yes    yes      do_wp_page (shared): write-notify --
                                fault(MKWRITE), page_mkwrite, mark dirty+RW
present, RO     yes    no       do_wp_page (private): copy-on-write into an
                                anonymous frame (Arena.alloc, uncharged)
==============  =====  =======  ============================================

Before the table comes the protection check: the page's own protection (the
per-page-protection extension) or else the VMA's.  A write the protection does
not allow is SIGSEGV *here*, so a read-only PTE reaching do_wp_page is always a
write-notify (or COW) fault, never a protection fault -- the distinction Nick
Piggin asked about in the thread is made by keeping the protection apart from
the PTE's writable bit.

Every page that becomes present comes out of ``vmcore.fault.fault()`` with
``vmf.vma``/``vmf.address`` set; only COW copies are made here (as the kernel
copies in do_wp_page).  Errors become exceptions: SIGBUS -> Sigbus, SIGSEGV ->
Sigsegv, OOM -> VmError(ENOMEM), each carrying the faulting address.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from vmcore.errors import Sigbus, Sigsegv, VmError
from vmcore.fault import VmFault, fault
from vmcore.flags import FaultFlags, VmFaultResult
from vmcore.pagetable import (
    PAGE_SHIFT,
    PTE_ANON,
    PTE_DIRTY,
    PTE_FILE,
    PTE_OWNPROT,
    PTE_PRESENT,
    PTE_WRITE,
)
from vmcore.vma import PROT_WRITE, Vma, VmFlags, prot_allows

if TYPE_CHECKING:
    from vmcore.mm import Mm

_PAGE_MASK = ~((1 << PAGE_SHIFT) - 1)
_ZERO_FRAME = 0


def _raise_for(res: VmFaultResult, vmf: VmFault, address: int, what: str) -> None:
    if res & VmFaultResult.SIGBUS:
        why = "ENOSPC" if vmf.error == errno.ENOSPC else "beyond EOF"
        raise Sigbus(address, f"{what}: pgoff {vmf.pgoff} {why}", vmf.error or errno.EFAULT)
    if res & VmFaultResult.SIGSEGV:
        raise Sigsegv(address, f"{what}: pgoff {vmf.pgoff}")
    if res & VmFaultResult.OOM:
        raise VmError(errno.ENOMEM, f"{what}: out of memory at {address:#x}")


_ERROR, _SIGBUS, _MAJOR = int(VmFaultResult.ERROR), int(VmFaultResult.SIGBUS), int(
    VmFaultResult.MAJOR)
_NL_BOTH = int(VmFlags.NONLINEAR | VmFlags.CAN_NONLINEAR)
#: FaultFlags for (nonlinear, prefault, shared write), built once
_FAULT_FLAGS = {
    (nl, pf, wr): FaultFlags((FaultFlags.NONLINEAR if nl else 0)
                             | (FaultFlags.PREFAULT if pf else 0) | (FaultFlags.WRITE if wr else 0))
    for nl in (False, True) for pf in (False, True) for wr in (False, True)
}


def _install_bits(vma: Vma, own: int, prot: int, write: bool, frame: int) -> int:
    """PTE bits for a freshly faulted file page (mk_pte + maybe_mkwrite)."""
    bits = PTE_PRESENT | (own & PTE_OWNPROT)
    eff = prot if own & PTE_OWNPROT else vma.prot
    if write:
        return bits | PTE_WRITE | PTE_DIRTY
    if (vma.shared and eff & PROT_WRITE and frame != _ZERO_FRAME
            and not vma.wants_writenotify() and not vma.mapping.arena.is_shared(frame)):
        bits |= PTE_WRITE  # a copy_file_range-shared frame stays read-only (vmcore/cow.py)
    return bits


def _cow(mm: Mm, vma: Vma, vpn: int, src: int, pgoff: int, own: int, prot: int) -> None:
    """Private write: copy the page into a new anonymous frame, map it RW+dirty."""
    arena = vma.mapping.arena
    new = int(arena.alloc(1)[0])
    arena.page(new)[:] = arena.page(src)
    vma.pt.set_present(
        vpn, new, pgoff, PTE_PRESENT | PTE_WRITE | PTE_DIRTY | PTE_ANON | (own & PTE_OWNPROT), prot
    )
    mm.stats.cow += 1


def _do_fault(
    mm: Mm,
    vma: Vma,
    address: int,
    pgoff: int,
    write: bool,
    nonlinear: bool,
    bits: int,
    prot: int,
    prefault: bool,
) -> VmFaultResult:
    """__do_fault: ask fault() for page pgoff, then install the PTE."""
    # a private write only reads the file page, then copies it
    ff = _FAULT_FLAGS[nonlinear, prefault, write and vma.shared]
    vma.pt.need(address >> PAGE_SHIFT)  # page-table memory first (pte_alloc_map)
    vmf = VmFault(ff, pgoff, 1, vma, address & _PAGE_MASK)
    res = fault(vma.mapping, vmf)
    r = int(res)  # plain ints: IntFlag arithmetic costs ~3 us an operation
    if r & _ERROR:
        mm.stats.sigbus += bool(r & _SIGBUS)
        _raise_for(res, vmf, address, "nonlinear fault" if nonlinear else "fault")
    frame = int(vmf.frames[0])  # type: ignore[index]
    vpn = address >> PAGE_SHIFT
    if write and not vma.shared:
        _cow(mm, vma, vpn, frame, pgoff, bits, prot)
    else:
        if write:
            _page_mkwrite(mm, vma, pgoff, address)
        vma.pt.set_present(vpn, frame, pgoff, _install_bits(vma, bits, prot, write, frame), prot)
    if r & _MAJOR:
        mm.stats.major += 1
    else:
        mm.stats.minor += 1
    return res


def _page_mkwrite(mm: Mm, vma: Vma, pgoff: int, address: int) -> None:
    hook: Callable[[Vma, int], int] | None = getattr(vma.mapping, "page_mkwrite", None)
    if hook is not None and vma.wants_writenotify():
        mm.stats.page_mkwrite += 1
        if hook(vma, pgoff) < 0:
            raise Sigbus(address, f"page_mkwrite refused pgoff {pgoff}")


def do_linear_fault(
    mm: Mm, vma: Vma, address: int, bits: int, pgoff: int, prot: int, write: bool, prefault: bool
) -> VmFaultResult:
    return _do_fault(
        mm, vma, address, vma.linear_pgoff(address), write, False, bits, prot, prefault
    )


def do_nonlinear_fault(
    mm: Mm, vma: Vma, address: int, bits: int, pgoff: int, prot: int, write: bool, prefault: bool
) -> VmFaultResult:
    if int(vma.flags) & _NL_BOTH != _NL_BOTH:
        # print_bad_pte + VM_FAULT_OOM: a file PTE in a linear VMA is a bug
        raise VmError(errno.ENOMEM, f"bad file pte at {address:#x} in a linear vma")
    return _do_fault(mm, vma, address, pgoff, write, True, bits, prot, prefault)


def do_wp_page_shared(
    mm: Mm, vma: Vma, address: int, bits: int, pgoff: int, prot: int, write: bool, prefault: bool
) -> VmFaultResult:
    """Write to a read-only PTE of a shared VMA: write-notify (page_mkwrite)."""
    vmf = VmFault(FaultFlags.MKWRITE, pgoff, 1, vma, address & _PAGE_MASK)
    res = fault(vma.mapping, vmf)
    vpn = address >> PAGE_SHIFT
    if res & VmFaultResult.NOPAGE:  # the page went away: refault from scratch
        vma.pt.zap(vpn, vpn + 1)
        if bits & PTE_OWNPROT or pgoff != vma.linear_pgoff(address):
            vma.pt.set_file(vpn, pgoff, prot if bits & PTE_OWNPROT else None)
            return do_nonlinear_fault(mm, vma, address, bits, pgoff, prot, True, prefault)
        return do_linear_fault(mm, vma, address, bits, pgoff, prot, True, prefault)
    if res & VmFaultResult.ERROR:
        _raise_for(res, vmf, address, "write-notify fault")
    _page_mkwrite(mm, vma, pgoff, address)
    frame = int(vmf.frames[0])  # type: ignore[index]
    vma.pt.set_present(
        vpn,
        frame,
        pgoff,
        (bits & (PTE_OWNPROT | PTE_ANON)) | PTE_PRESENT | PTE_WRITE | PTE_DIRTY,
        prot,
    )
    mm.stats.mkwrite += 1
    mm.stats.minor += 1
    return res


def do_wp_page_private(
    mm: Mm, vma: Vma, address: int, bits: int, pgoff: int, prot: int, write: bool, prefault: bool
) -> VmFaultResult:
    """Write to a read-only PTE of a private VMA: break COW (or reuse our own copy)."""
    vpn = address >> PAGE_SHIFT
    if bits & PTE_ANON:
        vma.pt.update_bits(vpn, set_=PTE_WRITE | PTE_DIRTY)
    else:
        _b, frame, _p, _pr = vma.pt.get(vpn)
        _cow(mm, vma, vpn, frame, pgoff, bits, prot)
    mm.stats.minor += 1
    return VmFaultResult.MINOR


_Handler = Callable[..., VmFaultResult]

#: handle_pte_fault as data: (kind, write, shared) -> handler
DISPATCH: dict[tuple[str, bool, bool], _Handler] = {}
for _w in (False, True):
    for _s in (False, True):
        DISPATCH["none", _w, _s] = do_linear_fault
        DISPATCH["file", _w, _s] = do_nonlinear_fault
DISPATCH["present", True, True] = do_wp_page_shared
DISPATCH["present", True, False] = do_wp_page_private


def pte_kind(bits: int) -> str:
    if bits & PTE_PRESENT:
        return "present"
    if bits & PTE_FILE:
        return "file"
    return "none"


def handle_mm_fault(
    mm: Mm, vma: Vma, address: int, write: bool, prefault: bool = False
) -> VmFaultResult:
    """Resolve one access to ``address`` (inside ``vma``); raise on SIGBUS/SIGSEGV."""
    vpn = address >> PAGE_SHIFT
    bits, _frame, pgoff, prot = vma.pt.get(vpn)
    eff = prot if bits & PTE_OWNPROT else vma.prot
    if not prot_allows(eff, write):
        mm.stats.sigsegv += 1
        own = "page" if bits & PTE_OWNPROT else "vma"
        raise Sigsegv(address, f"{'write' if write else 'read'} not allowed by {own} prot {eff}")
    kind = pte_kind(bits)
    if kind == "present" and (not write or bits & PTE_WRITE):
        return VmFaultResult.MINOR  # spurious: nothing to do
    return DISPATCH[kind, write, vma.shared](mm, vma, address, bits, pgoff, prot, write, prefault)
