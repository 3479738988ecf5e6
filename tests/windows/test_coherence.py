"""Coherence between window files, their object and other processes (docs/windows.md).

Every change is made by one process and observed by another through a mapping it
set up *before* the change, so a stale kernel page cache would be seen.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mount.winapi.client import MADV_DONTNEED, PROT_READ, Window
from tests.live.helpers import fallocate
from tests.windows.helpers import MapChild, P, make_object, page_of

pytestmark = pytest.mark.mount

FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02


def test_mmap_stores_reach_the_object_at_msync(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 8)
    with Window.create(wdir / "win", obj, 8) as w:
        w.remap(0, 1, 5)
        with MapChild(wdir / "win", 8 * P) as writer, MapChild(obj, 8 * P) as reader:
            assert reader.read(5 * P, 16) == page_of(5)[:16]
            writer.store(0, b"stored-via-window")
            assert writer.msync() == 0
            # on msync's return: the object holds the store, and the object's pages
            # another process had cached were invalidated
            assert obj.read_bytes()[5 * P : 5 * P + 17] == b"stored-via-window"
            assert reader.read(5 * P, 17) == b"stored-via-window"


def test_mmap_stores_reach_the_object_at_munmap(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 4)
    Window.create(wdir / "win", obj, 4).close()
    with MapChild(wdir / "win", 4 * P) as writer:
        writer.store(3 * P + 1, b"bye")
        assert writer.munmap() == 0
        assert obj.read_bytes()[3 * P + 1 : 3 * P + 4] == b"bye"


def test_store_made_before_a_remap_lands_where_it_was_made(wdir: Path) -> None:
    """The kernel writes a dirty page back when an invalidation drops it; the daemon
    sends that write-back to the object page the window showed at store time."""
    obj = wdir / "obj"
    make_object(obj, 8)
    with Window.create(wdir / "win", obj, 8) as w, MapChild(wdir / "win", 8 * P) as c:
        c.store(2 * P, b"early")  # window page 2 shows pgoff 2; not yet written back
        w.remap(2, 1, 7)
        data = obj.read_bytes()
        assert data[2 * P : 2 * P + 5] == b"early"
        assert data[7 * P : 8 * P] == page_of(7)
        assert c.read(2 * P, 16) == page_of(7)[:16]  # the mapping shows pgoff 7 now
        c.store(2 * P, b"later")
        assert c.msync() == 0
        assert obj.read_bytes()[7 * P : 7 * P + 5] == b"later"


def test_object_write_is_seen_through_every_window(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 8)
    with Window.create(wdir / "w1", obj, 8), Window.create(wdir / "w2", obj, 4) as w2:
        w2.remap(0, 4, 4)  # w2 shows pgoffs 4..7
        with MapChild(wdir / "w1", 8 * P) as c1, MapChild(wdir / "w2", 4 * P) as c2:
            assert c1.read(6 * P, 16) == page_of(6)[:16]
            assert c2.read(2 * P, 16) == page_of(6)[:16]
            fd = os.open(obj, os.O_WRONLY)
            try:
                os.pwrite(fd, b"fresh", 6 * P + 8)
                os.fsync(fd)  # returns once every window's copy was invalidated
            finally:
                os.close(fd)
            assert c1.read(6 * P + 8, 5) == b"fresh"
            assert c2.read(2 * P + 8, 5) == b"fresh"


def test_store_through_one_window_is_seen_through_another(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 8)
    with Window.create(wdir / "a", obj, 8) as a, Window.create(wdir / "b", obj, 8) as b:
        for i in range(8):
            b.remap(i, 1, 7 - i)
        with MapChild(wdir / "b", 8 * P) as cb, MapChild(wdir / "a", 8 * P) as ca:
            assert cb.read(0, 16) == page_of(7)[:16]
            a.pwrite(7 * P, b"via-a")  # write(2) through window a
            a.sync()  # fsync: returns once the other inodes' copies were invalidated
            assert cb.read(0, 5) == b"via-a"
            ca.store(3 * P, b"mmap-a")  # a store through an mmap of window a
            assert ca.msync() == 0
            assert cb.read(4 * P, 6) == b"mmap-a"


def test_punch_and_truncate_of_the_object_reach_window_mappings(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 8)
    with Window.create(wdir / "win", obj, 8) as w, MapChild(wdir / "win", 8 * P) as c:
        w.remap(0, 1, 3)
        assert c.read(0, 16) == page_of(3)[:16]
        assert c.read(5 * P, 16) == page_of(5)[:16]
        fd = os.open(obj, os.O_RDWR)
        try:
            # whole page 3 and the first 100 bytes of page 5's neighbour 4 ... edges too
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 3 * P, P)
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 5 * P + 100, 50)
            assert c.read(0, P) == bytes(P)
            assert c.read(5 * P + 96, 8) == page_of(5)[96:100] + bytes(4)
            os.ftruncate(fd, 5 * P + 2000)  # a partial last page: its tail is zeroed
            assert c.read(5 * P + 1996, 8) == page_of(5)[1996:2000] + bytes(4)
        finally:
            os.close(fd)


def test_protect_and_dontneed_invalidate_only_what_changed(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 8)
    with Window.create(wdir / "win", obj, 8) as w, MapChild(wdir / "win", 8 * P) as c:
        assert c.read(0, 8 * P)[:16] == page_of(0)[:16]
        before = _inval_pages(wdir)
        w.protect(6, 2, PROT_READ)
        assert _inval_pages(wdir) == before + 2
        w.madvise(0, 1, MADV_DONTNEED)
        assert _inval_pages(wdir) == before + 3
        w.remap(5, 1, 5)  # the page already shows pgoff 5: nothing to invalidate
        assert _inval_pages(wdir) == before + 3
        assert c.read(0, 16) == page_of(0)[:16]


def _inval_pages(path: Path) -> int:
    from mount.winapi.client import mount_stats

    return mount_stats(path)["windows"]["counters"].get("inval_pages", 0)
