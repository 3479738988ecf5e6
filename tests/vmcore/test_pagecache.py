"""PageCache: sparse two-level index, chunk lifetime, vectorised lookups."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmcore.flags import PG_DIRTY, PG_UPTODATE
from vmcore.pagecache import CHUNK_PAGES, PageCache


def test_lookup_of_empty_cache_creates_nothing() -> None:
    pc = PageCache()
    fr, fl = pc.lookup(1 << 30, 700)
    assert (fr == -1).all() and (fl == 0).all() and fr.size == 700
    assert pc.nr_chunks == 0 and pc.nrpages == 0


def test_chunks_created_on_insert_and_dropped_when_empty() -> None:
    pc = PageCache()
    pc.insert_range(CHUNK_PAGES - 2, np.array([10, 11, 12, 13]), PG_UPTODATE)
    assert pc.nr_chunks == 2 and pc.nrpages == 4
    assert pc.lookup_range(CHUNK_PAGES - 3, 6).tolist() == [-1, 10, 11, 12, 13, -1]
    got = pc.remove_range(CHUNK_PAGES - 2, 2)
    assert sorted(got.tolist()) == [10, 11] and pc.nr_chunks == 1
    got = pc.remove_range(0, None)
    assert sorted(got.tolist()) == [12, 13] and pc.nr_chunks == 0 and pc.nrpages == 0


def test_insert_skips_negative_entries_and_refuses_overwrite() -> None:
    pc = PageCache()
    pc.insert_range(5, np.array([7, -1, 9]), PG_UPTODATE)
    assert pc.nrpages == 2
    fr, fl = pc.lookup(5, 3)
    assert fr.tolist() == [7, -1, 9] and fl.tolist() == [PG_UPTODATE, 0, PG_UPTODATE]
    try:
        pc.insert_range(7, np.array([1]), 0)
    except ValueError:
        pass
    else:
        raise AssertionError("insert over a resident page must fail")


def test_set_flags_touches_only_resident_pages() -> None:
    pc = PageCache()
    pc.insert_range(CHUNK_PAGES - 1, np.array([3, -1, 4]), 0)
    pc.set_flags(CHUNK_PAGES - 1, 3, PG_DIRTY)
    assert pc.lookup(CHUNK_PAGES - 1, 3)[1].tolist() == [PG_DIRTY, 0, PG_DIRTY]


def test_next_data_and_next_hole_skip_missing_chunks() -> None:
    pc = PageCache()
    far = 1 << 28  # 1 TiB
    pc.insert_range(far, np.array([1, 2]), PG_UPTODATE)
    pc.insert_range(far + 2, np.array([3]), 0)  # fallocated: a hole for SEEK_*
    assert pc.next_data(0) == far
    assert pc.next_hole(far) == far + 2
    assert pc.next_hole(far, uptodate_only=False) == far + 3
    assert pc.next_data(far + 2) is None
    assert pc.next_data(far + 2, uptodate_only=False) == far + 2
    assert pc.next_hole(0) == 0


def test_next_hole_across_full_chunks() -> None:
    pc = PageCache()
    pc.insert_range(0, np.arange(1, 2 * CHUNK_PAGES + 1), PG_UPTODATE)
    assert pc.next_hole(3) == 2 * CHUNK_PAGES
    pc.remove_range(CHUNK_PAGES + 7, 1)
    assert pc.next_hole(3) == CHUNK_PAGES + 7


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ins", "rm"]),
            st.integers(0, 3 * CHUNK_PAGES),
            st.integers(1, CHUNK_PAGES + 5),
        ),
        max_size=25,
    ),
    st.integers(0, 3 * CHUNK_PAGES),
)
def test_against_a_dict_model(ops, probe) -> None:
    pc = PageCache()
    model: dict[int, int] = {}
    nxt = 1
    for op, pg, n in ops:
        if op == "ins":
            frames = np.full(n, -1, dtype=np.int64)
            for i in range(n):
                if pg + i not in model and (pg + i) % 3:
                    frames[i] = nxt
                    model[pg + i] = nxt
                    nxt += 1
            pc.insert_range(pg, frames, PG_UPTODATE)
        else:
            got = pc.remove_range(pg, n)
            want = [model.pop(p) for p in range(pg, pg + n) if p in model]
            assert sorted(got.tolist()) == sorted(want)
        assert pc.nrpages == len(model)
        assert pc.nr_chunks == len({p >> 9 for p in model})
    span = pc.lookup_range(0, 5 * CHUNK_PAGES)
    assert {i: int(f) for i, f in enumerate(span) if f >= 0} == model
    data_after = [p for p in sorted(model) if p >= probe]
    assert pc.next_data(probe) == (data_after[0] if data_after else None)
    h = probe
    while h in model:
        h += 1
    assert pc.next_hole(probe) == h


def test_insert1_is_insert_range_of_one_page() -> None:
    a, b = PageCache(), PageCache()
    a.insert1(700, 42, 3)
    b.insert_range(700, np.array([42], dtype=np.int64), 3)
    assert a.lookup1(700) == b.lookup1(700) == (42, 3)
    assert a.nrpages == b.nrpages == 1 and a.nr_chunks == b.nr_chunks == 1
    with pytest.raises(ValueError):
        a.insert1(700, 43, 3)
    assert a.remove_range(0, None).tolist() == [42] and a.nr_chunks == 0
