"""Mm basics: mmap/load/store/munmap/mprotect, remap and truncate invalidation,
COW and the zap listener."""

from __future__ import annotations

import errno

import pytest

from vmcore import PAGE_SIZE, Arena, Budget, Mapping, Sigbus, Sigsegv, VmError
from vmcore.mm import Mm
from vmcore.vma import (
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)
from vmcore.window import picture

P = PAGE_SIZE
RW = PROT_READ | PROT_WRITE


def obj(arena: Arena, npages: int) -> Mapping:
    m = Mapping(arena, Budget())
    for i in range(npages):
        m.write(i * P, bytes([0x41 + i % 26]) * P)
    return m


def test_shared_linear_load_store_reach_the_object(arena: Arena) -> None:
    m = obj(arena, 4)
    mm = Mm()
    a = mm.mmap(m, 4 * P, RW, MAP_SHARED)
    assert mm.load(a + P, 3) == b"BBB"
    mm.store(a + 2 * P + 10, b"xyz")
    assert m.read_bytes(2 * P + 10, 3) == b"xyz"
    m.write(3 * P, b"Q")
    assert mm.load(a + 3 * P, 1) == b"Q"
    st = mm.statistics()
    assert st["resident_pages"] == 3 and st["vmas"] == 1


def test_access_outside_any_vma_is_sigsegv_with_address(arena: Arena) -> None:
    mm = Mm()
    a = mm.mmap(obj(arena, 2), 2 * P, PROT_READ, MAP_SHARED)
    with pytest.raises(Sigsegv) as ei:
        mm.load(a + 2 * P, 1)
    assert ei.value.address == a + 2 * P
    with pytest.raises(Sigsegv):
        mm.store(a, b"x")  # PROT_READ
    mm.munmap(a, P)
    with pytest.raises(Sigsegv):
        mm.load(a, 1)
    assert mm.load(a + P, 1) == b"B"


def test_private_write_copies_and_leaves_the_object_alone(arena: Arena) -> None:
    m = obj(arena, 2)
    mm = Mm()
    a = mm.mmap(m, 2 * P, RW, MAP_PRIVATE)
    mm.store(a + P, b"X")
    assert mm.load(a + P, 2) == b"XB"
    assert m.read_bytes(P, 2) == b"BB"
    assert picture(mm, a, 2) == "|  0|cow|"
    assert mm.statistics()["cow"] == 1


def test_mprotect_splits_and_merges_back(arena: Arena) -> None:
    mm = Mm()
    a = mm.mmap(obj(arena, 8), 8 * P, RW, MAP_SHARED)
    mm.store(a + 3 * P, b"w")
    mm.mprotect(a + 3 * P, P, PROT_READ)
    assert len(mm.vmas) == 3
    with pytest.raises(Sigsegv):
        mm.store(a + 3 * P, b"v")
    mm.store(a + 4 * P, b"v")
    mm.mprotect(a + 3 * P, P, RW)
    assert len(mm.vmas) == 1
    mm.store(a + 3 * P, b"v")
    mm.mprotect(a, P, PROT_NONE)
    with pytest.raises(Sigsegv):
        mm.load(a, 1)


def test_map_fixed_replaces_what_was_there(arena: Arena) -> None:
    m1, m2 = obj(arena, 4), Mapping(arena, Budget())
    m2.write(0, b"z" * P)
    mm = Mm()
    a = mm.mmap(m1, 4 * P, RW, MAP_SHARED)
    mm.load(a + P, 1)
    b = mm.mmap(m2, P, RW, MAP_SHARED | MAP_FIXED, 0, addr=a + P)
    assert b == a + P
    assert mm.load(a, 1) + mm.load(a + P, 1) + mm.load(a + 2 * P, 1) == b"AzC"
    assert len(mm.vmas) == 3
    assert m1.rmap is not None and m1.rmap.nr_vmas == 2


def test_mmap_argument_errors(arena: Arena) -> None:
    mm = Mm()
    m = obj(arena, 1)
    for kw, code in [
        (dict(length=0, flags=MAP_SHARED), errno.EINVAL),
        (dict(length=P, flags=MAP_SHARED | MAP_PRIVATE), errno.EINVAL),
        (dict(length=P, flags=0), errno.EINVAL),
    ]:
        with pytest.raises(VmError) as ei:
            mm.mmap(m, kw["length"], RW, kw["flags"])
        assert ei.value.errno == code
    with pytest.raises(VmError) as ei:
        mm.mmap(m, P, RW, MAP_SHARED | MAP_FIXED, addr=0x1234)
    assert ei.value.errno == errno.EINVAL


def test_remap_then_truncate_zaps_and_reports(arena: Arena) -> None:
    r"""
    before:  |  7|  6|  5|  4|  3|  2|  1|  0|   all present after prefault
    truncate to 4 pages: windows 0..3 (pgoffs 7..4) lose their pages, keep pgoffs
    """
    m = obj(arena, 8)
    mm = Mm()
    a = mm.mmap(m, 8 * P, RW, MAP_SHARED)
    for i in range(8):
        mm.remap_file_pages(a + i * P, P, 0, 7 - i)
    assert picture(mm, a, 8) == "|  7|  6|  5|  4|  3|  2|  1|  0|"
    events: list[tuple[int, int, str]] = []
    mm.add_zap_listener(lambda v, first, n, why: events.append((first, n, why)))
    m.truncate(4 * P)
    assert events == [(0, 4, "unmap")]
    assert picture(mm, a, 8) == "|  7|  6|  5|  4|  3|  2|  1|  0|"
    for i in range(4):
        with pytest.raises(Sigbus):
            mm.load(a + i * P, 1)
    assert mm.load(a + 4 * P, 1) == b"D"


def test_exit_mmap_detaches_from_the_rmap(arena: Arena) -> None:
    m = obj(arena, 2)
    mm = Mm()
    mm.mmap(m, 2 * P, RW, MAP_SHARED)
    mm.mmap(m, 2 * P, RW, MAP_PRIVATE)
    assert m.rmap.nr_vmas == 2
    mm.exit_mmap()
    assert m.rmap.nr_vmas == 0 and mm.map_count == 0


def test_views_are_zero_copy_and_fault_like_accesses(arena: Arena) -> None:
    from vmcore.window import Window

    m = obj(arena, 4)
    w = Window(m, 4)
    w.remap(0, 2, 2)  # |  2|  3|  2|  3|
    vs = w.read_views(P - 2, 4)
    assert [bytes(v) for v in vs] == [b"CC", b"DD"]
    for v in w.write_views(2 * P, 2):
        v[:] = b"zz"
    assert m.read_bytes(2 * P, 2) == b"zz" and w.pread(0, 2) == b"zz"
    m.truncate(2 * P)
    with pytest.raises(Sigbus):
        w.read_views(0, 1)


def test_willneed_prefaults_through_fault_without_installing_ptes(arena: Arena) -> None:
    from vmcore.vma import MADV_WILLNEED

    m = obj(arena, 4)
    m.truncate(8 * P)  # pages 4..7 are holes
    mm = Mm()
    a = mm.mmap(m, 8 * P, RW, MAP_SHARED)
    prefaults = m.fstats.prefault
    mm.madvise(a, 8 * P, MADV_WILLNEED)
    assert m.fstats.prefault - prefaults == 8
    assert mm.statistics()["resident_pages"] == 0 and m.nrpages == 4


def test_mlock_populates_and_blocks_dontneed(arena: Arena) -> None:
    from vmcore.vma import MADV_DONTNEED

    m = obj(arena, 4)
    mm = Mm()
    a = mm.mmap(m, 4 * P, PROT_READ, MAP_SHARED)
    mm.mlock(a + P, 2 * P)
    assert mm.statistics()["resident_pages"] == 2 and len(mm.vmas) == 3
    with pytest.raises(VmError) as ei:
        mm.madvise(a + P, P, MADV_DONTNEED)
    assert ei.value.errno == errno.EINVAL
    mm.munlock(a, 4 * P)
    assert len(mm.vmas) == 1
    mm.madvise(a, 4 * P, MADV_DONTNEED)
    assert mm.statistics()["resident_pages"] == 0


def test_fork_gives_the_child_its_own_cow_copies(arena: Arena) -> None:
    m = obj(arena, 2)
    mm = Mm()
    a = mm.mmap(m, 2 * P, RW, MAP_PRIVATE)
    mm.store(a, b"p")
    child = mm.fork()
    assert child.load(a, 1) == b"p"
    child.store(a, b"c")
    child.store(a + P, b"d")
    assert mm.load(a, 1) == b"p" and mm.load(a + P, 1) == b"B"
    assert m.read_bytes(0, 1) == b"A"
    child.exit_mmap()
    assert m.rmap.nr_vmas == 1
