"""CPU time of the C loop (``Engine.serve``, native/hotloop.c) per appending WRITE, in
process and without the kernel's FUSE (issue 15, appends2: docs/performance.md change 33).

    .venv/bin/python scripts/serve_probe.py [--n 12000] [--rounds 3] [--kinds append4k,append512]

Each round, for each mode, runs a fresh interpreter (the modes are environment switches
read when ``_hotpath`` is imported): ``hold`` (the default), ``nohold``
(``SHMFS_CLOOP_HOLD=0``), ``nodefer`` (``SHMFS_WC_DEFER=0``: change 38 off) and, with
``SHMFS_TREE_B=/path/to/checkout``, that checkout's engine (``base``). The child builds
a session as scripts/request_probe.py does (populate-ahead and the arena's reserve on,
as the daemon), queues N WRITEs appending to one file in a SOCK_SEQPACKET socketpair
(buffers enlarged with SO_SNDBUFFORCE / SO_RCVBUFFORCE, root only, so that all of them
fit), then times one ``Engine.serve`` over them -- the reads, the engine, the replies'
writes to the socket, the counters -- with this thread's CPU time, and prints µs per
WRITE with the loop's counters. This is the dd ping-pong's case where the next WRITE is
already queued when the loop reads (72-98 % of them in the live runs of change 33),
without dd, the kernel's FUSE and the other engineers' load in the figure."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(kind: str, n: int) -> None:
    tree = Path(os.environ.get("SHMFS_TREE") or HERE.parent)
    os.environ["SHMFS_TREE"] = str(tree)
    sys.path.insert(0, str(tree / "scripts"))
    import request_probe as rp  # its SHMFS_TREE puts that tree first on sys.path

    s, msgs = rp.build(kind, n, False)
    threshold0 = getattr(rp.session_mod, "GC_THRESHOLD0", None)
    if threshold0:  # what Session.serve does in the daemon (appends3: was missing here)
        import gc

        gc.freeze()
        gc.set_threshold(threshold0, *gc.get_threshold()[1:])
    hp = s._hotpath
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sk in (a, b):
        for opt in (33, 32):  # SO_RCVBUFFORCE, SO_SNDBUFFORCE
            sk.setsockopt(socket.SOL_SOCKET, opt, 256 << 20)
    for m in msgs:
        b.send(m)
    a.setblocking(False)
    buf = bytearray(1 << 21)
    req = s.stats.requests
    t = time.thread_time_ns()
    served = 0
    while served < n:
        code, *_ = hp.serve(a.fileno(), buf, time.perf_counter_ns(), 0, None, req)
        if code != 0:
            raise SystemExit(f"serve returned {code}")
        served = hp.statistics()["write"]
    dt = time.thread_time_ns() - t
    st = hp.statistics()
    print(json.dumps({"us": dt / n / 1000, "kept": st.get("cloop_gil_kept", 0),
                      "cached": st.get("write_cached", 0), "served": st["cloop_served"]}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=12000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kinds", default="append4k,append512")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.n)
        return 0
    modes = [("hold", {}), ("nohold", {"SHMFS_CLOOP_HOLD": "0"}),
             ("nodefer", {"SHMFS_WC_DEFER": "0"})]  # appends3's off-switch
    if os.environ.get("SHMFS_TREE_B"):
        modes.append(("base", {"SHMFS_TREE": os.environ["SHMFS_TREE_B"]}))
    print("load", Path("/proc/loadavg").read_text().strip())
    for kind in args.kinds.split(","):
        res: dict[str, list[float]] = {m: [] for m, _ in modes}
        for _ in range(args.rounds):
            for name, env in modes:
                r = subprocess.run([sys.executable, __file__, "--child", kind, "--n",
                                    str(args.n)], env={**os.environ, **env},
                                   capture_output=True, text=True, check=True)
                out = json.loads(r.stdout.strip().splitlines()[-1])
                res[name].append(out["us"])
                print(f"  {kind} {name:6s} {out['us']:6.2f} us/WRITE  kept {out['kept']} "
                      f"cached {out['cached']} served {out['served']}", flush=True)
        print(kind, "  ".join(f"{m} min {min(v):.2f} med {sorted(v)[len(v) // 2]:.2f}"
                              for m, v in res.items()))
    print("load", Path("/proc/loadavg").read_text().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
