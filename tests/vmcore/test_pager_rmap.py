"""Reverse map: lookups for the mount layer, zap reports, i_mmap as an
interval index (no scan of unrelated windows), and the byte interface of
unmap_mapping_range (§3.1 rounding)."""

from __future__ import annotations

from vmcore import PAGE_SIZE, Arena, Budget, Mapping
from vmcore.mm import Mm
from vmcore.pagetable import PTE_PRESENT
from vmcore.rmap import unmap_mapping_range
from vmcore.vma import (
    MADV_DONTNEED,
    MAP_NONBLOCK,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
)
from vmcore.window import Window

P = PAGE_SIZE
RW = PROT_READ | PROT_WRITE


def obj(arena: Arena, npages: int) -> Mapping:
    m = Mapping(arena, Budget())
    m.truncate(npages * P)
    return m


def as_set(found: list) -> set[tuple[int, tuple[int, ...]]]:
    return {(v.start, tuple(idx.tolist())) for v, idx in found}


def test_lookup_finds_linear_and_nonlinear_views(arena: Arena) -> None:
    r"""
    linear A (pgoff 2..5):    |  2|  3|  4|  5|
    window W:                 |  9|  4|  2|  4|  .. pages 4..7 at linear pgoffs 4..7
    which pages show object page 4?  A[2], W[1], W[3], W[4] (none entry, linear)
    """
    m = obj(arena, 16)
    mm = Mm()
    a = mm.mmap(m, 4 * P, RW, MAP_SHARED, 2)
    w = Window(m, 8, mm=mm)
    for i, pg in enumerate([9, 4, 2, 4]):
        w.remap(i, 1, pg, MAP_NONBLOCK)
    found = as_set(m.rmap.lookup(4))
    assert found == {(a, (2,)), (w.address, (1, 3, 4))}
    assert as_set(m.rmap.lookup(9, 1)) == {(w.address, (0,))}
    assert as_set(m.rmap.lookup_bytes(5 * P + 7, 1)) == {(a, (3,)), (w.address, (5,))}


def test_private_cow_copies_are_not_views(arena: Arena) -> None:
    r"""
    private A:  |cow|  1|        window W: |  1|  1|   (W[1] none = linear pgoff 1)
    object pages 0..1 are shown by A[1], W[0], W[1]; A[0] is a private copy
    """
    m = obj(arena, 2)
    mm = Mm()
    a = mm.mmap(m, 2 * P, RW, MAP_PRIVATE)
    mm.store(a, b"x")
    w = Window(m, 2, mm=mm)
    w.remap(0, 1, 1, MAP_NONBLOCK)
    assert as_set(m.rmap.lookup(0, 2)) == {(a, (1,)), (w.address, (0, 1))}
    assert as_set(m.rmap.lookup(0)) == set()


def test_zap_listener_gets_ranges_for_every_kind_of_change(arena: Arena) -> None:
    m = obj(arena, 16)
    mm = Mm()
    w = Window(m, 8, mm=mm)
    events: list[tuple[int, int, int, str]] = []
    mm.add_zap_listener(lambda v, first, n, why: events.append((v.start, first, n, why)))
    w.remap(2, 3, 10)  # prefaulted: pages 2..4 present
    assert events == [(w.address, 2, 3, "remap")]
    events.clear()
    w.pread(6 * P, 2 * P)  # pages 6, 7 present (linear)
    m.punch_hole(10 * P, 2 * P)  # zaps window pages 2, 3 (pgoffs 10, 11)
    assert events == [(w.address, 2, 2, "unmap")]
    events.clear()
    w.madvise(6, 2, MADV_DONTNEED)
    assert events == [(w.address, 6, 2, "dontneed")]
    events.clear()
    w.close()
    assert events == [(w.address, 0, 8, "munmap")]


def test_truncate_visits_only_overlapping_linear_vmas(arena: Arena) -> None:
    """1000 one-page linear windows at distinct pgoffs: a one-page truncate
    finds the single window that maps it through the interval index."""
    m = obj(arena, 1000)
    mm = Mm()
    addrs = [mm.mmap(m, P, PROT_READ, MAP_SHARED, 999 - i) for i in range(1000)]
    assert mm.map_count == 1000  # pgoffs descend: nothing merges
    for a in addrs:
        mm.load(a, 1)
    before = m.rmap.statistics()["vmas_visited"]
    m.truncate(999 * P)
    st = m.rmap.statistics()
    assert st["vmas_visited"] - before <= 2  # found twice (unmap, drop, unmap again)
    assert st["ptes_zapped"] == 1
    v0 = mm.vma_at(addrs[0])
    assert v0 is not None and not v0.pt.get(addrs[0] >> 12)[0] & PTE_PRESENT


def test_byte_interface_rounds_like_the_kernel(arena: Arena) -> None:
    m = obj(arena, 8)
    mm = Mm()
    a = mm.mmap(m, 8 * P, PROT_READ, MAP_SHARED)
    mm.load(a, 8 * P)
    # first = holebegin >> PAGE_SHIFT, hlen = ceil(holelen / P): the offset inside
    # the first page does not lengthen the range (§3.1), so this is pages 1..2
    assert unmap_mapping_range(m, P + 1, 2 * P, False) == 2
    present = [bool(mm.vmas[0].pt.get((a >> 12) + i)[0] & PTE_PRESENT) for i in range(8)]
    assert present == [True, False, False, True, True, True, True, True]
    assert unmap_mapping_range(m, 5 * P + 9, 0, True) == 3  # holelen 0: to the end
    assert unmap_mapping_range(Mapping(arena, Budget()), 0, 0, True) == 0  # no rmap yet
