"""The two window backends of the VLM-style buffer cache (scripts/vlm_window.py).

A backend shows buffer-cache *slots* (fixed windows of ``bsize`` bytes) onto
database blocks of one large sparse object:

* ``ShmfsSlots``: one shmfs window file; ``remap`` is a populating SHMFS_IOC_WIN_REMAP of the
  slot's pages, loads/stores go through one MAP_SHARED mmap of the window (and
  sometimes pread/pwrite); a dirty slot is written back with msync(MS_SYNC)
  before it is remapped, as DBWR would write a buffer before reusing it.
* ``TmpfsSlots``: the kernel's remap_file_pages emulation on a tmpfs: the window
  is an mmap of the object, and a remap is an ``mmap(MAP_FIXED)`` of the block
  over the slot -- one VMA per slot; ENOMEM once the process reaches
  vm.max_map_count.
"""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path

from mount.winapi.client import PAGE_SIZE, PROT_READ, PROT_WRITE, Window
from windowlib import sysmm

RW = PROT_READ | PROT_WRITE


class ShmfsSlots:
    kind = "shmfs"

    def __init__(self, obj: Path, win: Path, window_pages: int, bsize: int) -> None:
        self.bsize, self.ppb = bsize, bsize // PAGE_SIZE
        self.obj = os.open(obj, os.O_RDWR)
        self.w = Window.create(win, obj, window_pages, RW)
        os.posix_fadvise(self.w.fd, 0, 0, os.POSIX_FADV_RANDOM)
        self.m = self.w.mmap()
        self.m.madvise(mmap.MADV_RANDOM)
        self.remap_seconds = 0.0

    def remap(self, slot: int, block: int) -> None:
        t = time.perf_counter()
        # populate (remap_file_pages' default): the buffer is read right after, and the
        # daemon pushes its pages into the kernel's cache (NOTIFY_STORE): no READ
        self.w.remap(slot * self.ppb, self.ppb, block * self.ppb, populate=True)
        self.remap_seconds += time.perf_counter() - t

    def load(self, slot: int, via: str) -> bytes:
        off = slot * self.bsize
        if via == "pread":
            return self.w.pread(off, self.bsize)
        return self.m[off:off + self.bsize]

    def store(self, slot: int, via: str, data: bytes) -> bool:
        """Store a buffer; True if it is dirty in the kernel's cache (needs a write-back)."""
        off = slot * self.bsize
        if via == "pwrite":
            if self.w.pwrite(off, data) != len(data):
                raise OSError("short pwrite through the window")
            return False
        self.m[off:off + self.bsize] = data
        return True

    def writeback(self, slot: int) -> None:
        self.m.flush(slot * self.bsize, self.bsize)  # msync(MS_SYNC)

    def read_object(self, block: int) -> bytes:
        return os.pread(self.obj, self.bsize, block * self.bsize)

    def vmas(self) -> int:
        return sysmm.vma_count()

    def close(self) -> None:
        self.m.close()
        self.w.close()
        os.close(self.obj)


class TmpfsSlots:
    kind = "tmpfs"

    def __init__(self, obj: Path, win: Path, window_pages: int, bsize: int) -> None:
        self.bsize, self.ppb = bsize, bsize // PAGE_SIZE
        self.obj = os.open(obj, os.O_RDWR)
        self.size = window_pages * PAGE_SIZE
        self.base = sysmm.mmap(None, self.size, RW, sysmm.MAP_SHARED, self.obj, 0)
        self.remap_seconds = 0.0

    def remap(self, slot: int, block: int) -> None:
        """MAP_FIXED of the block over the slot; OSError(ENOMEM) at the map count wall."""
        t = time.perf_counter()
        try:
            sysmm.remap_fixed(self.base + slot * self.bsize, self.ppb, RW, self.obj,
                              block * self.ppb)
        finally:
            self.remap_seconds += time.perf_counter() - t

    def load(self, slot: int, via: str) -> bytes:
        return sysmm.load(self.base + slot * self.bsize, self.bsize)

    def store(self, slot: int, via: str, data: bytes) -> bool:
        sysmm.store(self.base + slot * self.bsize, data)
        return False  # the page cache is the object: nothing to write back

    def writeback(self, slot: int) -> None:
        pass

    def unmap(self, slot: int) -> None:
        """Give a slot's VMA back (headroom below vm.max_map_count)."""
        sysmm.munmap(self.base + slot * self.bsize, self.bsize)

    def read_object(self, block: int) -> bytes:
        return os.pread(self.obj, self.bsize, block * self.bsize)

    def vmas(self) -> int:
        return sysmm.vma_count()

    def close(self) -> None:
        sysmm.munmap(self.base, self.size)
        os.close(self.obj)
