"""Page-table memory of windows, charged against the mount's ``pt_size=``.

Every window owns a vmcore ``Mm`` whose page tables grow by 512-entry chunks
as pages are remapped, protected or faulted in (vmcore/pagetable.py).  Without
a limit an unprivileged user with one window could make the daemon allocate
~9.6 KiB per 512 window pages it touches, without end.  The kernel answers a
page-table allocation it cannot make with ENOMEM (remap_file_pages, mprotect)
or a failed fault; so does this budget: ``charge`` raises VmError(ENOMEM), which
reaches the caller of REMAP / MPROTECT / ATTACH as ENOMEM and a READ or WRITE
through the window as ENOMEM.

Each window also costs a fixed ``WINDOW_COST`` (its Mm, VMA and bookkeeping),
so the number of windows is bounded by the same limit even when ``nr_inodes=0``.

Memory comes back when a window goes (``release``): its chunks are credited and,
when a lot was freed, ``malloc_trim(0)`` hands glibc's free heap back to the
host (chunk arrays are small allocations that glibc would otherwise keep).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from typing import Any

from vmcore.errors import VmError
from vmcore.mm import Mm
from vmcore.pagetable import _Chunk

#: bytes charged per page-table chunk: the four arrays' data (9 KiB) plus the numpy
#: and Python object headers around them.  Measured: 2^24 remapped pages (32,768
#: chunks) grew the daemon's RSS by 311 MiB, 9.7 KiB a chunk (scripts/window_rss.py).
CHUNK_COST = _Chunk.NBYTES + 768
#: bytes charged per window (Mm, VMA, WinState, dict entries)
WINDOW_COST = 8192
#: default pt_size: size= / 64, at least this much
PT_SIZE_FLOOR = 16 << 20
PT_SIZE_DIVISOR = 64
#: freeing at least this much page-table memory at once trims the heap
TRIM_THRESHOLD = 4 << 20


def default_pt_size(size_bytes: int) -> int:
    """``pt_size=`` when none is given: size/64 (RAM/128 for an unlimited size=),
    never below 16 MiB."""
    base = size_bytes
    if not base:
        try:
            base = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
        except (ValueError, OSError):  # pragma: no cover - no sysconf
            base = 1 << 30
    return max(base // PT_SIZE_DIVISOR, PT_SIZE_FLOOR)


def _malloc_trim() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


class PtBudget:
    """Bytes of window page tables in use, against ``limit`` (0 = unlimited)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.used = 0
        self.refused = 0
        self.trims = 0
        self._trim = _malloc_trim()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a restartable mount's snapshot): without the libc function."""
        state = dict(self.__dict__)
        state["_trim"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._trim = _malloc_trim()

    def _take(self, nbytes: int) -> None:
        if self.limit and self.used + nbytes > self.limit:
            self.refused += 1
            raise VmError(errno.ENOMEM, f"page tables would exceed pt_size={self.limit}")
        self.used += nbytes

    # --- the PageTable.budget protocol (vmcore/pagetable.py) -------------------------
    def check(self, nchunks: int) -> None:
        """Raise as ``charge`` would, without charging."""
        if self.limit and self.used + nchunks * CHUNK_COST > self.limit:
            self.refused += 1
            raise VmError(errno.ENOMEM, f"page tables would exceed pt_size={self.limit}")

    def charge(self, nchunks: int) -> None:
        self._take(nchunks * CHUNK_COST)

    def uncharge(self, nchunks: int) -> None:
        self.used = max(0, self.used - nchunks * CHUNK_COST)

    # --- windows ---------------------------------------------------------------------
    def charge_window(self) -> None:
        self._take(WINDOW_COST)

    def uncharge_window(self) -> None:
        self.used = max(0, self.used - WINDOW_COST)

    def new_mm(self, ext: Any) -> Mm:
        """An Mm whose page tables charge this budget."""
        mm = Mm(ext=ext)
        mm.pt_budget = self
        return mm

    def release(self, mm: Mm) -> None:
        """A window's Mm goes: credit its chunks and its fixed cost, trim the heap
        when that freed much."""
        nchunks = sum(v.pt.detach_budget() for v in mm.vmas)
        mm.pt_budget = None
        self.uncharge(nchunks)
        self.uncharge_window()

    def trim(self, freed_chunks: int) -> None:
        """malloc_trim(0) after ``freed_chunks`` chunks went back to the allocator."""
        if self._trim is not None and freed_chunks * CHUNK_COST >= TRIM_THRESHOLD:
            self._trim(0)
            self.trims += 1

    def statistics(self) -> dict[str, int]:
        return {"pt_bytes": self.used, "pt_limit": self.limit, "pt_refused": self.refused,
                "heap_trims": self.trims}
