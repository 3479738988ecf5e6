"""remap_file_pages_vec: a vector of remaps is exactly the same remaps one by one.

Random vectors (overlapping entries, multi-page entries, own protections, bad
entries of every row) run on two identical windows, one through the vector and
one entry by entry; the page tables, the count applied and the errno must agree.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from vmcore import PAGE_SIZE, Arena, Budget, Mapping, VmError, fremap
from vmcore.vma import (
    MAP_CHGPROT,
    MAP_NONBLOCK,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    PagerExt,
)
from vmcore.window import Window

P = PAGE_SIZE
EXT = PagerExt.PER_PAGE_PROT | PagerExt.MADV_REMOVE_NONLINEAR
N = 96


def _window(arena: Arena, prot: int) -> Window:
    m = Mapping(arena, Budget())
    m.write(0, b"".join(bytes([i % 250 + 1]) * P for i in range(4 * N)))
    w = Window(m, N, prot=prot, ext=EXT)
    w.remap(1, 1, 7, MAP_NONBLOCK)  # nonlinear from the start: the vector's fast path
    return w


def _entry(rng: random.Random, base: int, bad: bool) -> tuple[int, int, int, int, int]:
    i = rng.randrange(N)
    n = rng.choice([1, 1, 1, 2, 5])
    pg = rng.randrange(4 * N)
    flags = MAP_NONBLOCK
    prot = 0
    if rng.random() < 0.3:
        flags |= MAP_CHGPROT
        prot = rng.choice([PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE])
    start, size = base + i * P, n * P
    if bad:
        kind = rng.randrange(4)
        if kind == 0:
            prot, flags = PROT_READ, MAP_NONBLOCK  # row 1
        elif kind == 1:
            size = 100  # row 3
        elif kind == 2:
            start, size = base + (N - 1) * P, 3 * P  # row 10
        else:
            pg = (1 << 46) - 1  # row 5
    return start, size, prot, pg, flags


def _table(w: Window) -> tuple[np.ndarray, ...]:
    """bits, pgoff and own prot of every PTE (frames differ: two mappings)."""
    vma = w.vmas[0]
    bits, _frame, pgoff, prot = vma.pt.lookup(vma.start_vpn, vma.end_vpn)
    return bits, pgoff, prot


def _load(w: Window, i: int) -> bytes | int:
    try:
        return w.pread(i * P, 1)
    except VmError as e:
        return e.errno


@pytest.mark.parametrize("seed", range(12))
def test_vector_equals_one_by_one(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    scalar_calls: list[int] = []
    each = fremap._remap_each
    monkeypatch.setattr(fremap, "_remap_each",
                        lambda mm, e: scalar_calls.append(len(e)) or each(mm, e))
    errors = 0
    arena = Arena(segment_bytes=1024 * P)
    try:
        prot = PROT_READ | PROT_WRITE if seed % 3 else PROT_READ
        a, b = _window(arena, prot), _window(arena, prot)
        for _round in range(6):
            touched = rng.sample(range(N), 10)
            for w in (a, b):  # some present PTEs for the remaps to replace
                for i in touched:
                    _load(w, i)
            bad_at = rng.randrange(40) if rng.random() < 0.5 else None
            ents = [_entry(rng, 0, k == bad_at) for k in range(30)]
            va = [(s + a.address, z, p, g, f) for s, z, p, g, f in ents]
            vb = [(s + b.address, z, p, g, f) for s, z, p, g, f in ents]
            done, err = a.mm.remap_file_pages_vec(va)
            seq_done, seq_err = len(vb), None
            for k, e in enumerate(vb):
                try:
                    b.mm.remap_file_pages(*e)
                except VmError as x:
                    seq_done, seq_err = k, x
                    break
            assert done == seq_done
            assert (err is None) == (seq_err is None)
            if err is not None:
                errors += 1
                assert err.errno == seq_err.errno  # type: ignore[union-attr]
            for x, y in zip(_table(a), _table(b), strict=True):
                assert (x == y).all()
            assert a.shown() == b.shown()
            assert [_load(a, i) for i in range(N)] == [_load(b, i) for i in range(N)]
        assert len(scalar_calls) < 6  # the vector path did the work (row 10 falls back)
        assert errors or seed not in (0, 1)  # seeds 0 and 1 do hit bad entries
    finally:
        arena.close()


def test_populate_and_linear_windows_take_the_scalar_path() -> None:
    arena = Arena(segment_bytes=256 * P)
    try:
        m = Mapping(arena, Budget())
        m.write(0, b"".join(bytes([i + 1]) * P for i in range(32)))
        w = Window(m, 8, ext=EXT)  # linear: the first entry converts it
        done, err = w.mm.remap_file_pages_vec(
            [(w.address, P, 0, 20, 0), (w.address + P, P, 0, 21, MAP_NONBLOCK)])
        assert (done, err) == (2, None)
        assert w.shown()[:3] == [20, 21, 2]
        assert w.pread(0, 1) == bytes([21]) and w.pread(P, 1) == bytes([22])
    finally:
        arena.close()
