#!/usr/bin/env python3
"""Benchmark shmfs side by side with a kernel tmpfs (issues 2 and 6).

Mounts a fresh filesystem for each target (default: shmfs, then kernel tmpfs),
runs every workload on both -- interleaved, one workload at a time -- prints a
table with ratios, the floors with met / not met, and how costs grow with file
and directory size, and writes JSON plus a PNG chart. Whatever was mounted is
unmounted on success, error, Ctrl-C or SIGTERM.

    sudo .venv/bin/python scripts/bench.py                 # full run, shmfs vs tmpfs
    sudo .venv/bin/python scripts/bench.py --quick         # a short run
    sudo .venv/bin/python scripts/bench.py --targets tmpfs,tmpfs --quick
    sudo .venv/bin/python scripts/bench.py --targets shmfs,shmfs:cpu_latency=off --quick
    .venv/bin/python scripts/bench.py --targets dir:/tmp/a,dir:/tmp/b --quick
    .venv/bin/python scripts/bench.py --from-json RESULTS.json --check-floors  # exit 1: missed

See docs/benchmarks.md for what each workload measures and what "cold" means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import signal
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import chart, report
from benchlib.engine import CEngine, make_engine
from benchlib.targets import Target, parse_targets
from benchlib.workloads import Config, Result, Runner

from mount.mounting.kernel import abort_connection

DEFAULT_OUT = Path("/tmp/shmfs-bench-results")
# units that allocate file data: the guest-memory warm-up runs right before each
DATA_UNITS = {"seq_1m", "seq_128k", "rand_4k", "rand_4k_smallfile", "mmap_first_touch",
              "uml_boot", "daemon_rss"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="shmfs,tmpfs",
                   help="SUBJECT,REFERENCE: each shmfs, shmfs:OPT+OPT (extra -o options), "
                        "tmpfs or dir:PATH (default shmfs,tmpfs)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and counts (64 MiB files, 2,000 entries): seconds")
    p.add_argument("--engine", choices=["auto", "c", "python"], default="auto",
                   help="inner loops in a gcc-compiled helper or in Python (auto: C if gcc)")
    p.add_argument("--only", default="", help="comma-separated workload units to run")
    p.add_argument("--skip", default="", help="comma-separated workload units to skip")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each workload N times per target (order alternating), report the "
                        "median (default 1)")
    p.add_argument("--warmup", default="auto",
                   help="MiB of anonymous memory to touch (and free) before each data workload, "
                        "so a VM's first-touch cost of guest RAM does not land on one target "
                        "(auto: 2 GiB, 128 MiB with --quick; 0 = none)")
    p.add_argument("--size", default="16g", help="size= for the mounts (default 16g)")
    p.add_argument("--attr-timeout", type=float, default=None,
                   help="without root (no drop_caches): sleep this long past the target's "
                        "attribute timeout before 'stat expired' (default: skip that row)")
    p.add_argument("--json", type=Path, help="where to write JSON (default in /tmp)")
    p.add_argument("--png", type=Path, help="where to write the chart (default next to JSON)")
    p.add_argument("--no-png", action="store_true", help="do not draw the chart")
    floors = p.add_mutually_exclusive_group()
    floors.add_argument("--check-floors", action="store_true",
                        help="print each floor of issues 6 and 2 with met / not met, and exit "
                             "with status 1 if a measured floor is not met (a floor not "
                             "measured, n/a, does not fail)")
    floors.add_argument("--report-floors", action="store_true",
                        help="print the floors like --check-floors, but exit 0 whatever they say")
    p.add_argument("--from-json", type=Path,
                   help="do not run: report (table, floors, chart) from a saved result file")
    p.add_argument("--list", action="store_true", help="list the workload units and exit")
    return p.parse_args(argv)


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace, meta: dict[str, Any]) -> tuple[list[Result], list[Target]]:
    """Mount the targets, run the selected units on each, unmount (always)."""
    cfg = Config.quick() if args.quick else Config()
    cfg.attr_timeout = args.attr_timeout
    if args.warmup != "auto":
        cfg.warmup_bytes = int(args.warmup) << 20
    engine = make_engine(args.engine)
    runner = Runner(engine, cfg)
    meta.update(engine=engine.name, quick=args.quick, config=vars(cfg),
                cold=runner.cold_method, stat_expired=runner.expire_method)
    units = runner.units()
    only = {u for u in args.only.split(",") if u}
    skip = {u for u in args.skip.split(",") if u}
    known = {name for name, _ in units}
    if unknown := (only | skip) - known:
        raise SystemExit(f"unknown workload units: {', '.join(sorted(unknown))}")
    units = [(n, f) for n, f in units if (not only or n in only) and n not in skip]
    targets = parse_targets(args.targets, args.size)
    start_watchdog(targets)
    if isinstance(engine, CEngine):
        engine.on_timeout = lambda: abort_fuse(targets)
    results: list[Result] = []
    t_start = time.monotonic()
    with contextlib.ExitStack() as stack:
        for t in targets:
            stack.callback(t.close)  # registered before open: a half-made mount is undone
            progress(f"mounting {t.label} ({t.spec}) ...")
            t.open()
            progress(f"  {t.label} at {t.path}" +
                     (f", daemon pid {t.daemon_pid}" if t.daemon_pid else ""))
        total = len(units) * len(targets) * args.repeat
        step = 0
        for name, fn in units:
            for rep in range(args.repeat):
                # alternate the order so neither side always runs first
                for t in targets if rep % 2 == 0 else targets[::-1]:
                    step += 1
                    progress(f"[{step:2}/{total}] {time.monotonic() - t_start:6.1f}s  "
                             f"{name} on {t.label}"
                             + (f" (run {rep + 1}/{args.repeat})" if args.repeat > 1 else "")
                             + " ...")
                    if name in DATA_UNITS:
                        warm_up(cfg.warmup_bytes)
                    t0 = time.monotonic()
                    got = fn(t)
                    for r in got:
                        r.params.setdefault("engine", engine.name)
                        progress(f"          {r.name:24} {report.fmt_value(r)}")
                    progress(f"          ({time.monotonic() - t0:.1f}s)")
                    results.extend(got)
        meta["targets"] = [t.describe() for t in targets]
        progress("unmounting ...")
    meta["elapsed_s"] = round(time.monotonic() - t_start, 1)
    meta["loadavg_end"] = report.loadavg()
    return median_of_runs(results), targets


def abort_fuse(targets: list[Target]) -> None:
    for t in targets:
        if t.kind == "shmfs" and t.mounted:
            progress(f"aborting the FUSE connection of {t.path} (daemon not answering)")
            abort_connection(t.path)


def start_watchdog(targets: list[Target], grace: float = 5.0) -> None:
    """On SIGINT/SIGTERM, give cleanup `grace` seconds, then abort our FUSE mounts.

    The Python signal handler only runs between bytecodes; if the main thread
    is blocked in a syscall on a daemon that stopped answering (a cleanup
    unlink, say), it never runs. The C-level handler still writes the signal
    number to the wakeup fd, so this thread sees it and unblocks the main
    thread by aborting the connection (the syscall fails with ENOTCONN).
    """
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)

    def watch() -> None:
        os.read(r, 1)
        time.sleep(grace)
        abort_fuse(targets)

    threading.Thread(target=watch, name="bench-watchdog", daemon=True).start()


def median_of_runs(results: list[Result]) -> list[Result]:
    """One Result per (name, target): the median run by speed; all speeds kept in params."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.name, r.target), []).append(r)
    out = []
    for runs in groups.values():
        measured = sorted((r for r in runs if not r.skipped), key=lambda r: r.speed() or 0)
        if len(runs) == 1 or not measured:
            out.append(runs[0])
            continue
        pick = measured[(len(measured) - 1) // 2]
        pick.params["runs"] = len(runs)
        pick.params["speeds"] = [r.speed() for r in runs if not r.skipped]
        out.append(pick)
    return out


def warm_up(nbytes: int) -> None:
    """Touch (then free) nbytes of anonymous memory, just before a timed workload.

    This VM returns free guest memory to the host (virtio-balloon free page
    reporting, order 11, a couple of seconds after it is freed), so the next
    first touch of it is a host fault: a 1 GiB tmpfs write ran at 0.47 GB/s
    that way and at 1.8 GB/s on memory touched just before. Freed pages are
    reused before reported ones, so touching memory right before a workload
    gives both targets warm guest RAM.
    """
    if nbytes <= 0:
        return
    buf = mmap.mmap(-1, nbytes, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        step = mmap.PAGESIZE
        for off in range(0, nbytes, step):
            buf[off] = 1
    finally:
        buf.close()


def load(path: Path) -> tuple[dict[str, Any], list[Result]]:
    doc = json.loads(path.read_text())
    names = {f.name for f in fields(Result)}
    results = []
    for d in doc["results"]:
        kw = {k: v for k, v in d.items() if k in names}
        kw["nbytes"] = d["bytes"]
        results.append(Result(**kw))
    return doc["meta"], results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, _ in Runner(make_engine("python"), Config()).units():
            print(name)
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    if args.from_json:
        meta, results = load(args.from_json)
        labels = [t["label"] for t in meta["targets"]]
    else:
        meta = report.machine_info()
        try:
            results, targets = run(args, meta)
        except KeyboardInterrupt:
            progress("interrupted; everything mounted was unmounted")
            return 130
        labels = [t.label for t in targets]
    subject, reference = labels[0], labels[-1]  # more than two: the middle ones as columns
    floors = report.check_floors(results, subject, reference)
    growth = report.scaling(results, labels)

    print(report.meta_line(meta))
    print()
    print(report.format_table(results, subject, reference, labels[1:-1]))
    if text := report.format_scaling(growth, labels, results):
        print()
        print(text)
    if args.check_floors or args.report_floors:
        print()
        print(report.format_floors(floors, subject))

    if not args.from_json:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        json_path = args.json or DEFAULT_OUT / f"bench-{stamp}.json"
        run_info = {k: meta[k] for k in ("date", "hostname", "kernel", "cpu", "command", "git")}
        doc = {
            "meta": meta,
            "subject": subject,
            "reference": reference,
            "results": [{**r.to_json(), "run": run_info} for r in results],
            "floors": floors,
            "scaling": growth,
        }
        report.write_json(json_path, doc)
        print(f"\nJSON: {json_path}")
    else:
        json_path = args.from_json
    if not args.no_png:
        png_path = args.png or json_path.with_suffix(".png")
        chart.draw(png_path, results, subject, reference, floors, meta)
        print(f"PNG:  {png_path}")
    missed = [f for f in floors if f["met"] is False]
    if args.check_floors and missed:
        progress(f"{len(missed)} floor(s) not met on {subject}: " + "; ".join(
            f"issue {f['issue']} {f['floor']} (measured {f['measured']})" for f in missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
