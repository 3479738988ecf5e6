"""kernel-semantics.md §6 through window files on a live mount, from other processes.

Each test names its row.  The window is driven with the client (mount.winapi.client,
the documented ioctl ABI); what a program sees is checked through mmaps held by
separate processes (tests/windows/helpers.MapChild) and through pread/pwrite.
Row 3 (a MAP_PRIVATE remap) has no window analogue: a window is always shared.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from mount.winapi.abi import PAGE_BEYOND_EOF, PAGE_PRESENT, WIN_NONLINEAR
from mount.winapi.client import (
    MADV_DONTNEED,
    MADV_REMOVE,
    PROT_READ,
    PROT_WRITE,
    Window,
)
from tests.windows.helpers import ChildDied, MapChild, P, make_object, page_of, touch_in_child

pytestmark = pytest.mark.mount

SEEK_DATA, SEEK_HOLE = 3, 4


def tags(data: bytes) -> list[int]:
    """The page tag of every page in data (page_of's first 8 bytes)."""
    return [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), P)]


def setup(d: Path, npages: int = 8, wpages: int = 8) -> tuple[Path, Window]:
    obj = d / "obj"
    make_object(obj, npages)
    return obj, Window.create(d / "win", obj, wpages)


def barrier(w: Window) -> None:
    """Return once every invalidation the daemon queued before has reached the kernel:
    an ioctl that itself invalidates a page (window page 0, read just before) has its
    reply written behind every earlier notification."""
    w.pread(0, 1)
    w.madvise(0, 1, MADV_DONTNEED)


def oserr(fn, *args, **kw) -> int:
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    return ei.value.errno


def test_row1_reverse_remap_is_seen_by_an_existing_mmap(wdir: Path) -> None:
    _obj, w = setup(wdir)
    with w, MapChild(wdir / "win", 8 * P) as child:
        assert tags(child.read(0, 8 * P)) == list(range(8))  # cached in the kernel now
        for i in range(8):
            w.remap(i, 1, 7 - i)
        assert tags(child.read(0, 8 * P)) == [7, 6, 5, 4, 3, 2, 1, 0]
        assert tags(w.pread(0, 8 * P)) == [7, 6, 5, 4, 3, 2, 1, 0]
        info = w.info()
        assert info.nr_vmas == 1 and info.flags & WIN_NONLINEAR  # one VMA, now nonlinear


def test_row2_prot_without_chgprot_is_einval(wdir: Path) -> None:
    _obj, w = setup(wdir)
    with w:
        assert oserr(w.remap_bytes, 0, P, 1, PROT_READ, 0) == errno.EINVAL


def test_row4_range_past_the_window_end_is_einval(wdir: Path) -> None:
    _obj, w = setup(wdir)
    with w:
        assert oserr(w.remap_bytes, 7 * P, 2 * P, 0) == errno.EINVAL


def test_row5_sizes_round_down_end_from_unrounded_values(wdir: Path) -> None:
    _obj, w = setup(wdir)
    with w:
        assert oserr(w.remap_bytes, 0, 100, 3) == errno.EINVAL
        w.remap_bytes(100, P + 100, 3)  # acts like (0, P)
        assert tags(w.pread(0, 2 * P)) == [3, 1]


def test_row6_remap_beyond_eof_succeeds_access_sigbus_pread_eio(wdir: Path) -> None:
    _obj, w = setup(wdir)
    with w:
        w.remap(0, 1, 100)
        assert w.query(0, 1)[0].flags & PAGE_BEYOND_EOF
        assert touch_in_child(wdir / "win", 8 * P, 0) == -signal.SIGBUS
        assert touch_in_child(wdir / "win", 8 * P, P) == 0
        assert oserr(w.pread, 0, 10) == errno.EIO
        assert oserr(w.pwrite, 0, b"x") == errno.EIO
        assert tags(w.pread(P, P)) == [1]


def test_row7_remap_to_the_linear_position_changes_nothing(wdir: Path) -> None:
    _obj, w = setup(wdir)
    with w:
        w.remap(3, 1, 3)
        assert not w.info().flags & WIN_NONLINEAR
        assert not w.query(3, 1)[0].flags & PAGE_PRESENT  # nothing prefaulted


def test_row8_truncate_sigbus_then_reextend_reads_zero(wdir: Path) -> None:
    obj, w = setup(wdir)
    with w, MapChild(wdir / "win", 8 * P) as child:
        w.remap(0, 1, 6)
        assert tags(child.read(0, P)) == [6]
        os.truncate(obj, 4 * P)
        with pytest.raises(ChildDied) as died:
            child.read(0, 1)
        assert died.value.args[0] == -signal.SIGBUS
    os.truncate(obj, 8 * P)
    with MapChild(wdir / "win", 8 * P) as child:
        assert child.read(0, P) == bytes(P)  # a fresh page: the old data is gone


def test_row9_truncate_keeps_windows_below_the_new_end(wdir: Path) -> None:
    obj, w = setup(wdir)
    with w, MapChild(wdir / "win", 8 * P) as child:
        for i, pg in enumerate([5, 1, 7, 2, 0, 3, 6, 4]):
            w.remap(i, 1, pg)
        assert tags(child.read(0, 8 * P)) == [5, 1, 7, 2, 0, 3, 6, 4]
        os.truncate(obj, 4 * P)
        for i, pg in enumerate([5, 1, 7, 2, 0, 3, 6, 4]):
            if pg < 4:
                assert tags(child.read(i * P, P)) == [pg]
        assert [p.flags & PAGE_BEYOND_EOF != 0 for p in w.query()] == [
            pg >= 4 for pg in [5, 1, 7, 2, 0, 3, 6, 4]]


def test_row12_madv_remove_makes_a_hole_a_window_read_fills_it(wdir: Path) -> None:
    obj, w = setup(wdir, npages=4, wpages=4)
    blocks0, used0 = os.stat(obj).st_blocks, _used(wdir)
    with w, MapChild(wdir / "win", 4 * P) as child:
        w.madvise(1, 1, MADV_REMOVE)
        st = os.stat(obj)
        assert st.st_size == 4 * P and st.st_blocks == blocks0 - P // 512
        assert _used(wdir) == used0 - 1  # statfs: the page went back to the filesystem
        fd = os.open(obj, os.O_RDONLY)
        try:
            assert os.lseek(fd, 0, SEEK_HOLE) == P
            assert os.lseek(fd, P, SEEK_DATA) == 2 * P
            assert child.read(P, P) == bytes(P)  # through the existing mapping
            assert os.lseek(fd, 0, SEEK_HOLE) == 4 * P  # the read fault allocated it again
        finally:
            os.close(fd)


def test_row13_14_private_cow_survives_remove_but_not_truncate(wdir: Path) -> None:
    obj, w = setup(wdir, npages=4, wpages=4)
    with w, MapChild(obj, 4 * P, private=True) as pv:
        assert tags(pv.read(0, 4 * P)) == [0, 1, 2, 3]
        pv.store(P, b"X")  # COW of page 1
        w.madvise(1, 2, MADV_REMOVE)  # punches object pages 1 and 2
        assert pv.read(P, 1) == b"X"  # row 13 (modern): the COW copy stays
        assert pv.read(2 * P, P) == bytes(P)  # a page that was not COWed reads 0
        os.truncate(obj, P)
        with pytest.raises(ChildDied) as died:
            pv.read(P, 1)  # row 14: truncate takes COW copies too
        assert died.value.args[0] == -signal.SIGBUS


def test_row20_remap_across_a_vma_split_einval_inside_keeps_its_prot(wdir: Path) -> None:
    obj, w = setup(wdir)
    with w, MapChild(wdir / "win", 8 * P) as child:
        w.protect(4, 4, PROT_READ, vma=True)
        assert w.info().nr_vmas == 2
        assert oserr(w.remap, 3, 2, 0) == errno.EINVAL
        w.remap(5, 1, 0)  # inside the read-only VMA: allowed
        assert tags(w.pread(5 * P, P)) == [0]
        assert oserr(w.pwrite, 5 * P, b"x") == errno.EACCES
        child.store(5 * P, b"x")
        assert child.msync() == errno.EACCES  # the write-back is refused
        assert obj.read_bytes()[:P] == page_of(0)


def test_row21_mprotect_splits_a_nonlinear_window_pages_keep_pgoffs(wdir: Path) -> None:
    obj, w = setup(wdir)
    with w:
        for i in range(8):
            w.remap(i, 1, 7 - i)
        w.protect(3, 1, PROT_READ, vma=True)
        assert w.info().nr_vmas == 3
        assert [p.pgoff for p in w.query()] == [7, 6, 5, 4, 3, 2, 1, 0]
        assert oserr(w.pwrite, 3 * P, b"x") == errno.EACCES
        w.pwrite(2 * P, b"y")
        w.pwrite(4 * P, b"z")
        data = obj.read_bytes()
        assert data[5 * P] == ord("y") and data[3 * P] == ord("z")
        assert data[4 * P : 5 * P] == page_of(4)


def test_row22_remap_outside_the_window_is_einval(wdir: Path) -> None:
    _obj, w = setup(wdir)
    with w:
        assert oserr(w.remap, 16, 1, 0) == errno.EINVAL


def test_per_page_read_only_store_is_refused_at_write_back(wdir: Path) -> None:
    """docs/windows.md: FUSE has no page_mkwrite, so a store into a read-only window
    page succeeds in memory and is refused when written back; the next ioctl drops
    the refused page from the kernel's cache."""
    obj, w = setup(wdir)
    with w, MapChild(wdir / "win", 8 * P) as child:
        w.protect(2, 1, PROT_READ)
        assert [p.prot for p in w.query(1, 3)] == [PROT_READ | PROT_WRITE, PROT_READ,
                                                   PROT_READ | PROT_WRITE]
        assert oserr(w.pwrite, 2 * P, b"x") == errno.EACCES
        assert w.pwrite(P, b"y" * (2 * P)) == P  # short: stops at the read-only page
        child.store(2 * P, b"Q")
        assert child.msync() == errno.EACCES
        assert obj.read_bytes()[2 * P : 3 * P] == page_of(2)  # the object never changed
        barrier(w)  # the refused page's invalidation has reached the kernel
        assert child.read(2 * P, 16) == page_of(2)[:16]
        w.protect(2, 1, PROT_READ | PROT_WRITE)
        child.store(2 * P, b"R")
        assert child.msync() == 0
        assert obj.read_bytes()[2 * P] == ord("R")


def test_madv_remove_on_a_window_frees_the_object_pages(wdir: Path) -> None:
    obj = wdir / "big"
    make_object(obj, 64)
    used0 = _used(wdir)
    with Window.create(wdir / "win", obj, 16) as w:
        for i in range(16):
            w.remap(i, 1, 63 - 4 * i)  # every fourth page, in reverse
        w.madvise(0, 16, MADV_REMOVE)
        assert os.stat(obj).st_blocks == 48 * (P // 512)
        assert _used(wdir) == used0 - 16
        data = obj.read_bytes()
        for pg in range(64):
            punched = pg % 4 == 3
            assert (data[pg * P : (pg + 1) * P] == bytes(P)) == punched
        w.madvise(0, 16, MADV_REMOVE)  # again: nothing left to free
        assert os.stat(obj).st_blocks == 48 * (P // 512)


def _used(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks - st.f_bfree


def test_window_prot_limits(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 4)
    with Window.create(wdir / "win", obj, 4, PROT_READ) as w:
        assert oserr(w.pwrite, 0, b"x") == errno.EACCES
        assert oserr(w.protect, 0, 1, PROT_READ | PROT_WRITE) == errno.EACCES
        assert oserr(w.madvise, 0, 1, MADV_REMOVE) == errno.EACCES  # row 11
        assert oserr(w.remap, 0, 1, 1, prot=PROT_WRITE | PROT_READ) == errno.EACCES
        assert tags(w.pread(0, 4 * P)) == [0, 1, 2, 3]


def test_row15_size_limit_sigbus_on_access_enospc_on_pwrite() -> None:
    from tests.support.mounts import shmfs_mount

    with shmfs_mount("size=64k") as mnt:
        obj = mnt / "obj"
        obj.write_bytes(bytes(15 * P))  # one page of the 16 left
        os.truncate(obj, 64 * P)
        with Window.create(mnt / "win", obj, 8, pgoff=20) as w:
            assert touch_in_child(mnt / "win", 8 * P, 0) == 0  # takes the last page
            assert touch_in_child(mnt / "win", 8 * P, P) == -signal.SIGBUS
            assert oserr(w.pwrite, 2 * P, b"x") == errno.ENOSPC


def test_a_refused_pwrite_leaves_no_bytes_in_mappings(wdir: Path) -> None:
    """Found by scripts/uml_physmem.py (docs/window-tools.md): the kernel copies a
    write(2) into its folio before the daemon refuses it; the daemon drops the page."""
    obj, w = setup(wdir)
    with w, MapChild(wdir / "win", 8 * P) as child:
        w.protect(5, 1, PROT_READ)
        assert child.read(4 * P, 2 * P)[P : P + 16] == page_of(5)[:16]  # mapped and cached
        assert oserr(w.pwrite, 5 * P, b"\xee" * P) == errno.EACCES
        barrier(w)
        assert child.read(5 * P, 16) == page_of(5)[:16]
        assert obj.read_bytes()[5 * P : 6 * P] == page_of(5)
