"""create+close, open+close and unlink loops on a fresh shmfs mount, with the daemon's
own service time per opcode (``shmfs stat``'s session.requests, differenced around
each loop) next to the wall time per operation.

    .venv/bin/python scripts/meta_service_probe.py [--n 3000] [--options size=1g]
    SHMFS_HOTPATH=0 .venv/bin/python scripts/meta_service_probe.py   # the Python path

Why: the bench's create and unlink rows are round trips, dominated on a loaded
machine by the scheduler; the service times show what the daemon itself spends on
each request (docs/performance.md change 25). The hot path's counters of the
requests it took are printed too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mount.winapi.client import mount_stats
from tests.support.mounts import shmfs_mount


def _requests(mnt: Path) -> dict[str, tuple[int, int]]:
    reqs = mount_stats(mnt)["session"]["requests"]
    return {k: (v["count"], v["total_ns"]) for k, v in reqs.items()}


def _diff(a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]]) -> str:
    parts = []
    for k, (n, ns) in sorted(b.items()):
        n0, ns0 = a.get(k, (0, 0))
        if n - n0 and k != "IOCTL":  # the STATS ioctl itself
            parts.append(f"{k} {(ns - ns0) / (n - n0) / 1000:.1f}")
    return ", ".join(parts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--options", default="size=1g")
    args = p.parse_args()
    print("load", open("/proc/loadavg").read().split()[:3],
          "SHMFS_HOTPATH", os.environ.get("SHMFS_HOTPATH", "1"))
    with shmfs_mount(args.options) as mnt:
        d = mnt / "d"
        d.mkdir()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        loops: list[tuple[str, Callable[[int], None]]] = [
            ("create+close", lambda i: os.close(os.open(d / f"f{i}", flags, 0o644))),
            ("open+close", lambda i: os.close(os.open(d / f"f{i}", os.O_RDONLY))),
            ("unlink", lambda i: os.unlink(d / f"f{i}")),
        ]
        for label, fn in loops:
            before = _requests(mnt)
            t = time.perf_counter()
            for i in range(args.n):
                fn(i)
            dt = (time.perf_counter() - t) / args.n * 1e6
            print(f"{label:13s} {dt:7.1f} µs/op; daemon µs: {_diff(before, _requests(mnt))}")
        hot = mount_stats(mnt)["session"]["hotpath"]
        kinds = ("lookup_miss", "open", "release", "create", "unlink", "forget", "declined")
        print("hotpath", {k: hot.get(k) for k in kinds})
    print("load", open("/proc/loadavg").read().split()[:3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
