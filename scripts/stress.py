#!/usr/bin/env python3
"""Stress a filesystem with an oracle: seeded random operations, every read verified.

    scripts/stress.py [--seconds S | --ops N] [--procs P] [--seed SEED] [--fsx]
                      [--tmpfs | --dir DIR] [--size 1g] [--json FILE]
    scripts/stress.py --seed SEED --replay PROC --ops N ...   (re-run one worker, traced)
    scripts/stress.py --mixed [--seconds 120] [-o OPTIONS] ...  (issue 15: does anyone starve?)

Several worker processes each run a reproducible stream of operations
(read, write, mmap load/store + msync, truncate, fallocate, punch, rename,
link, unlink, reopen, fsync) on files they own, verified byte for byte
against an in-memory model, plus create/link/unlink/rename/exchange races on
a shared directory whose end state is checked against the workers' counts.
The first mismatch stops the run and prints the seed, the process, the file,
its last operations and the command that replays them.

By default a fresh shmfs is mounted for the run (and always unmounted);
``--tmpfs`` runs the same workload on a fresh kernel tmpfs, ``--dir`` on any
directory. Exit status 0 only if every verification passed. See
docs/reliability.md for the long runs and what they found.

``--mixed`` runs issue 15's mix instead (stresslib/mixed.py: two 1 MiB
streaming writers, mmap, dentry, rename, fallocate and xattr workers) and
reports each worker's rounds; exit status 1 if a worker finished none
(starved) or a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stresslib.runner import print_summary, run, run_replay, target
from stresslib.worker import Params


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower()
    return int(t[:-1]) * units[t[-1]] if t and t[-1] in units else int(t)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=0.0, help="run for this long")
    p.add_argument("--ops", type=int, default=0, help="operations per process")
    p.add_argument("--procs", type=int, default=3, help="worker processes (default 3)")
    p.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    p.add_argument("--files", type=int, default=4, help="files owned by each worker")
    p.add_argument("--max-size", type=_size, default=1 << 20, help="largest owned file")
    p.add_argument("--slots", type=int, default=12, help="names raced over in shared/")
    p.add_argument("--history", type=int, default=25, help="operations shown on failure")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--tmpfs", action="store_true", help="a fresh kernel tmpfs")
    where.add_argument("--dir", type=Path, help="run inside this directory")
    p.add_argument("--size", default="1g", help="size= of the mounted shmfs/tmpfs")
    p.add_argument("--replay", type=int, default=None, metavar="PROC",
                   help="re-run only this worker's stream in-process, printing each op")
    p.add_argument("--trace", action="store_true", help="print every operation")
    p.add_argument("--fsx", action="store_true",
                   help="also fsx's checks: EOF-page zeros through a mapping, mapped writes "
                        "that extend the file, O_DIRECT I/O (stresslib/fsxops.py)")
    p.add_argument("--skip", default="", metavar="KIND,...",
                   help="leave these op kinds out (narrowing a failure down)")
    p.add_argument("--inject", type=int, default=-1, metavar="OP",
                   help="self-test: at this op of process 0 change a byte behind the "
                        "oracle's back (the run must then fail)")
    p.add_argument("--json", type=Path, help="write the summary here as JSON")
    p.add_argument("--mixed", action="store_true",
                   help="issue 15's mix (streams + small workers), rounds per worker")
    p.add_argument("-o", dest="options", default="", help="extra -o options of the shmfs")
    ns = p.parse_args(argv)
    if not ns.seconds and not ns.ops:
        ns.seconds = 10.0
    if ns.seed is None:
        ns.seed = int(time.time() * 1000) % 1_000_000_007
    if ns.procs < 1 or ns.files < 2 or ns.slots < 2:
        p.error("need --procs >= 1, --files >= 2, --slots >= 2")
    return ns


def _mixed(ns: argparse.Namespace) -> int:
    from stresslib.mixed import print_mixed, run_mixed

    kind = "tmpfs" if ns.tmpfs else "dir" if ns.dir else "shmfs"
    print(f"stress --mixed: {ns.seconds:g} s on {kind} {ns.options}", flush=True)
    with target(kind, ns.dir, ns.size, ns.options) as root:
        summary = run_mixed(root, ns.seconds, out=sys.stdout)
    summary["target"] = kind
    print_mixed(summary)
    if ns.json:
        ns.json.write_text(json.dumps(summary, indent=1))
    return 0 if not summary["starved"] and not summary["errors"] else 1


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    if ns.mixed:
        return _mixed(ns)
    params = Params(seed=ns.seed, procs=ns.procs, files=ns.files, max_size=ns.max_size,
                    slots=ns.slots, history=ns.history, ops=ns.ops, seconds=ns.seconds,
                    skip=tuple(k for k in ns.skip.split(",") if k), inject=ns.inject,
                    trace=ns.trace or ns.replay is not None, fsx=ns.fsx)
    kind = "tmpfs" if ns.tmpfs else "dir" if ns.dir else "shmfs"
    limit = f"{ns.ops} ops/process" if ns.ops else f"{ns.seconds:g} s"
    print(f"stress: seed {ns.seed}, {ns.procs} processes, {limit}, on {kind}"
          f"{f' {ns.dir}' if ns.dir else ''} (pid {os.getpid()})", flush=True)
    with target(kind, ns.dir, ns.size) as root:
        if ns.replay is not None:
            summary = run_replay(root, params, ns.replay)
        else:
            summary = run(root, params)
    summary["target"] = kind
    print_summary(summary)
    if ns.json:
        ns.json.write_text(json.dumps(summary, indent=1))
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
