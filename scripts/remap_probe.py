"""The C engine's share of one remap-then-touch step, in process (issue 12, winstep).

Builds a filesystem as scripts/window_bench.py's stream sees it (a 4096-page window
over an object of data pages, every window page already remapped once and cached)
and times ``Engine.remap`` of random one-page populating REMAPs, the writer thread
writing the batches to /dev/null: the reader's CPU per REMAP (thread CPU time) and
its wall time, and the engine's own counters (the writer's hand-off and writes; the
early queueing's seal time).  ``--perf`` prints the pid and waits for Enter first,
so that ``perf record --call-graph dwarf -p PID`` can be attached.

    .venv/bin/python scripts/remap_probe.py --n 50000
    SHMFS_WINFAST_EARLY=0 .venv/bin/python scripts/remap_probe.py --n 50000
    SHMFS_WINLEAN=0 .venv/bin/python scripts/remap_probe.py --n 50000
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import struct
import time

from fsimpl import Ctx, FsOptions, ShmFs
from fsimpl.windows import windows_of
from mount.server import winfast
from mount.server.ops import Operations
from mount.wire import protocol as P
from mount.wire.codec import parse_request

PAGE = 4096
ROOT = Ctx(0, 0, 1)
REMAP_CMD = 0x40205302
POPULATE = 0x8000


def build(win_pages: int, obj_pages: int) -> tuple[ShmFs, int, int, Operations]:
    """A filesystem with the object (every page data) and a window over it."""
    fs = ShmFs(FsOptions(size_bytes=1 << 31), clock=itertools.count(1).__next__)
    a, ofh = fs.create(1, b"obj", 0o644, os.O_RDWR, ROOT)
    chunk = b"".join(struct.pack("<Q", p) * 512 for p in range(256))
    for off in range(0, obj_pages, 256):
        fs.write(a.ino, ofh, off * PAGE, memoryview(chunk))
    t = windows_of(fs)
    w, wfh = fs.create(1, b"win", 0o600, os.O_RDWR, ROOT)
    t.attach(w.ino, wfh, ROOT, t.grant(a.ino, ofh, ROOT, 3), win_pages * PAGE, 0, 3)
    fs.drain_events()
    return fs, w.ino, wfh, Operations(fs)


def msg(unique: int, ino: int, fh: int, page: int, pgoff: int) -> bytes:
    """A FUSE_IOCTL REMAP of one window page, populating."""
    body = P.IOCTL_IN.pack(fh, 0, REMAP_CMD, 0, 32, 0)
    body += struct.pack("<QQQII", page * PAGE, PAGE, pgoff, 0, POPULATE)
    hdr = P.IN_HEADER.pack(P.IN_HEADER.size + len(body), P.Opcode.IOCTL, unique, ino,
                           0, 0, 0, 0, 0)
    return hdr + body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--win-pages", type=int, default=4096)
    ap.add_argument("--obj-pages", type=int, default=16384)
    ap.add_argument("--perf", action="store_true")
    a = ap.parse_args()
    fs, ino, fh, ops = build(a.win_pages, a.obj_pages)
    null = os.open("/dev/null", os.O_WRONLY)
    eng = winfast.engine(null, fs, {})
    assert eng is not None, "the C extension is not built"
    fs.store_queued = eng.store_queued
    rng = random.Random(12)
    unique = 10
    # the first remap (Python: makes the VMA nonlinear), then every page once, cached
    for page in range(a.win_pages):
        unique += 1
        m = msg(unique, ino, fh, page, rng.randrange(a.obj_pages))
        if eng.remap(m) is None:
            ops.handle(parse_request(m))
            fs.drain_events()
    eng.wait_idle()
    plan = [msg(unique + 1 + i, ino, fh, rng.randrange(a.win_pages),
                rng.randrange(a.obj_pages)) for i in range(a.n)]
    if a.perf:
        input(f"pid {os.getpid()}: attach perf, then Enter ")
    before = eng.statistics()
    c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
    declined = 0
    for m in plan:
        if eng.remap(m) is None:
            declined += 1
    c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
    eng.wait_idle()
    st = eng.statistics()
    eng.close()
    n = a.n
    wr, e = st["writer"], st["early"]
    hand = (wr["handoff_ns"] - before["writer"]["handoff_ns"]) / max(
        1, wr["handoffs"] - before["writer"]["handoffs"])
    print(f"load {open('/proc/loadavg').read().split()[0]}  early={e['enabled']}  "
          f"{n} remaps, {declined} declined")
    print(f"  reader CPU per remap {(c1 - c0) / n / 1e3:.2f} us, wall {(w1 - w0) / n / 1e3:.2f}"
          f" us; engine remap_ns {e['remap_ns'] / max(1, e['remaps']) / 1e3:.2f} us")
    print(f"  writer hand-off {hand / 1e3:.2f} us; early batches {e['batches']}, "
          f"seal {e['seal_ns'] / max(1, e['batches']) / 1e3:.2f} us, "
          f"writer waits {e['spins']} (slept {e['sleeps']})")
    lean = st.get("lean")
    if lean is not None:  # winlean: SHMFS_WINLEAN=0 turns it off
        print(f"  lean={lean['enabled']}: exports {lean['exports']}, reuses {lean['reuses']},"
              f" slot lookups {lean['slot_lookups']}")


if __name__ == "__main__":
    main()
