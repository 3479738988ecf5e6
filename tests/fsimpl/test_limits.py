"""size= and nr_inodes= as tmpfs enforces them, statfs, remount."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from fsimpl import FsError, ShmFs
from fsimpl.types import FALLOC_FL_KEEP_SIZE

from .conftest import ROOT

P = 4096


def raises(code: int, fn, *args, **kw) -> None:
    with pytest.raises(FsError) as e:
        fn(*args, **kw)
    assert e.value.errno == code, e.value


def test_statfs_unlimited_is_zeros(fs: ShmFs) -> None:
    # 6.18: mount -t tmpfs -o size=0,nr_inodes=0 -> f_blocks = f_bfree = f_files = f_ffree = 0
    a, fh = fs.create(1, b"f", 0o644, os.O_RDWR, ROOT)
    fs.write(a.ino, fh, 0, memoryview(b"x" * P))
    st = fs.statfs()
    assert (st.blocks, st.bfree, st.bavail, st.files, st.ffree) == (0, 0, 0, 0, 0)
    assert (st.bsize, st.namelen, st.frsize) == (4096, 255, 4096)


def test_statfs_limited(make_fs) -> None:
    # 6.18: size=64k,nr_inodes=8 -> f_blocks 16, f_bfree 16, f_files 8, f_ffree 7
    fs = make_fs(size_bytes=64 << 10, nr_inodes=8)
    st = fs.statfs()
    assert (st.blocks, st.bfree, st.bavail, st.files, st.ffree) == (16, 16, 16, 8, 7)
    # size= is rounded up to whole pages
    assert make_fs(size_bytes=5000).statfs().blocks == 2


def test_enospc_partial_write_and_recovery(make_fs) -> None:
    # 6.18 size=16k: 100 bytes, then pwrite(20000 at 100) -> 16284, next write ENOSPC,
    # bytes 98..101 read "aabb"
    fs = make_fs(size_bytes=16 << 10)
    a, fh = fs.create(1, b"f", 0o644, os.O_RDWR, ROOT)
    assert fs.write(a.ino, fh, 0, memoryview(b"a" * 100)) == 100
    assert fs.write(a.ino, fh, 100, memoryview(b"b" * 20000)) == 16284
    assert fs.getattr(a.ino).size == 16384
    b, bfh = fs.create(1, b"g", 0o644, os.O_RDWR, ROOT)
    raises(errno.ENOSPC, fs.write, b.ino, bfh, 0, memoryview(b"c" * 10))
    assert fs.getattr(b.ino).size == 0
    # overwriting allocated pages needs no space
    assert fs.write(a.ino, fh, 0, memoryview(b"A" * 50)) == 50
    assert b"".join(bytes(v) for v in fs.read(a.ino, fh, 48, 4)) == b"AAaa"
    assert b"".join(bytes(v) for v in fs.read(a.ino, fh, 98, 4)) == b"aabb"
    raises(errno.ENOSPC, fs.fallocate, b.ino, bfh, 0, 0, P)
    raises(errno.ENOSPC, fs.fallocate, b.ino, bfh, FALLOC_FL_KEEP_SIZE, 0, P)
    # sparse truncate beyond the limit is fine (tmpfs charges pages, not i_size)
    fs.setattr(b.ino, ROOT, size=1 << 30)
    fs.release(a.ino, fh)
    fs.unlink(1, b"f")
    fs.forget(a.ino, 1)
    assert fs.statfs().bfree == 4
    assert fs.write(b.ino, bfh, 0, memoryview(b"c" * 10)) == 10


def test_fallocate_all_or_nothing(make_fs) -> None:
    fs = make_fs(size_bytes=4 * P)
    a, fh = fs.create(1, b"f", 0o644, os.O_RDWR, ROOT)
    fs.write(a.ino, fh, 0, memoryview(b"x"))
    raises(errno.ENOSPC, fs.fallocate, a.ino, fh, 0, 0, 8 * P)
    assert fs.getattr(a.ino).size == 1 and fs.statfs().bfree == 3


def test_nr_inodes_exhaustion(make_fs) -> None:
    # 6.18 nr_inodes=8: the root takes one; 7 files fit; then create, link and
    # setxattr all give ENOSPC
    fs = make_fs(nr_inodes=8)
    inos = [fs.mknod(1, b"i%d" % i, stat.S_IFREG | 0o644, 0, ROOT).ino for i in range(7)]
    assert fs.statfs().ffree == 0
    raises(errno.ENOSPC, fs.mknod, 1, b"x", stat.S_IFREG, 0, ROOT)
    raises(errno.ENOSPC, fs.mkdir, 1, b"x", 0o755, ROOT)
    raises(errno.ENOSPC, fs.symlink, 1, b"x", b"t", ROOT)
    raises(errno.ENOSPC, fs.create, 1, b"x", 0o644, os.O_RDWR, ROOT)
    raises(errno.ENOSPC, fs.link, inos[0], 1, b"x")
    raises(errno.ENOSPC, fs.setxattr, inos[0], b"user.a", b"v", 0)
    raises(errno.ENOSPC, fs.rename, 1, b"i0", 1, b"w", 4)  # the whiteout needs an inode
    assert fs.statistics()["inodes"] == 8
    fs.unlink(1, b"i0")  # tmpfs: the slot of an unlinked, closed file is free at once
    assert fs.statfs().ffree == 1
    fs.forget(inos[0], 1)
    assert fs.statfs().ffree == 1
    fs.mkdir(1, b"x", 0o755, ROOT)


def test_link_takes_a_slot_and_unlink_returns_it(make_fs) -> None:
    # shmem_link reserves an inode; shmem_unlink frees one while other links remain
    fs = make_fs(nr_inodes=4)
    f = fs.mknod(1, b"f", stat.S_IFREG | 0o644, 0, ROOT).ino
    assert fs.statfs().ffree == 2
    fs.link(f, 1, b"g")
    assert fs.statfs().ffree == 1
    fs.unlink(1, b"g")
    assert fs.statfs().ffree == 2
    fs.link(f, 1, b"h")
    fs.rename(1, b"f", 1, b"h")  # same inode: nothing
    fs.mknod(1, b"z", stat.S_IFREG | 0o644, 0, ROOT)
    fs.rename(1, b"z", 1, b"h")  # replaces one name of f: f keeps one link, slot back
    assert fs.getattr(f).nlink == 1 and fs.statfs().ffree == 1


def test_remount(make_fs) -> None:
    # 6.18: remount,size=8k on a tmpfs using 16k -> EINVAL "Too small a size for current use"
    fs = make_fs(size_bytes=16 << 10, nr_inodes=4)
    a, fh = fs.create(1, b"f", 0o644, os.O_RDWR, ROOT)
    fs.write(a.ino, fh, 0, memoryview(b"x" * (3 * P)))
    raises(errno.EINVAL, fs.remount, size_bytes=8 << 10)
    raises(errno.EINVAL, fs.remount, nr_inodes=1)
    fs.remount(size_bytes=12 << 10, nr_inodes=2)
    assert fs.statfs().blocks == 3 and fs.statfs().ffree == 0
    fs.remount(size_bytes=0, nr_inodes=0)  # lifting the limits is allowed
    assert fs.statfs().blocks == 0
    assert fs.write(a.ino, fh, 3 * P, memoryview(b"y" * P)) == P
    raises(errno.EINVAL, fs.remount, size_bytes=1 << 20)  # cannot retroactively limit
    raises(errno.EINVAL, fs.remount, nr_inodes=100)


def test_statistics(make_fs) -> None:
    fs = make_fs(size_bytes=1 << 20)
    a, fh = fs.create(1, b"f", 0o644, os.O_RDWR, ROOT)
    fs.write(a.ino, fh, 0, memoryview(b"x" * 5000))
    fs.mkdir(1, b"d", 0o755, ROOT)
    st = fs.statistics()
    assert st["inodes"] == 3 and st["used_pages"] == 2 and st["open_handles"] == 1
    assert st["inodes_by_type"] == {"d": 2, "-": 1}
    assert st["ops"]["create"] == 1 and st["ops"]["write"] == 1 and st["ops"]["mkdir"] == 1
