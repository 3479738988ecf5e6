"""A window's size in the kernel across a restart (issue 17: the short window reads).

The cause of the kill loop's short window reads (docs/reliability.md 4b), made
deterministic here. A window file is created empty (CREATE: the kernel's
i_size is 0) and ATTACH gives it its size behind the kernel's back; until the
kernel takes that size from some reply, a read past its cached i_size first
sends a GETATTR (fs/fuse/file.c, fuse_cache_read_iter) and then reads with
whatever i_size it has. The kernel drops a GETATTR reply if the inode was
invalidated after the request was sent (the attr_version check of
fuse_change_attributes). A restarted server invalidates every inode the
kernel holds, and a GETATTR the dead server had read comes back (RESEND) and
is answered behind those invalidations: dropped for certain, and the read
returned 0 bytes of a page that holds data.

The fix (fsimpl/windows.py ``size_store``): ATTACH, and a restart for every
window the kernel may hold, push a one-byte NOTIFY_STORE ending at the
window's end, which sets the kernel's i_size with no version check
(fuse_notify_store -> fuse_write_update_attr); nothing but a reply with a
smaller size lowers it again, and the server never sends one for a window.

The kernel's cached size is read with statx(AT_STATX_DONT_SYNC), which sends
no request.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mount.winapi import abi
from mount.winapi.client import PROT_READ, PROT_WRITE, Window
from tests.restart.restartable import restartable_mount
from tests.support.mounts import shmfs_mount

pytestmark = pytest.mark.mount

P = 4096
AT_EMPTY_PATH = 0x1000
AT_STATX_DONT_SYNC = 0x4000
STATX_SIZE = 0x200
_STX_SIZE_OFF = 40  # struct statx: mask, blksize, attributes, nlink, uid, gid, mode, pad, ino, size
_libc = ctypes.CDLL(None, use_errno=True)


def cached_size(fd: int) -> int:
    """st_size as the kernel caches it now (no request to the daemon)."""
    buf = ctypes.create_string_buffer(256)
    if _libc.statx(fd, b"", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_SIZE, buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return int.from_bytes(buf.raw[_STX_SIZE_OFF:_STX_SIZE_OFF + 8], "little")


def pattern(n: int) -> bytes:
    return bytes((i * 7 + i // P) & 0xFF for i in range(n))


# inode numbers of a fresh mount: root 1, then one per creation in order
OBJ_INO, WIN_INO = 2, 3


def test_a_window_read_whose_getattr_meets_a_restart_reads_the_whole_page() -> None:
    """The first GETATTR of the window kills the first child after reading it."""
    with restartable_mount(kill=f"GETATTR:before_record:1@{WIN_INO}") as m:
        data = pattern(4 * P)
        (m.path / "obj").write_bytes(data)
        fd = os.open(m.path / "win", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        w = Window(fd)
        try:
            # the CREATE reply's attributes: no GETATTR of the window yet
            assert (os.stat(m.path / "obj").st_ino, os.fstat(fd).st_ino) == (OBJ_INO, WIN_INO)
            first, _ = m.serving()
            w.attach(m.path / "obj", 4 * P, PROT_READ | PROT_WRITE)
            # before the fix the kernel still held i_size 0 here: this read sent the
            # GETATTR that killed the child, its reply was dropped, and it read b""
            assert os.pread(fd, P, 3 * P) == data[3 * P:]
            assert cached_size(fd) == 4 * P
            # attributes are invalid (ATTACH, the store): fstat is a GETATTR, the kill if
            # the read above needed none; the size must survive that restart too
            assert os.fstat(fd).st_size == 4 * P
            second, _ = m.serving()
            assert second != first  # the child died at the GETATTR and another serves
            assert cached_size(fd) == 4 * P
            assert os.pread(fd, 2 * P, 2 * P) == data[2 * P:]
        finally:
            w.close()


@contextlib.contextmanager
def _mount(restartable: bool) -> Iterator[Path]:
    if restartable:
        with restartable_mount() as m:
            yield m.path
    else:
        with shmfs_mount() as mnt:
            yield mnt


@pytest.mark.parametrize("restartable", [False, True], ids=["plain", "restartable"])
def test_the_kernel_caches_the_window_size_when_attach_returns(restartable: bool) -> None:
    """ATTACH alone sets the kernel's size (no stat, no read), and a store through the
    window, which raises i_size only to its end, leaves it there. A plain mount has
    the same race without restarts (a GETATTR meeting another thread's invalidation
    of the window), so it gets the same store."""
    with _mount(restartable) as mnt:
        obj = mnt / "obj"
        obj.write_bytes(b"o" * (64 * P))
        plain = os.open(mnt / "plain", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            assert cached_size(plain) == 0  # the probe reads what the kernel holds
        finally:
            os.close(plain)
        w = Window.create(mnt / "win", obj, npages=16)
        try:
            assert cached_size(w.fd) == 16 * P
            assert w.pwrite(5 * P, b"s" * 100) == 100
            assert cached_size(w.fd) == 16 * P
            assert w.pread(15 * P, P) == b"o" * P
            assert w.pread(5 * P, P) == b"s" * 100 + b"o" * (P - 100)
        finally:
            w.close()


def test_a_kill_after_attach_committed_still_gives_the_kernel_the_size() -> None:
    """ATTACH killed after its commit record, before its store and reply: the reply
    comes from the journal and the restart pushes the size of every window."""
    attach = f"IOCTL:{abi.SHMFS_IOC_WIN_ATTACH:#x}:after_commit:1"
    with restartable_mount(kill=attach) as m:
        data = pattern(8 * P)
        (m.path / "obj").write_bytes(data)
        first, _ = m.serving()
        w = Window.create(m.path / "win", m.path / "obj", npages=8)
        try:
            assert m.serving()[0] != first
            assert cached_size(w.fd) == 8 * P
            assert os.pread(w.fd, P, 7 * P) == data[7 * P:]
        finally:
            w.close()
