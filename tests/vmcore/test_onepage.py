"""Mapping.read/write inside one page (fault.read1 / fault.write1, the 4 KiB and
512-byte request path) against the general fault() path: the same bytes, errors,
i_size, page flags, frames, page-cache generation, charge and fault counters,
for holes, fallocated (!UPTODATE) pages, shared (copy-on-write) frames and ENOSPC."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import vmcore.mapping as mapping_mod
from vmcore import PAGE_SIZE, Arena, Budget, FaultFlags, Mapping, VmFault, fault
from vmcore.errors import NoSpace

PAGES = 6


def _general_read1(m: Mapping, pgoff: int) -> int:
    vmf = VmFault(FaultFlags(0), pgoff)
    fault(m, vmf)
    return int(vmf.frames[0])


def _general_write1(m: Mapping, pgoff: int) -> int:
    return -2  # "take the general path" (Mapping.write)


OPS = st.lists(st.tuples(st.sampled_from(["write", "read", "falloc", "punch", "share"]),
                         st.integers(0, PAGES * PAGE_SIZE), st.integers(0, 5000)),
               max_size=25)


def _run(steps: list[tuple[str, int, int]], general: bool) -> list[object]:
    saved = mapping_mod.read1, mapping_mod.write1
    if general:
        mapping_mod.read1, mapping_mod.write1 = _general_read1, _general_write1
    arena = Arena(segment_bytes=512 * PAGE_SIZE)
    try:
        budget = Budget(PAGES + 2)  # small: appends run into ENOSPC
        m = Mapping(arena, budget)
        src = Mapping(arena, budget)
        src.write(0, b"s" * (2 * PAGE_SIZE))
        seen: list[object] = []
        for i, (op, off, n) in enumerate(steps):
            try:
                if op == "write":
                    seen.append(m.write(off, bytes([65 + i % 26]) * n))
                elif op == "read":
                    seen.append(b"".join(bytes(v) for v in m.read(off, n)))
                elif op == "falloc":
                    m.fallocate(off, max(n, 1), keep_size=bool(n & 1))
                elif op == "punch":
                    m.punch_hole(off, max(n, 1))
                else:  # whole pages shared copy-on-write with src
                    seen.append(m.copy_from(src, 0, off & ~(PAGE_SIZE - 1), PAGE_SIZE))
            except NoSpace as e:
                seen.append(("ENOSPC", e.errno))
            frames, flags = m.pages.lookup(0, PAGES + 2)
            seen.append((m.size, frames.tolist(), flags.tolist(), m.pages.gen,
                         m.pages.nrpages, budget.used_pages, m.fstats.as_dict()))
        return seen
    finally:
        mapping_mod.read1, mapping_mod.write1 = saved
        arena.close()


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_one_page_paths_agree_with_fault(steps: list[tuple[str, int, int]]) -> None:
    assert _run(steps, general=False) == _run(steps, general=True)


def test_the_fixed_cases_agree_and_take_the_one_page_paths() -> None:
    steps = [("read", 0, 100), ("falloc", 0, 2 * PAGE_SIZE), ("read", 10, 100),
             ("write", 5, 10), ("write", 3 * PAGE_SIZE, 4096), ("read", 3 * PAGE_SIZE, 4096),
             ("share", PAGE_SIZE, 0), ("write", PAGE_SIZE + 7, 9), ("read", PAGE_SIZE, 20),
             ("write", 2 * PAGE_SIZE, 5000)] + [("write", k * PAGE_SIZE, 4096)
                                               for k in range(PAGES + 3)]
    fast = _run(steps, general=False)
    assert fast == _run(steps, general=True)
    assert ("ENOSPC", 28) in fast  # the budget ran out on one of the appends
    # the one-page functions are what Mapping uses, and they serve these
    calls = {"read1": 0, "write1": 0}
    real = mapping_mod.read1, mapping_mod.write1

    def r1(m: Mapping, pgoff: int) -> int:
        calls["read1"] += 1
        return real[0](m, pgoff)

    def w1(m: Mapping, pgoff: int) -> int:
        calls["write1"] += 1
        return real[1](m, pgoff)

    mapping_mod.read1, mapping_mod.write1 = r1, w1
    arena = Arena(segment_bytes=512 * PAGE_SIZE)
    try:
        m = Mapping(arena, Budget(0))
        m.write(0, b"x" * 4096)
        assert bytes(m.read(0, 4096)[0]) == b"x" * 4096
        assert np.array_equal(m.pages.lookup(0, 1)[0] > 0, [True])
    finally:
        mapping_mod.read1, mapping_mod.write1 = real
        arena.close()
    assert calls == {"read1": 1, "write1": 1}
