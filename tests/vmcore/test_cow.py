"""Copy-on-write frame sharing (vmcore/cow.py): copy_range shares whole pages,
writes of any kind break the share for the writer only, truncate/punch of either
side drop only that side's reference, accounting charges the copy at copy time."""

from __future__ import annotations

import errno
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from vmcore import PAGE_SIZE, Arena, Budget, Mapping, NoSpace
from vmcore.errors import VmError
from vmcore.mm import Mm
from vmcore.vma import MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE

P = PAGE_SIZE


def _pair(max_pages: int = 0) -> tuple[Arena, Budget, Mapping, Mapping]:
    arena, budget = Arena(segment_bytes=4 << 20, populate=False), Budget(max_pages)
    return arena, budget, Mapping(arena, budget), Mapping(arena, budget)


def _frames(m: Mapping) -> np.ndarray:
    n = (m.size + P - 1) // P
    return m.pages.lookup_range(0, n) if n else np.empty(0, dtype=np.int64)


def _check_refs(arena: Arena, *maps: Mapping) -> None:
    """Every frame's reference count is the number of page-cache slots holding it."""
    slots: Counter[int] = Counter()
    for m in maps:
        fr = m.pages.lookup_range(0, 1 << 20)
        slots.update(fr[fr >= 0].tolist())
    for f, n in slots.items():
        assert arena.refcount(f) == n, (f, n)
    assert arena.nshared == sum(n - 1 for n in slots.values())
    st = arena.statistics()
    assert st["frames_in_use"] == len(slots)


def test_whole_pages_share_frames_and_allocate_nothing() -> None:
    arena, budget, a, b = _pair()
    data = bytes(range(256)) * (16 * P // 256)
    a.write(0, data)
    before = arena.statistics()["frames_in_use"]
    assert b.copy_from(a, 0, 0, len(data)) == len(data)
    assert arena.statistics()["frames_in_use"] == before  # no new frame
    assert (_frames(a) == _frames(b)).all()
    assert b.read_bytes(0, len(data)) == data
    assert budget.used_pages == 32  # the copy is charged: 16 pages each
    assert b.blocks() == a.blocks() == 16 * 8
    _check_refs(arena, a, b)


@pytest.mark.parametrize("writer", ["src", "dst"])
def test_write_to_either_side_is_invisible_in_the_other(writer: str) -> None:
    arena, budget, a, b = _pair()
    a.write(0, b"A" * 4 * P)
    b.copy_from(a, 0, 0, 4 * P)
    w, other = (a, b) if writer == "src" else (b, a)
    used = budget.used_pages
    w.write(P + 10, b"xyz")
    assert other.read_bytes(0, 4 * P) == b"A" * 4 * P
    assert w.read_bytes(P, P) == b"A" * 10 + b"xyz" + b"A" * (P - 13)
    assert budget.used_pages == used  # a break never charges (the copy was charged)
    assert arena.cow_breaks == 1
    assert arena.refcount(int(_frames(other)[1])) == 1
    assert int(_frames(w)[0]) == int(_frames(other)[0])  # untouched pages stay shared
    _check_refs(arena, a, b)


def test_partial_pages_are_copied_and_misaligned_copies_copy() -> None:
    arena, _b, a, b = _pair()
    src = bytes((i * 7) % 251 for i in range(5 * P + 123))
    a.write(0, src)
    assert b.copy_from(a, 100, 100, 4 * P) == 4 * P  # head and tail partial
    assert b.read_bytes(100, 4 * P) == src[100 : 100 + 4 * P]
    shared = set(_frames(a).tolist()) & set(_frames(b).tolist())
    assert len(shared) == 3  # pages 1..3 shared, 0 and 4 copied
    c = Mapping(arena, _b)
    assert c.copy_from(a, 0, 1, 2 * P) == 2 * P  # misaligned: no page can be shared
    assert c.read_bytes(1, 2 * P) == src[: 2 * P]
    assert not set(_frames(c).tolist()) & set(_frames(a).tolist())
    _check_refs(arena, a, b, c)


def test_eof_page_is_shared_and_truncate_of_either_side_keeps_the_other() -> None:
    arena, _b, a, b = _pair()
    a.write(0, b"q" * (2 * P + 50))
    assert b.copy_from(a, 0, 0, 1 << 30) == 2 * P + 50  # clipped to the source size
    assert b.size == 2 * P + 50
    assert (_frames(a) == _frames(b)).all()  # the EOF page too
    b.truncate(P + 7)  # partial truncate zeroes part of a shared page: copied first
    assert a.read_bytes(0, a.size) == b"q" * (2 * P + 50)
    b.truncate(3 * P)
    assert b.read_bytes(0, b.size) == b"q" * (P + 7) + bytes(2 * P - 7)
    a.truncate(0)
    assert b.read_bytes(0, P + 7) == b"q" * (P + 7)
    _check_refs(arena, a, b)


def test_punch_of_either_side_drops_only_its_reference() -> None:
    arena, budget, a, b = _pair()
    a.write(0, b"p" * 4 * P)
    b.copy_from(a, 0, 0, 4 * P)
    a.punch_hole(P, 2 * P)
    assert b.read_bytes(0, 4 * P) == b"p" * 4 * P
    b.punch_hole(P // 2, P)  # partial edges zeroed: shared frames copied first
    assert a.read_bytes(0, P) == b"p" * P
    assert b.read_bytes(0, P) == b"p" * (P // 2) + bytes(P // 2)
    assert budget.used_pages == a.nrpages + b.nrpages
    _check_refs(arena, a, b)
    a.release()
    b.release()
    assert arena.statistics()["frames_in_use"] == 0 and arena.nshared == 0


def test_holes_stay_holes_and_seek_data_matches() -> None:
    arena, _b, a, b = _pair()
    a.write(3 * P, b"d" * P)
    a.write(600 * P, b"e" * 2 * P)
    a.fallocate(10 * P, 4 * P, keep_size=True)  # preallocated: a hole for SEEK_DATA
    b.write(0, b"z" * 20 * P)  # destination data under source holes goes
    assert b.copy_from(a, 0, 0, a.size) == a.size
    assert b.nrpages == 3
    for off in range(0, a.size, P // 2):
        assert b.seek_data(off) == a.seek_data(off)
        assert b.seek_hole(off) == a.seek_hole(off)
    assert b.read_bytes(0, a.size) == a.read_bytes(0, a.size)
    _check_refs(arena, a, b)


def test_same_object_overlap_is_einval_disjoint_works() -> None:
    arena, _b, a, _ = _pair()
    a.write(0, b"s" * 8 * P)
    with pytest.raises(VmError) as e:
        a.copy_from(a, 0, 2 * P, 4 * P)
    assert e.value.errno == errno.EINVAL
    assert a.copy_from(a, 0, 8 * P, 4 * P) == 4 * P
    assert int(_frames(a)[0]) == int(_frames(a)[8])
    a.write(8 * P, b"!")
    assert a.read_bytes(0, 1) == b"s" and a.read_bytes(8 * P, 2) == b"!s"
    a.truncate(0)  # one free() with the same frame twice: both references go
    _check_refs(arena, a)
    assert arena.statistics()["frames_in_use"] == 0


def test_enospc_short_copy_and_break_never_fails() -> None:
    arena, budget, a, b = _pair(max_pages=12)
    a.write(0, b"n" * 8 * P)
    assert b.copy_from(a, 0, 0, 8 * P) == 4 * P  # 4 pages left: short, at a page
    assert budget.used_pages == 12
    with pytest.raises(NoSpace):
        b.copy_from(a, 4 * P, 4 * P, 4 * P)
    b.write(0, b"w" * 4 * P)  # breaking all four shares needs no budget
    assert a.read_bytes(0, 4 * P) == b"n" * 4 * P
    assert b.copy_from(a, 0, 0, 4 * P) == 4 * P  # copying over data: net zero pages
    _check_refs(arena, a, b)


def test_window_write_breaks_share_and_source_ptes_are_write_protected() -> None:
    arena, _b, a, b = _pair()
    a.write(0, b"a" * 4 * P)
    mm = Mm()
    va = mm.mmap(a, 4 * P, PROT_READ | PROT_WRITE, MAP_SHARED)
    mm.store(va, b"1")  # a writable PTE on the source frame, before the copy
    assert b.copy_from(a, 0, 0, 4 * P) == 4 * P
    mm.store(va, b"2")  # must fault again (the copy zapped it) and copy
    assert b.read_bytes(0, 2) == b"1a"
    assert a.read_bytes(0, 2) == b"2a"
    vb = mm.mmap(b, 4 * P, PROT_READ | PROT_WRITE, MAP_SHARED)
    assert mm.load(vb + P, 1) == b"a"  # a read maps the shared frame read-only
    mm.store(vb + P, b"3")
    assert a.read_bytes(P, 1) == b"a" and b.read_bytes(P, 1) == b"3"
    vp = mm.mmap(b, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE)
    mm.store(vp + 2 * P, b"4")  # private COW: neither file changes
    assert a.read_bytes(2 * P, 1) == b"a" and b.read_bytes(2 * P, 1) == b"a"
    b.write(3 * P, b"5")  # write(2) to b: a's window still shows a's page
    assert mm.load(va + 3 * P, 1) == b"a" and mm.load(vb + 3 * P, 1) == b"5"
    mm.exit_mmap()
    _check_refs(arena, a, b)


def test_copy_over_mapped_destination_invalidates_its_ptes() -> None:
    arena, _b, a, b = _pair()
    a.write(0, b"a" * 2 * P)
    b.write(0, b"b" * 2 * P)
    mm = Mm()
    vb = mm.mmap(b, 2 * P, PROT_READ | PROT_WRITE, MAP_SHARED)
    assert mm.load(vb, 1) == b"b"
    b.copy_from(a, 0, 0, 2 * P)
    assert mm.load(vb, 1) == b"a"
    mm.store(vb, b"X")
    assert a.read_bytes(0, 1) == b"a"
    mm.exit_mmap()
    _check_refs(arena, a, b)


def test_copy_to_past_eof_of_the_same_file_leaves_zeros_past_the_new_eof() -> None:
    """Within one file, a copy from the EOF page to just past EOF (congruent offsets):
    the head copy lands in the source's EOF page past its EOF, so that page must
    not be shared as the destination's new EOF page -- its tail would show those
    bytes once the file grows (found by the stress oracle, seed 1707: tmpfs reads
    zeros there)."""
    _arena, _b, a, _ = _pair()
    data = bytes(range(256)) * 57  # 14592 bytes
    a.write(0, data[:14476])
    assert a.copy_from(a, 10380, 14476, 8192) == 4096  # clipped at EOF: no overlap
    assert a.size == 18572
    a.truncate(24576)  # grow: past the old EOF reads zeros, as on tmpfs
    got = a.read_bytes(0, 24576)
    assert got[:14476] == data[:14476]
    assert got[14476:18572] == data[10380:14476]
    assert got[18572:] == bytes(24576 - 18572)


def test_sparse_terabyte_copy_costs_little() -> None:
    _arena, _b, a, b = _pair()
    a.write(1 << 40, b"t" * P)
    assert b.copy_from(a, 0, 0, a.size) == a.size
    assert b.nrpages == 1 and b.pages.nr_chunks == 1
    assert b.read_bytes(1 << 40, 2) == b"tt"


OPS = st.sampled_from([0, 1, 2, 3, 5, 511, 512, 513])
OFF = st.builds(lambda p, d: max(0, p * P + d), OPS, st.sampled_from([0, 0, 1, -1, P // 2]))
LEN = st.sampled_from([1, P - 1, P, P + 1, 3 * P, 520 * P])


class CowMachine(RuleBasedStateMachine):
    """Three mappings against bytearrays: writes, truncates, punches, copies."""

    def __init__(self) -> None:
        super().__init__()
        self.arena = Arena(segment_bytes=4 << 20, populate=False)
        self.budget = Budget(2000)
        self.maps = [Mapping(self.arena, self.budget) for _ in range(3)]
        self.model = [bytearray() for _ in range(3)]

    @rule(i=st.integers(0, 2), off=OFF, n=LEN, byte=st.integers(1, 255))
    def write(self, i: int, off: int, n: int, byte: int) -> None:
        try:
            got = self.maps[i].write(off, bytes([byte]) * n)
        except NoSpace:
            return
        m = self.model[i]
        if off + got > len(m):
            m.extend(bytes(off + got - len(m)))
        m[off : off + got] = bytes([byte]) * got

    @rule(i=st.integers(0, 2), size=OFF)
    def truncate(self, i: int, size: int) -> None:
        self.maps[i].truncate(size)
        m = self.model[i]
        del m[size:]
        m.extend(bytes(size - len(m)))

    @rule(i=st.integers(0, 2), off=OFF, n=LEN)
    def punch(self, i: int, off: int, n: int) -> None:
        self.maps[i].punch_hole(off, n)
        m = self.model[i]
        end = min(off + n, len(m))
        if off < end:
            m[off:end] = bytes(end - off)

    @rule(i=st.integers(0, 2), j=st.integers(0, 2), so=OFF, do=OFF, n=LEN)
    def copy(self, i: int, j: int, so: int, do: int, n: int) -> None:
        src, dst = self.maps[i], self.maps[j]
        sm, dm = self.model[i], self.model[j]
        n_eff = max(0, min(n, len(sm) - so))
        try:
            got = dst.copy_from(src, so, do, n)
        except NoSpace:  # a VmError too: the budget ran out (before the one below)
            return
        except VmError as e:
            assert e.errno == errno.EINVAL and i == j and n_eff > 0
            assert so < do + n_eff and do < so + n_eff
            return
        assert got <= n_eff
        if got == 0:
            return
        chunk = bytes(sm[so : so + got])
        if do + got > len(dm):
            dm.extend(bytes(do + got - len(dm)))
        dm[do : do + got] = chunk

    @invariant()
    def same_bytes_and_refs(self) -> None:
        for m, model in zip(self.maps, self.model, strict=True):
            assert m.size == len(model)
            assert m.read_bytes(0, m.size) == bytes(model)
        assert self.budget.used_pages == sum(m.nrpages for m in self.maps)
        _check_refs(self.arena, *self.maps)


TestCowMachine = CowMachine.TestCase
TestCowMachine.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_write_over_whole_shared_pages_skips_the_copy_not_the_bytes() -> None:
    arena, _b, a, b = _pair()
    a.write(0, bytes(range(256)) * (4 * P // 256))
    b.copy_from(a, 0, 0, 4 * P)
    b.write(P // 2, b"\xee" * 3 * P)  # pages 0 and 3 partial (copied), 1 and 2 whole
    want = bytearray(a.read_bytes(0, 4 * P))
    want[P // 2 : P // 2 + 3 * P] = b"\xee" * 3 * P
    assert b.read_bytes(0, 4 * P) == bytes(want)
    assert a.read_bytes(0, 4 * P) == bytes(range(256)) * (4 * P // 256)
    assert arena.cow_breaks == 4
    b.write(0, b"\x11" * P)  # one page, the single-page fast path (page 0 is private now)
    a2 = Mapping(arena, _b)
    a2.copy_from(a, 0, 0, P)
    a2.write(0, b"\x22" * P)
    assert a2.read_bytes(0, P) == b"\x22" * P and a.read_bytes(0, 2) == bytes([0, 1])
    _check_refs(arena, a, b, a2)


def test_misaligned_copy_is_bounded_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmcore import cow

    monkeypatch.setattr(cow, "BYTE_COPY_MAX", 3 * P)
    _arena, _b, a, b = _pair()
    a.write(0, b"m" * 8 * P)
    assert b.copy_from(a, 0, 1, 8 * P) == 3 * P  # short: the caller loops
    assert b.copy_from(a, 0, 0, 8 * P) == 8 * P  # aligned: shared, not limited
