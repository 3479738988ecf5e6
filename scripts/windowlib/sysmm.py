"""Raw memory-management syscalls through ctypes, for the kernel-emulation side.

The 4.0+ kernel implements remap_file_pages(2) by an ``mmap(MAP_FIXED)`` of the
file at the new offset over the remapped range -- one VMA per remap.  The tools
do exactly that on a kernel tmpfs to compare with shmfs windows; Python's
``mmap`` module cannot place a mapping at a fixed address, hence ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

from mount.syscalls import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocate

PAGE_SIZE = 4096
PROT_NONE, PROT_READ, PROT_WRITE = 0x0, 0x1, 0x2
MAP_SHARED, MAP_FIXED = 0x01, 0x10
MAP_NORESERVE = 0x4000
MADV_RANDOM, MADV_REMOVE = 1, 9

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_int64]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _fail(what: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def mmap(addr: int | None, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    """mmap(2); returns the address or raises OSError (ENOMEM at vm.max_map_count)."""
    p = _libc.mmap(addr, length, prot, flags, fd, offset)
    if p is None or p == _MAP_FAILED:
        raise _fail("mmap")
    return int(p)


def munmap(addr: int, length: int) -> None:
    if _libc.munmap(addr, length) != 0:
        raise _fail("munmap")


def mprotect(addr: int, length: int, prot: int) -> None:
    if _libc.mprotect(addr, length, prot) != 0:
        raise _fail("mprotect")


def madvise(addr: int, length: int, advice: int) -> None:
    if _libc.madvise(addr, length, advice) != 0:
        raise _fail("madvise")


def punch(fd: int, offset: int, length: int) -> None:
    """fallocate(PUNCH_HOLE|KEEP_SIZE): free the file's pages in the range (as UML frees
    guest physical memory); os has only posix_fallocate."""
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)


def load(addr: int, length: int) -> bytes:
    """A load of ``length`` bytes at ``addr`` (a page fault if not mapped yet)."""
    return ctypes.string_at(addr, length)


def store(addr: int, data: bytes) -> None:
    """A store of ``data`` at ``addr``."""
    ctypes.memmove(addr, data, len(data))


def remap_fixed(addr: int, npages: int, prot: int, fd: int, pgoff: int) -> None:
    """The 4.0+ emulation of remap_file_pages(addr, npages pages, pgoff): a MAP_FIXED
    MAP_SHARED mmap of the file over the range (one new VMA, splitting the old one)."""
    mmap(addr, npages * PAGE_SIZE, prot, MAP_SHARED | MAP_FIXED, fd, pgoff * PAGE_SIZE)


def vma_count(pid: int | str = "self") -> int:
    """Number of VMAs of a process (lines of /proc/PID/maps)."""
    with open(f"/proc/{pid}/maps", "rb") as f:
        return sum(1 for _ in f)


def max_map_count() -> int:
    with open("/proc/sys/vm/max_map_count") as f:
        return int(f.read())


def is_enomem(e: OSError) -> bool:
    return e.errno == errno.ENOMEM
