"""A/B of the first reader's loop in C (SHMFS_CLOOP; the spin, SHMFS_SPIN_US) on live mounts.

    sudo .venv/bin/python scripts/cloop_ab.py [--rounds R] [--n N] [--env NAME=VALUE ...]

Two default shmfs mounts, one daemon started with SHMFS_CLOOP=1 and one with =0
(``--env`` adds variables to both, e.g. SHMFS_SPIN_US=20), and short runs
alternating between them, so that the load of a shared machine falls on both
alike (the bench runs one target after the other, seconds apart). Per round and
mount: N O_DIRECT preads of 4 KiB at random pages of a 64 MiB file (one READ each),
N creates+close, N stats after dropping dentries (one LOOKUP each), N unlinks.
Prints µs per operation, the median of the rounds per mount, the loop's counters
and /proc/loadavg (docs/performance.md, issue 15, change 28).
"""

from __future__ import annotations

import argparse
import mmap
import os
import random
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mount.mounting.managed import managed_shmfs
from mount.winapi.client import mount_stats

PAGE = 4096
FILE_PAGES = 16384  # 64 MiB


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _drop(what: int) -> None:
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write(str(what))


def randread(mnt: Path, n: int, rng: random.Random) -> float:
    buf = mmap.mmap(-1, PAGE)
    fd = os.open(mnt / "data", os.O_RDONLY | os.O_DIRECT)
    offs = [rng.randrange(FILE_PAGES) * PAGE for _ in range(n)]
    try:
        t0 = time.perf_counter_ns()
        for off in offs:
            os.preadv(fd, [buf], off)
        return (time.perf_counter_ns() - t0) / n / 1000
    finally:
        os.close(fd)


def meta(mnt: Path, n: int, r: int) -> tuple[float, float, float]:
    d = mnt / f"d{r}"
    d.mkdir()
    names = [str(d / f"f{i}") for i in range(n)]
    t0 = time.perf_counter_ns()
    for p in names:
        os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
    t1 = time.perf_counter_ns()
    _drop(2)
    t2 = time.perf_counter_ns()
    for p in names:
        os.stat(p)
    t3 = time.perf_counter_ns()
    for p in names:
        os.unlink(p)
    t4 = time.perf_counter_ns()
    d.rmdir()
    return (t1 - t0) / n / 1000, (t3 - t2) / n / 1000, (t4 - t3) / n / 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for both daemons")
    p.add_argument("--modes", default="1,0",
                   help="SHMFS_CLOOP values, one mount each; 1@20: with SHMFS_SPIN_US=20")
    args = p.parse_args()
    for kv in args.env:
        k, v = kv.split("=", 1)
        os.environ[k] = v
    modes = args.modes.split(",")
    rows: dict[str, dict[str, list[float]]] = {m: {} for m in modes}
    print(f"load {_load()}  env {args.env}")
    with ExitStack() as stack:
        mnts = {}
        for m in modes:
            os.environ["SHMFS_CLOOP"], _, spin = m.partition("@")
            if spin:
                os.environ["SHMFS_SPIN_US"] = spin
            mnts[m] = stack.enter_context(managed_shmfs("size=1g")).path
            with open(mnts[m] / "data", "wb") as f:
                f.write(os.urandom(PAGE) * FILE_PAGES)
        rng = random.Random(1)
        for r in range(args.rounds):
            order = modes if r % 2 == 0 else modes[::-1]
            for m in order:
                _drop(1)
                res = {"read": randread(mnts[m], args.n, rng)}
                res["create"], res["stat"], res["unlink"] = meta(mnts[m], args.n // 2, r)
                for k, v in res.items():
                    rows[m].setdefault(k, []).append(v)
                print(f"round {r + 1} SHMFS_CLOOP={m}: " + "  ".join(
                    f"{k} {v:6.2f}" for k, v in res.items()) + f"   load {_load()}", flush=True)
        for m in modes:
            hot = mount_stats(mnts[m])["session"]["hotpath"]
            print(f"SHMFS_CLOOP={m} median: " + "  ".join(
                f"{k} {statistics.median(v):6.2f}" for k, v in rows[m].items())
                + f"   (loop served {hot.get('cloop_served')}, returned"
                  f" {hot.get('cloop_returned')})")
    print(f"load {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
