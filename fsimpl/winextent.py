"""st_blocks and SEEK_DATA/SEEK_HOLE of window files (mixin of WindowTable).

A window file owns no pages, but a read of it returns what the object pages it
shows hold, so copying tools (``cp``, ``cp --sparse=never``, ``tar -S``), which
trust ``st_blocks`` and SEEK_DATA to find the data, must see those pages as the
window's:

* ``st_blocks`` = 8 x the window pages whose object page is allocated;
* SEEK_DATA / SEEK_HOLE: a window page is *data* when the object page it shows
  holds data (UPTODATE: fallocated pages are holes, as tmpfs says), or lies past
  the object's end (a read fails with EIO there, it does not return zeros);
  every other page reads as zeros and is a hole.

Cost: a window is walked as its VMAs' populated page-table chunks (numpy over
each, looked up in the object's page cache a chunk at a time) and the linear
gaps between them (one range count in the object's page cache each) -- never
page by page over the window's length, so a GETATTR of a huge sparse window is
cheap.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import numpy as np

from vmcore.pagetable import PTE_FILE, PTE_PRESENT

from .errors import FsError
from .windowstate import PAGE_SHIFT, TableState, WinState

SEEK_DATA, SEEK_HOLE = 3, 4


def _pieces(ws: WinState) -> Iterator[tuple[int, int, int | np.ndarray]]:
    """(first window page, page count, pgoffs) covering the window in order: ``pgoffs``
    is an int (linear run: pgoff of the first page) or an array (a table chunk)."""
    base = ws.addr >> PAGE_SHIFT
    for vma in sorted(ws.window.vmas, key=lambda v: v.start):
        vs, ve = vma.start_vpn, vma.end_vpn
        pos = vs
        for first, bits, pg in vma.pt.spans(vs, ve):
            if first > pos:
                yield pos - base, first - pos, vma.pgoff + (pos - vs)
            n = len(bits)
            linear = np.arange(first - vs, first - vs + n, dtype=np.int64) + vma.pgoff
            yield first - base, n, np.where((bits & (PTE_PRESENT | PTE_FILE)) != 0, pg, linear)
            pos = first + n
        if ve > pos:
            yield pos - base, ve - pos, vma.pgoff + (pos - vs)


class WindowExtent(TableState):
    """Allocation and data/hole layout of window files."""

    def blocks_of(self, ino: int) -> int:
        """st_blocks of window ``ino``: 512-byte units of allocated object pages shown."""
        ws = self.wins[ino]
        pages = ws.obj.mapping.pages
        n = 0
        for _first, count, pg in _pieces(ws):
            if isinstance(pg, np.ndarray):
                n += int(np.count_nonzero(pages.present_mask(pg, uptodate_only=False)))
            else:
                n += pages.count_range(pg, count, uptodate_only=False)
        return n << (PAGE_SHIFT - 9)

    def _data_pages(self, ws: WinState, first: int, count: int, pg: int | np.ndarray,
                    want_data: bool) -> int | None:
        """The first window page in the piece at or after ``first`` that is data (or a hole,
        with ``want_data`` False); None if there is none in the piece."""
        mapping = ws.obj.mapping
        eof = (mapping.size + (1 << PAGE_SHIFT) - 1) >> PAGE_SHIFT
        if isinstance(pg, np.ndarray):
            data = mapping.pages.present_mask(pg) | (pg >= eof)
            hit = np.flatnonzero(data if want_data else ~data)
            return first + int(hit[0]) if hit.size else None
        a, b = pg, pg + count  # the object pages [a, b) shown in order
        if want_data:
            p = mapping.pages.next_data(a) if a < eof else a
            if p is None or p >= b:
                p = max(a, eof) if max(a, eof) < b else None
            elif p >= eof:
                p = max(a, eof)
            return None if p is None else first + (p - a)
        if a >= eof:
            return None  # all past EOF: data
        p = mapping.pages.next_hole(a)
        return first + (p - a) if p < min(b, eof) else None

    def window_seek(self, ino: int, off: int, whence: int) -> int:
        """lseek(SEEK_DATA / SEEK_HOLE) on window ``ino`` (ENXIO past the end, or no data)."""
        ws = self.wins[ino]
        size = ws.size
        if off < 0 or off >= size:
            raise FsError(errno.ENXIO)
        start = off >> PAGE_SHIFT
        for first, count, pg in _pieces(ws):
            if first + count <= start:
                continue
            if first < start:  # enter the piece at ``start``
                skip = start - first
                pg = pg[skip:] if isinstance(pg, np.ndarray) else pg + skip
                first, count = start, count - skip
            hit = self._data_pages(ws, first, count, pg, whence == SEEK_DATA)
            if hit is not None:
                return max(off, hit << PAGE_SHIFT)
        if whence == SEEK_DATA:
            raise FsError(errno.ENXIO)
        return size
