"""A populating REMAP pushes the newly shown page into the kernel's cache (NOTIFY_STORE).

The touch after such a remap must be served without a READ, must show the new
page to every mapping, and stores made before and after the remap must still
land where they were made (docs/windows.md, "Coherence").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mount.winapi.client import Window, mount_stats
from tests.windows.helpers import MapChild, P, make_object, page_of

pytestmark = pytest.mark.mount


def _reads(mnt: Path) -> int:
    return mount_stats(mnt)["session"]["requests"].get("READ", {"count": 0})["count"]


def test_touch_after_a_populating_remap_needs_no_read(wmount: Path, wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 32)
    with Window.create(wdir / "win", obj, 8) as w, MapChild(wdir / "win", 8 * P) as c:
        for i in range(8):
            assert c.read(i * P, 16) == page_of(i)[:16]
        before = _reads(wmount)
        for i, pg in enumerate([20, 21, 5, 30, 7, 11, 12, 13]):
            w.remap(i, 1, pg, populate=True)
            assert c.read(i * P, 16) == page_of(pg)[:16]  # the existing mapping sees it
        assert _reads(wmount) == before  # every touch was a minor fault
        w.remapv([(0, 2, 25), (5, 1, 2)], populate=True)
        assert [c.read(i * P, 16) for i in (0, 1, 5)] == [
            page_of(25)[:16], page_of(26)[:16], page_of(2)[:16]]
        assert _reads(wmount) == before


def test_stores_around_a_populating_remap_land_where_they_were_made(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 16)
    with Window.create(wdir / "win", obj, 8) as w, MapChild(wdir / "win", 8 * P) as c:
        c.store(2 * P, b"early")  # window page 2 shows pgoff 2, not written back yet
        w.remap(2, 1, 7, populate=True)
        assert c.read(2 * P, 16) == page_of(7)[:16]
        c.store(2 * P, b"later")  # into the pushed copy: belongs to pgoff 7
        assert c.msync() == 0
        w.remap(2, 1, 9, populate=True)  # and once more: the pushed copy is laundered
        c.store(2 * P, b"third")
        assert c.msync() == 0
        data = obj.read_bytes()
        assert data[2 * P : 2 * P + 5] == b"early"
        assert data[7 * P : 7 * P + 5] == b"later"
        assert data[9 * P : 9 * P + 5] == b"third"
        assert data[7 * P + 5 : 8 * P] == page_of(7)[5:]


@pytest.mark.parametrize("engine", ["c", "python"])
def test_a_populating_remap_onto_the_page_already_shown_keeps_a_store(
        engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """remap_file_pages onto the page a window page already shows changes nothing for
    the kernel (kernel-semantics.md: the PTE is rebuilt for the same page), so a store
    made through the mapping before it, not yet written back, is still there after
    it and reaches the object. The daemon must not push the object's older page over
    the kernel's dirty copy (it did, on both paths, until the sixth session)."""
    from tests.support.mounts import shmfs_mount

    if engine == "python":
        monkeypatch.setenv("SHMFS_WINFAST", "0")
    with shmfs_mount("") as mnt:
        obj = mnt / "obj"
        make_object(obj, 8)
        with Window.create(mnt / "win", obj, 4) as w, MapChild(mnt / "win", 4 * P) as c:
            w.remap(0, 1, 0, populate=True)
            for step in range(3):
                tag = b"store-%d" % step
                c.store(2 * P, tag)
                w.remap(2, 1, 2, populate=True)
                assert c.read(2 * P, len(tag)) == tag
            w.remapv([(2, 1, 2), (3, 1, 3)], populate=True)  # REMAPV: the same rule
            assert c.read(2 * P, 7) == b"store-2"
            assert c.msync() == 0
        data = obj.read_bytes()
        assert data[2 * P : 2 * P + 7] == b"store-2"
        assert data[2 * P + 7 : 3 * P] == page_of(2)[7:]


def test_a_vector_remap_does_not_push_over_an_unchanged_dirty_neighbour(wdir: Path) -> None:
    """A REMAPV of more than 8 entries merges its invalidations into ranged ones: an
    unchanged cached page between moved ones is dropped too, and the kernel writes it
    back where it shows. If it is also in a populating entry, no store of the object's
    page may follow (it was taken before that write-back): the mapping must show the
    store, and the object must hold it."""
    obj = wdir / "obj"
    make_object(obj, 64)
    with Window.create(wdir / "win", obj, 16) as w, MapChild(wdir / "win", 16 * P) as c:
        w.remapv([(i, 1, i) for i in range(16)], populate=True)
        for i in range(16):
            assert c.read(i * P, 16) == page_of(i)[:16]
        c.store(5 * P, b"neighbour")  # page 5 keeps showing pgoff 5 below
        entries = [(i, 1, 40 + i) for i in range(16) if i != 5] + [(5, 1, 5)]
        w.remapv(entries, populate=True)
        assert c.read(5 * P, 9) == b"neighbour"
        assert [c.read(i * P, 16) for i in (4, 6)] == [page_of(44)[:16], page_of(46)[:16]]
        assert c.msync() == 0
    data = obj.read_bytes()
    assert data[5 * P : 5 * P + 9] == b"neighbour"
