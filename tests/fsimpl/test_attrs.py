"""setattr/access rules (kernel tmpfs 6.18 as the oracle, see comments)."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from fsimpl import FsError, ShmFs

from .conftest import ROOT, USER, Clock


def raises(code: int, fn, *args, **kw) -> None:
    with pytest.raises(FsError) as e:
        fn(*args, **kw)
    assert e.value.errno == code, e.value


def reg(fs: ShmFs, mode: int = 0o644, name: bytes = b"f") -> int:
    return fs.mknod(1, name, stat.S_IFREG | mode, 0, ROOT).ino


@pytest.mark.parametrize(
    ("before", "after", "after_user"),
    [
        # 6.18 tmpfs, as root: chown(f, 0, 0) on 06755 -> 0755, on 06745 -> 02745;
        # a caller outside the file's group without CAP_FSETID loses S_ISGID too
        # (setattr_should_drop_sgid)
        (0o6755, 0o0755, 0o0755),
        (0o6745, 0o2745, 0o0745),
        (0o0755, 0o0755, 0o0755),
    ],
)
def test_chown_kills_suid(fs: ShmFs, before: int, after: int, after_user: int) -> None:
    f = reg(fs, before)
    a = fs.setattr(f, ROOT, uid=0, gid=0)
    assert a.mode & 0o7777 == after
    g = reg(fs, before, b"g")
    assert fs.setattr(g, USER, gid=5).mode & 0o7777 == after_user
    h = reg(fs, before, b"h")
    member = type(USER)(uid=1000, gid=0, pid=2)  # in the file's group 0
    assert fs.setattr(h, member, gid=5).mode & 0o7777 == after


def test_chown_directory_keeps_bits(fs: ShmFs) -> None:
    # 6.18 tmpfs: chown of a 06755 directory keeps 06755
    d = fs.mkdir(1, b"d", 0o6755, ROOT).ino
    assert fs.setattr(d, ROOT, uid=3).mode & 0o7777 == 0o6755


def test_chown_with_explicit_mode(fs: ShmFs) -> None:
    f = reg(fs, 0o6755)
    a = fs.setattr(f, ROOT, uid=1, mode=0o4755)  # the kernel folded the kill: mode wins
    assert a.mode & 0o7777 == 0o4755 and a.uid == 1


def test_chmod_keeps_type_and_sets_ctime(fs: ShmFs, clock: Clock) -> None:
    f = reg(fs)
    t = clock.tick()
    a = fs.setattr(f, ROOT, mode=stat.S_IFDIR | 0o600)
    assert stat.S_ISREG(a.mode) and a.mode & 0o7777 == 0o600
    assert a.ctime_ns == t and a.mtime_ns != t


def test_size_sets_mtime_even_if_equal(fs: ShmFs, clock: Clock) -> None:
    # 6.18 tmpfs: truncate(2) and ftruncate(2) to the same size both update mtime
    f = reg(fs)
    fs.setattr(f, ROOT, size=10)
    t = clock.tick()
    a = fs.setattr(f, ROOT, size=10)
    assert a.size == 10 and a.mtime_ns == a.ctime_ns == t
    assert fs.setattr(f, ROOT, size=3).size == 3


def test_size_errors(fs: ShmFs) -> None:
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    raises(errno.EISDIR, fs.setattr, d, ROOT, size=0)
    lnk = fs.symlink(1, b"l", b"x", ROOT).ino
    raises(errno.EINVAL, fs.setattr, lnk, ROOT, size=0)
    f = reg(fs)
    raises(errno.EINVAL, fs.setattr, f, ROOT, size=-1)
    raises(errno.EFBIG, fs.setattr, f, ROOT, size=2**63)
    assert fs.getattr(f).size == 0


def test_times(fs: ShmFs, clock: Clock) -> None:
    f = reg(fs)
    t = clock.tick()
    a = fs.setattr(f, ROOT, atime_ns=5, mtime_ns=7)
    assert (a.atime_ns, a.mtime_ns, a.ctime_ns) == (5, 7, t)
    t2 = clock.tick()
    a = fs.setattr(f, ROOT, atime_now=True)
    assert (a.atime_ns, a.mtime_ns, a.ctime_ns) == (t2, 7, t2)
    t3 = clock.tick()
    a = fs.setattr(f, ROOT, mtime_now=True, ctime_ns=42)
    assert (a.atime_ns, a.mtime_ns, a.ctime_ns) == (t2, t3, 42)


def test_empty_setattr_stamps_ctime(fs: ShmFs, clock: Clock) -> None:
    # 6.18 tmpfs: chown(f, -1, -1) moves ctime (an empty SETATTR over FUSE)
    f = reg(fs, 0o644)
    before = fs.getattr(f)
    t = clock.tick()
    after = fs.setattr(f, ROOT)
    assert after.ctime_ns == t
    assert (after.mode, after.mtime_ns, after.atime_ns) == (
        before.mode,
        before.mtime_ns,
        before.atime_ns,
    )


def test_kill_suidgid_on_setattr(fs: ShmFs) -> None:
    # FATTR_KILL_SUIDGID (HANDLE_KILLPRIV_V2): as a write by a non-CAP_FSETID caller
    f = reg(fs, 0o6745)
    assert fs.setattr(f, USER, size=0, kill_suidgid=True).mode & 0o7777 == 0o0745
    g = reg(fs, 0o6745, b"g")
    assert fs.setattr(g, ROOT, size=0, kill_suidgid=True).mode & 0o7777 == 0o2745


def test_access(fs: ShmFs) -> None:
    f = fs.mknod(1, b"f", stat.S_IFREG | 0o640, 0, USER).ino
    other = type(USER)(uid=2000, gid=1000, pid=3)
    stranger = type(USER)(uid=3000, gid=3000, pid=4)
    fs.access(f, os.R_OK | os.W_OK, USER)
    raises(errno.EACCES, fs.access, f, os.X_OK, USER)
    fs.access(f, os.R_OK, other)  # group
    raises(errno.EACCES, fs.access, f, os.W_OK, other)
    raises(errno.EACCES, fs.access, f, os.R_OK, stranger)
    fs.access(f, os.F_OK, stranger)
    fs.access(f, os.R_OK | os.W_OK, ROOT)
    raises(errno.EACCES, fs.access, f, os.X_OK, ROOT)  # root needs some x bit on files
    fs.access(1, os.X_OK, ROOT)
    raises(errno.ENOENT, fs.access, 999, os.F_OK, ROOT)


def test_truncate_to_llong_max(fs: ShmFs) -> None:
    # 6.18 tmpfs: ftruncate(fd, 2**63 - 1) succeeds and st_size reports it
    f = reg(fs)
    assert fs.setattr(f, ROOT, size=2**63 - 1).size == 2**63 - 1
    assert fs.getattr(f).blocks == 0
    assert fs.setattr(f, ROOT, size=0).size == 0
