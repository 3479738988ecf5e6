"""Windows: a VMA over an object, seen one page at a time.

A *window* is what UML and Oracle's VLM build with remap_file_pages: a range
of virtual pages each of which shows some page of a (possibly much larger)
object.  :class:`Window` wraps one shared VMA in its own Mm with the calls the
mount layer's window files need (remap, mprotect, madvise, pread/pwrite
through the page table), and :func:`picture` draws what an address range
shows, for tests and debugging::

    |  7|  6|  5|  4|  3|  2|  1|  0|      8 pages remapped in reverse
    |  0|cow|  .|  3|                      a private COW copy and a hole
"""

from __future__ import annotations

from typing import Any

from vmcore.mm import Mm
from vmcore.pagetable import PAGE_SHIFT, PAGE_SIZE
from vmcore.vma import MAP_SHARED, PROT_READ, PROT_WRITE, PagerExt, Vma


def picture(mm: Mm, address: int, npages: int, width: int = 3) -> str:
    """One cell per page: the object pgoff shown, ``cow`` for a private copy,
    ``.`` where nothing is mapped.  No faults are taken."""
    cells = []
    for s in mm.shown(address, npages):
        text = "." if s is None else str(s)
        cells.append(text.rjust(width))
    return "|" + "|".join(cells) + "|"


class Window:
    """A shared nonlinear-capable window of ``npages`` over ``mapping``."""

    def __init__(
        self,
        mapping: Any,
        npages: int,
        prot: int = PROT_READ | PROT_WRITE,
        pgoff: int = 0,
        ext: PagerExt = PagerExt.NONE,
        mm: Mm | None = None,
    ) -> None:
        self.mm = mm if mm is not None else Mm(ext=ext)
        self.npages = npages
        self.address = self.mm.mmap(mapping, npages << PAGE_SHIFT, prot, MAP_SHARED, pgoff)

    @property
    def vmas(self) -> list[Vma]:
        """The VMAs of the window (more than one after a partial mprotect)."""
        end = self.address + (self.npages << PAGE_SHIFT)
        return [v for v in self.mm.vmas if v.start < end and v.end > self.address]

    def remap(self, index: int, npages: int, pgoff: int, flags: int = 0, prot: int = 0) -> None:
        self.mm.remap_file_pages(
            self.address + (index << PAGE_SHIFT), npages << PAGE_SHIFT, prot, pgoff, flags
        )

    def mprotect(self, index: int, npages: int, prot: int) -> None:
        self.mm.mprotect(self.address + (index << PAGE_SHIFT), npages << PAGE_SHIFT, prot)

    def madvise(self, index: int, npages: int, advice: int) -> None:
        self.mm.madvise(self.address + (index << PAGE_SHIFT), npages << PAGE_SHIFT, advice)

    def pread(self, off: int, length: int) -> bytes:
        """Bytes of the window at ``off`` (faults as a CPU load would)."""
        length = max(0, min(length, (self.npages << PAGE_SHIFT) - off))
        return self.mm.load(self.address + off, length)

    def pwrite(self, off: int, data: bytes) -> int:
        n = max(0, min(len(data), (self.npages << PAGE_SHIFT) - off))
        self.mm.store(self.address + off, data[:n])
        return n

    def read_views(self, off: int, length: int) -> list[memoryview]:
        """pread without copies: arena views of the pages the window shows."""
        length = max(0, min(length, (self.npages << PAGE_SHIFT) - off))
        return self.mm.views(self.address + off, length)

    def write_views(self, off: int, length: int) -> list[memoryview]:
        """Writable views for a pwrite of ``length`` bytes at ``off`` (store faults taken)."""
        length = max(0, min(length, (self.npages << PAGE_SHIFT) - off))
        return self.mm.views(self.address + off, length, write=True)

    def shown(self) -> list[int | str | None]:
        return self.mm.shown(self.address, self.npages)

    def picture(self) -> str:
        return picture(self.mm, self.address, self.npages)

    def close(self) -> None:
        self.mm.munmap(self.address, self.npages * PAGE_SIZE)
