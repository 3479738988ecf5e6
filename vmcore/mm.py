"""Mm: an address space of VMAs over Mappings (struct mm_struct).

The system calls of the 2.6.23 model -- mmap, munmap, mprotect, mlock,
madvise, msync, remap_file_pages (vmcore.fremap) -- plus ``load``/``store``,
which walk the page tables and call the single fault path (vmcore.memory) on a
miss or a write to a read-only PTE.  Errors are VmError(errno) as the syscall
would return them; accesses raise Sigbus/Sigsegv carrying the address.

Every PTE change that a cache of the window might depend on (zaps by
truncate/punch, munmap, MADV_DONTNEED, remaps) is reported to listeners as
``(vma, first_window_page, nr_pages, reason)``, in contiguous runs; see
:meth:`Mm.add_zap_listener`.
"""

from __future__ import annotations

import bisect
import errno
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vmcore.errors import Sigbus, Sigsegv, VmError
from vmcore.madvise import sys_madvise, sys_msync
from vmcore.memory import handle_mm_fault
from vmcore.mprotect import sys_mlock, sys_mprotect, sys_munlock
from vmcore.pagetable import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_ANON,
    PTE_DIRTY,
    PTE_FILE,
    PTE_OWNPROT,
    PTE_PRESENT,
    PTE_WRITE,
    Zapped,
)
from vmcore.rmap import rmap_of
from vmcore.vma import (
    MAP_FIXED,
    MAP_NONBLOCK,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_TYPE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    PagerExt,
    Vma,
    VmFlags,
    prot_allows,
    prot_to_vmflags,
)

_PAGE_MASK = PAGE_SIZE - 1
_PROT_BITS = VmFlags.READ | VmFlags.WRITE | VmFlags.EXEC

ZapListener = Callable[[Vma, int, int, str], None]


def _err(code: int, msg: str) -> VmError:
    return VmError(code, msg)


def _page_align(n: int) -> int:
    return (n + _PAGE_MASK) & ~_PAGE_MASK


@dataclass(slots=True)
class MmStats:
    minor: int = 0
    major: int = 0
    cow: int = 0
    mkwrite: int = 0
    page_mkwrite: int = 0
    sigbus: int = 0
    sigsegv: int = 0
    zaps: int = 0
    ptes_zapped: int = 0
    remaps: int = 0
    remap_pages: int = 0
    remap_shortcuts: int = 0
    remap_linear_fallbacks: int = 0
    nonlinear_conversions: int = 0
    prefault_errors: int = 0


class Mm:
    """An address space.  ``ext`` turns on behaviour beyond 2.6.23 (PagerExt)."""

    def __init__(
        self,
        *,
        ext: PagerExt = PagerExt.NONE,
        pte_file_max_bits: int = 46,
        mmap_base: int = 0x1000_0000,
        task_size: int = 1 << 47,
        max_map_count: int = 65530,
    ) -> None:
        self.ext = PagerExt(ext)
        self.pte_file_max_bits = pte_file_max_bits
        self.mmap_base = mmap_base
        self.task_size = task_size
        self.max_map_count = max_map_count
        self._vmas: list[Vma] = []  # sorted by start
        self._starts: list[int] = []
        self._listeners: list[ZapListener] = []
        self.stats = MmStats()
        self.pt_budget: Any = None  # charged for page-table chunks (PageTable.budget)

    # ================================================================ VMA list
    @property
    def vmas(self) -> list[Vma]:
        return list(self._vmas)

    @property
    def map_count(self) -> int:
        return len(self._vmas)

    def find_vma(self, address: int) -> Vma | None:
        """The first VMA with ``end > address`` (it may start above address)."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and self._vmas[i].end > address:
            return self._vmas[i]
        if i + 1 < len(self._vmas):
            return self._vmas[i + 1]
        return None

    def vma_at(self, address: int) -> Vma | None:
        """The VMA containing ``address``, or None."""
        v = self.find_vma(address)
        return v if v is not None and v.start <= address else None

    def _insert(self, vma: Vma) -> None:
        i = bisect.bisect_left(self._starts, vma.start)
        self._starts.insert(i, vma.start)
        self._vmas.insert(i, vma)

    def _remove(self, vma: Vma) -> None:
        i = bisect.bisect_left(self._starts, vma.start)
        assert self._vmas[i] is vma
        del self._starts[i]
        del self._vmas[i]

    def _overlapping(self, start: int, end: int) -> list[Vma]:
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out = []
        while i < len(self._vmas) and self._vmas[i].start < end:
            if self._vmas[i].end > start:
                out.append(self._vmas[i])
            i += 1
        return out

    def split_vma(self, vma: Vma, address: int) -> Vma:
        """Split at ``address``; returns the upper part (both keep all flags)."""
        if self.map_count >= self.max_map_count:
            raise _err(errno.ENOMEM, "split_vma: max_map_count reached")
        r = rmap_of(vma.mapping)
        r.remove_vma(vma)
        right = Vma(
            self,
            address,
            vma.end,
            vma.mapping,
            vma.pgoff + ((address - vma.start) >> PAGE_SHIFT),
            vma.prot,
            vma.flags,
            vma.pt.split(address >> PAGE_SHIFT),
        )
        vma.end = address
        r.add_vma(vma)
        r.add_vma(right)
        self._insert(right)
        return right

    def _mergeable(self, a: Vma, b: Vma) -> bool:
        return (
            a.end == b.start
            and a.mapping is b.mapping
            and a.flags == b.flags
            and a.prot == b.prot
            and a.pgoff + a.npages == b.pgoff
            and a.private_data is None
            and b.private_data is None
        )

    def _merge(self, a: Vma, b: Vma) -> Vma:
        r = rmap_of(a.mapping)
        r.remove_vma(a)
        r.remove_vma(b)
        self._remove(b)
        a.pt.absorb(b.pt)
        a.end = b.end
        r.add_vma(a)
        return a

    def _merge_around(self, vma: Vma) -> Vma:
        """vma_merge with the neighbours where flags, prot, file and pgoff agree."""
        i = bisect.bisect_left(self._starts, vma.start)
        if i + 1 < len(self._vmas) and self._mergeable(vma, self._vmas[i + 1]):
            self._merge(vma, self._vmas[i + 1])
        if i > 0 and self._mergeable(self._vmas[i - 1], vma):
            vma = self._merge(self._vmas[i - 1], vma)
        return vma

    # ================================================================ mmap
    def get_unmapped_area(self, length: int, hint: int | None = None) -> int:
        """First fit at or above the hint (or mmap_base)."""
        addr = max(self.mmap_base, _page_align(hint or 0))
        for v in self._vmas:
            if v.end <= addr:
                continue
            if v.start >= addr + length:
                break
            addr = v.end
        if addr + length > self.task_size:
            raise _err(errno.ENOMEM, "no room for the mapping")
        return addr

    def mmap(
        self,
        mapping: Any,
        length: int,
        prot: int,
        flags: int,
        pgoff: int = 0,
        addr: int | None = None,
    ) -> int:
        """do_mmap_pgoff for a file mapping; returns the address."""
        if length <= 0:
            raise _err(errno.EINVAL, "mmap: zero length")
        typ = flags & MAP_TYPE
        if typ not in (MAP_SHARED, MAP_PRIVATE):
            raise _err(errno.EINVAL, "mmap: need exactly one of MAP_SHARED, MAP_PRIVATE")
        if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC):
            raise _err(errno.EINVAL, "mmap: unknown prot bits")
        if pgoff < 0:
            raise _err(errno.EINVAL, "mmap: negative pgoff")
        length = _page_align(length)
        if length > self.task_size:
            raise _err(errno.ENOMEM, "mmap: too long")
        npages = length >> PAGE_SHIFT
        if pgoff + npages >= 1 << 64:
            raise _err(errno.EOVERFLOW, "mmap: pgoff + length overflows")
        if flags & MAP_FIXED:
            if addr is None or addr & _PAGE_MASK:
                raise _err(errno.EINVAL, "mmap: MAP_FIXED needs an aligned address")
            if addr + length > self.task_size:
                raise _err(errno.ENOMEM, "mmap: beyond task size")
        else:
            addr = self.get_unmapped_area(length, addr)
        if self.map_count >= self.max_map_count:
            raise _err(errno.ENOMEM, "mmap: max_map_count reached")
        vmf = prot_to_vmflags(prot) | VmFlags.MAYREAD | VmFlags.MAYWRITE
        if typ == MAP_SHARED:
            vmf |= VmFlags.SHARED | VmFlags.MAYSHARE
        if getattr(mapping, "can_nonlinear", True):
            vmf |= VmFlags.CAN_NONLINEAR
        self.mmap_region(mapping, addr, length, vmf, prot, pgoff)
        if flags & MAP_POPULATE and not flags & MAP_NONBLOCK:
            self.make_pages_present(addr, addr + length)
        return addr

    def mmap_region(
        self, mapping: Any, addr: int, length: int, vm_flags: VmFlags, prot: int, pgoff: int
    ) -> Vma:
        """Unmap whatever is there, then link a new linear VMA (merged if possible)."""
        self.do_munmap(addr, length)
        vm_flags = VmFlags(vm_flags) & ~(VmFlags.NONLINEAR | VmFlags.MANYPROTS | VmFlags.LOCKED)
        vma = Vma(self, addr, addr + length, mapping, pgoff, prot, vm_flags)
        self._insert(vma)
        rmap_of(mapping).add_vma(vma)
        return self._merge_around(vma)

    # ================================================================ munmap
    def munmap(self, start: int, length: int) -> None:
        if start & _PAGE_MASK or start + length > self.task_size:
            raise _err(errno.EINVAL, "munmap: unaligned or out of range")
        length = _page_align(length)
        if length == 0:
            raise _err(errno.EINVAL, "munmap: zero length")
        self.do_munmap(start, length)

    def do_munmap(self, start: int, length: int) -> None:
        end = start + length
        for vma in self._overlapping(start, end):
            if vma.start < start:
                vma = self.split_vma(vma, start)
            if vma.end > end:
                self.split_vma(vma, end)
            z = vma.pt.clear_range(vma.start_vpn, vma.end_vpn)
            self._after_zap(vma, z, "munmap", notify=False)
            self._notify(vma, 0, vma.npages, "munmap")
            rmap_of(vma.mapping).remove_vma(vma)
            self._remove(vma)

    def exit_mmap(self) -> None:
        """Tear the address space down (process exit): every VMA unmapped."""
        for vma in list(self._vmas):
            self.do_munmap(vma.start, vma.end - vma.start)

    # ======================================= mprotect, mlock, madvise, msync
    def mprotect(self, start: int, length: int, prot: int) -> None:
        """See vmcore.mprotect."""
        sys_mprotect(self, start, length, prot)

    def mlock(self, start: int, length: int) -> None:
        sys_mlock(self, start, length)

    def munlock(self, start: int, length: int) -> None:
        sys_munlock(self, start, length)

    def madvise(self, start: int, length: int, advice: int) -> None:
        """See vmcore.madvise."""
        sys_madvise(self, start, length, advice)

    def msync(self, start: int, length: int, flags: int) -> None:
        sys_msync(self, start, length, flags)

    # ====================================================== remap_file_pages
    def remap_file_pages(self, start: int, size: int, prot: int, pgoff: int, flags: int = 0) -> int:
        """See vmcore.fremap."""
        from vmcore.fremap import remap_file_pages

        return remap_file_pages(self, start, size, prot, pgoff, flags)

    def remap_file_pages_vec(self, entries: Any) -> tuple[int, VmError | None]:
        """Many remaps (start, size, prot, pgoff, flags) in order; see vmcore.fremap."""
        from vmcore.fremap import remap_file_pages_vec

        return remap_file_pages_vec(self, entries)

    # =============================================================== populate
    def make_pages_present(self, start: int, end: int) -> int:
        """Prefault [start, end) through fault(): write faults if the VMA is
        writable (get_user_pages(write=VM_WRITE)); stops at the first error,
        which the callers ignore.  Returns pages made present."""
        n = 0
        addr = start & ~_PAGE_MASK
        while addr < end:
            vma = self.vma_at(addr)
            if vma is None:
                break
            write = bool(int(vma.flags) & int(VmFlags.WRITE))
            try:
                handle_mm_fault(self, vma, addr, write, prefault=True)
            except VmError:
                self.stats.prefault_errors += 1
                break
            n += 1
            addr += PAGE_SIZE
        return n

    # ================================================================ access
    def _resolve(self, address: int, write: bool) -> tuple[Vma, int]:
        """Frame backing ``address`` for this access, faulting as needed."""
        vma = self.vma_at(address)
        if vma is None:
            self.stats.sigsegv += 1
            raise Sigsegv(address, "no vma")
        vpn = address >> PAGE_SHIFT
        for _ in range(3):
            bits, frame, _pgoff, prot = vma.pt.get(vpn)
            eff = prot if bits & PTE_OWNPROT else vma.prot
            if bits & PTE_PRESENT and (bits & PTE_WRITE or not write) and prot_allows(eff, write):
                if write and not bits & PTE_DIRTY:
                    vma.pt.update_bits(vpn, set_=PTE_DIRTY)
                return vma, frame
            handle_mm_fault(self, vma, address, write)
        raise AssertionError(f"fault at {address:#x} did not make progress")

    def load(self, address: int, n: int) -> bytes:
        """Read n bytes at ``address`` the way a CPU would (faulting on misses)."""
        out = bytearray(n)
        pos = 0
        while pos < n:
            a = address + pos
            off = a & _PAGE_MASK
            k = min(PAGE_SIZE - off, n - pos)
            vma, frame = self._resolve(a, False)
            out[pos : pos + k] = vma.mapping.arena.page(frame)[off : off + k].tobytes()
            pos += k
        return bytes(out)

    def store(self, address: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at ``address`` (page by page; a fault stops the store there)."""
        mv = memoryview(data).cast("B")
        n = len(mv)
        pos = 0
        while pos < n:
            a = address + pos
            off = a & _PAGE_MASK
            k = min(PAGE_SIZE - off, n - pos)
            vma, frame = self._resolve(a, True)
            vma.mapping.arena.page(frame)[off : off + k] = np.frombuffer(
                mv[pos : pos + k], np.uint8
            )
            pos += k

    def views(self, address: int, length: int, write: bool = False) -> list[memoryview]:
        """Zero-copy access: one arena memoryview per page piece of
        [address, address+length), each page resolved (and faulted) as a load
        or, with ``write``, a store would -- the path a window file's read/write
        takes.  Stops with Sigbus/Sigsegv at the first page that cannot be had."""
        out: list[memoryview] = []
        pos = 0
        while pos < length:
            a = address + pos
            off = a & _PAGE_MASK
            k = min(PAGE_SIZE - off, length - pos)
            vma, frame = self._resolve(a, write)
            out.append(vma.mapping.arena.view(frame)[off : off + k])
            pos += k
        return out

    # =================================================================== fork
    def fork(self) -> Mm:
        """dup_mm: VMAs copied; page tables copied for nonlinear VMAs (they
        cannot be refaulted) and private ones (COW copies duplicated eagerly, a
        simplification of COW sharing); linear shared VMAs refault."""
        child = Mm(
            ext=self.ext,
            pte_file_max_bits=self.pte_file_max_bits,
            mmap_base=self.mmap_base,
            task_size=self.task_size,
            max_map_count=self.max_map_count,
        )
        for v in self._vmas:
            if v.nonlinear:
                pt = v.pt.copy()
            elif not v.shared:
                pt = v.pt.copy()
                arena = v.mapping.arena
                for vpn, bits, frame, pgoff, prot in list(pt.populated(v.start_vpn, v.end_vpn)):
                    if bits & PTE_ANON:
                        new = int(arena.alloc(1)[0])
                        arena.page(new)[:] = arena.page(frame)
                        pt.set_present(vpn, new, pgoff, bits, prot)
                    else:
                        pt.update_bits(vpn, clear=PTE_WRITE)
            else:
                pt = None
            c = Vma(
                child, v.start, v.end, v.mapping, v.pgoff, v.prot, v.flags & ~VmFlags.LOCKED, pt
            )
            child._insert(c)
            rmap_of(v.mapping).add_vma(c)
        return child

    # ======================================================= zap reporting
    def add_zap_listener(self, fn: ZapListener) -> None:
        """``fn(vma, first_window_page, nr_pages, reason)`` after every PTE
        change a window cache must forget: reason is 'truncate'/'unmap' (from
        unmap_mapping_range), 'munmap', 'dontneed' or 'remap'."""
        self._listeners.append(fn)

    def remove_zap_listener(self, fn: ZapListener) -> None:
        self._listeners.remove(fn)

    def _notify(self, vma: Vma, first: int, nr: int, reason: str) -> None:
        for fn in self._listeners:
            fn(vma, first, nr, reason)

    def _after_zap(self, vma: Vma, z: Zapped, reason: str, notify: bool = True) -> None:
        """Release what a zap removed (COW frames go back to the arena) and report it."""
        if not len(z):
            return
        self.stats.zaps += 1
        self.stats.ptes_zapped += len(z)
        if len(z) == 1:  # one page (a one-page punch): the same, without numpy
            if int(z.bits[0]) & PTE_ANON:
                vma.mapping.arena.free(z.frame[:1])
            if notify and self._listeners:
                self._notify(vma, int(z.vpn[0]) - vma.start_vpn, 1, reason)
            return
        anon = z.frame[(z.bits & PTE_ANON) != 0]
        if len(anon):
            vma.mapping.arena.free(anon)
        if notify and self._listeners:
            idx = np.sort(z.vpn) - vma.start_vpn
            brk = np.flatnonzero(np.diff(idx) != 1) + 1
            for run in np.split(idx, brk):
                self._notify(vma, int(run[0]), len(run), reason)

    # ============================================================ inspection
    def shown(self, address: int, npages: int) -> list[int | str | None]:
        """What each page shows without faulting: an object pgoff, 'cow' for a
        private copy, or None where nothing is mapped (for pictures and tests)."""
        out: list[int | str | None] = []
        for i in range(npages):
            a = address + (i << PAGE_SHIFT)
            vma = self.vma_at(a)
            if vma is None:
                out.append(None)
                continue
            bits, _f, pgoff, _p = vma.pt.get(a >> PAGE_SHIFT)
            if bits & PTE_ANON:
                out.append("cow")
            elif bits & (PTE_PRESENT | PTE_FILE):
                out.append(pgoff)
            else:
                out.append(vma.linear_pgoff(a))
        return out

    def statistics(self) -> dict[str, int]:
        st: dict[str, int] = {
            "vmas": len(self._vmas),
            "vmas_nonlinear": sum(1 for v in self._vmas if v.nonlinear),
            "resident_pages": sum(v.pt.count(PTE_PRESENT) for v in self._vmas),
            "dirty_pages": sum(v.pt.count(PTE_DIRTY) for v in self._vmas),
            "file_ptes": sum(v.pt.count(PTE_FILE) for v in self._vmas),
            "anon_pages": sum(v.pt.count(PTE_ANON) for v in self._vmas),
            "pte_bytes": sum(v.pt.nbytes for v in self._vmas),
        }
        st.update(
            {
                f"faults_{k}" if k in ("minor", "major") else k: v
                for k, v in asdict(self.stats).items()
            }
        )
        return st


__all__ = ["Mm", "MmStats", "Sigbus", "Sigsegv", "VmError"]
