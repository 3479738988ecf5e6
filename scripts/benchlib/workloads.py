"""The workloads of issue 6, each run on one target directory.

A workload ("unit") sets up what it needs under the target, runs one or more
timed loops through an Engine, removes what it made, and returns Results --
one per measured quantity (``seq_1m`` yields seq_write_1m, seq_read_cold_1m
and seq_read_warm_1m). Result names are stable across --quick and full runs;
the sizes behind them are in ``params``.

What "cold" means on each side (both get the same treatment):
- shmfs (FUSE): the daemon holds the data; the kernel's page cache for the file
  is empty. Made by fsync + ``echo 3 > /proc/sys/vm/drop_caches`` (root) or
  ``posix_fadvise(DONTNEED)`` (not root), so every read is a FUSE_READ.
- kernel tmpfs: its pages cannot be dropped -- the page cache *is* the storage
  -- so a cold read of tmpfs is a read from page cache. Only page tables
  (first-touch mmap faults) are really cold on tmpfs.
- "stat expired": for shmfs the dentry and attributes are no longer cached by
  the kernel (drop_caches level 2 evicts unused dentries and inodes, so the
  next stat is a LOOKUP round trip; without root we sleep past the attribute
  timeout instead, which gives a GETATTR). tmpfs dentries are pinned, so its
  stat is always cached and the row measures the same call on both sides.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import Engine, Sample
from .targets import REPO, Target, vm_rss_bytes

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass
class Config:
    """Sizes and counts; --quick shrinks them so a run takes seconds."""

    seq_bytes: int = 1 * GiB
    rand_large_bytes: int = 1 * GiB
    rand_small_bytes: int = 1 * MiB
    rand_ops: int = 100_000
    mmap_bytes: int = 1 * GiB
    dir_large: int = 100_000
    dir_small: int = 100
    dir_small_rounds: int = 20
    rss_bytes: int = 1 * GiB
    attr_timeout: float | None = None
    warmup_bytes: int = 2 * GiB
    seed: int = 6

    @classmethod
    def quick(cls) -> Config:
        return cls(
            seq_bytes=64 * MiB,
            rand_large_bytes=64 * MiB,
            rand_ops=4_000,
            mmap_bytes=64 * MiB,
            dir_large=2_000,
            dir_small_rounds=5,
            rss_bytes=64 * MiB,
            warmup_bytes=128 * MiB,
        )


@dataclass
class Result:
    """One measured quantity on one target.

    kind 'bytes' results are throughputs (GiB/s); kind 'ops' are per-operation
    costs (µs/op and ops/s); kind 'seconds' is a wall time; kind 'rss' a size.
    """

    name: str
    target: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    ns: int = 0
    ops: int = 0
    nbytes: int = 0
    value: float | None = None  # seconds for 'seconds', bytes for 'rss'
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def gib_per_s(self) -> float | None:
        return self.nbytes / GiB / (self.ns / 1e9) if self.ns and self.nbytes else None

    @property
    def us_per_op(self) -> float | None:
        return self.ns / 1e3 / self.ops if self.ops else None

    @property
    def ops_per_s(self) -> float | None:
        return self.ops / (self.ns / 1e9) if self.ns else None

    def speed(self) -> float | None:
        """Bigger is better, comparable between targets of the same result name."""
        if self.skipped:
            return None
        if self.kind == "bytes":
            return self.gib_per_s
        if self.kind == "ops":
            return self.ops_per_s
        if self.kind in ("seconds", "rss") and self.value:
            return 1.0 / self.value
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "kind": self.kind,
            "params": self.params,
            "ns": self.ns,
            "ops": self.ops,
            "bytes": self.nbytes,
            "gib_per_s": self.gib_per_s,
            "us_per_op": self.us_per_op,
            "ops_per_s": self.ops_per_s,
            "value": self.value,
            "skipped": self.skipped,
            "notes": self.notes,
        }


def _from_sample(name: str, target: Target, kind: str, s: Sample, **params: Any) -> Result:
    return Result(name, target.label, kind, params, s.ns, s.ops, s.nbytes)


def _human(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


class Runner:
    """Runs units on targets with one engine and one way of making caches cold."""

    def __init__(self, engine: Engine, cfg: Config) -> None:
        self.engine = engine
        self.cfg = cfg
        self.root = os.geteuid() == 0
        self.cold_method = (
            "fsync + echo 3 > /proc/sys/vm/drop_caches"
            if self.root
            else "fsync + posix_fadvise(POSIX_FADV_DONTNEED)"
        )
        self.expire_method: str | None = (
            "echo 2 > /proc/sys/vm/drop_caches (dentries+inodes evicted: next stat is LOOKUP)"
        )
        if not self.root:
            self.expire_method = (
                None if cfg.attr_timeout is None
                else f"sleep {cfg.attr_timeout + 0.1:.1f}s past the attribute timeout"
            )

    # -- cache control ------------------------------------------------------
    def make_cold(self, path: Path) -> None:
        """Empty the kernel's page cache for `path` (no-op for tmpfs: it cannot)."""
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            if not self.root:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        if self.root:
            _drop_caches(3)

    def expire_attrs(self) -> bool:
        """Make the kernel forget dentries and attributes; False if there is no way."""
        if self.root:
            _drop_caches(2)
        elif self.cfg.attr_timeout is not None:
            time.sleep(self.cfg.attr_timeout + 0.1)
        else:
            return False
        return True

    # -- units --------------------------------------------------------------
    def units(self) -> list[tuple[str, Callable[[Target], list[Result]]]]:
        """The workload units in run order, by name (for --only / --skip)."""
        return [
            ("seq_1m", lambda t: self.seq(t, MiB, "1m")),
            ("seq_128k", lambda t: self.seq(t, 128 * KiB, "128k")),
            ("rand_4k", lambda t: self.rand(t, self.cfg.rand_large_bytes, "")),
            ("rand_4k_smallfile", lambda t: self.rand(t, self.cfg.rand_small_bytes, "_smallfile")),
            ("mmap_first_touch", self.mmap_first_touch),
            ("meta", lambda t: self.meta(t, self.cfg.dir_large, 1, "")),
            ("meta_smalldir", lambda t: self.meta(
                t, self.cfg.dir_small, self.cfg.dir_small_rounds, "_smalldir")),
            ("uml_boot", self.uml_boot),
            ("daemon_rss", self.daemon_rss),
        ]

    def seq(self, t: Target, bs: int, tag: str) -> list[Result]:
        path = t.path / f"seq_{tag}"
        size = self.cfg.seq_bytes
        p = {"file": _human(size), "block": _human(bs)}
        try:
            w = self.engine.seqwrite(path, size, bs)
            self.make_cold(path)
            cold, warm = self.engine.seqread(path, bs)
        finally:
            _remove(path)
        return [
            _from_sample(f"seq_write_{tag}", t, "bytes", w, **p),
            _from_sample(f"seq_read_cold_{tag}", t, "bytes", cold, **p, cold=self.cold_method),
            _from_sample(f"seq_read_warm_{tag}", t, "bytes", warm, **p,
                         warm="second pass on the same open fd"),
        ]

    def rand(self, t: Target, size: int, suffix: str) -> list[Result]:
        path = t.path / f"rand{suffix}"
        ops = self.cfg.rand_ops
        p = {"file": _human(size), "ops": ops}
        try:
            self.engine.seqwrite(path, size, min(size, MiB))
            self.make_cold(path)
            r = self.engine.randread(path, ops, self.cfg.seed)
            wr = self.engine.randwrite(path, ops, self.cfg.seed + 1)
        finally:
            _remove(path)
        return [
            _from_sample(f"rand_read_4k{suffix}", t, "ops", r, **p,
                         cold="FADV_RANDOM; distinct pages; FADV_DONTNEED between rounds "
                         "of one pass over the file"),
            _from_sample(f"rand_write_4k{suffix}", t, "ops", wr, **p,
                         timing="pwrite loop + final fsync"),
        ]

    def mmap_first_touch(self, t: Target) -> list[Result]:
        path = t.path / "mmap"
        size = self.cfg.mmap_bytes
        try:
            self.engine.seqwrite(path, size, MiB)
            self.make_cold(path)
            s = self.engine.mmaptouch(path)
        finally:
            _remove(path)
        return [_from_sample("mmap_first_touch", t, "bytes", s, file=_human(size),
                             access="MAP_SHARED PROT_READ, one load per 4 KiB page",
                             cold=self.cold_method)]

    def meta(self, t: Target, n: int, rounds: int, suffix: str) -> list[Result]:
        names = ["create", "stat_warm", "readdir", "stat_expired", "unlink"]
        totals = {k: Sample(0, 0) for k in names}
        for r in range(rounds):
            d = t.path / f"dir{suffix}{r}"
            d.mkdir()
            try:
                samples = {"create": self.engine.meta("create", d, n)}
                samples["stat_warm"] = self.engine.meta("stat", d, n)
                samples["readdir"] = self.engine.readdir(d)
                if self.expire_attrs():
                    samples["stat_expired"] = self.engine.meta("stat", d, n)
                samples["unlink"] = self.engine.meta("unlink", d, n)
            finally:
                shutil.rmtree(d, ignore_errors=True)
            for k, s in samples.items():
                totals[k].ns += s.ns
                totals[k].ops += s.ops
        p = {"entries": n, "rounds": rounds}
        out = [_from_sample(f"{k}{suffix}", t, "ops", totals[k], **p) for k in names]
        out[1].params["cache"] = "just created (dentry and attributes cached)"
        out[2].params["per"] = "directory entry returned, incl. . and .."
        out[3].params["expired_by"] = self.expire_method
        if self.expire_method is None:
            out[3].skipped = ("cannot expire the kernel's caches without root "
                              "(drop_caches); pass --attr-timeout to sleep past it")
        out[0].params["op"] = "open(O_CREAT|O_EXCL|O_WRONLY) + close"
        return out

    def uml_boot(self, t: Target) -> list[Result]:
        """Wall time of scripts/uml_boot.py with UML's memory file on the target."""
        script = REPO / "scripts" / "uml_boot.py"
        if not script.exists():
            return [Result("uml_boot", t.label, "seconds",
                           skipped="scripts/uml_boot.py does not exist yet")]
        cmd = [sys.executable, str(script), "--dir", str(t.path), "--json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            doc = {}
        if proc.returncode != 0 or "wall_seconds" not in doc:
            why = "; ".join(doc.get("problems", [])) or " | ".join(
                (proc.stderr or proc.stdout).strip().splitlines()[-3:])
            return [Result("uml_boot", t.label, "seconds",
                           skipped=f"uml_boot.py failed (rc={proc.returncode}): {why}")]
        wall = float(doc["wall_seconds"])
        return [Result("uml_boot", t.label, "seconds",
                       {"command": " ".join(cmd), "timings": doc.get("timings"),
                        "madv_remove_ok": doc.get("madv_remove_ok"),
                        "uml_command": " ".join(map(str, doc.get("command", [])))},
                       ns=int(wall * 1e9), ops=1, value=wall)]

    def daemon_rss(self, t: Target) -> list[Result]:
        """VmRSS of the shmfs daemon with a known amount of data stored in it."""
        if t.kind != "shmfs" or not t.daemon_pid:
            return [Result("daemon_rss", t.label, "rss",
                           skipped="no daemon (kernel filesystem)")]
        size = self.cfg.rss_bytes
        path = t.path / "rss"
        try:
            self.engine.seqwrite(path, size, MiB)
            rss = vm_rss_bytes(t.daemon_pid)
        finally:
            _remove(path)
        limit = size * 1.05 + 64 * MiB
        return [Result("daemon_rss", t.label, "rss",
                       {"stored": _human(size), "stored_bytes": size, "limit_bytes": int(limit),
                        "pid": t.daemon_pid, "when": "end of run, after every other workload"},
                       nbytes=rss, value=float(rss))]


def _remove(path: Path) -> None:
    """Cleanup that never masks the exception being unwound (e.g. ENOTCONN after abort)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _drop_caches(level: int) -> None:
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write(f"{level}\n")
