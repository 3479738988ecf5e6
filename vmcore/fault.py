"""fault(): the single entry point through which file data is reached.

Design
------
Linux 2.6.23 ("mm: merge populate and nopage into fault") replaced ->nopage and
->populate with one ->fault(vma, vmf) method: whatever the access (a user page
fault, MAP_POPULATE, remap_file_pages prefault, a nonlinear file PTE), the
filesystem answers the same question -- "give me page pgoff of this object"
-- through one function, with a `struct vm_fault` carrying the request and the
answer.  shmfs takes that idea one step further: *every* page of file data
that anybody reads or writes goes through :func:`fault`, including read(2) and
write(2) (Mapping.read / Mapping.write).  The consequences:

* one place decides allocation, charging (ENOSPC), the EOF rule (SIGBUS), the
  page flags (UPTODATE/DIRTY) and the statistics, so read(2), write(2), VMA
  faults and prefaults can never disagree about what a page is;
* nothing else installs pages in a Mapping's page cache (fallocate's
  preallocation, SGP_FALLOC in shmem, lives here too: :func:`falloc_pages`);
* the pager (vm areas, windows, rmap) sits on the same path: its faults set
  ``vmf.vma`` and it gets exactly the semantics of shmem_fault.

The rules, as a table (what shmem does):

================================  ==========================================
request                            hole / !UPTODATE page          resident page
================================  ==========================================
read(2)   (no vma, no WRITE)      ZERO_FRAME, allocates nothing  frame, MINOR
                                  (shmem_file_read_iter, SGP_READ)
read fault through a vma          allocate+charge, UPTODATE,     frame, MINOR
                                  MAJOR (shmem_fault, SGP_CACHE)
WRITE (write(2) or write fault)   allocate+charge, MAJOR         frame, MINOR
                                  -> UPTODATE|DIRTY              -> UPTODATE|DIRTY
MKWRITE (write-notify refault)    NOPAGE (page went away: retry) -> DIRTY, MINOR
shared frame (vmcore/cow.py)       --                             WRITE/MKWRITE: copied
                                                                  for the writer first
pgoff >= ceil(i_size / PAGE)      SIGBUS (error EFAULT)          SIGBUS
charge fails (size= limit)        SIGBUS (error ENOSPC), nr_done = pages served
================================  ==========================================

write(2) extends i_size *before* it faults (Mapping.write), so the EOF rule
needs no special flag: only faults that did not come from write(2) can land
beyond EOF.

Fault-around instead of a call per page
---------------------------------------
A 1 MiB read(2) is 256 pages.  Calling a Python function per 4 KiB page would
cost more than copying the data, so a VmFault carries ``nr_pages`` and one
call serves a whole run: the page cache returns the run's frames and flags as
two numpy arrays (one slice per 512-page chunk), holes are found with one
vector comparison, the Budget is charged once for all of them, the arena hands
out one (preferably contiguous) block of frames, and flags are updated with one
vector OR.  ``vmf.frames`` is the answer for the whole run; Mapping.read turns
it into merged memoryviews, Mapping.write into one numpy copy per contiguous
run.  A multi-page WRITE that hits the size limit stops at the first page it
could not charge and reports ``nr_done``, so write(2) returns short at a page
boundary with nothing half-written.  A run that crosses EOF is clipped to EOF
(``nr_done`` < ``nr_pages``, no SIGBUS) -- the kernel never faults around
beyond EOF either.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .arena import PAGE_SHIFT, PAGE_SIZE, Arena
from .cow import break_shares
from .errors import NoSpace
from .flags import PG_DIRTY, PG_UPTODATE, FaultFlags, VmFaultResult
from .stats import FaultStats

if TYPE_CHECKING:
    from .mapping import Mapping

__all__ = ["FAULT_STATS", "VmFault", "falloc_pages", "fault", "read1", "statistics", "write1"]

_WRITE = int(FaultFlags.WRITE)
_MKWRITE = int(FaultFlags.MKWRITE)
_PREFAULT = int(FaultFlags.PREFAULT)
_PAGE_MASK = PAGE_SIZE - 1
_ZERO = Arena.ZERO_FRAME
_EMPTY = np.empty(0, dtype=np.int64)

# Plain ints on the hot path: IntFlag arithmetic costs a Python call per operator
# (it was a third of a 4 KiB write's service time).
_MINOR = int(VmFaultResult.MINOR)
_MAJOR = int(VmFaultResult.MAJOR)
_SIGBUS = int(VmFaultResult.SIGBUS)
_NOPAGE = int(VmFaultResult.NOPAGE)
_DIRTY_UPTODATE = PG_UPTODATE | PG_DIRTY

#: global counters over every Mapping (each Mapping also keeps its own)
FAULT_STATS = FaultStats()


@dataclass(slots=True)
class VmFault:
    """struct vm_fault: the request (flags, pgoff, nr_pages, vma, address) and
    the answer (frames, nr_done, error)."""

    flags: FaultFlags
    pgoff: int
    nr_pages: int = 1
    vma: object | None = None
    address: int | None = None
    frames: np.ndarray | None = None
    nr_done: int = 0
    error: int = 0
    # pages [a, b) the caller overwrites entirely after a WRITE fault (write(2)):
    # a shared frame there is replaced without copying its old contents
    overwrite: tuple[int, int] | None = None


def _count(
    m: FaultStats, flags: int, via_vma: bool, res: int, done: int, allocated: int, zero: int
) -> None:
    # Unrolled, and only the counters that change: this runs once per request.
    for s in (FAULT_STATS, m):
        s.faults += 1
        if flags & (_WRITE | _MKWRITE):
            s.write += 1
            if flags & _MKWRITE:
                s.mkwrite += 1
        else:
            s.read += 1
        if flags & _PREFAULT:
            s.prefault += 1
        if via_vma:
            s.via_vma += 1
        if res & _MAJOR:
            s.major += 1
        elif not res & (_SIGBUS | _NOPAGE):
            s.minor += 1
        if res & _SIGBUS:
            s.sigbus += 1
        if res & _NOPAGE:
            s.nopage += 1
        s.pages += done
        if allocated:
            s.pages_allocated += allocated
        if zero:
            s.zero_pages += zero


def read1(mapping: Mapping, pgoff: int) -> int:
    """read(2) of one page below EOF (SGP_READ, no vma): its frame, or ZERO_FRAME
    for a hole or a !UPTODATE page; allocates nothing. Exactly what
    ``fault(mapping, VmFault(READ, pgoff))`` answers and counts, without the
    VmFault, the frame array and the general counter pass: a 4 KiB READ (random
    reads, holes) is one such fault per request (docs/performance.md, issue 15).
    The caller (Mapping.read) has clipped the range to i_size."""
    frame, pf = mapping.pages.lookup1(pgoff)
    zero = frame < 0 or not pf & PG_UPTODATE
    if zero:
        frame = _ZERO
    for s in (FAULT_STATS, mapping.fstats):  # _count(..., READ, False, MINOR, 1, 0, zero)
        s.faults += 1
        s.read += 1
        s.minor += 1
        s.pages += 1
        if zero:
            s.zero_pages += 1
    return frame


def write1(mapping: Mapping, pgoff: int) -> int:
    """write(2) into one page (i_size already extended past it): the frame to copy
    into, -1 when the page could not be charged (ENOSPC), -2 when the resident
    frame is shared (copy-on-write: the caller takes the general fault() path,
    which breaks the share). Otherwise exactly what ``fault(mapping,
    VmFault(WRITE, pgoff))`` does and counts -- UPTODATE|DIRTY, charge, one frame,
    one page-cache slot -- without the VmFault and the frame array: every small
    write is one such fault (4 KiB appends, 512-byte appends)."""
    pages = mapping.pages
    frame, pf = pages.lookup1(pgoff)
    if frame >= 0:
        if mapping.arena.is_shared(frame):
            return -2
        if pf & _DIRTY_UPTODATE != _DIRTY_UPTODATE:
            pages.set_flags(pgoff, 1, _DIRTY_UPTODATE)
        for s in (FAULT_STATS, mapping.fstats):  # _count(..., WRITE, False, MINOR, 1, 0, 0)
            s.faults += 1
            s.write += 1
            s.minor += 1
            s.pages += 1
        return frame
    if not mapping.budget.charge(1):
        for s in (FAULT_STATS, mapping.fstats):  # enospc, _count(..., SIGBUS, 0, 0, 0)
            s.enospc += 1
            s.faults += 1
            s.write += 1
            s.sigbus += 1
        return -1
    frame = mapping.arena.alloc1()
    pages.insert1(pgoff, frame, _DIRTY_UPTODATE)
    for s in (FAULT_STATS, mapping.fstats):  # _count(..., WRITE, False, MAJOR, 1, 1, 0)
        s.faults += 1
        s.write += 1
        s.major += 1
        s.pages += 1
        s.pages_allocated += 1
    return frame


def fault(mapping: Mapping, vmf: VmFault) -> int:
    """Serve pages [vmf.pgoff, vmf.pgoff + vmf.nr_pages) of `mapping`.

    Enter: flags, pgoff >= 0, nr_pages >= 1 (vma/address when from a Vma).
    Return: the VM_FAULT_* mask as a plain int (VmFaultResult(res) names it);
    vmf.frames (one frame per served page),
    vmf.nr_done, vmf.error (EFAULT beyond EOF, ENOSPC at the size limit).
    """
    flags = int(vmf.flags)
    pgoff = vmf.pgoff
    nr = vmf.nr_pages
    if pgoff < 0 or nr < 1:
        raise ValueError(f"bad fault range pgoff={pgoff} nr_pages={nr}")
    via_vma = vmf.vma is not None
    eof = (mapping.size + _PAGE_MASK) >> PAGE_SHIFT
    if pgoff >= eof:  # shmem_fault: beyond i_size
        vmf.frames = _EMPTY
        vmf.nr_done = 0
        vmf.error = errno.EFAULT
        _count(mapping.fstats, flags, via_vma, _SIGBUS, 0, 0, 0)
        return _SIGBUS
    if pgoff + nr > eof:  # fault-around never crosses EOF
        nr = eof - pgoff
    pages = mapping.pages
    vmf.error = 0
    if nr == 1 and not flags & _MKWRITE:
        # One resident page (4 KiB random I/O): the same rules with plain ints.
        frame, pf = pages.lookup1(pgoff)
        if frame >= 0:
            zero = 0
            if not flags & _WRITE and not via_vma:  # read(2), SGP_READ
                if not pf & PG_UPTODATE:
                    frame = _ZERO
                    zero = 1
            else:
                bits = PG_UPTODATE | PG_DIRTY if flags & _WRITE else PG_UPTODATE
                if pf & bits != bits:
                    pages.set_flags(pgoff, 1, bits)
                if flags & _WRITE and mapping.arena.is_shared(frame):
                    one = np.array((frame,), dtype=np.int64)
                    break_shares(mapping, pgoff, one, vmf.overwrite)  # do_wp_page
                    frame = int(one[0])
            vmf.frames = np.array((frame,), dtype=np.int64)
            vmf.nr_done = 1
            _count(mapping.fstats, flags, via_vma, _MINOR, 1, 0, zero)
            return _MINOR
        if flags & _WRITE or via_vma:
            # One hole to allocate (appending writes): the allocating path below
            # with plain ints -- charge, one frame, one page-cache slot.
            if not mapping.budget.charge(1):
                vmf.frames = _EMPTY
                vmf.nr_done = 0
                vmf.error = errno.ENOSPC
                FAULT_STATS.enospc += 1
                mapping.fstats.enospc += 1
                _count(mapping.fstats, flags, via_vma, _SIGBUS, 0, 0, 0)
                return _SIGBUS
            frame = mapping.arena.alloc1()
            pages.insert1(pgoff, frame, PG_UPTODATE | PG_DIRTY if flags & _WRITE else PG_UPTODATE)
            vmf.frames = np.array((frame,), dtype=np.int64)
            vmf.nr_done = 1
            _count(mapping.fstats, flags, via_vma, _MAJOR, 1, 1, 0)
            return _MAJOR
    frames, pflags = pages.lookup(pgoff, nr)

    if not flags & (_WRITE | _MKWRITE) and not via_vma:
        # read(2): SGP_READ -- holes and fallocated pages read as zeros
        absent = (pflags & PG_UPTODATE) == 0
        nzero = int(np.count_nonzero(absent))
        if nzero:
            frames[absent] = _ZERO
        vmf.frames = frames
        vmf.nr_done = nr
        _count(mapping.fstats, flags, False, _MINOR, nr, 0, nzero)
        return _MINOR

    if flags & _MKWRITE and not flags & _WRITE:
        # page_mkwrite: the page must still be there; else the caller refaults
        if (frames < 0).any():
            vmf.frames = _EMPTY
            vmf.nr_done = 0
            _count(mapping.fstats, flags, via_vma, _NOPAGE, 0, 0, 0)
            return _NOPAGE
        pages.set_flags(pgoff, nr, PG_DIRTY)
        break_shares(mapping, pgoff, frames)  # a window store: the writer gets a copy
        vmf.frames = frames
        vmf.nr_done = nr
        _count(mapping.fstats, flags, via_vma, _MINOR, nr, 0, 0)
        return _MINOR

    # allocating path: write(2), write fault, or read fault through a vma
    bits = PG_UPTODATE | PG_DIRTY if flags & _WRITE else PG_UPTODATE
    holes = frames < 0
    nholes = int(np.count_nonzero(holes))
    res = _MINOR
    done = nr
    charged = 0
    if nholes:
        charged = mapping.budget.charge(nholes)
        if charged < nholes:  # ENOSPC: serve the pages before the first uncharged hole
            done = int(np.flatnonzero(holes)[charged])
            frames = frames[:done]
            holes = holes[:done]
            res = _SIGBUS
            vmf.error = errno.ENOSPC
            FAULT_STATS.enospc += 1
            mapping.fstats.enospc += 1
        if charged:
            new = mapping.arena.alloc(charged)
            if charged == done:
                frames = new
                pages.insert_range(pgoff, new, bits)
            else:
                frames[holes] = new
                ins = np.full(done, -1, dtype=np.int64)
                ins[holes] = new
                pages.insert_range(pgoff, ins, bits)
            res |= _MAJOR
    if done > charged and ((pflags[:done] & bits) != bits).any():
        pages.set_flags(pgoff, done, bits)  # resident pages not yet uptodate/dirty
    if flags & _WRITE and done > charged:
        break_shares(mapping, pgoff, frames, vmf.overwrite)  # shared frames: copy
    vmf.frames = frames
    vmf.nr_done = done
    _count(mapping.fstats, flags, via_vma, res, done, charged, 0)
    return res


def _ram_pages() -> int:
    """Physical memory in pages: the most any fallocate can preallocate."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> PAGE_SHIFT
    except (ValueError, OSError):
        return 1 << 40


def falloc_pages(mapping: Mapping, pgoff: int, nr: int) -> int:
    """Preallocate pages [pgoff, pgoff+nr) as !UPTODATE (shmem SGP_FALLOC).

    All or nothing: if the Budget cannot charge every missing page, nothing
    changes and NoSpace is raised.  Returns the number of pages allocated.
    Pages that were already fallocated (!UPTODATE) become UPTODATE (zero data),
    as in shmem (checked against /dev/shm); uptodate pages are left alone.
    i_size is the caller's business.
    """
    if nr <= 0:
        return 0
    # shmem_fallocate: a range of more pages than the filesystem holds is ENOSPC before
    # anything is looked at (without it a length near 2^63 asked lookup() for an array
    # of 2^51 entries: MemoryError, answered EIO). Unlimited (size=0): RAM bounds it.
    limit = mapping.budget.max_pages or _ram_pages()
    if nr > limit:
        raise NoSpace(f"fallocate of {nr} pages: the filesystem holds {limit}")
    pages = mapping.pages
    frames, pflags = pages.lookup(pgoff, nr)
    holes = frames < 0
    nholes = int(np.count_nonzero(holes))
    if nholes:
        charged = mapping.budget.charge(nholes)
        if charged < nholes:
            mapping.budget.uncharge(charged)
            raise NoSpace(f"fallocate needs {nholes} pages")
    if nholes < nr and ((pflags & PG_UPTODATE) == 0).any():
        # shmem_get_folio(SGP_FALLOC) on a page fallocated earlier clears it and
        # marks it uptodate: a second fallocate turns preallocated pages into data
        pages.set_flags(pgoff, nr, PG_UPTODATE)
    if not nholes:
        return 0
    new = mapping.arena.alloc(nholes)
    frames[holes] = new
    frames[~holes] = -1
    pages.insert_range(pgoff, frames, 0)
    FAULT_STATS.pages_allocated += nholes
    mapping.fstats.pages_allocated += nholes
    return nholes


def statistics() -> dict[str, int]:
    """Global fault-path counters (every Mapping together)."""
    return FAULT_STATS.as_dict()
