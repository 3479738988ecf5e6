"""The data path over vmcore: read/write, O_APPEND/O_TRUNC, EFBIG, fallocate,
SEEK_DATA/SEEK_HOLE, relatime -- each rule next to the tmpfs behaviour it mirrors."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from fsimpl import FsError, ShmFs
from fsimpl.types import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    MAX_FILE_SIZE,
    RELATIME_WINDOW_NS,
    SEEK_DATA,
    SEEK_END,
    SEEK_HOLE,
    SEEK_SET,
)

from .conftest import ROOT, Clock

P = 4096
KEEP, PUNCH = FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE


def raises(code: int, fn, *args, **kw) -> None:
    with pytest.raises(FsError) as e:
        fn(*args, **kw)
    assert e.value.errno == code, e.value


def new(fs: ShmFs, name: bytes = b"f", flags: int = os.O_RDWR) -> tuple[int, int]:
    a, fh = fs.create(1, name, 0o644, flags, ROOT)
    return a.ino, fh


def rd(fs: ShmFs, ino: int, fh: int, off: int, n: int) -> bytes:
    return b"".join(bytes(v) for v in fs.read(ino, fh, off, n))


def test_write_read_roundtrip_across_pages(fs: ShmFs) -> None:
    ino, fh = new(fs)
    data = bytes(range(256)) * 40  # 10240 bytes, three pages
    assert fs.write(ino, fh, 100, memoryview(data)) == len(data)
    assert fs.getattr(ino).size == 100 + len(data)
    assert fs.getattr(ino).blocks == 3 * 8
    assert rd(fs, ino, fh, 0, 100) == bytes(100)
    assert rd(fs, ino, fh, 100, len(data)) == data
    assert rd(fs, ino, fh, 90, 1 << 20) == bytes(10) + data  # clipped at EOF
    assert rd(fs, ino, fh, 1 << 20, 10) == b""


def test_sparse_read_allocates_nothing(fs: ShmFs) -> None:
    ino, fh = new(fs)
    fs.setattr(ino, ROOT, size=1 << 40)  # 6.18 tmpfs: a 1 TiB ftruncate on size=16k works
    assert rd(fs, ino, fh, (1 << 40) - 5, 100) == bytes(5)
    assert fs.getattr(ino).blocks == 0 and fs.statistics()["used_pages"] == 0


def test_write_times(fs: ShmFs, clock: Clock) -> None:
    ino, fh = new(fs)
    t = clock.tick()
    fs.write(ino, fh, 0, memoryview(b"x"))
    a = fs.getattr(ino)
    assert a.mtime_ns == a.ctime_ns == t
    clock.tick()
    assert fs.write(ino, fh, 0, memoryview(b"")) == 0  # 6.18 tmpfs: a 0-byte write keeps mtime
    assert fs.getattr(ino).mtime_ns == t


def test_o_append(fs: ShmFs) -> None:
    ino, fh = new(fs)
    fs.write(ino, fh, 0, memoryview(b"hello"))
    afh = fs.open(ino, os.O_WRONLY | os.O_APPEND)
    assert fs.write(ino, afh, 0, memoryview(b" world")) == 6
    assert rd(fs, ino, fh, 0, 100) == b"hello world"
    fs.write(ino, fh, 0, memoryview(b"!"), os.O_APPEND)
    assert rd(fs, ino, fh, 0, 100) == b"hello world!"


def test_o_trunc(fs: ShmFs, clock: Clock) -> None:
    ino, fh = new(fs)
    fs.write(ino, fh, 0, memoryview(b"x" * 9000))
    t = clock.tick()
    fs.open(ino, os.O_WRONLY | os.O_TRUNC)
    a = fs.getattr(ino)
    assert a.size == 0 and a.blocks == 0 and a.mtime_ns == t
    # Linux (6.18 tmpfs) truncates on O_RDONLY|O_TRUNC too
    fs.write(ino, fh, 0, memoryview(b"y" * 10))
    rfh = fs.open(ino, os.O_RDONLY | os.O_TRUNC)
    assert fs.getattr(ino).size == 0
    fs.release(ino, rfh)


def test_efbig(fs: ShmFs) -> None:
    ino, fh = new(fs)
    raises(errno.EFBIG, fs.write, ino, fh, MAX_FILE_SIZE, memoryview(b"x"))
    assert fs.write(ino, fh, MAX_FILE_SIZE - 2, memoryview(b"abcd")) == 2
    assert fs.getattr(ino).size == MAX_FILE_SIZE


def test_directory_data_ops(fs: ShmFs) -> None:
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    fh = fs.opendir(d, 0)
    raises(errno.EISDIR, fs.read, d, fh, 0, 10)
    raises(errno.EISDIR, fs.write, d, fh, 0, memoryview(b"x"))
    raises(errno.EISDIR, fs.fallocate, d, fh, 0, 0, 10)
    raises(errno.EISDIR, fs.open, d, os.O_WRONLY)


def test_bad_fh(fs: ShmFs) -> None:
    ino, _fh = new(fs)
    raises(errno.EBADF, fs.read, ino, 12345, 0, 1)
    _other, ofh = new(fs, b"g")
    raises(errno.EBADF, fs.write, ino, ofh, 0, memoryview(b"x"))


def test_fallocate_modes(fs: ShmFs, clock: Clock) -> None:
    # vfs_fallocate + shmem_fallocate; PROBE T14/T15: PUNCH without KEEP and
    # ZERO_RANGE (0x10) are EOPNOTSUPP on tmpfs
    ino, fh = new(fs)
    raises(errno.EINVAL, fs.fallocate, ino, fh, 0, -1, 10)
    raises(errno.EINVAL, fs.fallocate, ino, fh, 0, 0, 0)
    raises(errno.EOPNOTSUPP, fs.fallocate, ino, fh, PUNCH, 0, 10)
    for mode in (0x10, 0x08, 0x20, 0x40, KEEP | 0x10):
        raises(errno.EOPNOTSUPP, fs.fallocate, ino, fh, mode, 0, 10)
    raises(errno.EFBIG, fs.fallocate, ino, fh, 0, MAX_FILE_SIZE, 1)
    t = clock.tick()
    fs.fallocate(ino, fh, 0, 0, 3 * P)
    a = fs.getattr(ino)
    assert a.size == 3 * P and a.blocks == 24 and a.mtime_ns == a.ctime_ns == t
    fs.fallocate(ino, fh, KEEP, 10 * P, P)
    a = fs.getattr(ino)
    assert a.size == 3 * P and a.blocks == 32
    fs.write(ino, fh, 0, memoryview(b"y" * (3 * P)))
    t = clock.tick()
    fs.fallocate(ino, fh, PUNCH | KEEP, 100, P + 100)  # partial edges zeroed
    a = fs.getattr(ino)
    assert a.size == 3 * P and a.mtime_ns == t
    data = rd(fs, ino, fh, 0, 3 * P)
    assert data == b"y" * 100 + bytes(P + 100) + b"y" * (2 * P - 200)


def test_fallocate_on_special_file(fs: ShmFs) -> None:
    f = fs.mknod(1, b"p", stat.S_IFIFO | 0o600, 0, ROOT).ino
    raises(errno.ENODEV, fs.fallocate, f, 0, 0, 0, 10)


def test_lseek(fs: ShmFs) -> None:
    # PROBE: after a write at P in a 3-page sparse file: DATA(0)=P, HOLE(0)=0,
    # HOLE(P)=2P, DATA(2P) ENXIO; fallocated pages are holes
    ino, fh = new(fs)
    fs.setattr(ino, ROOT, size=3 * P)
    fs.write(ino, fh, P, memoryview(b"x"))
    assert fs.lseek(ino, fh, 0, SEEK_DATA) == P
    assert fs.lseek(ino, fh, 0, SEEK_HOLE) == 0
    assert fs.lseek(ino, fh, P, SEEK_HOLE) == 2 * P
    assert fs.lseek(ino, fh, P + 5, SEEK_DATA) == P + 5
    raises(errno.ENXIO, fs.lseek, ino, fh, 2 * P, SEEK_DATA)
    assert fs.lseek(ino, fh, 2 * P, SEEK_HOLE) == 2 * P
    fs.fallocate(ino, fh, KEEP, 2 * P, P)
    raises(errno.ENXIO, fs.lseek, ino, fh, 2 * P, SEEK_DATA)
    raises(errno.ENXIO, fs.lseek, ino, fh, 3 * P, SEEK_HOLE)
    raises(errno.ENXIO, fs.lseek, ino, fh, -1, SEEK_DATA)
    assert fs.lseek(ino, fh, 7, SEEK_SET) == 7
    assert fs.lseek(ino, fh, -1, SEEK_END) == 3 * P - 1
    raises(errno.EINVAL, fs.lseek, ino, fh, 0, 99)


def test_lseek_full_file_hole_is_eof(fs: ShmFs) -> None:
    ino, fh = new(fs)
    fs.write(ino, fh, 0, memoryview(b"z" * 5000))
    assert fs.lseek(ino, fh, 0, SEEK_HOLE) == 5000
    assert fs.lseek(ino, fh, 4999, SEEK_DATA) == 4999


def test_relatime(fs: ShmFs, clock: Clock) -> None:
    ino, fh = new(fs)
    fs.write(ino, fh, 0, memoryview(b"x"))
    fs.setattr(ino, ROOT, atime_ns=clock.now - 1)  # atime < mtime: refreshed on read
    t = clock.tick()
    fs.read(ino, fh, 0, 1)
    assert fs.getattr(ino).atime_ns == t
    clock.tick()
    fs.read(ino, fh, 0, 1)  # atime now newer than mtime/ctime and fresh: kept
    assert fs.getattr(ino).atime_ns == t
    t2 = clock.tick(RELATIME_WINDOW_NS)
    fs.read(ino, fh, 0, 1)  # older than a day: refreshed
    assert fs.getattr(ino).atime_ns == t2


def test_kill_suidgid_write_flag_sgid_without_group_exec(fs: ShmFs) -> None:
    # 6.18 tmpfs: a write by uid 1000 (not in group 0) to a 02767 root file -> 0767
    from fsimpl.files import FUSE_WRITE_KILL_SUIDGID
    from fsimpl.types import Creds

    from .conftest import USER

    ino, fh = new(fs)
    fs.setattr(ino, ROOT, mode=0o2767)
    fs.write(ino, fh, 0, memoryview(b"x"), FUSE_WRITE_KILL_SUIDGID)
    assert fs.getattr(ino).mode & 0o7777 == 0o0767  # writer unknown: in no group
    fs.setattr(ino, ROOT, mode=0o2767)
    fs.write(ino, fh, 0, memoryview(b"x"), FUSE_WRITE_KILL_SUIDGID, USER)
    assert fs.getattr(ino).mode & 0o7777 == 0o0767
    fs.setattr(ino, ROOT, mode=0o2767)
    sup = type(USER)(uid=1000, gid=1000, pid=9,
                     creds=lambda pid, uid, gid: Creds(frozenset({0}), 0))
    fs.write(ino, fh, 0, memoryview(b"x"), FUSE_WRITE_KILL_SUIDGID, sup)
    assert fs.getattr(ino).mode & 0o7777 == 0o2767  # a member through a supplementary group
    fs.setattr(ino, ROOT, mode=0o2767)
    member = type(USER)(uid=1000, gid=0, pid=9)
    fs.write(ino, fh, 0, memoryview(b"x"), FUSE_WRITE_KILL_SUIDGID, member)
    assert fs.getattr(ino).mode & 0o7777 == 0o2767


def test_readdir_and_readlink_relatime(fs: ShmFs, clock: Clock) -> None:
    # 6.18 tmpfs: listdir and readlink move atime (relatime: atime <= mtime)
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    s = fs.symlink(1, b"s", b"target", ROOT).ino
    t = clock.tick()
    fs.readdir(d, fs.opendir(d, 0), 0)
    assert fs.readlink(s) == b"target"
    assert fs.getattr(d).atime_ns == t and fs.getattr(s).atime_ns == t
    clock.tick()
    fs.readlink(s)  # atime is now newer than mtime/ctime: kept
    assert fs.getattr(s).atime_ns == t


def test_kill_suidgid_write_flag(fs: ShmFs) -> None:
    from fsimpl.files import FUSE_WRITE_KILL_SUIDGID

    ino, fh = new(fs)
    fs.setattr(ino, ROOT, mode=0o6755)
    fs.write(ino, fh, 0, memoryview(b"x"))
    assert fs.getattr(ino).mode & 0o7777 == 0o6755
    fs.write(ino, fh, 0, memoryview(b"x"), FUSE_WRITE_KILL_SUIDGID)
    assert fs.getattr(ino).mode & 0o7777 == 0o0755


def test_tmpfile_and_link(make_fs) -> None:
    fs = make_fs(nr_inodes=3)
    a, fh = fs.tmpfile(1, 0o600, os.O_RDWR, ROOT)
    assert a.nlink == 0 and fs.statfs().ffree == 1
    fs.write(a.ino, fh, 0, memoryview(b"mem"))
    fs.link(a.ino, 1, b"named")  # shmem_link: the first link of a tmpfile is free
    assert fs.statfs().ffree == 1 and fs.getattr(a.ino).nlink == 1
    b, _bfh = fs.tmpfile(1, 0o600, os.O_RDWR | os.O_EXCL, ROOT)
    raises(errno.ENOENT, fs.link, b.ino, 1, b"nope")  # O_EXCL: never linkable


def test_page_writeback_through_an_append_handle_writes_in_place(fs: ShmFs) -> None:
    """FUSE_WRITE_CACHE (a shared mapping's stores written back) carries the
    page's offset; only a write(2) on an O_APPEND handle goes to the end."""
    from fsimpl.files import FUSE_WRITE_CACHE

    ino = fs.mknod(1, b"a", stat.S_IFREG | 0o644, 0, ROOT).ino
    fh = fs.open(ino, os.O_RDWR | os.O_APPEND)
    fs.write(ino, fh, 0, memoryview(b"abcd"))
    fs.write(ino, fh, 1, memoryview(b"X"), FUSE_WRITE_CACHE)
    fs.write(ino, fh, 0, memoryview(b"Z"))
    assert b"".join(bytes(v) for v in fs.read(ino, fh, 0, 10)) == b"aXcdZ"
