"""The rows of kernel-semantics.md §6 that concern the 2.6.23 model, one named
test per row (2.6.23+ column for the fault path and nonlinear windows, modern
tmpfs for the filesystem side).

Pictures: ``|  7|  6|...|`` shows, per window page, the object page it shows
(vmcore.window.picture), ``cow`` for a private copy, ``.`` for unmapped."""

from __future__ import annotations

import errno

import pytest

from vmcore import PAGE_SIZE, Arena, Budget, Mapping, NoSpace, Sigbus, Sigsegv, VmError
from vmcore.mm import Mm
from vmcore.pagetable import PTE_PRESENT
from vmcore.vma import (
    MADV_REMOVE,
    MAP_NONBLOCK,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    MS_ASYNC,
    MS_INVALIDATE,
    MS_SYNC,
    PROT_READ,
    PROT_WRITE,
    VmFlags,
)
from vmcore.window import picture

P = PAGE_SIZE
RW = PROT_READ | PROT_WRITE


def tmpfs_file(arena: Arena, npages: int, budget: Budget | None = None) -> Mapping:
    """An npages tmpfs file whose page i is filled with byte 'page i' marker i."""
    m = Mapping(arena, budget or Budget())
    for i in range(npages):
        m.write(i * P, bytes([i]) * P)
    return m


def einval(fn, *args) -> VmError:  # type: ignore[no-untyped-def]
    with pytest.raises(VmError) as ei:
        fn(*args)
    assert ei.value.errno == errno.EINVAL, ei.value
    return ei.value


def page_byte(mm: Mm, addr: int) -> int:
    return mm.load(addr, 1)[0]


def test_row01_reverse_remap_keeps_one_vma(arena: Arena) -> None:
    r"""
    after remap_file_pages(m+i*P, P, 0, 7-i) for i = 0..7:
        |  7|  6|  5|  4|  3|  2|  1|  0|     one VMA, VM_NONLINEAR (2.6.x)
    """
    m = tmpfs_file(arena, 8)
    mm = Mm()
    a = mm.mmap(m, 8 * P, RW, MAP_SHARED)
    for i in range(8):
        assert mm.remap_file_pages(a + i * P, P, 0, 7 - i, 0) == 0
    assert [page_byte(mm, a + i * P) for i in range(8)] == [7, 6, 5, 4, 3, 2, 1, 0]
    assert picture(mm, a, 8) == "|  7|  6|  5|  4|  3|  2|  1|  0|"
    assert mm.map_count == 1 and mm.vmas[0].flags & VmFlags.NONLINEAR
    assert m.rmap.statistics()["vmas_nonlinear"] == 1


def test_row02_prot_must_be_zero(arena: Arena) -> None:
    mm = Mm()
    a = mm.mmap(tmpfs_file(arena, 8), 8 * P, RW, MAP_SHARED)
    einval(mm.remap_file_pages, a, P, PROT_READ, 1, 0)


def test_row03_private_mapping_is_einval(arena: Arena) -> None:
    mm = Mm()
    a = mm.mmap(tmpfs_file(arena, 8), 8 * P, RW, MAP_PRIVATE)
    e = einval(mm.remap_file_pages, a, P, 0, 1, 0)
    assert "row 7" in str(e)


def test_row04_range_past_vma_end_is_einval_even_with_a_neighbour(arena: Arena) -> None:
    r"""
    vma A (pgoff 0..7) then, adjacent, vma B of the same file at pgoff 20..27:
        |  0|  1|  2|  3|  4|  5|  6|  7| 20| 21|...
                                     ^^^^^^^^ remap m+7P, 2P -> EINVAL in 2.6.x
    """
    m = tmpfs_file(arena, 32)
    mm = Mm()
    a = mm.mmap(m, 8 * P, RW, MAP_SHARED)
    assert mm.mmap(m, 8 * P, RW, MAP_SHARED, 20) == a + 8 * P  # first fit: adjacent
    assert mm.map_count == 2  # pgoffs not contiguous: no merge
    e = einval(mm.remap_file_pages, a + 7 * P, 2 * P, 0, 3, 0)
    assert "row 10" in str(e)
    einval(Mm().remap_file_pages, 0x1000_0000, P, 0, 0, 0)


def test_row05_size_below_a_page_and_unaligned_start(arena: Arena) -> None:
    m = tmpfs_file(arena, 8)
    mm = Mm()
    a = mm.mmap(m, 8 * P, RW, MAP_SHARED)
    assert "row 3" in str(einval(mm.remap_file_pages, a, 100, 0, 3, 0))
    # start = m+100, size = P+100 acts like (m, P)
    assert mm.remap_file_pages(a + 100, P + 100, 0, 3, 0) == 0
    assert picture(mm, a, 2) == "|  3|  1|"
    # 2.6.23 quirk: end is computed from the unrounded values, so on a one-page
    # vma the same call fails the end <= vm_end test
    b = mm.mmap(m, P, RW, MAP_SHARED, 5)
    assert "row 10" in str(einval(mm.remap_file_pages, b + 100, P + 100, 0, 3, 0))


def test_row06_remap_beyond_eof_succeeds_and_access_is_sigbus(arena: Arena) -> None:
    mm = Mm()
    a = mm.mmap(tmpfs_file(arena, 8), 8 * P, RW, MAP_SHARED)
    assert mm.remap_file_pages(a, P, 0, 100, 0) == 0
    with pytest.raises(Sigbus) as ei:
        mm.load(a, 1)
    assert ei.value.address == a and "100" in ei.value.reason


def test_row07_linear_position_shortcut(arena: Arena) -> None:
    m = tmpfs_file(arena, 8)
    mm = Mm()
    a = mm.mmap(m, 8 * P, RW, MAP_SHARED)
    faults = m.fstats.faults
    assert mm.remap_file_pages(a + 3 * P, P, 0, 3, 0) == 0
    assert not mm.vmas[0].nonlinear
    assert m.fstats.faults == faults and mm.statistics()["resident_pages"] == 0
    assert m.rmap.statistics()["vmas_linear"] == 1


def test_row08_truncate_keeps_file_pte_pgoff_then_zero_after_regrow(arena: Arena) -> None:
    r"""
    window 0 -> pgoff 6:  |  6|  1|  2|  3|  4|  5|  6|  7|
    truncate(4P): window 0 still says pgoff 6 (a file PTE) -> SIGBUS
    truncate(8P): the same window shows a fresh zero page
    """
    m = tmpfs_file(arena, 8)
    mm = Mm()
    a = mm.mmap(m, 8 * P, RW, MAP_SHARED)
    mm.remap_file_pages(a, P, 0, 6, 0)
    assert page_byte(mm, a) == 6
    m.truncate(4 * P)
    assert picture(mm, a, 1) == "|  6|"
    assert mm.vmas[0].pt.get(a >> 12)[0] & PTE_PRESENT == 0
    with pytest.raises(Sigbus):
        mm.load(a, 1)
    m.truncate(8 * P)
    assert mm.load(a, P) == bytes(P)


def test_row09_truncate_zaps_only_pages_at_or_beyond_the_new_eof(arena: Arena) -> None:
    m = tmpfs_file(arena, 8)
    mm = Mm()
    a = mm.mmap(m, 8 * P, RW, MAP_SHARED)
    for i in range(8):
        mm.remap_file_pages(a + i * P, P, 0, 7 - i, 0)
    before = [mm.vmas[0].pt.get((a >> 12) + i) for i in range(8)]
    m.truncate(5 * P)  # drops pgoffs 5, 6, 7 = windows 0, 1, 2
    after = [mm.vmas[0].pt.get((a >> 12) + i) for i in range(8)]
    assert [bool(b[0] & PTE_PRESENT) for b in after] == [False] * 3 + [True] * 5
    assert after[3:] == before[3:]  # same frames, no refault needed
    assert [page_byte(mm, a + i * P) for i in range(3, 8)] == [4, 3, 2, 1, 0]


def test_row10_madv_remove_on_nonlinear_vma_is_einval(arena: Arena) -> None:
    mm = Mm()
    a = mm.mmap(tmpfs_file(arena, 8), 8 * P, RW, MAP_SHARED)
    mm.remap_file_pages(a, P, 0, 5, 0)
    einval(mm.madvise, a + 4 * P, P, MADV_REMOVE)


def test_row11_madv_remove_needs_shared_writable_and_unlocked(arena: Arena) -> None:
    m = tmpfs_file(arena, 4)
    mm = Mm()
    for prot, flags in [(RW, MAP_PRIVATE), (PROT_READ, MAP_SHARED)]:
        a = mm.mmap(m, 4 * P, prot, flags)
        with pytest.raises(VmError) as ei:
            mm.madvise(a, P, MADV_REMOVE)
        assert ei.value.errno == errno.EACCES
    a = mm.mmap(m, 4 * P, RW, MAP_SHARED)
    mm.mlock(a, P)
    einval(mm.madvise, a, P, MADV_REMOVE)


def test_row12_madv_remove_punches_and_a_read_fault_refills(arena: Arena) -> None:
    m = tmpfs_file(arena, 4)
    mm = Mm()
    s = mm.mmap(m, 4 * P, RW, MAP_SHARED)
    mm.madvise(s + P, P, MADV_REMOVE)
    assert m.size == 4 * P
    assert m.seek_hole(0) == P and m.seek_data(P) == 2 * P
    assert mm.load(s + P, 1) == b"\0"
    assert m.seek_hole(0) == 4 * P  # the fault re-allocated the page


def test_row13_punch_keeps_private_cow_copies(arena: Arena) -> None:
    r"""
    shared s: |  0|  1|  2|  3|     private pv: |  0|cow|  2|  3|  ('X' at pv[P])
    MADV_REMOVE s[P], punch page 2: pv[P] stays 'X', pv[2P] (never COWed) reads 0
    """
    m = tmpfs_file(arena, 4)
    mm = Mm()
    s = mm.mmap(m, 4 * P, RW, MAP_SHARED)
    pv = mm.mmap(m, 4 * P, RW, MAP_PRIVATE)
    mm.store(pv + P, b"X")
    assert page_byte(mm, pv + 2 * P) == 2
    assert picture(mm, pv, 4) == "|  0|cow|  2|  3|"
    mm.madvise(s + P, P, MADV_REMOVE)
    m.punch_hole(2 * P, P)
    assert mm.load(pv + P, 1) == b"X"
    assert page_byte(mm, pv + 2 * P) == 0
    assert page_byte(mm, s + P) == 0


def test_row14_truncate_discards_cow_copies_beyond_eof(arena: Arena) -> None:
    m = tmpfs_file(arena, 4)
    mm = Mm()
    pv = mm.mmap(m, 4 * P, RW, MAP_PRIVATE)
    mm.store(pv + P, b"X")
    mm.store(pv, b"Y")
    m.punch_hole(P, P)
    assert mm.load(pv + P, 1) == b"X"
    m.truncate(P)
    with pytest.raises(Sigbus):
        mm.load(pv + P, 1)
    assert mm.load(pv, 1) == b"Y"  # within EOF the COW copy was not in the range
    assert arena.statistics()["frames_allocated"] >= 1


def test_row15_write_fault_at_size_limit_is_sigbus_enospc(arena: Arena) -> None:
    budget = Budget(max_pages=2)
    m = tmpfs_file(arena, 2, budget)
    m.truncate(4 * P)  # sparse: pages 2, 3 are holes
    mm = Mm()
    a = mm.mmap(m, 4 * P, RW, MAP_SHARED)
    with pytest.raises(Sigbus) as ei:
        mm.store(a + 2 * P, b"z")
    assert ei.value.errno == errno.ENOSPC and ei.value.address == a + 2 * P
    with pytest.raises(NoSpace):
        m.write(3 * P, b"z")
    mm.store(a + P, b"ok")  # resident pages still writable


def test_row17_populate_nonblock_prefaults_nothing(arena: Arena) -> None:
    m = tmpfs_file(arena, 4)
    mm = Mm()
    mm.mmap(m, 4 * P, RW, MAP_SHARED | MAP_POPULATE | MAP_NONBLOCK)
    assert mm.statistics()["resident_pages"] == 0
    mm.mmap(m, 4 * P, PROT_READ, MAP_SHARED | MAP_POPULATE)
    assert mm.statistics()["resident_pages"] == 4


def test_row18_private_populate_prefaults_since_2623(arena: Arena) -> None:
    m = tmpfs_file(arena, 4)
    mm = Mm()
    mm.mmap(m, 4 * P, PROT_READ, MAP_PRIVATE | MAP_POPULATE)
    assert mm.statistics()["resident_pages"] == 4


def test_row19_contrast_no_vma_per_remap(arena: Arena) -> None:
    """The 4.0+ emulation hits vm.max_map_count near 65530 remaps; the 2.6.23
    model creates no VMA per remap (the count never moves)."""
    m = Mapping(arena, Budget())
    m.truncate(70000 * P)
    mm = Mm(max_map_count=3)
    a = mm.mmap(m, 70000 * P, RW, MAP_SHARED)
    for i in range(0, 70000, 2):
        mm.remap_file_pages(a + i * P, P, 0, 69999 - i, MAP_NONBLOCK)
    assert mm.map_count == 1
    assert mm.shown(a, 3) == [69999, 1, 69997]


def test_row20_remap_inside_a_readonly_part_then_write_is_sigsegv(arena: Arena) -> None:
    m = tmpfs_file(arena, 8)
    mm = Mm()
    a = mm.mmap(m, 8 * P, RW, MAP_SHARED)
    mm.mprotect(a + 2 * P, 4 * P, PROT_READ)
    einval(mm.remap_file_pages, a + P, 2 * P, 0, 0, 0)  # across vmas with different prot
    assert mm.remap_file_pages(a + 3 * P, P, 0, 0, 0) == 0
    with pytest.raises(Sigsegv):
        mm.store(a + 3 * P, b"w")
    assert page_byte(mm, a + 3 * P) == 0


def test_row21_mprotect_splits_nonlinear_vma_keeping_pgoffs(arena: Arena) -> None:
    r"""
    |  7|  6|  5|  4|  3|  2|  1|  0|   then mprotect(m+3P, P, PROT_READ)
    [ RW         ][ R][ RW             ]   three VMAs, all VM_NONLINEAR
    """
    m = tmpfs_file(arena, 8)
    mm = Mm()
    a = mm.mmap(m, 8 * P, RW, MAP_SHARED)
    for i in range(8):
        mm.remap_file_pages(a + i * P, P, 0, 7 - i, 0)
    mm.mprotect(a + 3 * P, P, PROT_READ)
    assert mm.map_count == 3 and all(v.nonlinear for v in mm.vmas)
    assert picture(mm, a, 8) == "|  7|  6|  5|  4|  3|  2|  1|  0|"
    with pytest.raises(Sigsegv):
        mm.store(a + 3 * P, b"w")
    assert page_byte(mm, a + 3 * P) == 4
    mm.store(a + 2 * P, b"w")
    mm.store(a + 4 * P, b"v")
    assert m.read_bytes(5 * P, 1) == b"w" and m.read_bytes(3 * P, 1) == b"v"
    assert m.rmap.statistics()["vmas_nonlinear"] == 3


def test_row22_remap_at_unmapped_address_is_einval(arena: Arena) -> None:
    mm = Mm()
    a = mm.mmap(tmpfs_file(arena, 8), 8 * P, RW, MAP_SHARED)
    mm.munmap(a, 8 * P)
    e = einval(mm.remap_file_pages, a, P, 0, 1, 0)
    assert e.errno != errno.ENOMEM


def test_row23_fork_copies_nonlinear_page_tables(arena: Arena) -> None:
    m = tmpfs_file(arena, 8)
    mm = Mm()
    a = mm.mmap(m, 8 * P, RW, MAP_SHARED)
    for i in range(8):
        mm.remap_file_pages(a + i * P, P, 0, 7 - i, MAP_NONBLOCK)
    child = mm.fork()
    assert [page_byte(child, a + i * P) for i in range(8)] == [7, 6, 5, 4, 3, 2, 1, 0]
    child.store(a, b"c")  # shared: the parent sees it
    assert mm.load(a, 1) == b"c"
    m.truncate(4 * P)  # both address spaces are invalidated
    for space in (mm, child):
        with pytest.raises(Sigbus):
            space.load(a, 1)


def test_row24_write_notify_faults_first_write_and_after_writeback(arena: Arena) -> None:
    calls: list[int] = []
    disk = Mapping(arena, Budget(), write_notify=True)
    disk.write(0, bytes(2 * P))
    disk.page_mkwrite = lambda vma, pgoff: calls.append(pgoff) or 0  # type: ignore[attr-defined]
    mm = Mm()
    a = mm.mmap(disk, 2 * P, RW, MAP_SHARED)
    assert mm.load(a, 1) == b"\0"  # read fault maps the page read-only
    mm.store(a, b"1")  # write-protect fault -> page_mkwrite
    mm.store(a + 1, b"2")  # now writable: no fault
    assert calls == [0] and mm.statistics()["mkwrite"] == 1
    mm.msync(a, 2 * P, MS_SYNC)  # writeback: page_mkclean re-protects
    mm.store(a, b"3")
    assert calls == [0, 0]
    mm.store(a + P, b"4")  # first fault is a write: page_mkwrite before install
    assert calls == [0, 0, 1]
    # tmpfs: no write-notify, no extra faults
    shm = tmpfs_file(arena, 1)
    b = mm.mmap(shm, P, RW, MAP_SHARED)
    assert mm.load(b, 1) == b"\0"
    before = mm.statistics()["faults_minor"] + mm.statistics()["faults_major"]
    mm.store(b, b"x")
    mm.msync(b, P, MS_SYNC)
    mm.store(b, b"y")
    assert mm.statistics()["faults_minor"] + mm.statistics()["faults_major"] == before


def test_row25_msync_rules(arena: Arena) -> None:
    m = tmpfs_file(arena, 4)
    mm = Mm()
    a = mm.mmap(m, 4 * P, RW, MAP_SHARED)
    mm.msync(a, 4 * P, MS_SYNC)
    for args in [(a, P, MS_ASYNC | MS_SYNC), (a + 1, P, MS_SYNC), (a, P, 0x40)]:
        einval(mm.msync, *args)
    mm.munmap(a + P, P)
    with pytest.raises(VmError) as ei:
        mm.msync(a, 4 * P, MS_SYNC)
    assert ei.value.errno == errno.ENOMEM
    mm.mlock(a + 2 * P, P)
    with pytest.raises(VmError) as ei:
        mm.msync(a + 2 * P, P, MS_INVALIDATE)
    assert ei.value.errno == errno.EBUSY
    mm.msync(a, 0, MS_ASYNC)  # len 0 -> 0
