"""Extended attributes as tmpfs 6.6+ (user.* allowed, ispace-accounted)."""

from __future__ import annotations

import errno
import stat

import pytest

from fsimpl import FsError, ShmFs
from fsimpl.types import XATTR_CREATE, XATTR_REPLACE

from .conftest import ROOT, Clock


def raises(code: int, fn, *args, **kw) -> None:
    with pytest.raises(FsError) as e:
        fn(*args, **kw)
    assert e.value.errno == code, e.value


def reg(fs: ShmFs, name: bytes = b"f") -> int:
    return fs.mknod(1, name, stat.S_IFREG | 0o644, 0, ROOT).ino


def test_set_get_list_remove(fs: ShmFs, clock: Clock) -> None:
    f = reg(fs)
    t = clock.tick()
    fs.setxattr(f, b"user.a", b"1", 0)
    assert fs.getattr(f).ctime_ns == t
    fs.setxattr(f, b"trusted.z", b"", 0)  # empty values exist (setfattr -n)
    fs.setxattr(f, b"security.s", b"\0" * 10, 0)
    assert fs.listxattr(f) == [b"user.a", b"trusted.z", b"security.s"]
    assert fs.getxattr(f, b"trusted.z") == b""
    fs.setxattr(f, b"user.a", b"22", 0)
    assert fs.getxattr(f, b"user.a") == b"22"
    t = clock.tick()
    fs.removexattr(f, b"user.a")
    assert fs.getattr(f).ctime_ns == t
    raises(errno.ENODATA, fs.getxattr, f, b"user.a")
    raises(errno.ENODATA, fs.removexattr, f, b"user.a")


def test_trusted_hidden_from_unprivileged_list(fs: ShmFs) -> None:
    # 6.18 tmpfs: uid 1000 lists only security.s of {trusted.t, security.s}
    from .conftest import USER

    f = reg(fs)
    fs.setxattr(f, b"trusted.t", b"1", 0)
    fs.setxattr(f, b"security.s", b"2", 0)
    assert fs.listxattr(f, USER) == [b"security.s"]
    assert fs.listxattr(f, ROOT) == [b"trusted.t", b"security.s"]


def test_flags(fs: ShmFs) -> None:
    f = reg(fs)
    raises(errno.ENODATA, fs.setxattr, f, b"user.a", b"1", XATTR_REPLACE)
    fs.setxattr(f, b"user.a", b"1", XATTR_CREATE)
    raises(errno.EEXIST, fs.setxattr, f, b"user.a", b"2", XATTR_CREATE)
    fs.setxattr(f, b"user.a", b"3", XATTR_REPLACE)
    assert fs.getxattr(f, b"user.a") == b"3"
    raises(errno.EINVAL, fs.setxattr, f, b"user.a", b"3", 4)


def test_names_and_sizes(fs: ShmFs) -> None:
    f = reg(fs)
    raises(errno.EINVAL, fs.setxattr, f, b"system.posix_acl_access", b"x", 0)
    raises(errno.ENODATA, fs.getxattr, f, b"system.posix_acl_default")
    raises(errno.EOPNOTSUPP, fs.setxattr, f, b"system.bogus", b"x", 0)
    raises(errno.EOPNOTSUPP, fs.setxattr, f, b"os2.x", b"x", 0)
    raises(errno.EINVAL, fs.setxattr, f, b"user.", b"x", 0)
    fs.setxattr(f, b"user." + b"n" * 250, b"x", 0)  # 255 bytes in all
    raises(errno.ERANGE, fs.setxattr, f, b"user." + b"n" * 251, b"x", 0)
    fs.setxattr(f, b"user.big", b"v" * 65536, 0)
    raises(errno.E2BIG, fs.setxattr, f, b"user.big", b"v" * 65537, 0)


def test_user_namespace_only_on_files_and_dirs(fs: ShmFs) -> None:
    lnk = fs.symlink(1, b"l", b"t", ROOT).ino
    dev = fs.mknod(1, b"c", stat.S_IFCHR | 0o600, 5, ROOT).ino
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    for ino in (lnk, dev):
        raises(errno.EPERM, fs.setxattr, ino, b"user.a", b"1", 0)
        raises(errno.ENODATA, fs.getxattr, ino, b"user.a")
        raises(errno.EPERM, fs.removexattr, ino, b"user.a")
        fs.setxattr(ino, b"trusted.a", b"1", 0)
    fs.setxattr(d, b"user.a", b"1", 0)


def test_ispace_accounting(make_fs) -> None:
    # 6.18 nr_inodes=3 (root + one file leave 1024 bytes): "user.a" with 978 bytes
    # fits exactly (40 + 6 + 978), 979 is ENOSPC; after that even an empty value
    # fails; replacing 900 bytes by 900 bytes is ENOSPC (charged before the refund)
    fs = make_fs(nr_inodes=3)
    f = reg(fs)
    raises(errno.ENOSPC, fs.setxattr, f, b"user.a", b"x" * 979, 0)
    fs.setxattr(f, b"user.a", b"x" * 978, 0)
    assert fs.statfs().ffree == 0
    raises(errno.ENOSPC, fs.setxattr, f, b"user.b", b"", 0)
    fs.removexattr(f, b"user.a")
    assert fs.statfs().ffree == 1
    fs.setxattr(f, b"user.a", b"x" * 900, 0)
    raises(errno.ENOSPC, fs.setxattr, f, b"user.a", b"y" * 900, 0)
    assert fs.getxattr(f, b"user.a") == b"x" * 900
    fs.setxattr(f, b"user.a", b"y" * 10, 0)  # 56 + 946 fits, then 946 comes back
    assert fs.free_ispace == 1024 - 56


def test_xattr_space_returns_at_eviction(make_fs) -> None:
    fs = make_fs(nr_inodes=3)
    f = reg(fs)
    fs.setxattr(f, b"user.a", b"x" * 500, 0)
    fs.unlink(1, b"f")
    fs.forget(f, 1)
    assert fs.free_ispace == 2 * 1024 and fs.statfs().ffree == 2


def test_unlimited_inodes_do_not_account(fs: ShmFs) -> None:
    f = reg(fs)
    for i in range(50):
        fs.setxattr(f, b"user.%d" % i, b"v" * 60000, 0)
    assert len(fs.listxattr(f)) == 50 and fs.statfs().ffree == 0
