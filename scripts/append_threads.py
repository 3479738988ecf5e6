"""Where the daemon's CPU goes per appending WRITE, thread by thread (issue 15, appends2).

    .venv/bin/python scripts/append_threads.py [--rounds 3] [--count 40000] [--bs 4k,512]
                                               [--nice -20] CONFIG...

CONFIG is ``NAME=ENV,ENV...[@SHMFS]`` (``hold=`` for none, ``nohold=SHMFS_CLOOP_HOLD=0``,
``main=@/work/main/.venv/bin/shmfs`` for another checkout's daemon); the configurations
alternate within each round. For each: a fresh ``shmfs MNT -o size=4g`` of this checkout
(env items added to the daemon's environment), then per block size one ``dd bs=BS
count=N`` (N = --count, four times that for 512 B) into a new file (fresh frames) and one
after removing it (the frames the first freed). Per run it prints dd's MB/s and, per
WRITE, the CPU time of the request loop's thread and of the busiest other thread (the
populate-ahead thread; ``/proc/PID/task/TID/schedstat``: ns on CPU, exact, unlike
tick-sampled utime), the loop's voluntary context switches (sleeps: in poll(2) after the
spin, or waiting for the GIL) and the other thread's (its wake-ups) per 1,000 WRITEs, the
share of requests the loop read with the GIL kept (``cloop_gil_kept``) and of WRITEs that
used its WRITE cache (``write_cached``). CPU time per WRITE is the figure to compare under
other load; MB/s is the one the goal names. /proc/loadavg is printed with each mount.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHMFS = ROOT / ".venv" / "bin" / "shmfs"


def _threads(pid: int) -> dict[str, int]:
    """Thread roles by their Python names (py-spy is not needed: the request loop's
    thread is the one trio names, the populate thread is found by elimination)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        out.setdefault(comm, []).append(int(tid))  # type: ignore[attr-defined]
    return out  # type: ignore[return-value]


def _sample(pid: int, tid: int) -> tuple[int, int, int]:
    run_ns = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    vol = nvol = 0
    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            vol = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches"):
            nvol = int(line.split()[1])
    return run_ns, vol, nvol


def _stats(mnt: str) -> dict:
    r = subprocess.run([str(SHMFS), "stat", "--json", mnt], capture_output=True, text=True,
                       check=True)
    return json.loads(r.stdout)


def one(mnt: str, pid: int, loop: int, others: list[int], bs: str, count: int,
        nice: int) -> str:
    before = {t: _sample(pid, t) for t in [loop, *others]}
    hot0 = _stats(mnt)["session"]["hotpath"]
    r = subprocess.run(["nice", "-n", str(nice), "dd", "if=/dev/zero", f"of={mnt}/f",
                        f"bs={bs}", f"count={count}"], capture_output=True, text=True,
                       check=True)
    after = {t: _sample(pid, t) for t in [loop, *others]}
    hot1 = _stats(mnt)["session"]["hotpath"]
    os.unlink(f"{mnt}/f")
    words = r.stderr.strip().splitlines()[-1].split()
    mbs = float(words[-2]) * {"GB/s": 1000, "MB/s": 1, "kB/s": 0.001}[words[-1]]
    d = {t: [a - b for a, b in zip(after[t], before[t], strict=True)] for t in after}
    busiest = max(others, key=lambda t: d[t][0]) if others else None
    kept = hot1.get("cloop_gil_kept", 0) - hot0.get("cloop_gil_kept", 0)
    served = hot1["cloop_served"] - hot0["cloop_served"]
    out = (f"{mbs:7.1f} MB/s loop {d[loop][0] / count / 1000:5.2f}us "
           f"sleeps {d[loop][1] * 1000 / count:5.0f}/k")
    if busiest is not None:
        out += (f" | other {d[busiest][0] / count / 1000:5.2f}us wakes "
                f"{d[busiest][1] * 1000 / count:5.0f}/k")
    cached = hot1.get("write_cached", 0) - hot0.get("write_cached", 0)
    out += f" | kept {kept * 100 / max(served, 1):3.0f}% cached {cached * 100 / count:3.0f}%"
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("configs", nargs="+")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--count", type=int, default=40000)
    p.add_argument("--bs", default="4k,512")
    p.add_argument("--nice", type=int, default=0)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # unmount on the way out
    mnt = tempfile.mkdtemp(prefix="append_threads.")
    try:
        for rnd in range(1, args.rounds + 1):
            for cfg in args.configs:
                cfg, _, cmd = cfg.partition("@")
                name, _, envs = cfg.partition("=")
                env = dict(os.environ)
                for item in filter(None, envs.split(",")):
                    k, _, v = item.partition("=")
                    env[k] = v
                subprocess.run(["nice", "-n", str(args.nice), cmd or str(SHMFS), mnt, "-o",
                                "size=4g"], env=env, check=True)
                try:
                    pid = int(subprocess.run(["pgrep", "-f", f" {mnt}( |$)"],
                                             capture_output=True, text=True,
                                             check=True).stdout.split()[0])
                    time.sleep(0.2)  # the threads start
                    th = _threads(pid)
                    loops = [t for c, ts in th.items() if c.startswith("_request_loop")
                             for t in ts]
                    loop = loops[0]
                    others = [t for c, ts in th.items() if not c.startswith("_request_loop")
                              for t in ts if t != pid]
                    load = Path("/proc/loadavg").read_text().split()[:3]
                    for bs in args.bs.split(","):
                        n = args.count * (4 if bs == "512" else 1)
                        for what in ("fresh", "reuse"):
                            print(f"round {rnd} {name:8s} {bs:>3s} {what}: "
                                  f"{one(mnt, pid, loop, others, bs, n, args.nice)}"
                                  f" | load {' '.join(load)}", flush=True)
                finally:
                    subprocess.run(["umount", mnt], check=False)
    finally:
        os.rmdir(mnt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
