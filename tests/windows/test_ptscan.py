"""The page-table chunk filter (native/winscan.c, vmcore._ptscan) changes nothing.

PageTable.find_pgoffs and PageTable.zap ask the filter which chunks may hold an
entry in their pgoff range and run their numpy code on those only.  Here random
tables -- present, file, anonymous and none entries, empty chunks, pgoffs near the
ranges' edges -- are scanned and zapped twice, with the filter and without it
(``_chunk_hits`` None, as in a build without a C compiler): the results and the
tables afterwards must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmcore import pagetable
from vmcore.pagetable import (
    CHUNK,
    PTE_ANON,
    PTE_FILE,
    PTE_OWNPROT,
    PTE_PRESENT,
    PageTable,
    _Chunk,
)

pytestmark = pytest.mark.skipif(pagetable._chunk_hits is None,
                                reason="the C extension is not built (scripts/bootstrap.sh)")

BITS = [0, 0, 0, PTE_PRESENT, PTE_FILE, PTE_PRESENT | PTE_ANON, PTE_FILE | PTE_OWNPROT,
        PTE_PRESENT | PTE_OWNPROT]


def _table(seed: int, nchunks: int, empty: int) -> PageTable:
    rng = np.random.default_rng(seed)
    pt = PageTable()
    for k in rng.choice(64, size=nchunks, replace=False).tolist():
        c = _Chunk()
        if k % 7 != empty:
            c.bits[:] = rng.choice(BITS, size=CHUNK)
            c.pgoff[:] = rng.integers(0, 300, size=CHUNK)
            c.frame[:] = np.where(c.bits & PTE_PRESENT, rng.integers(1, 1 << 20, CHUNK), 0)
        pt._chunks[k] = c
    return pt


def _dump(pt: PageTable) -> dict:
    return {k: (c.bits.tobytes(), c.frame.tobytes(), c.pgoff.tobytes())
            for k, c in sorted(pt._chunks.items())}


def _zapped(z: object) -> tuple:
    return tuple(a.tobytes() for a in (z.vpn, z.frame, z.pgoff, z.bits))  # type: ignore[attr-defined]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1 << 30), nchunks=st.integers(1, 24), empty=st.integers(0, 7),
       first=st.integers(-5, 310), span=st.integers(0, 40), kind=st.integers(0, 5),
       lo=st.integers(0, 64 * CHUNK), n=st.integers(1, 64 * CHUNK))
def test_filtered_scans_and_zaps_equal_the_full_ones(seed: int, nchunks: int, empty: int,
                                                     first: int, span: int, kind: int,
                                                     lo: int, n: int) -> None:
    a, b = _table(seed, nchunks, empty), _table(seed, nchunks, empty)
    last = first + span
    hits = pagetable._chunk_hits
    try:
        ra = a.find_pgoffs(first, last)
        pagetable._chunk_hits = None
        rb = b.find_pgoffs(first, last)
    finally:
        pagetable._chunk_hits = hits
    assert [x.tolist() for x in ra] == [x.tolist() for x in rb]
    kw: dict = [
        {"pg_first": first, "pg_last": last},
        {"pg_first": max(first, 0), "pg_last": None},
        {},
        {"pg_set": np.array(sorted({first, first + span // 2, last}), np.int64)},
        {"pg_first": first, "pg_last": last, "skip_anon": True,
         "nonlinear_base": (lo, 3)},
        {"clear_file": True},
    ][kind]
    try:
        za = a.zap(lo, lo + n, **kw)
        pagetable._chunk_hits = None
        zb = b.zap(lo, lo + n, **kw)
    finally:
        pagetable._chunk_hits = hits
    assert _zapped(za) == _zapped(zb)
    assert _dump(a) == _dump(b)


def test_the_filter_skips_chunks_without_candidates() -> None:
    """The point of it: a one-page lookup in a 128-chunk table looks at the chunks that
    hold that page (and empty ones), not at all 128."""
    pt = PageTable()
    for k in range(128):
        c = _Chunk()
        c.bits[:] = PTE_FILE
        c.pgoff[:] = np.arange(CHUNK) + k * CHUNK
        pt._chunks[k] = c
    pt._chunks[5].bits[7] = PTE_PRESENT
    assert pagetable._candidates(pt._chunks, 5 * CHUNK + 7, 5 * CHUNK + 7, PTE_PRESENT) == {5}
    assert pagetable._candidates(pt._chunks, 1 << 40, 1 << 41, PTE_FILE) == set()
    pt._chunks[9].bits[:] = 0  # empty: always looked at (zap frees it)
    assert 9 in pagetable._candidates(pt._chunks, 0, 0, PTE_PRESENT)
    vpns, pgs = pt.find_pgoffs(5 * CHUNK + 7, 5 * CHUNK + 7)
    assert vpns.tolist() == [5 * CHUNK + 7] and pgs.tolist() == [5 * CHUNK + 7]


_EDGES = [-(1 << 63), -(1 << 63) + 1, -5, -1, 0, 1, 2, 511, 512, 1000,
          (1 << 63) - 2, (1 << 63) - 1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, PTE_PRESENT, PTE_FILE, PTE_PRESENT | PTE_ANON]),
                          st.one_of(st.sampled_from(_EDGES), st.integers(-10, 1100))),
                min_size=0, max_size=6),
       st.sampled_from([*_EDGES, 3, 700]), st.sampled_from([*_EDGES, 3, 700]),
       st.sampled_from([PTE_PRESENT, PTE_PRESENT | PTE_FILE]))
def test_hits_is_the_numpy_predicate(entries: list[tuple[int, int]], first: int, last: int,
                                     need: int) -> None:
    """hits() against its definition, at the int64 edges and with first > last (an empty
    range): the vectorised unsigned compare of native/winscan.c must agree."""
    chunks = {0: _Chunk(), 1: _Chunk()}  # chunk 1 stays empty: always listed
    for j, (bits, pg) in enumerate(entries):
        chunks[0].bits[j * 97 % CHUNK] = bits
        chunks[0].pgoff[j * 97 % CHUNK] = pg
    c = chunks[0]
    hit = bool((((c.bits & need) != 0) & (c.pgoff >= first) & (c.pgoff <= last)).any())
    want = {1} | ({0} if hit or not c.bits.any() else set())
    assert set(pagetable._chunk_hits(chunks, first, last, need)) == want
