"""The one-page punch's shortcuts against the general paths, in process.

Three switches (docs/decisions.md, "A one-page punch of a window's object: the
nonlinear VMAs it cannot change skipped in C"), all on or all off here:

* ``vmcore.rmap.WINUNMAP``: ``Rmap.unmap_mapping_range`` / ``unmap_pages`` ask
  ``vmcore._ptscan.vmas_hit`` (native/winscan.c) once which nonlinear VMAs have a chunk
  their zap could change and zap only those;
* ``vmcore.pagecache.PUNCH1``: a one-page ``remove_range`` without the chunk walk;
* ``vmcore.arena.PUNCH1``: ``Arena.free`` of one unshared frame with scalar checks.

The twins of tests/windows/test_winpunch_twin.py (one object shown by three windows
sharing object pages; remaps, READs, stores, populating remaps, object writes and
caching, MADV_REMOVE of 0-3 pages, punches of 1-3 object pages aligned or not) get the
same random sequences, one with the shortcuts and one without.  After every step both
must have queued byte-identical notifications, raised the same errno and hold the same
state: every page table, the page cache and its bytes, each window's cached / pending /
pushed pages, every counter (the reverse map's ``vmas_visited`` and
``nonlinear_pages_scanned`` included: the shortcut counts them as the walk did), the
times, and the arena's free list and counters.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from tests.windows import test_winmadv_twin as base
from tests.windows import test_winpunch_twin as punch
from vmcore import _ptscan, pagecache, pagetable, rmap
from vmcore import arena as arena_mod
from vmcore.pagetable import PTE_ANON, PTE_FILE, PTE_PRESENT, PageTable, _Chunk
from vmcore.vma import MADV_REMOVE

P4 = base.P4


def _set(on: bool) -> tuple[bool, bool, bool, bool]:
    saved = rmap.WINUNMAP, pagetable.ZAPC, pagecache.PUNCH1, arena_mod.PUNCH1
    rmap.WINUNMAP = pagetable.ZAPC = pagecache.PUNCH1 = arena_mod.PUNCH1 = on
    return saved


class Twin(punch.Twin):
    """test_winpunch_twin's filesystem, switched by this module's three flags."""

    def run(self, op: tuple, fast: bool) -> tuple[int, list[bytes]]:
        saved = _set(fast)
        try:  # test_winpunch_twin's whole-page shortcut on in both twins, as by default
            return super().run(op, True)
        finally:
            rmap.WINUNMAP, pagetable.ZAPC, pagecache.PUNCH1, arena_mod.PUNCH1 = saved

    def state(self) -> dict:
        out = base.Twin.state(self)
        a = self.fs._inodes[self.obj].mapping.arena
        out["arena"] = (a.statistics(), list(a._free_runs), a._nfree,
                        np.flatnonzero(a._in_use).tobytes())
        return out


def _check(ops: list[tuple]) -> int:
    """Run ``ops`` on both twins, comparing after each; returns how many one-page
    punches or MADV_REMOVEs freed a frame while some window's table was skipped."""
    fast, slow = Twin(), Twin()
    served = 0
    for op in ops:
        m = fast.fs._inodes[fast.obj].mapping
        freed, zapped = m.frames_freed, m.rmap.stats.ptes_zapped
        got = fast.run(op, True)
        want = slow.run(op, False)
        assert got == want, op
        assert fast.state() == slow.state(), op
        if m.frames_freed > freed and m.rmap.stats.ptes_zapped - zapped < base.NWIN:
            served += 1
    return served


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(punch.st.lists(punch.OPS, min_size=10, max_size=60))
def test_one_page_punch_shortcuts_agree(ops: list[tuple]) -> None:
    _check(ops)


def test_long_random_sequences_agree() -> None:
    """Long sequences over few pages: many punches and MADV_REMOVEs free a page one
    window shows and the others do not (zap one table, skip the rest), and many free a
    page no window shows (skip them all)."""
    r = random.Random(12)
    pages = base.PAGES[:6]
    served = 0
    for _ in range(4):
        make = {
            "remap": lambda w, page, pg: ("remap", w, page, pg, 1),
            "premap": lambda w, page, pg: ("premap", w, page, pg),
            "read": lambda w, page, pg: ("read", w, page),
            "store": lambda w, page, pg: ("store", w, page, pg * 20),
            "objc": lambda w, page, pg: ("objcache", w, pg),
            "objw": lambda w, page, pg: ("objwrite", w, pg),
            "madv": lambda w, page, pg: ("madvise", w, page, 0, P4, MADV_REMOVE, False),
            "punch2": lambda w, page, pg: ("punch", w, pg, 0, 2 * P4),
            "punch": lambda w, page, pg: ("punch", w, pg, 0, P4),
        }
        kinds = [*make, "punch", "punch", "madv"]
        ops = [make[r.choice(kinds)](r.randrange(base.NWIN), r.choice(pages), r.randrange(12))
               for _ in range(150)]
        served += _check(ops)
    assert served >= 20


# ----------------------------------------------------------- vmas_hit itself


class _Vma:
    def __init__(self, pt: object) -> None:
        self.pt = pt


def _table(entries: dict[int, tuple[int, int]]) -> PageTable:
    """A page table with ``entries`` {vpn: (bits, pgoff)}."""
    pt = PageTable()
    for vpn, (bits, pgoff) in entries.items():
        c = pt._chunks.setdefault(vpn >> 9, _Chunk())
        c.bits[vpn & 511] = bits
        c.pgoff[vpn & 511] = pgoff
    return pt


def test_vmas_hit_lists_exactly_the_tables_a_zap_can_change() -> None:
    present = _table({3: (PTE_PRESENT, 40), 700: (PTE_PRESENT, 41)})
    file_only = _table({5: (PTE_FILE, 40)})  # a file PTE holds no frame: nothing to zap
    anon = _table({9: (PTE_PRESENT | PTE_ANON, 40)})  # listed: zap decides (skip_anon)
    other = _table({1: (PTE_PRESENT, 7)})
    empty = _table({1: (PTE_PRESENT, 40)})
    empty._chunks[0].bits[1] = 0  # an empty chunk: zap's _maybe_free must see it
    broken = _Vma(object())  # no table that can be read: listed
    vmas = [_Vma(present), _Vma(file_only), _Vma(anon), _Vma(other), _Vma(empty), broken]
    idx, nch = _ptscan.vmas_hit(vmas, 40, 40, PTE_PRESENT)
    assert idx == [0, 2, 4, 5]
    assert nch == 2 + 1 + 1 + 1 + 1
    assert _ptscan.vmas_hit(vmas[:2], 41, 41, PTE_PRESENT) == ([0], 3)
    assert _ptscan.vmas_hit(vmas[:2], 42, 50, PTE_PRESENT) == ([], 3)
    # the int64 edges: a pgoff range that wraps in unsigned arithmetic lists nothing
    big = _table({0: (PTE_PRESENT, (1 << 63) - 1), 1: (PTE_PRESENT, -(1 << 63))})
    assert _ptscan.vmas_hit([_Vma(big)], (1 << 63) - 1, (1 << 63) - 1, PTE_PRESENT)[0] == [0]
    assert _ptscan.vmas_hit([_Vma(big)], 0, (1 << 62), PTE_PRESENT)[0] == []


def test_vmas_hit_declines_shared_tables() -> None:
    """Two VMAs over one table: a zap of the first could free a chunk the second's
    count includes, so the caller walks them one by one (None)."""
    pt = _table({3: (PTE_PRESENT, 40)})
    assert _ptscan.vmas_hit([_Vma(pt), _Vma(pt)], 0, 100, PTE_PRESENT) is None


@pytest.mark.parametrize("on", [True, False])
def test_arena_free_one_frame_errors(on: bool) -> None:
    """The one-frame free refuses what the general one refuses, with the same error."""
    saved = arena_mod.PUNCH1
    arena_mod.PUNCH1 = on
    try:
        tw = base.Twin()
        a = tw.fs._inodes[tw.obj].mapping.arena
        for bad in ([0], [a._limit], [a._limit + 5]):
            with pytest.raises(ValueError, match="not allocated"):
                a.free(np.array(bad, dtype=np.int64))
        f = int(tw.fs._inodes[tw.obj].mapping.pages.lookup_range(0, 1)[0])
        tw.fs._inodes[tw.obj].mapping.pages.remove_range(0, 1)
        a.free(np.array([f], dtype=np.int64))
        with pytest.raises(ValueError, match="not allocated"):  # twice
            a.free([f])
    finally:
        arena_mod.PUNCH1 = saved


def _random_table(r: random.Random, nchunks: int) -> PageTable:
    pt = PageTable()
    bitsets = [0, PTE_PRESENT, PTE_PRESENT | 0x04 | 0x08, PTE_PRESENT | PTE_ANON, PTE_FILE,
               PTE_PRESENT | 0x20, PTE_FILE | 0x20, PTE_PRESENT | PTE_ANON | 0x20]
    for k in range(nchunks):
        c = pt._chunks.setdefault(k * 3, _Chunk())
        for j in range(512):
            if r.random() < 0.3:
                c.bits[j] = r.choice(bitsets)
                c.frame[j] = r.randrange(1, 1000) if c.bits[j] & PTE_PRESENT else 0
                c.pgoff[j] = r.choice([r.randrange(-3, 40), (k * 3 << 9) + j - 100 + 7])
                c.prot[j] = r.randrange(8)
    return pt


def test_zap_chunk_agrees_with_numpy_zap() -> None:
    """PageTable.zap of a nonlinear VMA over a pgoff range, with zap_chunk and with the
    numpy statements, on random tables (present, file, COW, own-protection entries;
    pgoffs at and off their linear position; ranges cutting chunks): the same rows
    reported in the same order, the same tables after (freed chunks included)."""
    r = random.Random(7)
    for _ in range(200):
        seed = r.random()
        lo, hi = r.randrange(0, 700), r.randrange(700, 4000)
        first = r.randrange(-3, 40)
        last = first + r.choice([0, 0, 1, 5, 50])
        skip = r.random() < 0.5
        base = (lo, r.randrange(-10, 10) + 7 - 100 + lo)
        out = []
        for on in (True, False):
            pt = _random_table(random.Random(seed), 1 + int(seed * 4))
            saved = pagetable.ZAPC
            pagetable.ZAPC = on
            try:
                z = pt.zap(lo, hi, pg_first=first, pg_last=last, skip_anon=skip,
                           nonlinear_base=base)
            finally:
                pagetable.ZAPC = saved
            out.append(((z.vpn.tobytes(), z.frame.tobytes(), z.pgoff.tobytes(),
                         z.bits.tobytes(), z.vpn.dtype, z.frame.dtype, z.bits.dtype),
                        {k: (c.bits.tobytes(), c.frame.tobytes(), c.pgoff.tobytes(),
                             c.prot.tobytes()) for k, c in pt._chunks.items()}))
        assert out[0] == out[1]
