"""unlink/rmdir/link/symlink/mknod/rename against the kernel tmpfs rules.

Kernel references were checked on a 6.18 tmpfs (mount -t tmpfs none DIR) with
os.* calls; each test names what it mirrors.
"""

from __future__ import annotations

import errno
import stat

import pytest

from fsimpl import FsError, ShmFs
from fsimpl.types import RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT

from .conftest import ROOT, USER, Clock


def raises(code: int, fn, *args, **kw) -> None:
    with pytest.raises(FsError) as e:
        fn(*args, **kw)
    assert e.value.errno == code, e.value


def reg(fs: ShmFs, parent: int, name: bytes) -> int:
    return fs.mknod(parent, name, stat.S_IFREG | 0o644, 0, ROOT).ino


def names(fs: ShmFs, ino: int) -> list[bytes]:
    fh = fs.opendir(ino, 0)
    try:
        return [n for n, *_ in fs.readdir(ino, fh, 0)][2:]
    finally:
        fs.releasedir(ino, fh)


def test_dir_nlink_and_size(fs: ShmFs) -> None:
    # tmpfs: empty dir size 40 nlink 2; +20 per entry; nlink = 2 + subdirs
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    assert (fs.getattr(d).size, fs.getattr(d).nlink) == (40, 2)
    reg(fs, d, b"a")
    assert (fs.getattr(d).size, fs.getattr(d).nlink) == (60, 2)
    fs.mkdir(d, b"s", 0o755, ROOT)
    assert (fs.getattr(d).size, fs.getattr(d).nlink) == (80, 3)
    fs.unlink(d, b"a")
    assert fs.getattr(d).size == 60
    fs.rmdir(d, b"s")
    assert (fs.getattr(d).size, fs.getattr(d).nlink) == (40, 2)


def test_unlink_rmdir_errors(fs: ShmFs) -> None:
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    reg(fs, d, b"f")
    raises(errno.ENOENT, fs.unlink, 1, b"missing")
    raises(errno.EISDIR, fs.unlink, 1, b"d")
    raises(errno.ENOTDIR, fs.rmdir, d, b"f")
    raises(errno.ENOTEMPTY, fs.rmdir, 1, b"d")
    raises(errno.ENOENT, fs.rmdir, 1, b"missing")
    raises(errno.EINVAL, fs.rmdir, d, b".")
    raises(errno.ENOTDIR, fs.lookup, fs.lookup(d, b"f").ino, b"x")


def test_unlink_times(fs: ShmFs, clock: Clock) -> None:
    f = reg(fs, 1, b"f")
    fs.link(f, 1, b"g")
    t = clock.tick()
    fs.unlink(1, b"f")
    assert fs.getattr(f).ctime_ns == t and fs.getattr(f).nlink == 1
    assert fs.getattr(1).mtime_ns == fs.getattr(1).ctime_ns == t


def test_create_in_removed_dir(fs: ShmFs) -> None:
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    fs.rmdir(1, b"d")
    assert fs.getattr(d).nlink == 0
    raises(errno.ENOENT, fs.mknod, d, b"x", stat.S_IFREG, 0, ROOT)


def test_link(fs: ShmFs, clock: Clock) -> None:
    f = reg(fs, 1, b"f")
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    t = clock.tick()
    a = fs.link(f, d, b"g")
    assert a.ino == f and a.nlink == 2 and a.ctime_ns == t
    assert fs.getattr(d).mtime_ns == t
    raises(errno.EPERM, fs.link, d, 1, b"dl")  # no hard links to directories
    raises(errno.EEXIST, fs.link, f, 1, b"d")


def test_symlink(fs: ShmFs) -> None:
    a = fs.symlink(1, b"l", b"target/x", USER)
    assert stat.S_ISLNK(a.mode) and a.mode & 0o777 == 0o777
    assert a.size == 8 and a.blocks == 0 and a.uid == USER.uid
    assert fs.readlink(a.ino) == b"target/x"
    # 6.18 tmpfs: a 127-byte target has st_blocks 0, 128 and 4095 bytes have 8
    assert fs.symlink(1, b"l127", b"a" * 127, ROOT).blocks == 0
    assert fs.symlink(1, b"l128", b"a" * 128, ROOT).blocks == 8
    assert fs.symlink(1, b"l4095", b"a" * 4095, ROOT).size == 4095
    raises(errno.ENAMETOOLONG, fs.symlink, 1, b"l4096", b"a" * 4096, ROOT)
    raises(errno.EINVAL, fs.readlink, 1)


def test_long_symlink_charges_a_page(make_fs) -> None:
    fs = make_fs(size_bytes=4096)
    fs.symlink(1, b"l", b"a" * 200, ROOT)
    assert fs.statfs().bfree == 0
    raises(errno.ENOSPC, fs.symlink, 1, b"m", b"a" * 200, ROOT)
    fs.symlink(1, b"short", b"a" * 20, ROOT)  # inline, needs no page
    a = fs.lookup(1, b"l")
    fs.unlink(1, b"l")
    fs.forget(a.ino, 2)
    assert fs.statfs().bfree == 1


def test_mknod_types(fs: ShmFs) -> None:
    c = fs.mknod(1, b"c", stat.S_IFCHR | 0o600, 0x0501, ROOT)
    b = fs.mknod(1, b"b", stat.S_IFBLK | 0o600, 0x0802, ROOT)
    p = fs.mknod(1, b"p", stat.S_IFIFO | 0o600, 77, ROOT)
    s = fs.mknod(1, b"s", stat.S_IFSOCK | 0o600, 0, ROOT)
    r = fs.mknod(1, b"r", 0o600, 0, ROOT)  # type 0 is a regular file
    assert stat.S_ISCHR(c.mode) and c.rdev == 0x0501
    assert stat.S_ISBLK(b.mode) and b.rdev == 0x0802
    assert stat.S_ISFIFO(p.mode) and p.rdev == 0
    assert stat.S_ISSOCK(s.mode) and stat.S_ISREG(r.mode)
    raises(errno.EINVAL, fs.mknod, 1, b"d", stat.S_IFDIR | 0o755, 0, ROOT)
    dtypes = {n: t for n, _i, t, _o in fs.readdir(1, fs.opendir(1, 0), 0)}
    assert dtypes[b"c"] == 2 and dtypes[b"b"] == 6 and dtypes[b"p"] == 1
    assert dtypes[b"s"] == 12 and dtypes[b"r"] == 8 and dtypes[b"."] == 4


# ------------------------------------------------------------------------ rename
def test_rename_plain_and_over_file(fs: ShmFs, clock: Clock) -> None:
    a = reg(fs, 1, b"a")
    b = reg(fs, 1, b"b")
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    t = clock.tick()
    fs.rename(1, b"a", d, b"a2")
    assert names(fs, 1) == [b"b", b"d"] and names(fs, d) == [b"a2"]
    assert fs.getattr(a).ctime_ns == t
    for p in (1, d):
        assert fs.getattr(p).mtime_ns == fs.getattr(p).ctime_ns == t
    fs.rename(d, b"a2", 1, b"b")  # replaces b: its nlink drops to 0
    assert fs.lookup(1, b"b").ino == a
    assert fs.getattr(b).nlink == 0
    raises(errno.ENOENT, fs.rename, 1, b"missing", 1, b"x")


def test_rename_dirs(fs: ShmFs) -> None:
    x = fs.mkdir(1, b"x", 0o755, ROOT).ino
    y = fs.mkdir(1, b"y", 0o755, ROOT).ino
    sub = fs.mkdir(x, b"sub", 0o755, ROOT).ino
    f = reg(fs, 1, b"f")
    assert fs.getattr(1).nlink == 4
    fs.rename(x, b"sub", y, b"sub")
    assert fs.getattr(x).nlink == 2 and fs.getattr(y).nlink == 3
    assert list(fs.readdir(sub, fs.opendir(sub, 0), 0))[1][1] == y  # '..' follows
    raises(errno.EISDIR, fs.rename, 1, b"f", 1, b"x")
    raises(errno.ENOTDIR, fs.rename, 1, b"x", 1, b"f")
    raises(errno.ENOTEMPTY, fs.rename, 1, b"x", 1, b"y")
    fs.rename(1, b"y", 1, b"x")  # over an empty directory
    assert fs.lookup(1, b"x").ino == y and fs.getattr(x).nlink == 0
    assert fs.getattr(1).nlink == 3
    raises(errno.EINVAL, fs.rename, 1, b"x", sub, b"loop")  # into its own subtree
    raises(errno.EINVAL, fs.rename, 1, b"x", y, b"self")
    assert fs.getattr(f).nlink == 1


def test_rename_same_inode_is_noop(fs: ShmFs) -> None:
    f = reg(fs, 1, b"f")
    fs.link(f, 1, b"g")
    fs.rename(1, b"f", 1, b"g")
    assert names(fs, 1) == [b"f", b"g"] and fs.getattr(f).nlink == 2


def test_rename_noreplace(fs: ShmFs) -> None:
    reg(fs, 1, b"a")
    reg(fs, 1, b"b")
    raises(errno.EEXIST, fs.rename, 1, b"a", 1, b"b", RENAME_NOREPLACE)
    fs.rename(1, b"a", 1, b"c", RENAME_NOREPLACE)
    assert names(fs, 1) == [b"b", b"c"]


def test_rename_exchange(fs: ShmFs) -> None:
    x = fs.mkdir(1, b"x", 0o755, ROOT).ino
    y = fs.mkdir(1, b"y", 0o755, ROOT).ino
    dx = fs.mkdir(x, b"dx", 0o755, ROOT).ino
    fy = reg(fs, y, b"fy")
    raises(errno.ENOENT, fs.rename, x, b"dx", y, b"missing", RENAME_EXCHANGE)
    fs.rename(x, b"dx", y, b"fy", RENAME_EXCHANGE)
    assert fs.lookup(x, b"dx").ino == fy and fs.lookup(y, b"fy").ino == dx
    assert fs.getattr(x).nlink == 2 and fs.getattr(y).nlink == 3  # dir moved x -> y
    assert list(fs.readdir(dx, fs.opendir(dx, 0), 0))[1][1] == y
    raises(errno.EINVAL, fs.rename, 1, b"y", y, b"fy", RENAME_EXCHANGE)  # y into its child
    raises(errno.EINVAL, fs.rename, 1, b"x", 1, b"y", RENAME_EXCHANGE | RENAME_NOREPLACE)
    raises(errno.EINVAL, fs.rename, 1, b"x", 1, b"y", RENAME_EXCHANGE | RENAME_WHITEOUT)


def test_rename_whiteout(fs: ShmFs) -> None:
    a = reg(fs, 1, b"a")
    fs.rename(1, b"a", 1, b"b", RENAME_WHITEOUT, USER)
    w = fs.lookup(1, b"a")
    # 6.18 tmpfs: renameat2(RENAME_WHITEOUT) leaves mode 0o20000, rdev 0 at the source
    assert w.mode == stat.S_IFCHR and w.rdev == 0 and w.ino != a
    assert w.uid == USER.uid and fs.lookup(1, b"b").ino == a


def test_rename_bad_flags(fs: ShmFs) -> None:
    reg(fs, 1, b"a")
    raises(errno.EINVAL, fs.rename, 1, b"a", 1, b"b", 1 << 3)
    raises(errno.ENAMETOOLONG, fs.rename, 1, b"a", 1, b"n" * 256)


def test_lookup_dot_and_dotdot_for_file_handles(fs: ShmFs) -> None:
    """fuse_get_dentry sends LOOKUP(nodeid, "."), fuse_get_parent (dir, ".."):
    any inode type for ".", and a counted reference each (the kernel FORGETs)."""
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    f = fs.mknod(d, b"f", stat.S_IFREG | 0o644, 0, ROOT).ino
    assert fs.lookup(f, b".").ino == f
    assert fs.lookup(d, b"..").ino == 1
    assert fs.lookup(d, b".").ino == d
    raises(errno.ENOTDIR, fs.lookup, f, b"..")
    fs.unlink(d, b"f")
    raises(errno.ENOENT, fs.lookup, f, b".")  # the kernel answers ESTALE
    fs.rmdir(1, b"d")
    raises(errno.ENOENT, fs.lookup, d, b"..")
    raises(errno.ENOENT, fs.lookup, 10**9, b".")  # never was
