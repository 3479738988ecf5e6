"""Micro-benchmark of the vmcore data path (no FUSE): Mapping.write / Mapping.read
of 1 MiB requests, and the fault() call itself.

    .venv/bin/python scripts/vmcore_micro.py [--mib 256] [--repeat 5]

Reports GiB/s (best of --repeat passes) for:
  write-fresh   1 MiB writes into a new file (allocation + first touch of arena memory)
  write-over    1 MiB overwrites of resident pages
  read-views    1 MiB reads building memoryviews (no copy)
  read-hole     1 MiB reads of a hole (zero-frame views)
  read-copy     1 MiB reads joined into bytes (what a copying reply would cost)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vmcore import Arena, Budget, Mapping

MiB = 1 << 20


def bench(label: str, fn, nbytes: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    rate = nbytes / best / (1 << 30)
    print(f"{label:12s} {rate:8.2f} GiB/s  ({best / (nbytes // MiB) * 1e6:7.1f} us per MiB)")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256, help="file size in MiB")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.mib
    total = n * MiB
    data = memoryview(np.random.default_rng(0).integers(0, 256, MiB, dtype=np.uint8).tobytes())
    arena = Arena()
    budget = Budget()

    def write_fresh() -> None:
        m = Mapping(arena, budget)
        for i in range(n):
            m.write(i * MiB, data)
        m.release()

    bench("write-fresh", write_fresh, total, args.repeat)

    m = Mapping(arena, budget)
    for i in range(n):
        m.write(i * MiB, data)

    def write_over() -> None:
        for i in range(n):
            m.write(i * MiB, data)

    def read_views() -> None:
        for i in range(n):
            m.read(i * MiB, MiB)

    def read_copy() -> None:
        for i in range(n):
            b"".join(m.read(i * MiB, MiB))

    hole = Mapping(arena, budget)
    hole.truncate(total)

    def read_hole() -> None:
        for i in range(n):
            hole.read(i * MiB, MiB)

    bench("write-over", write_over, total, args.repeat)
    bench("read-views", read_views, total, args.repeat)
    bench("read-hole", read_hole, total, args.repeat)
    bench("read-copy", read_copy, total, args.repeat)
    m.release()
    st = arena.statistics()
    print(
        f"arena: {st['frames_in_use']} frames in use, {st['frames_returned']} returned, "
        f"arena resident {st['bytes_resident'] >> 20} MiB"
    )


if __name__ == "__main__":
    main()
