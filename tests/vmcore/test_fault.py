"""fault(): result bits, allocation rules, EOF, ENOSPC, fault-around, counters."""

from __future__ import annotations

import errno

import numpy as np
import pytest

import vmcore.mapping as mapping_mod
from vmcore import (
    FAULT_STATS,
    PAGE_SIZE,
    ZERO_FRAME,
    Arena,
    Budget,
    FaultFlags,
    Mapping,
    VmFault,
    VmFaultResult,
    fault,
    fault_statistics,
)
from vmcore.flags import PG_DIRTY, PG_UPTODATE

R = FaultFlags(0)
W = FaultFlags.WRITE
VMA = object()  # stands in for a Vma: only its presence matters to fault()


@pytest.fixture
def arena():
    a = Arena(segment_bytes=512 * PAGE_SIZE)
    yield a
    a.close()


def mk(arena: Arena, pages: int = 8, max_pages: int = 0) -> Mapping:
    m = Mapping(arena, Budget(max_pages))
    m.truncate(pages * PAGE_SIZE)
    return m


def test_read_of_a_hole_is_the_zero_frame_and_allocates_nothing(arena: Arena) -> None:
    m = mk(arena)
    before = FAULT_STATS.zero_pages
    vmf = VmFault(R, 2, nr_pages=3)
    assert fault(m, vmf) == VmFaultResult.MINOR
    assert vmf.frames.tolist() == [ZERO_FRAME] * 3 and vmf.nr_done == 3
    assert m.nrpages == 0 and m.budget.used_pages == 0
    assert FAULT_STATS.zero_pages - before == 3
    assert m.fstats.zero_pages == 3 and m.fstats.minor == 1 and m.fstats.read == 1


def test_write_fault_allocates_then_is_minor(arena: Arena) -> None:
    m = mk(arena)
    vmf = VmFault(W, 1, nr_pages=4)
    res = fault(m, vmf)
    assert res == VmFaultResult.MAJOR and vmf.nr_done == 4
    assert (np.diff(vmf.frames) == 1).all()  # one contiguous block
    assert m.nrpages == 4 and m.budget.used_pages == 4
    assert m.pages.lookup(1, 4)[1].tolist() == [PG_UPTODATE | PG_DIRTY] * 4
    again = VmFault(W, 1, nr_pages=4)
    assert fault(m, again) == VmFaultResult.MINOR
    assert again.frames.tolist() == vmf.frames.tolist()
    assert m.fstats.major == 1 and m.fstats.minor == 1 and m.fstats.pages_allocated == 4


def test_read_fault_through_a_vma_allocates_like_shmem_fault(arena: Arena) -> None:
    m = mk(arena)
    vmf = VmFault(R, 0, vma=VMA, address=0x1000)
    assert fault(m, vmf) == VmFaultResult.MAJOR
    assert vmf.frames[0] != ZERO_FRAME and m.nrpages == 1
    assert m.pages.lookup(0, 1)[1].tolist() == [PG_UPTODATE]  # not dirty
    assert m.seek_hole(0) == PAGE_SIZE  # the page is now data (PROBE T12c)
    assert m.fstats.via_vma == 1


def test_fallocated_page_reads_as_zero_and_a_vma_fault_makes_it_uptodate(arena: Arena) -> None:
    m = mk(arena)
    m.fallocate(0, PAGE_SIZE, keep_size=True)
    used = m.budget.used_pages
    vmf = VmFault(R, 0)
    fault(m, vmf)
    assert vmf.frames.tolist() == [ZERO_FRAME]
    vmf = VmFault(R, 0, vma=VMA)
    assert fault(m, vmf) == VmFaultResult.MINOR  # already allocated: no new page
    assert vmf.frames[0] != ZERO_FRAME and m.budget.used_pages == used
    assert m.seek_data(0) == 0


@pytest.mark.parametrize("size", [1, PAGE_SIZE - 1, PAGE_SIZE, PAGE_SIZE + 1, 3 * PAGE_SIZE])
def test_beyond_eof_is_sigbus(arena: Arena, size: int) -> None:
    m = Mapping(arena, Budget())
    m.truncate(size)
    eof = -(-size // PAGE_SIZE)
    ok = VmFault(W, eof - 1, vma=VMA)
    assert not fault(m, ok) & VmFaultResult.ERROR
    for flags in (R, W):
        vmf = VmFault(flags, eof, vma=VMA)
        assert fault(m, vmf) == VmFaultResult.SIGBUS
        assert vmf.error == errno.EFAULT and vmf.nr_done == 0
    assert m.nrpages == 1


def test_fault_around_is_clipped_at_eof(arena: Arena) -> None:
    m = mk(arena, pages=5)
    vmf = VmFault(W, 3, nr_pages=10, vma=VMA)
    assert fault(m, vmf) == VmFaultResult.MAJOR
    assert vmf.nr_done == 2 and vmf.frames.size == 2 and m.nrpages == 2


def test_enospc_serves_pages_before_the_first_uncharged_hole(arena: Arena) -> None:
    m = mk(arena, pages=8, max_pages=3)
    fault(m, VmFault(W, 1))  # page 1 resident, 2 pages left in the budget
    vmf = VmFault(W, 0, nr_pages=6)  # holes at 0, 2, 3, 4, 5
    res = fault(m, vmf)
    assert res == VmFaultResult.SIGBUS | VmFaultResult.MAJOR
    assert vmf.error == errno.ENOSPC
    assert vmf.nr_done == 3 and vmf.frames.size == 3  # pages 0, 1, 2
    assert m.nrpages == 3 and m.budget.used_pages == 3
    vmf = VmFault(W, 4)
    assert fault(m, vmf) == VmFaultResult.SIGBUS and vmf.nr_done == 0
    assert m.fstats.enospc == 2 and m.fstats.sigbus == 2


def test_mkwrite_marks_dirty_or_asks_for_a_refault(arena: Arena) -> None:
    m = mk(arena)
    fault(m, VmFault(R, 0, vma=VMA))
    vmf = VmFault(FaultFlags.MKWRITE, 0, vma=VMA)
    assert fault(m, vmf) == VmFaultResult.MINOR
    assert m.pages.lookup(0, 1)[1][0] == PG_UPTODATE | PG_DIRTY
    gone = VmFault(FaultFlags.MKWRITE, 1, vma=VMA)
    assert fault(m, gone) == VmFaultResult.NOPAGE and m.nrpages == 1


def test_prefault_and_global_counters(arena: Arena) -> None:
    m = mk(arena)
    g0 = fault_statistics()
    fault(m, VmFault(FaultFlags.PREFAULT, 0, nr_pages=8, vma=VMA))
    g1 = fault_statistics()
    assert g1["prefault"] - g0["prefault"] == 1
    assert g1["major"] - g0["major"] == 1
    assert g1["pages"] - g0["pages"] == 8
    assert g1["pages_allocated"] - g0["pages_allocated"] == 8
    st = m.statistics()
    assert st["fault_prefault"] == 1 and st["nrpages"] == 8 and st["blocks"] == 64


def test_bad_requests_raise(arena: Arena) -> None:
    m = mk(arena)
    with pytest.raises(ValueError):
        fault(m, VmFault(R, -1))
    with pytest.raises(ValueError):
        fault(m, VmFault(R, 0, nr_pages=0))


@pytest.fixture
def fault_calls(monkeypatch):
    calls: list[tuple[int, int, int]] = []
    real = mapping_mod.fault

    def spy(mapping: Mapping, vmf: VmFault) -> VmFaultResult:
        calls.append((int(vmf.flags), vmf.pgoff, vmf.nr_pages))
        return real(mapping, vmf)

    monkeypatch.setattr(mapping_mod, "fault", spy)
    return calls


def test_large_io_is_one_fault_call(arena: Arena, fault_calls) -> None:
    m = Mapping(arena, Budget())
    data = np.random.default_rng(1).integers(0, 256, 1 << 20, dtype=np.uint8)
    assert m.write(PAGE_SIZE, memoryview(data)) == 1 << 20
    assert fault_calls == [(int(W), 1, 256)]
    vs = m.read(PAGE_SIZE, 1 << 20)
    assert fault_calls[1] == (0, 1, 256) and len(fault_calls) == 2
    assert len(vs) == 1  # freshly allocated frames are contiguous: one iovec
    assert vs[0] == data.tobytes()


def test_unaligned_io_touches_every_covered_page(arena: Arena, fault_calls) -> None:
    m = Mapping(arena, Budget())
    m.write(PAGE_SIZE - 1, b"ab")
    assert fault_calls == [(int(W), 0, 2)]
    m.read(PAGE_SIZE - 1, 10)  # clipped to i_size = PAGE_SIZE + 1
    assert fault_calls[1] == (0, 0, 2)
    m.read(10 * PAGE_SIZE, 10)  # beyond EOF: nothing to fault
    assert len(fault_calls) == 2


def test_multi_chunk_write_fault_with_enospc(arena: Arena) -> None:
    """A 1300-page run spans four 512-page chunks; the budget stops it midway."""
    m = Mapping(arena, Budget(1000))
    m.truncate(2000 * PAGE_SIZE)
    fault(m, VmFault(W, 600, nr_pages=50))  # resident island inside the run
    vmf = VmFault(W, 100, nr_pages=1300)
    res = fault(m, vmf)
    assert res == VmFaultResult.SIGBUS | VmFaultResult.MAJOR and vmf.error == errno.ENOSPC
    # 950 holes could be charged; the island adds 50 resident pages to the run
    assert vmf.nr_done == 1000 and m.nrpages == 1000 and m.pages.nr_chunks == 3
    assert np.unique(vmf.frames).size == 1000 and (vmf.frames > 0).all()
    flags = m.pages.lookup(100, 1000)[1]
    assert (flags == PG_UPTODATE | PG_DIRTY).all()
    rd = VmFault(R, 0, nr_pages=2000)
    fault(m, rd)
    assert (rd.frames[100:1100] == vmf.frames).all()
    assert (rd.frames[:100] == ZERO_FRAME).all() and (rd.frames[1100:] == ZERO_FRAME).all()


def test_single_page_write_to_a_hole_matches_the_general_path(arena: Arena) -> None:
    """The one-page allocating path (appends) leaves the same state as a
    multi-page fault: charged, UPTODATE|DIRTY, MAJOR, counted; a read fault
    through a vma gets UPTODATE only; ENOSPC serves nothing and is SIGBUS."""
    m = mk(arena, pages=4, max_pages=2)
    before = FAULT_STATS.pages_allocated
    vmf = VmFault(W, 3)
    assert fault(m, vmf) == VmFaultResult.MAJOR
    assert vmf.nr_done == 1 and vmf.frames.size == 1 and vmf.frames[0] > 0
    frames, pflags = m.pages.lookup(3, 1)
    assert frames.tolist() == vmf.frames.tolist()
    assert int(pflags[0]) == PG_UPTODATE | PG_DIRTY
    assert m.budget.used_pages == 1 and m.nrpages == 1
    assert FAULT_STATS.pages_allocated - before == 1 and m.fstats.pages_allocated == 1
    assert m.fstats.major == 1
    vmf = VmFault(R, 0, vma=VMA)
    assert fault(m, vmf) == VmFaultResult.MAJOR
    assert int(m.pages.lookup(0, 1)[1][0]) == PG_UPTODATE
    vmf = VmFault(W, 1)  # the budget (2 pages) is used up
    assert fault(m, vmf) == VmFaultResult.SIGBUS
    assert vmf.error == errno.ENOSPC and vmf.nr_done == 0 and vmf.frames.size == 0
    assert m.budget.used_pages == 2 and m.nrpages == 2 and m.fstats.enospc == 1
    assert fault(m, VmFault(W, 3)) == VmFaultResult.MINOR  # resident: no charge
