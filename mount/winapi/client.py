"""A small client for shmfs window files, using exactly the ioctl ABI of docs/windows.md.

A window is a file on the mount that shows pages of an *object* (another
regular file on the same mount) through a nonlinear page table::

    from mount.winapi.client import Window, PROT_READ, PROT_WRITE

    w = Window.create("/mnt/win0", "/mnt/physmem", npages=256)   # open obj, GRANT,
                                        # create, ATTACH (docs/windows.md, access rules)
    w.remap(0, 1, pgoff=4095)           # window page 0 shows object page 4095
    w.protect(3, 1, PROT_READ)          # page 3 read-only (per-page protection)
    w.madvise(5, 2, MADV_REMOVE)        # free the object pages pages 5..6 show
    data = w.pread(0, 4096)             # through the page table
    m = w.mmap()                        # MAP_SHARED; stores reach the object at
    m[0:2] = b"hi"; w.sync()            #   writeback (msync/fsync, munmap, close)
    for p in w.query(0, 8): print(p.index, p.pgoff, p.flags)
    w.close(); os.unlink("/mnt/win0")   # unlink + last close destroys the window

Every method is one syscall (``query`` loops over 512-page chunks); errors are
the OSError the kernel returns for the ioctl, with the daemon's errno.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
import os
from pathlib import Path
from typing import Any

from mount.winapi.abi import (
    ATTACH,
    GRANT,
    INFO,
    MADV_DONTNEED,
    MADV_NORMAL,
    MADV_REMOVE,
    MADV_WILLNEED,
    MADVISE,
    MAP_CHGPROT,
    MAP_NONBLOCK,
    MPROTECT,
    PAGE_SIZE,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    QUERY_HEAD,
    QUERY_MAX_PAGES,
    QUERY_SIZE,
    REMAP,
    REMAPV_HEAD,
    REMAPV_MAX,
    SHMFS_IOC_STATS,
    SHMFS_IOC_WIN_ATTACH,
    SHMFS_IOC_WIN_GRANT,
    SHMFS_IOC_WIN_INFO,
    SHMFS_IOC_WIN_MADVISE,
    SHMFS_IOC_WIN_MPROTECT,
    SHMFS_IOC_WIN_QUERY,
    SHMFS_IOC_WIN_REMAP,
    SHMFS_IOC_WIN_REMAPV,
    SHMFS_MPROTECT_VMA,
    SHMFS_REMAP_POPULATE,
    STATS_HEAD,
    STATS_SIZE,
    TOKEN_BYTES,
    PageInfo,
    WindowInfo,
    decode_query_reply,
    encode_remapv,
)

__all__ = [
    "MADV_DONTNEED",
    "MADV_NORMAL",
    "MADV_REMOVE",
    "MADV_WILLNEED",
    "MAP_CHGPROT",
    "MAP_NONBLOCK",
    "PAGE_SIZE",
    "PROT_NONE",
    "PROT_READ",
    "PROT_WRITE",
    "SHMFS_MPROTECT_VMA",
    "SHMFS_REMAP_POPULATE",
    "PageInfo",
    "Window",
    "WindowInfo",
    "grant",
    "mount_stats",
    "open_object",
]


def _ioctl(fd: int, cmd: int, buf: bytes | bytearray) -> bytearray:
    """ioctl(fd, cmd, &struct): the struct is passed in a mutable buffer (any size),
    which also receives what the kernel copies out."""
    b = bytearray(buf)
    fcntl.ioctl(fd, cmd, b, True)
    return b


class Window:
    """An open window file (or a file about to become one)."""

    def __init__(self, fd: int, *, owns_fd: bool = True) -> None:
        self.fd = fd
        self.owns_fd = owns_fd
        self._info: WindowInfo | None = None

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        obj: str | os.PathLike[str] | bytes,
        npages: int,
        prot: int = PROT_READ | PROT_WRITE,
        pgoff: int = 0,
        *,
        mode: int = 0o600,
        exclusive: bool = True,
    ) -> Window:
        """Create the file ``path`` and ATTACH it to ``obj``, showing ``npages`` pages from
        ``pgoff``.  ``obj`` is the object's path (opened here, read-only or read-write as
        ``prot`` needs, so the kernel checks the caller may open it) or a token from
        :func:`grant`.  The object is opened before ``path`` is created, and a file this
        call created is removed again when ATTACH fails."""
        token = obj if isinstance(obj, bytes) else None
        objfd = -1
        if token is None:
            objfd = open_object(obj, prot)
        try:
            if token is None:
                token = grant(objfd, prot)
            flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if exclusive else 0)
            fd = os.open(path, flags, mode)
            w = cls(fd)
            try:
                w.attach(token, npages * PAGE_SIZE, prot, pgoff)
            except BaseException:
                w.close()
                if exclusive:  # we made it: leave nothing behind
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                raise
            return w
        finally:
            if objfd >= 0:
                os.close(objfd)

    @classmethod
    def open(cls, path: str | os.PathLike[str], writable: bool = True) -> Window:
        """Open an existing window (read-only descriptors can only QUERY/INFO/read)."""
        return cls(os.open(path, os.O_RDWR if writable else os.O_RDONLY))

    def attach(self, obj: str | os.PathLike[str] | bytes, size: int, prot: int,
               pgoff: int = 0, flags: int = 0) -> None:
        """SHMFS_IOC_WIN_ATTACH: make this (empty, regular) file a window of ``size`` bytes
        over ``obj``: a token from :func:`grant`, or the object's path (opened and granted
        here)."""
        self._info = None
        if isinstance(obj, bytes):
            _ioctl(self.fd, SHMFS_IOC_WIN_ATTACH, ATTACH.pack(obj, size, pgoff, prot, flags))
            return
        objfd = open_object(obj, prot)
        try:
            self.attach(grant(objfd, prot), size, prot, pgoff, flags)
        finally:
            os.close(objfd)

    def close(self) -> None:
        if self.owns_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Window:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ ioctls
    def remap_bytes(self, start: int, size: int, pgoff: int, prot: int = 0, flags: int = 0) -> None:
        """SHMFS_IOC_WIN_REMAP with remap_file_pages' own arguments (byte offsets into the
        window; the 2.6.23 rounding and checks apply)."""
        _ioctl(self.fd, SHMFS_IOC_WIN_REMAP, REMAP.pack(start, size, pgoff, prot, flags))

    def remap(self, index: int, npages: int, pgoff: int, *, prot: int | None = None,
              populate: bool = False, nonblock: bool = False) -> None:
        """Window pages [index, index+npages) show object pages pgoff, pgoff+1, ...;
        ``prot`` given: the pages also get that protection (MAP_CHGPROT)."""
        flags = (SHMFS_REMAP_POPULATE if populate else 0) | (MAP_NONBLOCK if nonblock else 0)
        if prot is not None:
            flags |= MAP_CHGPROT
        self.remap_bytes(index * PAGE_SIZE, npages * PAGE_SIZE, pgoff, prot or 0, flags)

    def remapv_bytes(self, entries: list[tuple[int, int, int, int, int]]) -> int:
        """SHMFS_IOC_WIN_REMAPV with REMAP's own (start, size, pgoff, prot, flags) entries,
        511 a call.  Returns the entries applied; on the first failing entry raises the
        OSError of that entry, with ``done`` = entries applied before it (all calls)."""
        done = 0
        for k in range(0, len(entries), REMAPV_MAX):
            part = entries[k : k + REMAPV_MAX]
            buf = encode_remapv(part)  # > 1024 bytes: the kernel copies ``done`` into it
            try:
                fcntl.ioctl(self.fd, SHMFS_IOC_WIN_REMAPV, buf, True)
            except OSError as e:
                e.done = done + REMAPV_HEAD.unpack_from(buf, 0)[2]  # type: ignore[attr-defined]
                raise
            done += len(part)
        return done

    def remapv(self, entries: Any, *, populate: bool = False, nonblock: bool = False) -> int:
        """Many remaps in as few syscalls as the ABI allows (511 entries each): entries are
        (index, npages, pgoff) or (index, npages, pgoff, prot) -- with a prot, as
        ``remap(..., prot=)`` (MAP_CHGPROT).  Applied in order, later entries win where
        they overlap; returns how many were applied (see remapv_bytes for errors)."""
        base = (SHMFS_REMAP_POPULATE if populate else 0) | (MAP_NONBLOCK if nonblock else 0)
        raw = []
        for e in entries:
            index, npages, pgoff = e[0], e[1], e[2]
            prot = e[3] if len(e) > 3 else None
            flags = base | (MAP_CHGPROT if prot is not None else 0)
            raw.append((index * PAGE_SIZE, npages * PAGE_SIZE, pgoff, prot or 0, flags))
        return self.remapv_bytes(raw)

    def protect(self, index: int, npages: int, prot: int, *, vma: bool = False) -> None:
        """SHMFS_IOC_WIN_MPROTECT: per-page protection (or, with ``vma``, mprotect(2)
        of the window's VMA, which splits it)."""
        flags = SHMFS_MPROTECT_VMA if vma else 0
        _ioctl(self.fd, SHMFS_IOC_WIN_MPROTECT,
               MPROTECT.pack(index * PAGE_SIZE, npages * PAGE_SIZE, prot, flags))

    def madvise(self, index: int, npages: int, advice: int) -> None:
        """SHMFS_IOC_WIN_MADVISE: MADV_REMOVE / MADV_DONTNEED / MADV_WILLNEED / MADV_NORMAL."""
        _ioctl(self.fd, SHMFS_IOC_WIN_MADVISE,
               MADVISE.pack(index * PAGE_SIZE, npages * PAGE_SIZE, advice, 0))

    def query(self, first: int = 0, count: int | None = None) -> list[PageInfo]:
        """SHMFS_IOC_WIN_QUERY in chunks of 512: pgoff, flags (PAGE_*) and protection
        of window pages [first, first+count) (default: to the end of the window)."""
        out: list[PageInfo] = []
        pos = first
        end = None if count is None else first + count
        while end is None or pos < end:
            want = QUERY_MAX_PAGES if end is None else min(QUERY_MAX_PAGES, end - pos)
            buf = bytearray(QUERY_SIZE)
            QUERY_HEAD.pack_into(buf, 0, pos, want, 0, 0, 0)
            npages, _osize, pages = decode_query_reply(_ioctl(self.fd, SHMFS_IOC_WIN_QUERY, buf))
            out.extend(pages)
            pos += len(pages)
            if not pages or pos >= npages:
                break
        return out

    def info(self) -> WindowInfo:
        """SHMFS_IOC_WIN_INFO: object inode, sizes, prot, nonlinear/manyprots, VMAs."""
        b = _ioctl(self.fd, SHMFS_IOC_WIN_INFO, bytes(INFO.size))
        self._info = WindowInfo(*INFO.unpack(b)[:7])
        return self._info

    @property
    def size(self) -> int:
        return os.fstat(self.fd).st_size

    @property
    def npages(self) -> int:
        return self.size // PAGE_SIZE

    # --------------------------------------------------------------- data path
    def pread(self, off: int, length: int) -> bytes:
        return os.pread(self.fd, length, off)

    def pwrite(self, off: int, data: bytes | bytearray | memoryview) -> int:
        return os.pwrite(self.fd, data, off)

    def mmap(self, prot: int = PROT_READ | PROT_WRITE, length: int | None = None,
             offset: int = 0) -> mmap.mmap:
        """MAP_SHARED mapping of the window (stores reach the object at writeback)."""
        mprot = (mmap.PROT_READ if prot & PROT_READ else 0) | (
            mmap.PROT_WRITE if prot & PROT_WRITE else 0)
        n = self.size - offset if length is None else length
        return mmap.mmap(self.fd, n, mmap.MAP_SHARED, mprot, offset=offset)

    def sync(self) -> None:
        """fsync(2): write back stores made through mmaps of this window (msync equivalent
        for every mapping of the file) and see the daemon's verdict on them."""
        os.fsync(self.fd)


def open_object(obj: str | os.PathLike[str], prot: int) -> int:
    """open(2) the object as a window with ``prot`` needs it: O_RDWR for PROT_WRITE,
    else O_RDONLY.  An inode number is not accepted: it proves nothing."""
    if isinstance(obj, int):
        raise TypeError("a window's object is a path or a GRANT token, not an inode number")
    return os.open(obj, os.O_RDWR if prot & PROT_WRITE else os.O_RDONLY)


def grant(obj_fd: int, prot: int = PROT_READ | PROT_WRITE) -> bytes:
    """SHMFS_IOC_WIN_GRANT on ``obj_fd`` (a descriptor open on the object, on the mount):
    a single-use token for one ATTACH by this uid with at most ``prot``.  It dies when
    this open file is closed (its last descriptor)."""
    b = _ioctl(obj_fd, SHMFS_IOC_WIN_GRANT, GRANT.pack(prot, 0, bytes(TOKEN_BYTES)))
    return bytes(GRANT.unpack(b)[2])


def mount_stats(path: str | os.PathLike[str]) -> dict[str, Any]:
    """SHMFS_IOC_STATS on ``path`` (normally the mount root): the daemon's statistics."""
    fd = os.open(Path(path), os.O_RDONLY)
    try:
        chunks: list[bytes] = []
        offset = 0
        while True:
            buf = bytearray(STATS_SIZE)
            STATS_HEAD.pack_into(buf, 0, offset, 0, 0, 0)
            out = _ioctl(fd, SHMFS_IOC_STATS, buf)
            _off, total, n, _flags = STATS_HEAD.unpack_from(out, 0)
            chunks.append(bytes(out[STATS_HEAD.size : STATS_HEAD.size + n]))
            offset += n
            if n == 0 or offset >= total:
                break
        return json.loads(b"".join(chunks))
    finally:
        os.close(fd)
