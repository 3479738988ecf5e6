"""In-process cost of one WRITE request (no kernel): Operations.handle_fast (or,
with --generic, parse_request + Operations.handle) + drain_events on a real
ShmFs, appending vs overwriting.

    .venv/bin/python scripts/write_path_probe.py [--bs 4096] [--n 20000] [--generic] [--profile]

The figure issue 15 asked about: an appending WRITE allocates one page per
request (docs/performance.md, change 10). Populate-ahead is on, as in the daemon.
Prints µs per request (3 rounds each); --profile prints cProfile's top entries
of the append loop instead.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fsimpl import FsOptions, ShmFs
from fsimpl.types import Ctx
from mount.server.ops import Operations, OpsConfig
from mount.wire.codec import parse_request

CTX = Ctx(0, 0, 1, 0o022)
WRITE = 16


def _setup() -> tuple[ShmFs, Operations, int, int]:
    fs = ShmFs(FsOptions(size_bytes=8 << 30, nr_inodes=1000, mode=0o1777, uid=0, gid=0))
    fs._backing.arena.start_populate_ahead(8 << 20)  # as the session does
    attr, fh = fs.create(1, b"f", 0o100644, os.O_WRONLY, CTX)
    return fs, Operations(fs, OpsConfig()), attr.ino, fh


def _messages(ino: int, fh: int, n: int, bs: int, overwrite: bool) -> list[memoryview]:
    data = b"x" * bs
    out = []
    for i in range(n):
        off = (i % 16) * bs if overwrite else i * bs
        body = struct.pack("<QQIIQII", fh, off, bs, 0, 0, os.O_WRONLY, 0) + data
        hdr = struct.pack("<IIQQIIIHH", 40 + len(body), WRITE, 7, ino, 0, 0, 1, 0, 0)
        out.append(memoryview(hdr + body))
    return out


def _serve(ops: Operations, m: memoryview, generic: bool) -> None:
    """What the session does with one message (mount/server/session.py)."""
    if generic or ops.handle_fast(m) is None:
        ops.handle(parse_request(m))


def run(bs: int, n: int, overwrite: bool, profile: bool = False, generic: bool = False) -> float:
    fs, ops, ino, fh = _setup()
    msgs = _messages(ino, fh, n, bs, overwrite)
    if overwrite:  # make the pages resident first
        for m in msgs[:16]:
            ops.handle(parse_request(m))
            fs.drain_events()
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    t = time.perf_counter()
    for m in msgs:
        _serve(ops, m, generic)
        fs.drain_events()
    dt = time.perf_counter() - t
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    return dt / n * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bs", type=int, default=4096)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--generic", action="store_true", help="parse_request + handle only")
    a = p.parse_args()
    if a.profile:
        run(a.bs, a.n, False, profile=True, generic=a.generic)
    else:
        for _ in range(3):
            print(f"bs={a.bs}: append {run(a.bs, a.n, False, generic=a.generic):.2f} us, "
                  f"overwrite {run(a.bs, a.n, True, generic=a.generic):.2f} us")
    print("load", open("/proc/loadavg").read().split()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
