"""VMAs (``struct vm_area_struct``) and the user-visible constants of the pager.

A Vma covers ``[start, end)`` of one Mm, maps ``mapping`` from page ``pgoff``
on, and owns the page table of its range (vmcore.pagetable).  Values of the
PROT_/MAP_/MADV_/MS_ constants are those of Linux x86-64, so programs (and the
FUSE ioctls that will carry them) can pass the kernel's numbers unchanged.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from vmcore.pagetable import PAGE_SHIFT, PageTable

if TYPE_CHECKING:
    from vmcore.mm import Mm

# mmap(2) / mprotect(2)
PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_TYPE = 0x0F
MAP_FIXED = 0x10
MAP_POPULATE = 0x8000
MAP_NONBLOCK = 0x10000
#: remap_file_pages flag of the per-page-protection extension (RFP-prot's
#: MAP_CHGPROT): with it, ``prot`` is the protection of the remapped pages.
MAP_CHGPROT = 0x20000
_MAP_KNOWN = MAP_TYPE | MAP_FIXED | MAP_POPULATE | MAP_NONBLOCK

# madvise(2)
MADV_NORMAL = 0
MADV_WILLNEED = 3
MADV_DONTNEED = 4
MADV_REMOVE = 9

# msync(2)
MS_ASYNC = 1
MS_INVALIDATE = 2
MS_SYNC = 4


class VmFlags(enum.IntFlag):
    """vm_flags bits the model uses (kernel values)."""

    READ = 0x00000001
    WRITE = 0x00000002
    EXEC = 0x00000004
    SHARED = 0x00000008
    MAYREAD = 0x00000010
    MAYWRITE = 0x00000020
    MAYSHARE = 0x00000080
    LOCKED = 0x00002000
    NONLINEAR = 0x00800000
    CAN_NONLINEAR = 0x08000000
    #: extension: the VMA holds PTEs with their own protection (RFP-prot's VM_MANYPROTS)
    MANYPROTS = 0x40000000


class PagerExt(enum.IntFlag):
    """Behaviour beyond Linux 2.6.23, each off unless asked for (docs/pager.md).

    MADV_REMOVE_NONLINEAR: ``madvise(MADV_REMOVE)`` on a VM_NONLINEAR VMA punches
        the object pages its PTEs show, instead of EINVAL (UML's hot-unplug).
    PER_PAGE_PROT: ``remap_file_pages(..., prot, pgoff, MAP_CHGPROT)`` gives the
        remapped pages their own PROT_* (Blaisorblade's unmerged RFP-prot). The
        fault path consults the page's protection first, so a write to a page
        without PROT_WRITE is SIGSEGV while a write to a write-notify read-only
        PTE is a write-notify fault.  ``mprotect`` resets own protections in its
        range, and so does a remap without MAP_CHGPROT for the pages it remaps.
    NONLINEAR_WRITENOTIFY: ``remap_file_pages`` on a write-notify mapping makes
        the VMA nonlinear instead of SZ's fallback to linear VMAs, and msync's
        page_mkclean walks nonlinear VMAs too.
    """

    NONE = 0
    MADV_REMOVE_NONLINEAR = 0x1
    PER_PAGE_PROT = 0x2
    NONLINEAR_WRITENOTIFY = 0x4


def prot_to_vmflags(prot: int) -> VmFlags:
    f = VmFlags(0)
    if prot & PROT_READ:
        f |= VmFlags.READ
    if prot & PROT_WRITE:
        f |= VmFlags.WRITE
    if prot & PROT_EXEC:
        f |= VmFlags.EXEC
    return f


def prot_allows(prot: int, write: bool) -> bool:
    """x86 semantics: PROT_WRITE implies readable; PROT_NONE allows nothing."""
    if write:
        return bool(prot & PROT_WRITE)
    return bool(prot & (PROT_READ | PROT_WRITE | PROT_EXEC))


_SHARED, _NONLINEAR = int(VmFlags.SHARED), int(VmFlags.NONLINEAR)
_WRITE_SHARED = int(VmFlags.WRITE | VmFlags.SHARED)


class Vma:
    """One virtual memory area: ``[start, end)`` of ``mm`` showing ``mapping``.

    ``pgoff`` is vm_pgoff (the object page shown at ``start`` while linear).
    ``prot`` is the PROT_* the VMA was given; ``flags`` the vm_flags.
    """

    __slots__ = ("end", "flags", "mapping", "mm", "pgoff", "private_data", "prot", "pt", "start")

    def __init__(
        self,
        mm: Mm,
        start: int,
        end: int,
        mapping: Any,
        pgoff: int,
        prot: int,
        flags: VmFlags,
        pt: PageTable | None = None,
    ) -> None:
        self.mm = mm
        self.start = start
        self.end = end
        self.mapping = mapping
        self.pgoff = pgoff
        self.prot = prot
        self.flags = flags
        self.pt = pt if pt is not None else PageTable(getattr(mm, "pt_budget", None))
        self.private_data: object | None = None

    # geometry -------------------------------------------------------------
    @property
    def npages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT

    @property
    def start_vpn(self) -> int:
        return self.start >> PAGE_SHIFT

    @property
    def end_vpn(self) -> int:
        return self.end >> PAGE_SHIFT

    @property
    def shared(self) -> bool:
        return bool(int(self.flags) & _SHARED)  # int: IntFlag & costs ~3 us

    @property
    def nonlinear(self) -> bool:
        return bool(int(self.flags) & _NONLINEAR)

    def linear_pgoff(self, address: int) -> int:
        """linear_page_index(vma, address)."""
        return ((address - self.start) >> PAGE_SHIFT) + self.pgoff

    def index_of(self, address: int) -> int:
        """Window page index of ``address`` (0 = the VMA's first page)."""
        return (address - self.start) >> PAGE_SHIFT

    def wants_writenotify(self) -> bool:
        """vma_wants_writenotify: shared+writable and the mapping asks for it."""
        if int(self.flags) & _WRITE_SHARED != _WRITE_SHARED:
            return False
        if getattr(self.mapping, "page_mkwrite", None) is not None:
            return True
        return bool(getattr(self.mapping, "write_notify", False))

    def __repr__(self) -> str:
        kind = "nonlinear" if self.nonlinear else "linear"
        share = "shared" if self.shared else "private"
        return (
            f"<Vma {self.start:#x}-{self.end:#x} pgoff={self.pgoff} prot={self.prot} "
            f"{share} {kind}>"
        )
