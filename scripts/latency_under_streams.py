"""create+close latency percentiles while two 1 MiB streaming writers run
(issue 15's head-of-line workload; docs/performance.md, changes 13 and 23).

    .venv/bin/python scripts/latency_under_streams.py DIR [--seconds 5]
    .venv/bin/python scripts/latency_under_streams.py --targets shmfs,shmfs:readers=1,tmpfs \
        [--rounds 3] [--seconds 5] [--json FILE]

DIR is a directory on the filesystem under test (a shmfs mounted with any
options, a kernel tmpfs, or memfs_ll for reference). With ``--targets`` the
script mounts each target itself (the bench.py spelling: ``shmfs``,
``shmfs:OPT+OPT``, ``tmpfs``, ``dir:PATH``), all of them at once, and runs the
rounds interleaved (target order rotated each round), so that every target
sees the same machine; every mount is taken down at the end, also on errors.

Two writer processes rewrite 64 MiB files in 1 MiB write(2)s for the whole
run; this process creates and closes empty files in DIR/c (removed in batches
of 1,000, outside the timing) and prints the median, p90, p99 and max, with
the load average before and after.

``--trace DIR`` (with ``--targets``, root): where a create's time goes. The
kernel's ``fuse:fuse_request_send``/``fuse_request_end`` tracepoints are
recorded in a tracing instance of our own (``trace_clock=mono``) and every
shmfs daemon writes its request timeline (``SHMFS_REQTRACE``,
mount/server/reqtrace.py); joined on the request's unique, each request of
the creating process is split into: queued in the kernel while the daemon
read or handled a WRITE ("behind WRITE"), queued otherwise (wake-up, other
requests), the read(2), waiting for the fs lock, handling (of which off-CPU:
preempted or waiting for the GIL), and reply -> end. Means and p99 per part
are printed per target (docs/performance.md, change 24).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

_WRITER = """
import os, sys, time
buf = b"w" * (1 << 20)
t0 = time.time()
end = t0 + float(sys.argv[2])
done = 0
while time.time() < end:
    fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    for _ in range(64):
        done += os.write(fd, buf)
    os.close(fd)
print(done / (time.time() - t0) / 1e6)
"""


def _load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def measure(directory: str, seconds: float, streams: int = 2) -> dict[str, object]:
    """One run on ``directory``: creates timed while ``streams`` writers stream."""
    cdir = os.path.join(directory, "c")
    os.makedirs(cdir, exist_ok=True)
    load0 = _load()
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER,
                                 os.path.join(directory, f"stream{i}"), str(seconds + 0.5)],
                                stdout=subprocess.PIPE, text=True)
               for i in range(streams)]
    mbs = 0.0
    lat: list[int] = []
    try:
        if streams:
            time.sleep(0.3)  # let the streams start
        made: list[str] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            path = os.path.join(cdir, f"f{len(lat)}")
            t = time.perf_counter_ns()
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            lat.append(time.perf_counter_ns() - t)
            made.append(path)
            if len(made) == 1000:
                for q in made:
                    os.unlink(q)
                made.clear()
        for q in made:
            os.unlink(q)
    finally:
        for w in writers:
            out = w.communicate()[0].strip()
            mbs += float(out) if w.returncode == 0 and out else 0.0
    lat.sort()

    def pct(f: float) -> float:
        return lat[min(len(lat) - 1, int(f * len(lat)))] / 1000

    return {"creates": len(lat), "median_us": pct(0.5), "p90_us": pct(0.9),
            "p99_us": pct(0.99), "max_us": lat[-1] / 1000 if lat else 0.0,
            "load_before": load0, "load_after": _load(),
            "streams_mb_s": mbs}  # the writers' bytes per second, all streams together


def show(label: str, r: dict[str, object]) -> str:
    return (f"{label}: create+close x {r['creates']}: median {r['median_us']:.0f} us, "
            f"p90 {r['p90_us']:.0f}, p99 {r['p99_us']:.0f}, max {r['max_us']:.0f}; "
            f"streams {r['streams_mb_s']:.0f} MB/s; "
            f"load {r['load_before']} -> {r['load_after']}")


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", nargs="?")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--streams", type=int, default=2,
                   help="streaming writers (0: the same creates on a quiet filesystem)")
    p.add_argument("--targets", help="mount these (bench.py spelling) and compare them")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", default="4g", help="size= of the mounted targets")
    p.add_argument("--json", type=Path, help="write every round's figures here")
    p.add_argument("--trace", type=Path, metavar="DIR",
                   help="record where each request's time goes (root; files kept in DIR)")
    a = p.parse_args()
    if (a.dir is None) == (a.targets is None):
        p.error("give DIR or --targets")
    if a.dir is not None:
        print(show(a.dir, measure(a.dir, a.seconds, a.streams)), flush=True)
        return 0
    from benchlib.targets import Target, parse_targets

    spec = a.targets if "," in a.targets else a.targets + ",tmpfs"
    targets: list[Target] = parse_targets(spec, a.size)
    results: dict[str, list[dict[str, object]]] = {t.label: [] for t in targets}
    kernel = None
    traced: list[tuple[str, int, Path, Path]] = []  # label, connection, ktrace, daemon trace
    breakdowns: list[dict[str, object]] = []
    with contextlib.ExitStack() as stack:
        if a.trace is not None:
            from latencytrace import KernelTrace

            a.trace.mkdir(parents=True, exist_ok=True)
            kernel = KernelTrace()
            stack.callback(kernel.close)
        for t in targets:
            stack.callback(t.close)
            if kernel is not None and t.kind == "shmfs":
                os.environ["SHMFS_REQTRACE"] = str(a.trace / f"{_safe(t.label)}.jsonl")
            t.open()
            os.environ.pop("SHMFS_REQTRACE", None)
        for rnd in range(a.rounds):
            k = rnd % len(targets)
            for t in targets[k:] + targets[:k]:
                if kernel is not None:
                    kernel.start()
                r = measure(str(t.path), a.seconds, a.streams)
                if kernel is not None:
                    out = a.trace / f"{_safe(t.label)}-round{rnd + 1}.ktrace"
                    kernel.stop(out)
                    if t.kind == "shmfs":
                        traced.append((f"{t.label} round {rnd + 1}",
                                       os.minor(os.stat(t.path).st_dev), out,
                                       a.trace / f"{_safe(t.label)}.jsonl"))
                results[t.label].append(r)
                print(f"round {rnd + 1}: " + show(t.label, r), flush=True)
    if traced:
        from latencytrace import breakdown, parse_daemon, parse_kernel
        from latencytrace import show as show_breakdown

        for label, conn, ktrace, dtrace in traced:
            b = breakdown(parse_kernel(ktrace, conn), parse_daemon(dtrace), os.getpid())
            breakdowns.append({"label": label, **b})
            print(show_breakdown(label, b))
    print("\nsummary (median / p99 in us per round):")
    for label, rs in results.items():
        print(f"  {label:32} " + "  ".join(f"{r['median_us']:.0f}/{r['p99_us']:.0f}"
                                            for r in rs))
    if a.json:
        a.json.write_text(json.dumps({"rounds": results, "breakdown": breakdowns}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
