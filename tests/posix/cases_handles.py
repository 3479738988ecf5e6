"""File handles (issue 13 item 6): name_to_handle_at / open_by_handle_at, also
after the kernel dropped its cached dentries and inodes (drop_caches=2, so the
filesystem itself must resolve the handle), and handles of removed files,
which must be ESTALE and never another file's data. Handles are opaque and
differ between filesystems: only what they open is compared."""

from __future__ import annotations

import ctypes
import os

from .framework import Ctx, Recorder, case

A = "handles"
_libc = ctypes.CDLL(None, use_errno=True)
MAX_HANDLE_SZ = 128


class _Handle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


def name_to_handle(path: str, flags: int = 0) -> _Handle:
    h = _Handle()
    h.handle_bytes = MAX_HANDLE_SZ
    mount_id = ctypes.c_int()
    if _libc.name_to_handle_at(-100, os.fsencode(path), ctypes.byref(h),
                               ctypes.byref(mount_id), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return h


def open_by_handle(mount_fd: int, h: _Handle, flags: int) -> int:
    fd = _libc.open_by_handle_at(mount_fd, ctypes.byref(h), flags)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


def drop_caches() -> None:
    """Dentries and inodes only (2): the page cache of other users is left alone."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2")


def _read_by_handle(rec: Recorder, label: str, mfd: int, h: _Handle) -> None:
    def go() -> bytes:
        fd = open_by_handle(mfd, h, os.O_RDONLY)
        try:
            return os.pread(fd, 100, 0)
        finally:
            os.close(fd)
    rec.call(label, go)


@case(A)
def case_open_by_handle(ctx: Ctx) -> None:
    """A handle opens its file, before and after the kernel forgot the inode."""
    with open("f", "wb") as f:
        f.write(b"hello")
    os.mkdir("d")
    with open("d/g", "wb") as f:
        f.write(b"in d")
    mfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        hf = ctx.rec.call("name_to_handle(f)", lambda: name_to_handle("f") and "ok")
        h, hg = name_to_handle("f"), name_to_handle("d/g")
        _read_by_handle(ctx.rec, "read by handle", mfd, h)
        drop_caches()
        _read_by_handle(ctx.rec, "read by handle after drop_caches", mfd, h)
        _read_by_handle(ctx.rec, "d/g by handle after drop_caches", mfd, hg)
        fd = open_by_handle(mfd, h, os.O_RDONLY)
        ctx.rec.fstat(fd, "fstat by handle")
        ctx.rec.note("same inode as f", os.fstat(fd).st_ino == os.stat("f").st_ino)
        os.close(fd)
        ctx.rec.note("handle", hf)
    finally:
        os.close(mfd)


@case(A)
def case_directory_handle(ctx: Ctx) -> None:
    """A directory's handle opens it after drop_caches; listing and '..' work
    (reconnecting a directory asks the filesystem for '..')."""
    os.makedirs("a/b/c")
    with open("a/b/c/x", "wb") as f:
        f.write(b"x")
    mfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        h = name_to_handle("a/b/c")
        drop_caches()
        fd = ctx.rec.call("open_by_handle(c)", open_by_handle, mfd, h,
                          os.O_RDONLY | os.O_DIRECTORY)
        if fd is not None:
            ctx.rec.note("listing", sorted(os.listdir(fd)))
            ctx.rec.note("'..' is b", os.stat("..", dir_fd=fd).st_ino == os.stat("a/b").st_ino)
            ctx.rec.note("path", os.readlink(f"/proc/self/fd/{fd}").endswith("/a/b/c"))
            os.close(fd)
    finally:
        os.close(mfd)


@case(A)
def case_removed_file_handle_is_stale(ctx: Ctx) -> None:
    """After unlink (and the kernel forgot the inode) the handle is ESTALE, also
    when a new file took the name -- never the new file's data."""
    with open("f", "wb") as f:
        f.write(b"old")
    mfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        h = name_to_handle("f")
        os.unlink("f")
        drop_caches()
        _read_by_handle(ctx.rec, "unlinked", mfd, h)
        for i in range(20):  # new inodes, some may reuse numbers on tmpfs
            with open(f"n{i}", "wb") as f:
                f.write(b"new")
        with open("f", "wb") as f:
            f.write(b"NEW")
        drop_caches()
        _read_by_handle(ctx.rec, "after new files", mfd, h)
    finally:
        os.close(mfd)


@case(A)
def case_open_unlinked_file_handle(ctx: Ctx) -> None:
    """While a file is open, its handle still opens it after unlink."""
    with open("f", "wb") as f:
        f.write(b"still here")
    mfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    keep = os.open("f", os.O_RDONLY)
    try:
        h = name_to_handle("f")
        os.unlink("f")
        _read_by_handle(ctx.rec, "unlinked but open", mfd, h)
    finally:
        os.close(keep)
        os.close(mfd)


@case(A)
def case_handle_as_user(ctx: Ctx) -> None:
    """open_by_handle_at needs CAP_DAC_READ_SEARCH: EPERM for another user."""
    with open("f", "wb") as f:
        f.write(b"secret")
    os.chmod("f", 0o600)
    h = bytes(name_to_handle("f"))

    def body(rec: Recorder) -> None:
        mfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            hh = _Handle.from_buffer_copy(h)
            _read_by_handle(rec, "open_by_handle as uid 1000", mfd, hh)
            rec.call("name_to_handle as uid 1000", lambda: name_to_handle("f") and "ok")
        finally:
            os.close(mfd)
    ctx.as_user(body)
