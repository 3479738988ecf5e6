"""size= and nr_inodes= on a live mount: ENOSPC without losing a byte, space
that comes back, and statfs figures -- each compared with a kernel tmpfs
mounted with the same options."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.live.helpers import PAGE, fallocate

pytestmark = pytest.mark.mount


def _fill_scenario(d: Path) -> list[object]:
    obs: list[object] = []
    st = os.statvfs(d)
    obs.append(("statfs", st.f_bsize, st.f_blocks, st.f_bfree, st.f_bavail, st.f_namemax))
    fd = os.open(d / "a", os.O_RDWR | os.O_CREAT, 0o644)
    first = os.urandom(20 * PAGE)
    obs.append(("w1", os.write(fd, first)))
    # a write that only partly fits: short count, then ENOSPC
    try:
        obs.append(("w2", os.write(fd, b"z" * (20 * PAGE + 10))))
    except OSError as e:
        obs.append(("w2", "errno", e.errno))
    try:
        obs.append(("w3", os.write(fd, b"q" * 10)))
    except OSError as e:
        obs.append(("w3", "errno", e.errno))
    obs.append(("intact", os.pread(fd, 20 * PAGE, 0) == first))
    obs.append(("size", os.fstat(fd).st_size))
    st = os.statvfs(d)
    obs.append(("statfs-full", st.f_blocks, st.f_bfree))
    try:
        fallocate(fd, 0, 100 * PAGE, 4 * PAGE)
        obs.append(("falloc", "ok"))
    except OSError as e:
        obs.append(("falloc", "errno", e.errno))
    os.close(fd)
    os.unlink(d / "a")
    st = os.statvfs(d)
    obs.append(("statfs-after-unlink", st.f_blocks, st.f_bfree))
    fd = os.open(d / "b", os.O_RDWR | os.O_CREAT, 0o644)
    obs.append(("w-again", os.write(fd, b"k" * (32 * PAGE))))
    os.close(fd)
    return obs


@pytest.mark.shmfs_options("size=128k")
def test_enospc_at_size_limit_like_tmpfs(shmfs: Path, tmpfs: Path) -> None:
    got, want = _fill_scenario(shmfs), _fill_scenario(tmpfs)
    assert got == want
    assert ("intact", True) in got


def _inode_scenario(d: Path) -> list[object]:
    obs: list[object] = []
    st = os.statvfs(d)
    obs.append(("statfs", st.f_files, st.f_ffree))
    made = 0
    err = None
    for i in range(100):
        try:
            fd = os.open(d / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
            os.close(fd)
            made += 1
        except OSError as e:
            err = e.errno
            break
    obs.append(("created", made, err))
    for call in (lambda: os.mkdir(d / "dir"), lambda: os.symlink("x", d / "sym"),
                 lambda: os.mkfifo(d / "fifo")):
        try:
            call()
            obs.append("ok")
        except OSError as e:
            obs.append(("errno", e.errno))
    obs.append(("link", _try(lambda: os.link(d / "f0", d / "hard"))))
    os.unlink(d / "f1")
    obs.append(("after-unlink", _try(lambda: os.close(os.open(d / "new", os.O_CREAT, 0o644)))))
    st = os.statvfs(d)
    obs.append(("statfs-end", st.f_files, st.f_ffree))
    return obs


def _try(fn) -> object:
    try:
        fn()
        return "ok"
    except OSError as e:
        return ("errno", e.errno)


@pytest.mark.shmfs_options("nr_inodes=8")
def test_nr_inodes_exhaustion_like_tmpfs(shmfs: Path, tmpfs: Path) -> None:
    got = _inode_scenario(shmfs)
    assert got == _inode_scenario(tmpfs)
    assert ("created", 7, errno.ENOSPC) in got


@pytest.mark.shmfs_options("size=1m,nr_inodes=100,mode=0750")
def test_statfs_and_root_mode_like_tmpfs(shmfs: Path, tmpfs: Path) -> None:
    def look(d: Path) -> tuple[object, ...]:
        st = os.statvfs(d)
        return (st.f_bsize, st.f_frsize, st.f_blocks, st.f_bfree, st.f_bavail, st.f_files,
                st.f_ffree, st.f_namemax, oct(os.stat(d).st_mode))

    assert look(shmfs) == look(tmpfs)


def test_unlimited_reports_zero_like_tmpfs(tmp_path: Path) -> None:
    from tests.support.mounts import shmfs_mount, tmpfs_mount

    def look(d: Path) -> tuple[int, int, int, int]:
        st = os.statvfs(d)
        return st.f_blocks, st.f_bfree, st.f_files, st.f_ffree

    with shmfs_mount("size=0,nr_inodes=0") as s, tmpfs_mount("size=0,nr_inodes=0") as t:
        (s / "x").write_bytes(b"data")
        (t / "x").write_bytes(b"data")
        assert look(s) == look(t)
