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
cheap.  ``st_blocks`` is cached per window, keyed on the window's ``epoch``
(bumped by REMAP, MPROTECT, MADVISE) and the object page cache's ``gen`` (any
page added, dropped or made uptodate), so repeated GETATTRs of an unchanged
window cost nothing.
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

    def _layout(self, ws: WinState) -> tuple[int, list[tuple[int, int, int | np.ndarray]]]:
        """(st_blocks, pieces): each piece (first window page, count, x) where x is the
        first pgoff of a linear run or, for a page-table chunk, its SEEK data mask.
        Cached on (epoch, object page cache gen, object size): one object page cache
        lookup for all table entries together, so the cost is a sort of the populated
        entries plus one step per object chunk they hit."""
        mapping = ws.obj.mapping
        pages = mapping.pages
        key = (ws.epoch, pages.gen, mapping.size)
        if ws.blocks is not None and ws.blocks[0] == key:
            return ws.blocks[1], ws.blocks[2]
        pieces = list(_pieces(ws))
        tables = [pg for _f, _c, pg in pieces if isinstance(pg, np.ndarray)]
        allpg = np.concatenate(tables) if tables else np.zeros(0, np.int64)
        eof = (mapping.size + (1 << PAGE_SHIFT) - 1) >> PAGE_SHIFT
        data = pages.present_mask(allpg) | (allpg >= eof)
        blocks = int(np.count_nonzero(pages.present_mask(allpg, uptodate_only=False)))
        out: list[tuple[int, int, int | np.ndarray]] = []
        pos = 0
        for first, count, pg in pieces:
            if isinstance(pg, np.ndarray):
                out.append((first, count, data[pos : pos + count]))
                pos += count
            else:
                blocks += pages.count_range(pg, count, uptodate_only=False)
                out.append((first, count, pg))
        blocks <<= PAGE_SHIFT - 9
        ws.blocks = (key, blocks, out)
        return blocks, out

    def blocks_of(self, ino: int) -> int:
        """st_blocks of window ``ino``: 512-byte units of allocated object pages shown."""
        return self._layout(self.wins[ino])[0]

    def _first_in_linear(self, ws: WinState, first: int, count: int, a: int,
                         want_data: bool) -> int | None:
        """The first window page of a linear run showing object pages [a, a+count) that
        is data (or a hole, with ``want_data`` False); None if there is none in it."""
        mapping = ws.obj.mapping
        eof = (mapping.size + (1 << PAGE_SHIFT) - 1) >> PAGE_SHIFT
        b = a + count
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
        want = whence == SEEK_DATA
        for first, count, x in self._layout(ws)[1]:
            if first + count <= start:
                continue
            skip = max(0, start - first)
            if isinstance(x, np.ndarray):
                hit = np.flatnonzero(x[skip:] if want else ~x[skip:])
                found = first + skip + int(hit[0]) if hit.size else None
            else:
                found = self._first_in_linear(ws, first + skip, count - skip, x + skip, want)
            if found is not None:
                return max(off, found << PAGE_SHIFT)
        if want:
            raise FsError(errno.ENXIO)
        return size
