"""FUSE over io_uring against /dev/fuse, same run (docs/performance.md, change 14).

    sudo .venv/bin/python scripts/uring_ab.py [--rounds 6] [--ops 1000] [OPTS ...]

Mounts one fresh shmfs per OPTS (default: ``""`` and ``uring=on``, then the
same with ``cpu_latency=off``), all at once, and runs rounds of three
workloads on each in turn: create+close of new files, 4 KiB appends
(``dd bs=4k``-like) and a GETXATTR round trip (a miss: nothing caches it, so
every call reaches the daemon). Prints the median of the rounds with the
spread and the load average, and each mount's ring counters. Also times the
two transports' request layout and reply copy in process (``--micro``).

The fuse module's ``enable_uring`` parameter is turned on for the run and
restored afterwards (root); the daemon itself never changes it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mount.mounting.managed import managed_shmfs
from mount.server import uring_fuse as U
from mount.server.ops import OpsConfig
from mount.winapi.client import mount_stats
from mount.wire import protocol as P


def create_close(mnt: Path, tag: str, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        os.close(os.open(mnt / f"c{tag}_{i}", os.O_CREAT | os.O_WRONLY, 0o644))
    return (time.perf_counter() - t) / n * 1e6


def appends(mnt: Path, tag: str, n: int) -> float:
    fd = os.open(mnt / f"a{tag}", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    block = b"a" * 4096
    t = time.perf_counter()
    for _ in range(n):
        os.write(fd, block)
    dt = time.perf_counter() - t
    os.close(fd)
    return n * 4096 / dt / 1e6


def getxattr(mnt: Path, n: int) -> float:
    p = str(mnt / "x")
    t = time.perf_counter()
    for _ in range(n):
        try:
            os.getxattr(p, "user.missing")
        except OSError:
            pass
    return (time.perf_counter() - t) / n * 1e6


def micro() -> None:
    """The transports' own cost per request, without the kernel (no ring registered)."""
    sess = SimpleNamespace(ops=SimpleNamespace(config=OpsConfig()), fd=-1,
                           stats=SimpleNamespace(codec_errors=0))
    for backend in ("native", "python"):
        os.environ[U.BACKEND_ENV] = backend
        ring = U.FuseRing(sess, depth=1, max_depth=1, queues=1)  # type: ignore[arg-type]
        t = ring.t
        hdr = t.headers(0)
        hdr[0:40] = P.IN_HEADER.pack(56, P.Opcode.GETATTR, 77, 1, 0, 0, 0, 0, 0)
        U.ENT.pack_into(hdr, U.ENT_IN_OUT, 0, 77, 0, 0)
        reply = [P.OUT_HEADER.pack(120, 0, 77) + b"x" * 104]
        n = 20000
        t0 = time.perf_counter()
        for _ in range(n):
            t.request(0)
        t1 = time.perf_counter()
        k = 0
        while t.pending < 32:  # staged SQEs are never submitted here (no kernel side)
            t.commit(0, reply)
            k += 1
        t2 = time.perf_counter()
        print(f"{ring.backend:>6} transport: request layout {(t1 - t0) / n * 1e6:.2f} µs, "
              f"reply copy + SQE {(t2 - t1) / k * 1e6:.2f} µs")
        ring.close()
    os.environ.pop(U.BACKEND_ENV, None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("opts", nargs="*", help="-o options of each mount (\"\" for the default)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--ops", type=int, default=1000)
    ap.add_argument("--micro", action="store_true", help="only the in-process transport costs")
    a = ap.parse_args()
    if a.micro:
        micro()
        return 0
    labels = a.opts or ["", "uring=on", "cpu_latency=off", "uring=on,cpu_latency=off"]
    param = U.ENABLE_PARAM
    old = param.read_text().strip()
    param.write_text("Y")
    try:
        with contextlib.ExitStack() as st:
            mnts = [st.enter_context(managed_shmfs(o)).path for o in labels]
            for m in mnts:
                (m / "x").write_bytes(b"x")
            res: dict[str, dict[str, list[float]]] = {o: {} for o in labels}
            print("load before:", open("/proc/loadavg").read().strip())
            for r in range(a.rounds):
                order = list(zip(labels, mnts, strict=True))
                for o, m in order if r % 2 == 0 else order[::-1]:
                    row = res[o]
                    row.setdefault("create+close µs", []).append(create_close(m, str(r), a.ops))
                    row.setdefault("4k append MB/s", []).append(appends(m, str(r), a.ops * 2))
                    row.setdefault("getxattr µs", []).append(getxattr(m, a.ops * 3))
            for o, m in zip(labels, mnts, strict=True):
                cells = [f"{k} {statistics.median(v):7.1f} ({min(v):.1f}-{max(v):.1f})"
                         for k, v in res[o].items()]
                print(f"{o or 'default':26s} " + "  ".join(cells))
                ring = mount_stats(m)["session"]["uring"]
                if ring.get("active"):
                    print(f"{'':26s} ring: {ring}")
            print("load after:", open("/proc/loadavg").read().strip())
    finally:
        param.write_text(old)
    return 0


if __name__ == "__main__":
    sys.exit(main())
