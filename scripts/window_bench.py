#!/usr/bin/env python3
"""Window speed against the kernel's remap_file_pages emulation, side by side (issue 12).

    .venv/bin/python scripts/window_bench.py               # all three, ratios printed
    .venv/bin/python scripts/window_bench.py --steps 20000 --json out.json

Three measurements, each on a fresh shmfs and on a fresh kernel tmpfs in the
same run (the tmpfs side is the 4.0+ emulation: one ``mmap(MAP_FIXED)`` per
remapped page, scripts/windowlib/sysmm.py):

* **remap-then-touch stream**: a 4096-page window over a 256 MiB object whose
  every page holds its own number in its first 8 bytes; each step remaps one
  random window page to a random object page (REMAP with SHMFS_REMAP_POPULATE,
  remap_file_pages' own default: the daemon pushes the page into the kernel's
  cache, docs/windows.md; ``--no-populate`` for MAP_NONBLOCK), then loads and checks those 8
  bytes through a ``MAP_SHARED`` mapping of the window (a CPU load, by
  ctypes, as the tmpfs side does); one step in four also stores 8 bytes at
  offset 8 of the page.  Every load is verified.
* **MADV_REMOVE of the whole window** after its 4096 pages were remapped to
  scattered object pages and stored into: one call (on tmpfs, madvise over
  the 4096 VMAs of the emulation).  Verified: the object pages read back zero.
* **batch remap**: the whole window remapped to scattered object pages
  (stride 3; the stream's stores written back first, untimed) in as few calls
  as the side allows -- SHMFS_IOC_WIN_REMAPV
  batches on shmfs (``--no-remapv``: one REMAP per page), one MAP_FIXED per
  page on tmpfs; repeated ``--batch-rounds`` times.  Verified by QUERY.

Prints each rate with the shmfs/tmpfs ratio and ``/proc/loadavg`` (the machine
may be shared; figures without the load average mean little).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import struct
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

from windowlib import sysmm, targets  # noqa: E402

from mount.winapi.client import PAGE_SIZE, PROT_READ, PROT_WRITE, Window  # noqa: E402

WIN_PAGES = 4096
OBJ_PAGES = (256 << 20) // PAGE_SIZE
RW = PROT_READ | PROT_WRITE
_U64 = struct.Struct("<Q")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


def _make_object(path: Path, npages: int) -> int:
    """The object: page p holds p in its first 8 bytes (written 1 MiB at a time)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    per = (1 << 20) // PAGE_SIZE
    buf = bytearray(per * PAGE_SIZE)
    for first in range(0, npages, per):
        n = min(per, npages - first)
        for k in range(n):
            _U64.pack_into(buf, k * PAGE_SIZE, first + k)
        os.pwrite(fd, memoryview(buf)[: n * PAGE_SIZE], first * PAGE_SIZE)
    return fd


def _load8(addr: int) -> int:
    return ctypes.c_uint64.from_address(addr).value


def _store8(addr: int, value: int) -> None:
    ctypes.c_uint64.from_address(addr).value = value


class _Side:
    """One filesystem: a window (shmfs) or the MAP_FIXED emulation (tmpfs)."""

    def __init__(self, kind: str, root: Path, remapv: bool, populate: bool = True) -> None:
        self.kind = kind
        self.remapv = remapv
        self.populate = populate
        self.objpath = root / "bench-object"
        self.fd = _make_object(self.objpath, OBJ_PAGES)
        self.size = WIN_PAGES * PAGE_SIZE
        self.win: Window | None = None
        if kind == "shmfs":
            self.winpath = root / "bench-window"
            self.win = Window.create(self.winpath, self.objpath, WIN_PAGES, RW)
            os.posix_fadvise(self.win.fd, 0, 0, os.POSIX_FADV_RANDOM)
            os.fstat(self.win.fd)  # the kernel learns the size ATTACH gave (docs/windows.md)
            self.base = sysmm.mmap(None, self.size, RW, sysmm.MAP_SHARED, self.win.fd, 0)
        else:
            self.base = sysmm.mmap(None, self.size, RW, sysmm.MAP_SHARED, self.fd, 0)
        sysmm.madvise(self.base, self.size, sysmm.MADV_RANDOM)

    def remap(self, i: int, pgoff: int) -> None:
        if self.win is not None:
            self.win.remap(i, 1, pgoff, populate=self.populate)
        else:
            sysmm.remap_fixed(self.base + i * PAGE_SIZE, 1, RW, self.fd, pgoff)

    def remap_batch(self, entries: list[tuple[int, int]]) -> None:
        """(window page, object page) pairs, one page each."""
        if self.win is not None and self.remapv and hasattr(self.win, "remapv"):
            self.win.remapv([(i, 1, p) for i, p in entries])
            return
        for i, p in entries:
            self.remap(i, p)

    def remove_all(self) -> None:
        if self.win is not None:
            from mount.winapi.client import MADV_REMOVE

            self.win.madvise(0, WIN_PAGES, MADV_REMOVE)
        else:
            sysmm.madvise(self.base, self.size, sysmm.MADV_REMOVE)

    def shown(self) -> list[int]:
        assert self.win is not None
        return [p.pgoff for p in self.win.query(0, WIN_PAGES)]

    def close(self) -> None:
        sysmm.munmap(self.base, self.size)
        if self.win is not None:
            self.win.close()
            os.unlink(self.winpath)
        os.close(self.fd)
        os.unlink(self.objpath)


def stream(side: _Side, steps: int, seed: int, stores: float = 0.25) -> dict[str, Any]:
    """The remap-then-touch stream; every load checked against the page's number;
    ``stores``: the fraction of steps that also store (each makes a launder WRITE
    at the next remap of that window page)."""
    rng = random.Random(seed)
    plan = [(rng.randrange(WIN_PAGES), rng.randrange(OBJ_PAGES), rng.random() < stores)
            for _ in range(steps)]
    errors = 0
    base = side.base
    t = time.perf_counter()
    for n, (i, p, st) in enumerate(plan):
        side.remap(i, p)
        a = base + i * PAGE_SIZE
        if _load8(a) != p:
            errors += 1
        if st:
            _store8(a + 8, n)
    dt = time.perf_counter() - t
    return {"steps": steps, "seconds": dt, "steps_per_s": steps / dt, "errors": errors,
            "us_per_step": dt / steps * 1e6}


def remove(side: _Side, seed: int) -> dict[str, Any]:
    """MADV_REMOVE of the whole window after scattering it and storing into every page."""
    rng = random.Random(seed)
    pgoffs = rng.sample(range(OBJ_PAGES), WIN_PAGES)
    side.remap_batch(list(enumerate(pgoffs)))
    for i in range(WIN_PAGES):
        _store8(side.base + i * PAGE_SIZE + 8, 0xABCD)
    if side.win is not None:
        side.win.sync()
    t = time.perf_counter()
    side.remove_all()
    dt = time.perf_counter() - t
    bad = sum(1 for p in pgoffs[:256]
              if os.pread(side.fd, 16, p * PAGE_SIZE) != bytes(16))
    return {"pages": WIN_PAGES, "seconds": dt, "ms": dt * 1e3, "errors": bad}


def batch(side: _Side, rounds: int) -> dict[str, Any]:
    """The whole window remapped (stride 3, shifted each round), as fast as the side can.
    The stream's stores are written back first (fsync, untimed): otherwise the first
    round also pays the kernel's launder of every page the stream dirtied (one WRITE
    each, ~700 of them), which is the stream's cost, not the remap's."""
    if side.win is not None:
        side.win.sync()
    pages = 0
    dt = 0.0
    errors = 0
    for r in range(rounds):
        entries = [(i, (i * 3 + r * 7919) % OBJ_PAGES) for i in range(WIN_PAGES)]
        t = time.perf_counter()
        side.remap_batch(entries)
        dt += time.perf_counter() - t
        pages += len(entries)
        if side.win is not None and r == rounds - 1:
            got = side.shown()
            errors += sum(1 for (i, p) in entries if got[i] != p)
    return {"pages": pages, "seconds": dt, "pages_per_s": pages / dt if dt else 0.0,
            "errors": errors}


def run(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with targets.open_target(kind, "600m", None, options=args.shmfs_options) as t:
        side = _Side(kind, t.path, not args.no_remapv, not args.no_populate)
        try:
            out = {"load_before": loadavg(), "shmfs_options": args.shmfs_options,
                   "native_remap": os.environ.get("SHMFS_WINFAST", "1") != "0"}
            if kind == "shmfs":
                out["daemon_native"] = t.stats().get("session", {}).get("winfast", {})
            if "stream" in args.only:
                out["stream"] = stream(side, args.steps, args.seed, args.stores)
            if "batch" in args.only:
                out["batch"] = batch(side, args.batch_rounds)
            if "remove" in args.only:
                out["remove"] = remove(side, args.seed)
            out["load_after"] = loadavg()
            if kind == "shmfs":  # how many REMAPs the C path took (mount/server/winfast.py)
                out["daemon_native"] = t.stats().get("session", {}).get("winfast", {})
        finally:
            side.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20000, help="remap-then-touch steps")
    p.add_argument("--stores", type=float, default=0.25,
                   help="fraction of stream steps that also store (0: no launders)")
    p.add_argument("--batch-rounds", type=int, default=10, help="whole-window batch remaps")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--no-remapv", action="store_true",
                   help="batch remap by single REMAP ioctls (the figure before REMAPV)")
    p.add_argument("--no-populate", action="store_true",
                   help="stream remaps without SHMFS_REMAP_POPULATE (no NOTIFY_STORE: the "
                        "touch then READs the page)")
    p.add_argument("--only", default="stream,batch,remove",
                   help="comma-separated subset of stream,batch,remove")
    p.add_argument("--shmfs-only", action="store_true", help="skip the tmpfs side")
    p.add_argument("--shmfs-options", default="",
                   help="more -o options for the shmfs (e.g. cpu_latency=off)")
    p.add_argument("--python-remap", action="store_true",
                   help="the daemon serves REMAP in Python (SHMFS_WINFAST=0: no C fast path)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.python_remap:
        os.environ["SHMFS_WINFAST"] = "0"  # inherited by the daemon
    args.only = set(args.only.split(","))
    doc: dict[str, Any] = {"loadavg_start": loadavg()}
    for kind in ["shmfs"] + ([] if args.shmfs_only else ["tmpfs"]):
        doc[kind] = run(kind, args)
    doc["loadavg_end"] = loadavg()
    s, k = doc["shmfs"], doc.get("tmpfs", {})
    bad = 0

    def ratio(a: float, b: float | None) -> str:
        return f"{a / b:.2f}x" if b else "-"

    print(f"loadavg: {doc['loadavg_start']}  ->  {doc['loadavg_end']}")
    if "stream" in s:
        a, b = s["stream"], k.get("stream")
        bad += a["errors"] + (b["errors"] if b else 0)
        print(f"remap-then-touch: shmfs {a['steps_per_s']:,.0f}/s ({a['us_per_step']:.0f} us), "
              f"tmpfs {b['steps_per_s'] if b else 0:,.0f}/s, "
              f"ratio {ratio(a['steps_per_s'], b and b['steps_per_s'])}")
    if "batch" in s:
        a, b = s["batch"], k.get("batch")
        bad += a["errors"]
        print(f"batch remap: shmfs {a['pages_per_s']:,.0f} pages/s, "
              f"tmpfs {b['pages_per_s'] if b else 0:,.0f} pages/s, "
              f"ratio {ratio(a['pages_per_s'], b and b['pages_per_s'])}")
    if "remove" in s:
        a, b = s["remove"], k.get("remove")
        bad += a["errors"] + (b["errors"] if b else 0)
        print(f"MADV_REMOVE of {WIN_PAGES} pages: shmfs {a['ms']:.1f} ms, "
              f"tmpfs {b['ms'] if b else 0:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
    if bad:
        print(f"FAILED: {bad} verification errors", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
