"""Per-window and per-object state of window files, and their constants.

Split from fsimpl/windows.py (which explains the design): ``WinState`` is one
window (its pager Window, the pages the kernel may cache, the pending
write-back targets), ``ObjState`` one object shown by windows.
"""


from __future__ import annotations

import errno
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vmcore.errors import Sigbus, Sigsegv, VmError
from vmcore.madvise import sorted_unique
from vmcore.vma import (
    MAP_CHGPROT,
    MAP_NONBLOCK,
    MAP_POPULATE,
    PROT_READ,
    PROT_WRITE,
    PagerExt,
)
from vmcore.window import Window

from .errors import FsError

if TYPE_CHECKING:
    from .inode import Inode


PAGE_SHIFT = 12
DISCARD = None  # pending marker: the object page is gone, drop the write-back
FUSE_WRITE_CACHE = 1 << 0  # write_flags of a write-back (writepage/launder) WRITE
WINDOW_EXT = PagerExt.PER_PAGE_PROT | PagerExt.MADV_REMOVE_NONLINEAR
REMAP_POPULATE = MAP_POPULATE
REMAP_FLAGS = REMAP_POPULATE | MAP_NONBLOCK | MAP_CHGPROT
MPROTECT_VMA = 0x1
_PROT_BITS = PROT_READ | PROT_WRITE

# QUERY page flags (docs/windows.md, mount/winapi/abi.py)
PAGE_PRESENT, PAGE_FILE, PAGE_DIRTY, PAGE_OWNPROT = 0x01, 0x02, 0x04, 0x08
PAGE_BEYOND_EOF, PAGE_RESIDENT, PAGE_CACHED = 0x10, 0x20, 0x40



@dataclass(slots=True)
class WinState:
    """One attached window."""

    ino: int
    obj: Inode
    window: Window
    prot: int
    pgoff: int
    npages: int
    cached: set[int] = field(default_factory=set)
    pending: dict[int, tuple[int, int] | None] = field(default_factory=dict)
    #: bumped by every call that may change which object page a window page shows
    #: (REMAP, MPROTECT, MADVISE); with the object page cache's ``gen`` it keys
    #: ``blocks``: the cached (key, st_blocks, SEEK layout) (fsimpl/winextent.py)
    epoch: int = 0
    blocks: tuple[Any, int, list[Any]] | None = None
    pushed: set[int] = field(default_factory=set)  # pages given to the kernel by NOTIFY_STORE

    @property
    def addr(self) -> int:
        return self.window.address

    @property
    def size(self) -> int:
        return self.npages << PAGE_SHIFT


def _runs(pages: Any) -> list[tuple[int, int]]:
    """(first, count) of each run of consecutive values, in sorted order."""
    if isinstance(pages, range) and pages.step == 1:
        return [(pages.start, len(pages))] if len(pages) else []
    if len(pages) > 64:
        a = sorted_unique(np.asarray(pages if isinstance(pages, np.ndarray) else list(pages),
                                     dtype=np.int64))
        brk = np.flatnonzero(np.diff(a) != 1) + 1
        firsts = a[np.concatenate(([0], brk))].tolist()
        counts = np.diff(np.concatenate(([0], brk, [len(a)]))).tolist()
        return list(zip(firsts, counts, strict=True))
    out: list[tuple[int, int]] = []
    for p in sorted({int(x) for x in pages}):
        if out and out[-1][0] + out[-1][1] == p:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((p, 1))
    return out


@dataclass(slots=True)
class ObjState:
    """An object some window shows: how many windows, and which of its pages the
    kernel may cache (tracked from the first ATTACH on, which invalidates them all)."""

    wins: set[int] = field(default_factory=set)  # inode numbers of its windows
    cached: set[int] = field(default_factory=set)


def _vm(e: VmError) -> FsError:
    return FsError(e.errno, str(e))


def _store_errno(e: VmError) -> int:
    """pwrite's errno for a store fault: EACCES (protection), ENOSPC (size= limit),
    EIO (past the object's end: SIGBUS for an mmap store)."""
    if isinstance(e, Sigsegv):
        return errno.EACCES
    if isinstance(e, Sigbus):
        return errno.ENOSPC if e.errno == errno.ENOSPC else errno.EIO
    return e.errno


class TableState:
    """The WindowTable attributes that its coherence and data-path mixins use."""

    fs: Any
    wins: dict[int, WinState]
    objs: dict[int, ObjState]
    stats: Counter[str]
