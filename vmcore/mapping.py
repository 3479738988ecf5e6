"""Mapping: the address_space of one object (file).

A Mapping owns a sparse page cache (pagecache.PageCache), i_size, and a hook
to the reverse map (``rmap``) that the pager plugs in to learn which VMAs and
windows show its pages.  Data only moves through fault(): ``read`` and
``write`` build a VmFault over the whole byte range (fault-around) and then
turn the returned frames into memoryviews / one numpy copy per contiguous run.

Invalidation follows the kernel: truncate is truncate_pagecache (unmap the
range from every VMA including private COW copies, drop the pages, unmap again
to catch racing faults); punch_hole is shmem_fallocate(PUNCH_HOLE) (unmap
without even_cows, drop whole pages, zero the partial edges, unmap again).
Frames are given back to the arena (and their memory to the host) only after
the second unmap, so no PTE can still point at a freed frame.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .arena import PAGE_SHIFT, PAGE_SIZE, Arena
from .budget import Budget
from .cow import break_shares, copy_range
from .errors import NoSpace
from .fault import VmFault, falloc_pages, fault, read1, write1
from .flags import FaultFlags, VmFaultResult
from .pagecache import PageCache
from .stats import FaultStats

_PAGE_MASK = PAGE_SIZE - 1
_READ = FaultFlags(0)
_WRITE = FaultFlags.WRITE


class Mapping:
    """address_space of one object (file): sparse page cache, i_size, rmap hook."""

    # one per file: slots keep an empty file's cost down (100,000 files, issue 6)
    __slots__ = ("_fstats", "arena", "budget", "can_nonlinear", "frames_freed", "nr_punches",
                 "nr_truncates", "nr_unmaps", "page_mkwrite", "pages", "rmap", "size",
                 "write_notify")

    def __init__(self, arena: Arena, budget: Budget, *, write_notify: bool = False) -> None:
        self.arena = arena
        self.budget = budget
        self.size = 0
        self.pages = PageCache()
        self.rmap: object | None = None
        self.write_notify = write_notify
        # vm_operations the pager consults: ->page_mkwrite(vma, pgoff) for
        # write-notify mappings, and VM_CAN_NONLINEAR (shmem sets it; 2.6.23).
        self.page_mkwrite: Callable[[object, int], int] | None = None
        self.can_nonlinear = True
        self._fstats: FaultStats | None = None  # made at the first fault (see fstats)
        self.nr_truncates = 0
        self.nr_punches = 0
        self.nr_unmaps = 0
        self.frames_freed = 0

    @property
    def fstats(self) -> FaultStats:
        """This mapping's fault counters, made on first use: an empty file has none."""
        st = self._fstats
        if st is None:
            st = self._fstats = FaultStats()
        return st

    @property
    def nrpages(self) -> int:
        """Resident pages, including fallocated (!UPTODATE) ones."""
        return self.pages.nrpages

    # -- data path ------------------------------------------------------------------

    def read(self, off: int, length: int) -> list[memoryview]:
        """Views of bytes [off, off+length) clipped to i_size; holes and
        !UPTODATE pages come from the zero frame; never allocates."""
        if off < 0 or length < 0:
            raise ValueError("negative offset or length")
        end = min(off + length, self.size)
        if off >= end:
            return []
        first = off >> PAGE_SHIFT
        last = (end - 1) >> PAGE_SHIFT
        if last == first:  # inside one page (4 KiB reads): the same fault, plain ints
            return [self.arena.view1(read1(self, first), off & _PAGE_MASK, end - off)]
        vmf = VmFault(_READ, first, last - first + 1)
        fault(self, vmf)
        return self.arena.views(vmf.frames, off & _PAGE_MASK, end - off)

    def read_bytes(self, off: int, length: int) -> bytes:
        """Convenience (tests, tools): read() joined into one bytes object."""
        return b"".join(self.read(off, length))

    def write(self, off: int, data: memoryview | bytes | bytearray) -> int:
        """Store `data` at `off`, extending i_size; returns bytes written.

        Short at ENOSPC (up to the last page that could be charged; nothing
        half-written); raises NoSpace if not even one page could be charged.
        """
        if off < 0:
            raise ValueError("negative offset")
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        n = mv.nbytes
        if n == 0:
            return 0
        end = off + n
        old = self.size
        if end > old:
            self.size = end  # write(2) extends i_size before faulting
        first = off >> PAGE_SHIFT
        nr = ((end - 1) >> PAGE_SHIFT) - first + 1
        if nr == 1:  # inside one page (small writes): the same fault, plain ints
            frame = write1(self, first)
            if frame >= 0:
                self.arena.store1(frame, off & _PAGE_MASK, mv)
                return n
            if frame == -1:  # ENOSPC: nothing written, i_size as it was
                self.size = old
                raise NoSpace()
            # -2: a shared frame; the general path copies it for this writer
        vmf = VmFault(_WRITE, first, nr)
        vmf.overwrite = ((off + _PAGE_MASK) >> PAGE_SHIFT, end >> PAGE_SHIFT)
        fault(self, vmf)
        done = vmf.nr_done
        if done < nr:
            n = ((first + done) << PAGE_SHIFT) - off
            if n <= 0:
                self.size = old
                raise NoSpace()
            mv = mv[:n]
            self.size = max(old, off + n)
        self.arena.copy_in(vmf.frames, off & _PAGE_MASK, mv)
        return n

    # -- size and holes -------------------------------------------------------------

    def truncate(self, new_size: int) -> None:
        """Set i_size.  Shrinking (or same size) follows truncate_pagecache:
        unmap [holebegin, end) even_cows, drop pages (the partial last page is
        zeroed past new_size), unmap again, then free frames and uncharge."""
        if new_size < 0:
            raise ValueError("negative size")
        old = self.size
        self.size = new_size
        if new_size > old:
            return
        self.nr_truncates += 1
        holebegin = (new_size + _PAGE_MASK) >> PAGE_SHIFT
        mapped = old > holebegin << PAGE_SHIFT
        if mapped:
            self.unmap_mapping_range(holebegin, None, True)
        if new_size & _PAGE_MASK:
            self._zero_partial(new_size >> PAGE_SHIFT, new_size & _PAGE_MASK, PAGE_SIZE)
        removed = self.pages.remove_range(holebegin, None)
        if mapped:
            self.unmap_mapping_range(holebegin, None, True)
        self._free(removed)

    def punch_hole(self, off: int, length: int) -> None:
        """Free whole pages of [off, off+length), zero the partial edges;
        i_size unchanged.  VMAs are invalidated through rmap (even_cows=False)."""
        if off < 0 or length < 0:
            raise ValueError("negative offset or length")
        if length == 0:
            return
        self.nr_punches += 1
        end = off + length
        first = (off + _PAGE_MASK) >> PAGE_SHIFT
        last = end >> PAGE_SHIFT  # exclusive
        whole = last - first
        if whole > 0:
            self.unmap_mapping_range(first, whole, False)
        head, tail = off >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT
        if head == tail and (off & _PAGE_MASK or end & _PAGE_MASK):
            self._zero_partial(head, off & _PAGE_MASK, end - (head << PAGE_SHIFT))
        else:
            if off & _PAGE_MASK:
                self._zero_partial(head, off & _PAGE_MASK, PAGE_SIZE)
            if end & _PAGE_MASK:
                self._zero_partial(tail, 0, end & _PAGE_MASK)
        if whole > 0:
            removed = self.pages.remove_range(first, whole)
            self.unmap_mapping_range(first, whole, False)
            self._free(removed)

    def punch_pages(self, pgoffs: np.ndarray) -> None:
        """punch_hole of a scattered set of whole pages (sorted, unique pgoffs) in one
        pass: each VMA is unmapped once and the page cache updated per chunk, where a
        punch_hole per run would walk every VMA once per run (MADV_REMOVE of a
        nonlinear window, docs/performance.md)."""
        pgoffs = np.asarray(pgoffs, dtype=np.int64)
        if not len(pgoffs):
            return
        self.nr_punches += 1
        if self.rmap is not None:
            self.nr_unmaps += 1
            self.rmap.unmap_pages(pgoffs, False)  # type: ignore[attr-defined]
        removed = self.pages.remove_pages(pgoffs)
        if self.rmap is not None:
            self.nr_unmaps += 1
            self.rmap.unmap_pages(pgoffs, False)  # type: ignore[attr-defined]
        self._free(removed)

    def fallocate(self, off: int, length: int, keep_size: bool) -> None:
        """Preallocate !UPTODATE pages over [off, off+length), charged; all or
        nothing (NoSpace); extends i_size unless keep_size."""
        if off < 0 or length <= 0:
            raise ValueError("fallocate needs off >= 0 and length > 0")
        first = off >> PAGE_SHIFT
        falloc_pages(self, first, ((off + length - 1) >> PAGE_SHIFT) - first + 1)
        if not keep_size and off + length > self.size:
            self.size = off + length

    def copy_from(self, src: Mapping, src_off: int, off: int, length: int) -> int:
        """copy_file_range: bytes [src_off, src_off+length) of ``src`` (clipped to
        its i_size) to ``off``, whole pages shared copy-on-write (vmcore/cow.py).
        Returns bytes copied (short at the size= limit, NoSpace if none);
        VmError(EINVAL) for overlapping ranges of one object."""
        return copy_range(src, src_off, self, off, length)

    def seek_data(self, off: int) -> int:
        """SEEK_DATA: first data byte >= off; -1 where lseek gives ENXIO
        (off outside [0, i_size) or no data before EOF).  Fallocated
        (!UPTODATE) pages are holes, as in tmpfs."""
        if off < 0 or off >= self.size:
            return -1
        p = self.pages.next_data(off >> PAGE_SHIFT)
        if p is None:
            return -1
        pos = max(off, p << PAGE_SHIFT)
        return pos if pos < self.size else -1

    def seek_hole(self, off: int) -> int:
        """SEEK_HOLE: first hole byte >= off (i_size counts as a hole); -1 for
        off outside [0, i_size) (ENXIO)."""
        if off < 0 or off >= self.size:
            return -1
        p = self.pages.next_hole(off >> PAGE_SHIFT)
        return min(max(off, p << PAGE_SHIFT), self.size)

    def blocks(self) -> int:
        """st_blocks: 512-byte units of allocated pages (fallocated included)."""
        return self.pages.nrpages << (PAGE_SHIFT - 9)

    def release(self) -> None:
        """Free every page (the inode is evicted); i_size is left alone."""
        self.unmap_mapping_range(0, None, True)
        self._free(self.pages.remove_range(0, None))

    # -- rmap hook ------------------------------------------------------------------------

    def unmap_mapping_range(self, first_pgoff: int, nr_pages: int | None, even_cows: bool) -> None:
        """Zap every PTE (linear or nonlinear) that maps pages of
        [first_pgoff, first_pgoff+nr_pages) (None = to the end); with even_cows
        private COW copies too.  Forwarded to the rmap when one is attached."""
        self.nr_unmaps += 1
        if self.rmap is not None:
            self.rmap.unmap_mapping_range(first_pgoff, nr_pages, even_cows)  # type: ignore[attr-defined]

    # -- helpers ------------------------------------------------------------------------

    def _zero_partial(self, pgoff: int, start: int, end: int) -> None:
        frame = int(self.pages.lookup_range(pgoff, 1)[0])
        if frame > 0:
            if self.arena.is_shared(frame):  # the other file keeps its bytes
                one = np.array((frame,), dtype=np.int64)
                break_shares(self, pgoff, one)
                frame = int(one[0])
            self.arena.zero_range(frame, start, end)

    def _free(self, frames: np.ndarray) -> None:
        """Return frames dropped from the page cache (after the unmaps)."""
        if frames.size:
            self.arena.free(frames)
            self.budget.uncharge(int(frames.size))
            self.frames_freed += int(frames.size)

    def statistics(self) -> dict[str, int]:
        """Per-mapping counters: size, residency, faults, invalidations."""
        st = {
            "size": self.size,
            "nrpages": self.pages.nrpages,
            "blocks": self.blocks(),
            "chunks": self.pages.nr_chunks,
            "index_bytes": self.pages.index_bytes(),
            "truncates": self.nr_truncates,
            "punches": self.nr_punches,
            "unmaps": self.nr_unmaps,
            "frames_freed": self.frames_freed,
        }
        st.update({f"fault_{k}": v for k, v in self.fstats.as_dict().items()})
        return st


__all__ = ["Mapping", "VmFaultResult"]
