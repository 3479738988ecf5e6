"""Root inode, creation, lookup, attributes of new inodes, readdir basics."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from fsimpl import FsError, ShmFs

from .conftest import ROOT, USER, Clock


def err(e: pytest.ExceptionInfo[FsError]) -> int:
    return e.value.errno


def test_root_defaults(make_fs) -> None:
    fs = make_fs()
    a = fs.getattr(1)
    # kernel tmpfs: root is ino 1, mode 041777, nlink 2, size 40 (two BOGO dirents)
    assert a.ino == 1 and a.mode == stat.S_IFDIR | 0o1777 and a.nlink == 2
    assert a.size == 40 and a.blocks == 0
    fs2 = make_fs(mode=0o755, uid=7, gid=8)
    b = fs2.getattr(1)
    assert (b.mode & 0o7777, b.uid, b.gid) == (0o755, 7, 8)


def test_create_and_lookup(fs: ShmFs) -> None:
    a, fh = fs.create(1, b"f", 0o640, os.O_RDWR, USER)
    assert stat.S_ISREG(a.mode) and a.mode & 0o7777 == 0o640
    assert (a.uid, a.gid, a.nlink, a.size) == (1000, 1000, 1, 0)
    assert fs.lookup(1, b"f").ino == a.ino
    with pytest.raises(FsError) as e:
        fs.lookup(1, b"nope")
    assert err(e) == errno.ENOENT
    with pytest.raises(FsError) as e:
        fs.create(1, b"f", 0o640, os.O_RDWR | os.O_CREAT | os.O_EXCL, USER)
    assert err(e) == errno.EEXIST
    fs.release(a.ino, fh)


def test_inode_numbers_never_reused(fs: ShmFs) -> None:
    seen = set()
    for _ in range(5):
        a = fs.mknod(1, b"x", stat.S_IFREG | 0o600, 0, ROOT)
        assert a.ino not in seen and a.ino != 1
        seen.add(a.ino)
        fs.unlink(1, b"x")
        fs.forget(a.ino, 1)


def test_names(fs: ShmFs) -> None:
    for bad in (b"", b"a/b", b"a\0b"):
        with pytest.raises(FsError) as e:
            fs.mkdir(1, bad, 0o755, ROOT)
        assert err(e) == errno.EINVAL
    fs.mkdir(1, b"n" * 255, 0o755, ROOT)
    with pytest.raises(FsError) as e:
        fs.mkdir(1, b"n" * 256, 0o755, ROOT)
    assert err(e) == errno.ENAMETOOLONG


def test_setgid_directory_inheritance(fs: ShmFs) -> None:
    d = fs.mkdir(1, b"d", 0o2775, ROOT)
    fs.setattr(d.ino, ROOT, gid=50)
    sub = fs.mkdir(d.ino, b"sub", 0o755, USER)
    f = fs.mknod(d.ino, b"f", stat.S_IFREG | 0o644, 0, USER)
    assert sub.gid == 50 and sub.mode & stat.S_ISGID
    assert f.gid == 50 and not f.mode & stat.S_ISGID
    g = fs.mknod(1, b"g", stat.S_IFREG | 0o644, 0, USER)
    assert g.gid == USER.gid


def test_parent_times_on_create(fs: ShmFs, clock: Clock) -> None:
    before = fs.getattr(1)
    t = clock.tick()
    fs.mkdir(1, b"d", 0o755, ROOT)
    after = fs.getattr(1)
    assert after.mtime_ns == after.ctime_ns == t != before.mtime_ns
    assert after.nlink == before.nlink + 1
