"""Idmapped mounts (issue 13 item 9): mount_setattr(MOUNT_ATTR_IDMAP) on a
kernel tmpfs works; shmfs does not offer FUSE_ALLOW_IDMAP, so the kernel
refuses to idmap it (EINVAL). Why shmfs cannot offer it: docs/divergences.md
row 11 (fs/fuse/dev.c fuse_fill_creds sends FUSE_INVALID_UIDGID as the caller
of every non-creating request). This test pins both sides, so the day shmfs
supports idmapped mounts it fails and the divergence row must go."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.mounts import shmfs_mount, tmpfs_mount

pytestmark = pytest.mark.mount

_libc = ctypes.CDLL(None, use_errno=True)
SYS_open_tree, SYS_mount_setattr = 428, 442  # x86-64
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, os.O_CLOEXEC
AT_EMPTY_PATH, AT_RECURSIVE = 0x1000, 0x8000
MOUNT_ATTR_IDMAP = 0x00100000
CLONE_NEWUSER = 0x10000000
MAPPED = 1000  # namespace id 0 <-> this host id


def _check(ret: int) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


@contextmanager
def userns_fd() -> Iterator[int]:
    """A user namespace mapping id 0 to MAPPED (uid and gid), as an fd."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0 if _libc.unshare(CLONE_NEWUSER) == 0 else 1
        os.write(w, bytes([code]))
        signal.pause()
        os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"\0", "unshare(CLONE_NEWUSER) failed"
        for f in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{f}", "w") as m:
                m.write(f"0 {MAPPED} 1\n")
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)


def idmapped_tree(path: str, ns_fd: int) -> int:
    """A detached clone of the mount at ``path``, idmapped through ``ns_fd``."""
    tree = _check(_libc.syscall(SYS_open_tree, -100, os.fsencode(path),
                                OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC))
    attr = struct.pack("<QQQQ", MOUNT_ATTR_IDMAP, 0, 0, ns_fd)
    try:
        _check(_libc.syscall(SYS_mount_setattr, tree, b"", AT_EMPTY_PATH, attr, len(attr)))
    except OSError:
        os.close(tree)
        raise
    return tree


def test_tmpfs_can_be_idmapped() -> None:
    with tmpfs_mount("") as mnt, userns_fd() as ns:
        (mnt / "f").write_bytes(b"x")  # owned by 0:0 on the filesystem
        tree = idmapped_tree(str(mnt), ns)
        try:
            st = os.stat("f", dir_fd=tree)
            assert (st.st_uid, st.st_gid) == (MAPPED, MAPPED)
        finally:
            os.close(tree)


def test_shmfs_refuses_to_be_idmapped() -> None:
    with shmfs_mount("") as mnt, userns_fd() as ns:
        with pytest.raises(OSError) as e:
            os.close(idmapped_tree(str(mnt), ns))
        assert e.value.errno == errno.EINVAL
