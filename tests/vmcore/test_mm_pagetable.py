"""PageTable (sparse chunked PTE arrays) and IntervalIndex (i_mmap), checked
against plain dict/list models."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vmcore import PAGE_SHIFT, PAGE_SIZE
from vmcore import pagetable as ptm
from vmcore.interval import IntervalIndex
from vmcore.pagetable import (
    CHUNK,
    PTE_ANON,
    PTE_FILE,
    PTE_OWNPROT,
    PTE_PRESENT,
    PTE_WRITE,
    PageTable,
)


def test_page_constants_agree_with_vmcore() -> None:
    assert ptm.PAGE_SIZE == PAGE_SIZE and ptm.PAGE_SHIFT == PAGE_SHIFT


def test_empty_table_costs_nothing_and_chunks_come_and_go() -> None:
    pt = PageTable()
    huge = 1 << 28  # vpn of a VMA far away: nothing is allocated up front
    assert pt.get(huge) == (0, 0, 0, 0) and pt.nbytes == 0
    pt.set_file(huge + 5, 77)
    assert pt.nchunks == 1 and pt.get(huge + 5) == (PTE_FILE, 0, 77, 0)
    pt.clear_range(huge, huge + CHUNK)
    assert pt.nchunks == 0 and pt.nbytes == 0


def test_zap_linear_skips_cows_when_asked_and_reports_present_only() -> None:
    pt = PageTable()
    for v in range(10):
        pt.set_present(v, 100 + v, v, PTE_PRESENT | (PTE_ANON if v % 2 else 0))
    z = pt.zap(0, 10, skip_anon=True)
    assert sorted(z.vpn.tolist()) == [0, 2, 4, 6, 8]
    assert pt.count(PTE_PRESENT) == 5
    z = pt.zap(0, 10)
    assert sorted(z.vpn.tolist()) == [1, 3, 5, 7, 9] and pt.nchunks == 0


def test_zap_nonlinear_leaves_file_ptes_and_keeps_pgoff() -> None:
    r"""
    window (vm_pgoff 0, vpn 0..3):   [ P7 ][ P1 ][ F9 ][ P3 ]
    zap pgoffs [3, 9]:                 F7    P1    F9    --
    P7 keeps its pgoff as a file PTE; P3 sat at its linear position so becomes
    none; the file PTE F9 is in range but left alone (it holds no frame).
    """
    pt = PageTable()
    pt.set_present(0, 50, 7, PTE_PRESENT | PTE_WRITE)
    pt.set_present(1, 51, 1, PTE_PRESENT)
    pt.set_file(2, 9)
    pt.set_present(3, 53, 3, PTE_PRESENT)
    z = pt.zap(0, 4, pg_first=3, pg_last=9, nonlinear_base=(0, 0))
    assert sorted(z.vpn.tolist()) == [0, 3]
    assert pt.get(0) == (PTE_FILE, 0, 7, 0)
    assert pt.get(1) == (PTE_PRESENT, 51, 1, 0)
    assert pt.get(2) == (PTE_FILE, 0, 9, 0)
    assert pt.get(3)[0] == 0


def test_zap_keeps_own_protection_as_file_pte_even_at_linear_position() -> None:
    pt = PageTable()
    pt.set_present(4, 9, 4, PTE_PRESENT | PTE_OWNPROT, prot=1)
    pt.zap(0, 8, nonlinear_base=(0, 0))
    assert pt.get(4) == (PTE_FILE | PTE_OWNPROT, 0, 4, 1)


entries = st.dictionaries(
    st.integers(0, 3 * CHUNK), st.tuples(st.integers(1, 1000), st.integers(0, 1 << 40)), max_size=40
)


@settings(max_examples=60, deadline=None)
@given(entries, st.integers(0, 3 * CHUNK + 1))
def test_split_and_absorb_preserve_every_entry(ents: dict, at: int) -> None:
    pt = PageTable()
    for v, (f, pg) in ents.items():
        pt.set_present(v, f, pg, PTE_PRESENT)
    right = pt.split(at)
    for v, (f, pg) in ents.items():
        side = right if v >= at else pt
        other = pt if v >= at else right
        assert side.get(v) == (PTE_PRESENT, f, pg, 0)
        assert other.get(v)[0] == 0
    pt.absorb(right)
    assert right.nchunks == 0
    for v, (f, pg) in ents.items():
        assert pt.get(v) == (PTE_PRESENT, f, pg, 0)
    assert pt.count(PTE_PRESENT) == len(ents)
    bits, frame, pgoff, _ = pt.lookup(0, 3 * CHUNK + 1)
    assert int(np.count_nonzero(bits)) == len(ents)
    for v, (f, pg) in ents.items():
        assert frame[v] == f and pgoff[v] == pg


@settings(max_examples=60, deadline=None)
@given(ents=entries, lo=st.integers(0, 3 * CHUNK), span=st.integers(1, 3 * CHUNK))
def test_find_pgoffs_matches_a_scan(ents: dict, lo: int, span: int) -> None:
    pt = PageTable()
    for v, (_f, pg) in ents.items():
        pt.set_file(v, pg % 4096)
    vpns, pgs = pt.find_pgoffs(lo, lo + span)
    want = sorted(v for v, (_f, pg) in ents.items() if lo <= pg % 4096 <= lo + span)
    assert vpns.tolist() == want
    assert pgs.tolist() == [ents[v][1] % 4096 for v in want]


intervals = st.lists(st.tuples(st.integers(0, 200), st.integers(1, 60)), max_size=60)


@settings(max_examples=100, deadline=None)
@given(
    intervals, st.lists(st.tuples(st.integers(0, 260), st.integers(1, 80)), max_size=10), st.data()
)
def test_interval_index_matches_brute_force(ivs: list, queries: list, data: st.DataObject) -> None:
    idx: IntervalIndex[object] = IntervalIndex()
    items = []
    for s, n in ivs:
        o = object()
        idx.add(s, s + n, o)
        items.append((s, s + n, o))
    # remove a random subset
    drop = data.draw(st.sets(st.integers(0, max(len(items) - 1, 0)), max_size=len(items)))
    for i in sorted(drop):
        if i < len(items):
            idx.remove(items[i][2])
    live = [it for i, it in enumerate(items) if i not in drop]
    assert len(idx) == len(live)
    for q, n in queries:
        got = idx.overlapping(q, q + n)
        want = [o for s, e, o in live if s < q + n and e > q]
        assert sorted(map(id, got)) == sorted(map(id, want))
        starts = [idx.interval_of(o)[0] for o in got]
        assert starts == sorted(starts)


@settings(max_examples=60, deadline=None)
@given(
    lo=st.integers(0, 3 * CHUNK),
    n=st.integers(1, 2 * CHUNK + 3),
    pg=st.integers(0, 1 << 40),
    prot=st.sampled_from([None, 0, 1, 3]),
)
def test_set_file_range_equals_one_by_one(lo: int, n: int, pg: int, prot: int | None) -> None:
    a, b = PageTable(), PageTable()
    a.set_present(lo + n // 2, 7, 1, PTE_PRESENT)
    a.set_file_range(lo, lo + n, pg, prot)
    for i in range(n):
        b.set_file(lo + i, pg + i, prot)
    assert all(a.get(v) == b.get(v) for v in range(max(lo - 2, 0), lo + n + 2))
    assert a.nchunks == b.nchunks
