#!/usr/bin/env python3
"""Rerun the external-tool compatibility matrix on shmfs and a kernel tmpfs.

A new user's check of a tree (docs/reliability.md, "External tools against a
tmpfs oracle"): stress-ng filesystem stressors that verify their data and fio
jobs with ``verify=crc32c``, each run once on a fresh kernel tmpfs (the
oracle) and once on a fresh shmfs, then a pass/fail table. A case *diverges*
when it passes on tmpfs and fails on shmfs; only the results are compared,
never the speed. The daemon's log is checked too (an
error record or a traceback is reported). The exit status is 1 if any case
diverged or the daemon logged an error, else 0.

Usage::

    sudo .venv/bin/python scripts/compat_check.py                     # default options
    sudo .venv/bin/python scripts/compat_check.py -o readers=1        # another -o
    sudo .venv/bin/python scripts/compat_check.py --only fio --seconds 2

Needs root (mount -t tmpfs), stress-ng and fio (``apt-get install stress-ng
fio``); a tool that is missing is reported as ``skip`` for its rows. Every
mount is taken down on exit, also on failure or Ctrl-C (managed_shmfs and a
``finally`` around the tmpfs).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mount.mounting.managed import daemon_log_errors, managed_shmfs

# stress-ng stressors of the filesystem class that check what they read back
# (name, workers, extra arguments).
STRESSORS: list[tuple[str, int, list[str]]] = [
    ("hdd", 2, ["--hdd-opts", "wr-seq,rd-rnd", "--verify", "--hdd-bytes", "8m"]),
    ("hdd", 2, ["--hdd-opts", "wr-rnd,rd-seq,iovec", "--verify", "--hdd-bytes", "4m",
                "--hdd-write-size", "3000"]),
    ("dentry", 2, []), ("dir", 2, []), ("dirdeep", 1, []), ("rename", 2, []),
    ("link", 2, []), ("symlink", 2, []), ("fallocate", 2, []), ("seek", 2, []),
    ("xattr", 2, []), ("mmap", 2, ["--mmap-file", "--mmap-bytes", "16m", "--verify"]),
    ("copy-file", 2, []), ("lockf", 2, []), ("flock", 2, []), ("fcntl", 2, []),
    ("aio", 2, []), ("aiol", 1, []), ("sync-file", 2, []), ("filename", 2, []),
    ("io", 1, []), ("readahead", 2, []), ("chmod", 2, []), ("chown", 2, []),
    ("utime", 2, []), ("open", 2, []), ("fstat", 2, []), ("getdent", 2, []),
    ("mknod", 1, []), ("iomix", 1, []), ("fiemap", 1, []),
    ("hdd", 2, ["--hdd-opts", "direct,wr-rnd", "--verify", "--hdd-bytes", "4m"]),
    ("hdd", 2, ["--hdd-opts", "fsync,rd-rnd,wr-seq,utimes", "--verify", "--hdd-bytes", "4m"]),
    ("hdd", 1, ["--hdd-opts", "noatime,fadv-rnd", "--verify", "--hdd-bytes", "2m",
                "--hdd-write-size", "1m"]),
    ("access", 2, []), ("chattr", 1, []), ("chdir", 2, []), ("dirmany", 1, []),
    ("dnotify", 1, []), ("dup", 2, []), ("fanotify", 1, []), ("file-ioctl", 2, []),
    ("fpunch", 2, []), ("fsize", 2, []), ("handle", 1, []), ("inotify", 1, []),
    ("lease", 2, []), ("locka", 2, []), ("lockofd", 2, []), ("touch", 2, []),
    ("revio", 2, []), ("inode-flags", 1, []),
]

# fio: every engine x pattern x block size, numjobs>1, crc32c verification;
# 5 MiB per job so that odd block sizes (512, 3000) cross page boundaries.
FIO_ENGINES = ["psync", "pvsync2", "mmap", "libaio"]
FIO_PATTERNS = ["write", "randwrite", "randrw"]
FIO_BLOCKS = ["512", "3000", "4k", "1m"]


@dataclass
class Result:
    """One tool run on one filesystem: passed or not, and why not."""

    ok: bool | None  # None: skipped (the tool or stressor is not there)
    detail: str = ""


def run(cmd: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    """Run a tool in cwd; its exit status (124 on timeout) and combined output."""
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                           check=False)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, str(out)
    return p.returncode, p.stdout + p.stderr


def stress_ng(where: Path, name: str, workers: int, extra: list[str],
              seconds: int) -> Result:
    """One stressor; fails on a non-zero status or a failed/verify message."""
    if not shutil.which("stress-ng"):
        return Result(None, "stress-ng not installed")
    work = Path(tempfile.mkdtemp(prefix=f"sng-{name}-", dir=where))
    rc, out = run(["stress-ng", f"--{name}", str(workers), *extra, "--timeout", f"{seconds}s",
                   "--temp-path", str(work), "--metrics-brief"], work, seconds * 10 + 60)
    shutil.rmtree(work, ignore_errors=True)
    if re.search(r"not supported|skipping stressor|unrecognized option", out):
        return Result(None, "stressor not supported")
    bad = [ln for ln in out.splitlines()
           if re.search(r"fail|verif.*(error|mismatch)|corrupt", ln, re.I)
           and not re.search(r"\b0 fail|fail(ed|ures?): 0\b", ln)]  # newer summaries
    if rc == 0 and not bad:
        return Result(True)
    return Result(False, f"rc={rc} " + " | ".join(bad[:2] or out.splitlines()[-2:]))


def fio(where: Path, engine: str, pattern: str, bs: str) -> Result:
    """One fio job with crc32c verification of everything it wrote."""
    if not shutil.which("fio"):
        return Result(None, "fio not installed")
    work = Path(tempfile.mkdtemp(prefix="fio-", dir=where))
    rc, out = run(["fio", "--name=compat", f"--directory={work}", f"--ioengine={engine}",
                   f"--rw={pattern}", f"--bs={bs}", "--size=5m", "--numjobs=3",
                   "--verify=crc32c", "--do_verify=1", "--verify_fatal=1",
                   "--group_reporting"], work, 300)
    shutil.rmtree(work, ignore_errors=True)
    if rc == 0 and "verify:" not in out.lower() and not re.search(r"err=\s*[1-9]", out):
        return Result(True)
    bad = [ln for ln in out.splitlines() if re.search(r"verify|err=|bad", ln, re.I)]
    return Result(False, f"rc={rc} " + " | ".join(bad[:2] or out.splitlines()[-2:]))


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A fresh kernel tmpfs, always unmounted."""
    base = Path(tempfile.mkdtemp(prefix="compat-tmpfs-"))
    mnt = base / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def cases(only: str | None, seconds: int) -> list[tuple[str, object]]:
    """(label, function of the mountpoint) for every row of the table."""
    rows: list[tuple[str, object]] = []
    if only in (None, "stress-ng"):
        for name, n, extra in STRESSORS:
            label = f"stress-ng --{name} {n} {' '.join(extra)}".strip()
            rows.append((label, lambda p, a=(name, n, extra): stress_ng(p, *a, seconds)))
    if only in (None, "fio"):
        for e in FIO_ENGINES:
            for pat in FIO_PATTERNS:
                for bs in FIO_BLOCKS:
                    rows.append((f"fio {e} {pat} bs={bs} numjobs=3 crc32c",
                                 lambda p, a=(e, pat, bs): fio(p, *a)))
    return rows


def cell(r: Result) -> str:
    return "skip" if r.ok is None else ("pass" if r.ok else "FAIL")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", dest="options", default="", help="shmfs -o options (size= added)")
    ap.add_argument("--size", default="2g", help="size= of both filesystems")
    ap.add_argument("--only", choices=["stress-ng", "fio"], help="run one tool's rows")
    ap.add_argument("--seconds", type=int, default=4, help="stress-ng --timeout per row")
    ap.add_argument("-k", dest="match", help="only rows whose label contains this")
    args = ap.parse_args(argv)
    rows = [r for r in cases(args.only, args.seconds) if not args.match or args.match in r[0]]
    opts = ",".join(x for x in (f"size={args.size}", args.options) if x)
    diverged = 0
    with tmpfs(args.size) as t, managed_shmfs(opts, prefix="compat-shmfs-") as m:
        print(f"shmfs -o {opts} vs tmpfs size={args.size}")
        print(f"{'case':64} {'tmpfs':5} {'shmfs':5}")
        for label, fn in rows:
            a, b = fn(t), fn(m.path)  # type: ignore[operator]
            flag = ""
            if a.ok and b.ok is False:
                diverged += 1
                flag = f"  <-- DIVERGES: {b.detail}"
            elif a.ok is False and b.ok is False:
                flag = f"  (both fail: {a.detail})"
            elif a.ok is False:
                flag = f"  (tmpfs only: {a.detail})"
            print(f"{label[:64]:64} {cell(a):5} {cell(b):5}{flag}", flush=True)
    errors = daemon_log_errors(m.log_text, None)
    for line in errors:
        print(f"daemon log: {line}")
    print(f"{len(rows)} cases, {diverged} diverging, {len(errors)} daemon log errors")
    return 1 if diverged or errors else 0


if __name__ == "__main__":
    sys.exit(main())
