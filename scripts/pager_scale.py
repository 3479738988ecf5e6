#!/usr/bin/env python3
"""Scale figures of the pager (docs/pager.md quotes the output).

    .venv/bin/python scripts/pager_scale.py            # everything
    .venv/bin/python scripts/pager_scale.py --quick    # smaller sizes, for a smoke run

1. A 2^40-byte sparse object, a 1 GiB window over it remapped page by page in
   reverse: memory of the page tables (and of the whole process, by
   tracemalloc) against the window's 262144 pages.
2. 1,000,000 single-page remaps in one window: remaps per second (the 4.0+
   kernel emulation fails near 65,530 of them at vm.max_map_count).
3. unmap_mapping_range over an object with N nonlinear windows (N up to 2000),
   every window page present: cost per window page, which stays flat as N
   grows (linear, not quadratic); and the same with N one-page linear windows,
   where the interval index makes a one-page truncate independent of N.
"""

from __future__ import annotations

import argparse
import random
import resource
import time
import tracemalloc

from vmcore import PAGE_SHIFT, PAGE_SIZE, Arena, Budget, Mapping
from vmcore.mm import Mm
from vmcore.vma import MAP_NONBLOCK, MAP_SHARED, PROT_READ, PROT_WRITE

RW = PROT_READ | PROT_WRITE


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def sparse_window(window_pages: int) -> None:
    arena = Arena()
    m = Mapping(arena, Budget())
    m.truncate(1 << 40)
    top = (1 << 40) >> PAGE_SHIFT
    mm = Mm()
    tracemalloc.start()
    base_mem = tracemalloc.get_traced_memory()[0]
    a = mm.mmap(m, window_pages << PAGE_SHIFT, RW, MAP_SHARED)
    whole = mm.mmap(m, 1 << 40, PROT_READ, MAP_SHARED)  # the whole object, untouched
    t = time.perf_counter()
    for i in range(window_pages):
        mm.remap_file_pages(a + (i << PAGE_SHIFT), PAGE_SIZE, 0, top - 1 - i, MAP_NONBLOCK)
    dt = time.perf_counter() - t
    st = mm.statistics()
    used = tracemalloc.get_traced_memory()[0] - base_mem
    tracemalloc.stop()
    resident = m.nrpages
    # spot-check: the window shows the object's top pages in reverse
    mm.store(a, b"top")
    assert m.read_bytes((top - 1) << PAGE_SHIFT, 3) == b"top"
    assert mm.shown(a + ((window_pages - 1) << PAGE_SHIFT), 1) == [top - window_pages]
    wv = mm.vma_at(a)
    hv = mm.vma_at(whole)
    assert wv is not None and hv is not None
    print("1. sparse 2^40-byte object, window of", window_pages, "pages remapped in reverse")
    print(
        f"   remap time            {dt:.2f} s ({window_pages / dt:,.0f} remaps/s under tracemalloc)"
    )
    print(
        f"   window page tables    {mib(wv.pt.nbytes)} = {wv.pt.nbytes / window_pages:.1f} "
        f"bytes per window page ({wv.pt.nchunks} chunks of 512)"
    )
    print(f"   1 TiB linear vma      {hv.pt.nbytes} bytes of page tables (nothing touched)")
    print(f"   python heap growth    {mib(used)} (tracemalloc, incl. page tables)")
    print(f"   object pages resident {resident} (file PTEs hold no pages)")
    print(f"   vmas                  {st['vmas']} (no VMA per remap)")
    mm.exit_mmap()
    arena.close()


def many_remaps(n: int) -> None:
    arena = Arena()
    m = Mapping(arena, Budget())
    m.truncate(1 << 40)
    mm = Mm()
    a = mm.mmap(m, n << PAGE_SHIFT, RW, MAP_SHARED)
    rng = random.Random(1)
    targets = [rng.randrange(1 << 28) for _ in range(n)]
    t = time.perf_counter()
    for i in range(n):
        mm.remap_file_pages(a + (i << PAGE_SHIFT), PAGE_SIZE, 0, targets[i], MAP_NONBLOCK)
    dt = time.perf_counter() - t
    assert mm.map_count == 1
    print(f"2. {n:,} single-page remaps (MAP_NONBLOCK) in one window")
    print(
        f"   {dt:.2f} s, {n / dt:,.0f} remaps/s, still {mm.map_count} vma, "
        f"page tables {mib(mm.statistics()['pte_bytes'])}"
    )
    mm.exit_mmap()
    arena.close()


def invalidation(windows: list[int], pages: int) -> None:
    print(f"3. unmap_mapping_range (truncate to 0) over N nonlinear windows of {pages} pages,")
    print("   each showing a permutation of the object's pages, every PTE present")
    warm = False
    print("       N   window pages   zapped     time   ns/window page")
    for n in [windows[0], *windows]:  # the first run warms up (not printed)
        arena = Arena()
        m = Mapping(arena, Budget())
        m.write(0, bytes(pages * PAGE_SIZE))
        mm = Mm()
        rng = random.Random(n)
        for _ in range(n):
            a = mm.mmap(m, pages * PAGE_SIZE, PROT_READ, MAP_SHARED)
            perm = list(range(pages))
            rng.shuffle(perm)
            for i, pg in enumerate(perm):  # prefaulted through fault()
                mm.remap_file_pages(a + i * PAGE_SIZE, PAGE_SIZE, 0, pg, 0)
            mm.load(a, pages * PAGE_SIZE)  # pages left at their linear position (row 11)
        total = n * pages
        assert mm.statistics()["resident_pages"] == total
        t = time.perf_counter()
        m.truncate(0)
        dt = time.perf_counter() - t
        zapped = m.rmap.statistics()["ptes_zapped"]
        assert mm.statistics()["resident_pages"] == 0
        if warm:
            print(
                f"   {n:5d}   {total:12,d}   {zapped:7,d}   {dt * 1e3:6.1f} ms   "
                f"{dt / total * 1e9:8.0f}"
            )
        warm = True
        mm.exit_mmap()
        arena.close()
    print("   linear: N one-page windows at distinct pgoffs, truncate the last page")
    print("       N   vmas visited     time")
    for n in windows:
        arena = Arena()
        m = Mapping(arena, Budget())
        m.write(0, bytes(n * PAGE_SIZE))
        mm = Mm()
        for i in range(n):
            a = mm.mmap(m, PAGE_SIZE, PROT_READ, MAP_SHARED, n - 1 - i)
            mm.load(a, 1)
        before = m.rmap.statistics()["vmas_visited"]
        t = time.perf_counter()
        m.truncate((n - 1) * PAGE_SIZE)
        dt = time.perf_counter() - t
        visited = m.rmap.statistics()["vmas_visited"] - before
        print(f"   {n:5d}   {visited:12d}   {dt * 1e6:6.0f} us")
        mm.exit_mmap()
        arena.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = ap.parse_args()
    if args.quick:
        sparse_window(1 << 12)
        many_remaps(20_000)
        invalidation([50, 100, 200], 32)
    else:
        sparse_window(1 << 18)
        many_remaps(1_000_000)
        invalidation([250, 500, 1000, 2000], 64)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS of this run: {rss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
