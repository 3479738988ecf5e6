"""ctypes wrappers for the calls the ``os`` module does not expose (renameat2,
linkat with AT_EMPTY_PATH, fallocate with modes, utimensat with UTIME_NOW/OMIT,
xattr calls with caller-sized buffers, opendir/readdir/telldir/seekdir).

Each wrapper raises ``OSError(errno)`` like the ``os`` functions do.
"""

from __future__ import annotations

import ctypes
import os

from mount.syscalls import (  # noqa: F401 -- the cases import them from here
    FALLOC_FL_COLLAPSE_RANGE,
    FALLOC_FL_INSERT_RANGE,
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_ZERO_RANGE,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    RENAME_WHITEOUT,
    fallocate,
    renameat2,
)

_libc = ctypes.CDLL(None, use_errno=True)

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_FOLLOW = 0x400
AT_SYMLINK_NOFOLLOW = 0x100



UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _check(ret: int) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def _b(path: str | bytes) -> bytes:
    return os.fsencode(path)


_libc.linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_int]


def linkat(olddirfd: int, old: str, newdirfd: int, new: str, flags: int) -> None:
    _check(_libc.linkat(olddirfd, _b(old), newdirfd, _b(new), flags))


def link_fd(fd: int, new: str) -> None:
    """Give the (O_TMPFILE or unlinked) file open as ``fd`` the name ``new``."""
    linkat(fd, "", AT_FDCWD, new, AT_EMPTY_PATH)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec),
                            ctypes.c_int]


def utimensat(path: str | None, atime: tuple[int, int] | None,
              mtime: tuple[int, int] | None, flags: int = 0, dirfd: int = AT_FDCWD) -> None:
    """utimensat(2); each time is (sec, nsec) where nsec may be UTIME_NOW/UTIME_OMIT.
    ``atime is mtime is None`` passes a NULL times pointer (both = now)."""
    if atime is None and mtime is None:
        times = None
    else:
        arr = (_Timespec * 2)(_Timespec(*(atime or (0, UTIME_OMIT))),
                              _Timespec(*(mtime or (0, UTIME_OMIT))))
        times = arr
    p = None if path is None else _b(path)
    _check(_libc.utimensat(dirfd, p, times, flags))


for _fn in ("getxattr", "lgetxattr"):
    getattr(_libc, _fn).argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                                    ctypes.c_size_t]
    getattr(_libc, _fn).restype = ctypes.c_ssize_t
_libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.listxattr.restype = ctypes.c_ssize_t


def getxattr_sized(path: str, name: str, size: int) -> bytes | int:
    """getxattr with a buffer of ``size`` bytes; size 0 returns the needed length."""
    if size == 0:
        return _check(_libc.getxattr(_b(path), name.encode(), None, 0))
    buf = ctypes.create_string_buffer(size)
    n = _check(_libc.getxattr(_b(path), name.encode(), buf, size))
    return buf.raw[:n]


def listxattr_sized(path: str, size: int) -> bytes | int:
    if size == 0:
        return _check(_libc.listxattr(_b(path), None, 0))
    buf = ctypes.create_string_buffer(size)
    n = _check(_libc.listxattr(_b(path), buf, size))
    return buf.raw[:n]


class _Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


_libc.opendir.argtypes = [ctypes.c_char_p]
_libc.opendir.restype = ctypes.c_void_p
_libc.readdir.argtypes = [ctypes.c_void_p]
_libc.readdir.restype = ctypes.POINTER(_Dirent)
_libc.telldir.argtypes = [ctypes.c_void_p]
_libc.telldir.restype = ctypes.c_long
_libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
_libc.seekdir.restype = None
_libc.rewinddir.argtypes = [ctypes.c_void_p]
_libc.rewinddir.restype = None
_libc.closedir.argtypes = [ctypes.c_void_p]
_libc.dirfd.argtypes = [ctypes.c_void_p]

DT_NAMES = {0: "unknown", 1: "fifo", 2: "chr", 4: "dir", 6: "blk", 8: "reg", 10: "lnk",
            12: "sock", 14: "wht"}


class Dir:
    """A libc DIR stream (opendir/readdir/telldir/seekdir/rewinddir/closedir)."""

    def __init__(self, path: str) -> None:
        ctypes.set_errno(0)
        p = _libc.opendir(_b(path))
        if not p:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        self._p = p

    def read(self) -> tuple[str, str] | None:
        """Next (name, d_type name), or None at the end."""
        ctypes.set_errno(0)
        ent = _libc.readdir(self._p)
        if not ent:
            e = ctypes.get_errno()
            if e:
                raise OSError(e, os.strerror(e))
            return None
        d = ent.contents
        return d.d_name.decode(errors="surrogateescape"), DT_NAMES.get(d.d_type, str(d.d_type))

    def read_all(self) -> list[tuple[str, str]]:
        out = []
        while (ent := self.read()) is not None:
            out.append(ent)
        return out

    def tell(self) -> int:
        return _check(_libc.telldir(self._p))

    def seek(self, pos: int) -> None:
        _libc.seekdir(self._p, pos)

    def rewind(self) -> None:
        _libc.rewinddir(self._p)

    def fileno(self) -> int:
        return _check(_libc.dirfd(self._p))

    def close(self) -> None:
        if self._p:
            _libc.closedir(self._p)
            self._p = None

    def __enter__(self) -> Dir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
