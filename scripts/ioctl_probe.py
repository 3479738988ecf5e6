#!/usr/bin/env python3
"""Where an IOCTL's time goes (issues 12 and 15, docs/performance.md "Window IOCTLs and
window READ/WRITEs in the C loop").

Live (root: mounts a fresh shmfs, a 16-page window over a 256-page object, a child
mapping it): ``--kind`` IOCTLs one after another from this Python client, each timed,
and prints the round trip's distribution, the daemon's mean IOCTL service time
(``shmfs stat``), how many the C request loop answered itself and the window
engine's writer-thread figures (hand-off, write(2) of each message kind):

    sudo .venv/bin/python scripts/ioctl_probe.py --kind tcgets   # ENOTTY (fuse_floor's row)
    sudo .venv/bin/python scripts/ioctl_probe.py --kind remap    # populating REMAP
    sudo .venv/bin/python scripts/ioctl_probe.py --kind touch    # plain REMAP + a load (READ)
    SHMFS_CLOOP_IOCTL=0 sudo .venv/bin/python scripts/ioctl_probe.py ...   # the A/B

``--in-process`` instead times a TCGETS through ``Session._handle`` and each of its
pieces in this process (thread CPU time, reply to /dev/null, no kernel).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for _p in (str(REPO), str(REPO / "scripts")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

TCGETS = 0x5401
P = 4096


def live(kind: str, n: int) -> None:
    from mount.winapi.client import Window, mount_stats
    from tests.support.mounts import shmfs_mount
    from tests.windows.helpers import MapChild, make_object

    with shmfs_mount("") as mnt:
        obj = mnt / "obj"
        make_object(obj, 256)
        with Window.create(mnt / "win", obj, 16) as w, MapChild(mnt / "win", 16 * P):
            w.remap(0, 1, 40, populate=True)
            f = os.open(obj, os.O_RDWR)
            mm = w.mmap()
            try:
                with_errno = bytearray(64)
                try:  # the first IOCTL makes the window engine (in Python)
                    fcntl.ioctl(f, TCGETS, with_errno)
                except OSError:
                    pass
                shown = [q.pgoff for q in w.query(0, 16)]
                s0 = mount_stats(mnt)["session"]
                rng = random.Random(1)
                clock = time.perf_counter_ns
                lat = []
                for k in range(n):
                    i = k % 16
                    pg = rng.randrange(256)
                    while pg == shown[i]:
                        pg = rng.randrange(256)
                    t = clock()
                    if kind == "tcgets":
                        try:
                            fcntl.ioctl(f, TCGETS, with_errno)
                        except OSError:
                            pass
                    elif kind == "touch":
                        w.remap(i, 1, pg)
                        assert int.from_bytes(mm[i * P:i * P + 8], "little") == pg
                    else:
                        w.remap(i, 1, pg, populate=True)
                    lat.append(clock() - t)
                    shown[i] = pg
                s1 = mount_stats(mnt)["session"]
            finally:
                mm.close()
                os.close(f)
    r0, r1 = s0["requests"]["IOCTL"], s1["requests"]["IOCTL"]
    svc = (r1["total_ns"] - r0["total_ns"]) / (r1["count"] - r0["count"]) / 1000
    lat.sort()

    def q(p: float) -> float:
        return lat[int(p * (len(lat) - 1))] / 1000

    hp0, hp1 = s0["hotpath"], s1["hotpath"]
    print(f"{kind} SHMFS_CLOOP_IOCTL={os.environ.get('SHMFS_CLOOP_IOCTL', '1')} load "
          f"{open('/proc/loadavg').read().strip()}")
    print(f"  round trip: median {q(.5):.1f} µs, p10 {q(.1):.1f}, p90 {q(.9):.1f}, "
          f"p99 {q(.99):.1f}, mean {statistics.mean(lat) / 1000:.1f}")
    print(f"  IOCTL service time (daemon) mean {svc:.1f} µs; in the C loop: window "
          f"{hp1.get('cloop_window', 0) - hp0.get('cloop_window', 0)}, ENOTTY "
          f"{hp1.get('cloop_enotty', 0) - hp0.get('cloop_enotty', 0)}")
    wr = s1["winfast"].get("writer", {})
    if wr.get("handoffs"):
        hand = wr["handoff_ns"] / wr["handoffs"] / 1e3
        inval = wr["inval_write_ns"] / max(1, wr["inval_writes"]) / 1e3
        store = wr["store_write_ns"] / max(1, wr["store_writes"]) / 1e3
        rep = wr["reply_write_ns"] / wr["reply_writes"] / 1e3
        print(f"  writer thread: hand-off {hand:.1f} µs, write(2) INVAL {inval:.1f}, "
              f"STORE {store:.1f}, reply {rep:.1f}")


def in_process(n: int) -> None:
    import request_probe as rp

    from mount.wire.codec import parse_request, reply_error

    fs, s = rp._session(False)
    attr, fh = fs.create(1, b"f", 0o100644, os.O_RDWR, rp.CTX)
    msg = rp._msg(39, attr.ino, struct.pack("<QIIQII", fh, 0, TCGETS, 0, 0, 60))
    s._handle(msg)  # makes the window engine
    eng, hp = s._winfast, s._hotpath
    req = parse_request(msg)
    reply = [reply_error(7, 25)]

    def t(label: str, fn: Callable[[], object]) -> None:
        best = float("inf")
        for _ in range(3):
            t0 = time.thread_time_ns()
            for _ in range(n):
                fn()
            best = min(best, (time.thread_time_ns() - t0) / n / 1000)
        print(f"{label:48s} {best:6.2f} µs")

    print(f"TCGETS in process (thread CPU time, best of 3 x {n}), load "
          f"{open('/proc/loadavg').read().strip()}")
    t("Session._handle, whole (reply to /dev/null)", lambda: s._handle(msg))
    t("  the window engine's decline (Engine.remap)", lambda: eng.remap(msg))
    t("  Session._native around it (declines)", lambda: s._native(msg, 0))
    if hp is not None:
        t("  the hot engine's decline (Engine.handle)",
          lambda: hp.handle(msg, s._reply_fd, True, 0, {}))
    t("  ops.handle_fast (None)", lambda: s.ops.handle_fast(msg))
    t("  parse_request", lambda: parse_request(msg))
    t("  ops.handle (ENOTTY raised and answered)", lambda: s.ops.handle(req))
    t("  fs.drain_events", fs.drain_events)
    t("  os.writev of the reply", lambda: os.writev(s.fd, reply))
    t("Session._cloop_ok (the C loop's re-entry test)", lambda: s._cloop_ok(None, 0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=("tcgets", "remap", "touch"), default="remap")
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--in-process", action="store_true")
    a = p.parse_args()
    if a.in_process:
        in_process(a.n)
    else:
        live(a.kind, a.n)


if __name__ == "__main__":
    main()
