"""Run the stress workers on a directory: fork, show progress, check, summarise.

``run(root, params)`` forks ``params.procs`` workers (each a fresh seeded
stream, see worker.py), prints a progress line about once a second, stops
everybody at the first failure, then checks the shared directory against the
workers' counts (no lost or extra names, st_nlink equal to the names an inode
really has, every file one intact record that some worker published) and
returns the summary. ``target(...)`` provides the directory: a fresh shmfs
mounted (and always unmounted) here, a fresh kernel tmpfs, or any directory.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from mount.mounting.managed import daemon_log_errors, managed_shmfs
from stresslib.fsxops import FSX_OPS
from stresslib.opkinds import ALL_OPS, INJECT, verify_whole
from stresslib.oracle import Mismatch, check_record
from stresslib.worker import Params, Worker

REPO = Path(__file__).resolve().parents[2]
SLOT = re.compile(r"s\d+")


def final_verify(w: Worker) -> None:
    """Every owned file, whole, once more before the worker closes it."""
    for f in w.files:
        w.current_file = f.path
        w.note(f"final verify {f.path} (size {f.model.size})")
        verify_whole(w, f, f.fd, "final-verify")


def _ops(params: Params) -> list[tuple[str, int, Any]]:
    kinds = ALL_OPS + (FSX_OPS if params.fsx else [])
    unknown = set(params.skip) - {name for name, _, _ in kinds}
    if unknown:
        raise ValueError(f"unknown op kinds {sorted(unknown)}")
    return [op for op in kinds if op[0] not in params.skip] + [INJECT]


def _child(proc: int, root: Path, params: Params, conn: Any, stop: Any, counters: Any) -> None:
    w = Worker(proc, root, params)

    def progress(ops: int, verified: int) -> None:
        counters[2 * proc] = ops
        counters[2 * proc + 1] = verified

    result = w.run(_ops(params), stop.is_set, progress, final=final_verify)
    progress(w.op_index, w.bytes_verified)
    conn.send(result)
    conn.close()


def run(root: Path, params: Params, out: Any = sys.stdout) -> dict[str, Any]:
    """Fork the workers on ``root``, wait for them, check, return the summary."""
    (root / "shared").mkdir(exist_ok=True)
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    counters = ctx.Array("q", 2 * params.procs, lock=False)
    procs, conns = [], {}
    t0 = time.monotonic()
    for i in range(params.procs):
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, args=(i, root, params, w, stop, counters),
                        name=f"stress-{i}")
        p.start()
        w.close()
        procs.append(p)
        conns[r] = i
    results: dict[int, dict[str, Any]] = {}
    next_line = t0 + 1.0
    while conns:
        for r in wait(list(conns), timeout=max(0.0, next_line - time.monotonic())):
            i = conns.pop(r)
            try:
                results[i] = r.recv()
            except EOFError:
                results[i] = _died(i, procs[i])
            if results[i].get("failure"):
                stop.set()
        if time.monotonic() >= next_line:
            _progress(out, t0, counters, params.procs, results)
            next_line += 1.0
    for p in procs:
        p.join()
        if p.exitcode and not results.get(int(p.name.split("-")[1]), {}).get("failure"):
            results[int(p.name.split("-")[1])] = _died(int(p.name.split("-")[1]), p)
    elapsed = time.monotonic() - t0
    failures = [r["failure"] for _, r in sorted(results.items()) if r.get("failure")]
    shared_errors: list[str] = []
    if not failures:
        shared_errors = check_shared(root / "shared", list(results.values()))
    return summarise(results, elapsed, failures, shared_errors, params)


def run_replay(root: Path, params: Params, proc: int) -> dict[str, Any]:
    """Re-run one worker's stream in this process, printing every operation."""
    (root / "shared").mkdir(exist_ok=True)
    t0 = time.monotonic()
    result = Worker(proc, root, params).run(_ops(params), lambda: False, None, final=final_verify)
    failures = [result["failure"]] if result["failure"] else []
    return summarise({proc: result}, time.monotonic() - t0, failures, [], params)


def _died(i: int, p: Any) -> dict[str, Any]:
    p.join()
    return {"proc": i, "ops": 0, "times": {}, "bytes_verified": 0, "bytes_written": 0,
            "tolerated": {}, "names_delta": 0, "published": [],
            "failure": f"worker {i} died (exit code {p.exitcode}: a negative code is a "
                       f"signal, e.g. -7 SIGBUS from an mmap access) without a report"}


def _progress(out: Any, t0: float, counters: Any, n: int, results: dict[int, Any]) -> None:
    el = time.monotonic() - t0
    ops = sum(counters[2 * i] for i in range(n))
    ver = sum(counters[2 * i + 1] for i in range(n))
    fails = sum(1 for r in results.values() if r.get("failure"))
    print(f"[{el:6.1f}s] ops {ops:8d} ({ops / el:7.0f}/s)  verified {ver / 2**20:9.1f} MiB  "
          f"workers done {len(results)}/{n}  failures {fails}", file=out, flush=True)


def check_shared(shared: Path, results: list[dict[str, Any]]) -> list[str]:
    """The end state of the raced directory against what the workers did."""
    errors: list[str] = []
    names = sorted(os.listdir(shared))
    if len(names) != len(set(names)):
        errors.append(f"readdir returned duplicate names: {names}")
    extra = [n for n in names if not SLOT.fullmatch(n)]
    if extra:
        errors.append(f"unexpected names left in the shared directory: {extra}")
    expected = sum(r["names_delta"] for r in results)
    if len(names) != expected:
        errors.append(f"{len(names)} names in the shared directory, the workers' creates, "
                      f"links and unlinks add up to {expected}")
    published = {tuple(p) for r in results for p in r["published"]}
    by_ino: dict[int, list[str]] = defaultdict(list)
    nlink: dict[int, int] = {}
    for n in names:
        st = os.lstat(shared / n)
        by_ino[st.st_ino].append(n)
        nlink[st.st_ino] = st.st_nlink
    seen: dict[tuple[int, int], int] = {}
    for ino, inames in by_ino.items():
        if nlink[ino] != len(inames):
            errors.append(f"inode {ino} has st_nlink {nlink[ino]} but names {inames}")
        path = shared / inames[0]
        try:
            rec = check_record(path.read_bytes(), str(path))
        except Mismatch as e:
            errors.append(str(e))
            continue
        key = (rec.proc, rec.seq)
        if key not in published:
            errors.append(f"{inames} hold record {key} that no worker published")
        if key in seen:
            errors.append(f"record {key} found in two inodes ({seen[key]} and {ino})")
        seen[key] = ino
    return errors


def summarise(results: dict[int, dict[str, Any]], elapsed: float, failures: list[str],
              shared_errors: list[str], params: Params) -> dict[str, Any]:
    kinds: dict[str, list[int]] = {}
    tolerated: Counter[str] = Counter()
    for r in results.values():
        for k, (c, ns) in r["times"].items():
            e = kinds.setdefault(k, [0, 0])
            e[0] += c
            e[1] += ns
        tolerated.update(r["tolerated"])
    total = sum(c for c, _ in kinds.values())
    return {
        "seed": params.seed,
        "procs": params.procs,
        "elapsed_s": round(elapsed, 2),
        "ops": total,
        "ops_per_s": round(total / elapsed, 1) if elapsed else 0.0,
        "per_kind": {k: {"count": c, "ops_per_s": round(c / elapsed, 1),
                         "mean_us": round(ns / c / 1000, 1) if c else 0.0}
                     for k, (c, ns) in sorted(kinds.items())},
        "bytes_verified": sum(r["bytes_verified"] for r in results.values()),
        "bytes_written": sum(r["bytes_written"] for r in results.values()),
        "tolerated_races": dict(sorted(tolerated.items())),
        "shared_names": sum(r["names_delta"] for r in results.values()),
        "failures": failures,
        "shared_errors": shared_errors,
        "errors": len(failures) + len(shared_errors),
    }


def print_summary(s: dict[str, Any], out: Any = sys.stdout) -> None:
    print(f"\n== summary: seed {s['seed']}, {s['procs']} processes, {s['elapsed_s']} s ==",
          file=out)
    print(f"{'kind':<18}{'ops':>10}{'ops/s':>10}{'mean µs':>10}", file=out)
    for k, v in s["per_kind"].items():
        print(f"{k:<18}{v['count']:>10}{v['ops_per_s']:>10.1f}{v['mean_us']:>10.1f}", file=out)
    print(f"{'total':<18}{s['ops']:>10}{s['ops_per_s']:>10.1f}", file=out)
    print(f"bytes verified {s['bytes_verified']} ({s['bytes_verified'] / 2**20:.1f} MiB), "
          f"written {s['bytes_written'] / 2**20:.1f} MiB", file=out)
    print(f"tolerated races: {s['tolerated_races']}", file=out)
    print(f"shared names at the end: {s['shared_names']}", file=out)
    for f in s["failures"]:
        print(f"\n{f}", file=out)
    for e in s["shared_errors"]:
        print(f"SHARED DIRECTORY INCONSISTENT: {e}", file=out)
    print(f"errors: {s['errors']}  -> {'PASS' if s['errors'] == 0 else 'FAIL'}", file=out)


# --- where to run -------------------------------------------------------------------------------


def _umount(mnt: Path) -> None:
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@contextlib.contextmanager
def target(kind: str, directory: Path | None, size: str, options: str = "") -> Iterator[Path]:
    """A fresh directory to stress: 'shmfs' (mounted here), 'tmpfs' or 'dir'.

    A shmfs comes from ``mount.mounting.managed.managed_shmfs`` (ready once FUSE_INIT is
    answered, 60 s at most; always taken down, a hung or dead connection
    aborted). A run whose daemon died is an error even if every worker passed:
    that is checked on the daemon process, never by a syscall on the mount,
    which would hang if the daemon hung; so is one whose daemon logged an
    error record or a traceback (a handler's unexpected exception), read from
    its log after the teardown.
    """
    if kind == "dir":
        assert directory is not None
        root = Path(tempfile.mkdtemp(prefix="stress-", dir=directory))
        try:
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    if kind == "shmfs":
        with managed_shmfs(",".join(filter(None, [f"size={size}", options])),
                           prefix="shmfs-stress-") as m:
            yield m.path
            status = m.poll()
            if status is not None:
                raise RuntimeError(f"the shmfs daemon of {m.path} died during the run "
                                   f"(exit status {status}); its log:\n{m.read_log()}")
        # read after the teardown: the whole log, up to the daemon's exit
        if errors := daemon_log_errors(m.log_text):
            raise RuntimeError(f"the shmfs daemon of {m.path} logged {len(errors)} unexpected "
                               "error(s):\n" + "\n".join(errors))
        return
    base = Path(tempfile.mkdtemp(prefix=f"{kind}-stress-"))
    mnt = base / "mnt"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                       check=True)
        try:
            yield mnt
        finally:
            _umount(mnt)
    finally:
        shutil.rmtree(base, ignore_errors=True)
