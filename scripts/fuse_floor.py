#!/usr/bin/env python3
"""What one FUSE request costs on this machine with no filesystem behind it (issues 12, 15).

Builds scripts/fuse_floor.c (a raw /dev/fuse server that does no work: reads
return zeros, writes are discarded, see its header) with gcc into a temporary
directory, mounts it the way shmfs is mounted (mount(2) as root, the same
FUSE mount options, INIT flags and timeouts), and runs the per-request
workloads of issues 12 and 15 on it, on a fresh shmfs and on a kernel tmpfs,
in the same run: the floor is what any FUSE filesystem would pay here.

    sudo .venv/bin/python scripts/fuse_floor.py                # 3 rounds, all configs
    sudo .venv/bin/python scripts/fuse_floor.py --rounds 1 --quick
    sudo .venv/bin/python scripts/fuse_floor.py --configs block,poll+lat0 --no-shmfs

The floor server runs in four configurations: ``block`` (one reader sleeping
in read(2)), ``poll`` (one reader spinning on a nonblocking read), each with
or without ``+lat0`` (/dev/cpu_dma_latency = 0 held while serving, what shmfs
holds while requests stream in: mount/server/cpulatency.py). Each target is
mounted fresh for each round and unmounted after it, so a spinning server
burns a CPU only while it is measured. Prints a Markdown table (µs per
operation, median over the rounds, min-max), /proc/loadavg at each round,
each operation's goal and whether the best floor is under it.

Root only (mount(2), drop_caches, /dev/cpu_dma_latency). Mounting, the
targets and the request counts: scripts/fuse_floor_mount.py; the test:
tests/test_fuse_floor.py.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
for _p in (str(SCRIPTS), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from benchlib.engine import CEngine  # noqa: E402
from fuse_floor_mount import (  # noqa: E402
    CONFIGS,
    FLOOR_IOC_STEP,
    PAGE,
    TCGETS,
    build,
    libc,
    open_target,
    request_counts,
)

from mount.wire.protocol import Opcode  # noqa: E402

WIN_PAGES = 4096
OBJ_PAGES = (256 << 20) // PAGE  # window_bench.py's object
QOS_DEFAULT = 2_000_000_000  # PM_QOS_CPU_LATENCY_DEFAULT_VALUE: nobody asks for anything


def loadavg() -> str:
    """/proc/loadavg, stripped: recorded with every figure (the machine is shared)."""
    with open("/proc/loadavg") as f:
        return f.read().strip()


# ---- workloads: each returns µs per operation ------------------------------------

@dataclass
class Sizes:
    """Counts per workload; --quick shrinks them."""

    rand_file: int = 64 << 20
    rand_ops: int = 16384
    meta_n: int = 5000
    append_4k_bytes: int = 128 << 20
    append_512_bytes: int = 8 << 20
    ioctl_n: int = 20000
    step_n: int = 10000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(rand_file=16 << 20, rand_ops=4096, meta_n=1000, append_4k_bytes=16 << 20,
                   append_512_bytes=1 << 20, ioctl_n=2000, step_n=1000)


def _drop_caches(level: int) -> None:
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write(f"{level}\n")


def _client(exe: Path, *args: object) -> tuple[int, int]:
    """Run a client subcommand of fuse_floor; (ns, ops)."""
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                          timeout=600, check=False)
    if proc.returncode != 0:
        raise OSError(f"fuse_floor {args[0]} failed: {proc.stderr.strip()}")
    kv = dict(f.split("=") for f in proc.stdout.split())
    return int(kv["ns"]), int(kv["ops"])


def _us(ns: int, ops: int) -> float:
    return ns / 1e3 / ops


def idle_policy() -> str:
    """The cpuidle driver and haltpoll's guest_halt_poll_ns: they decide what an idle
    machine's wake-ups cost (docs/performance.md, "this VM does not halt-poll")."""
    def read(p: str) -> str:
        try:
            return Path(p).read_text().strip()
        except OSError:
            return "?"
    return (f"cpuidle {read('/sys/devices/system/cpu/cpuidle/current_driver')}, "
            f"guest_halt_poll_ns {read('/sys/module/haltpoll/parameters/guest_halt_poll_ns')}")


def qos_now() -> int | None:
    """The CPU latency limit the kernel applies now (µs; QOS_DEFAULT: no request held)."""
    try:
        fd = os.open("/dev/cpu_dma_latency", os.O_RDONLY)
    except OSError:
        return None
    try:
        return int.from_bytes(os.read(fd, 4), "little", signed=True)
    finally:
        os.close(fd)


def _opname(code: int) -> str:
    try:
        return Opcode(code).name
    except ValueError:
        return f"op{code}"


class Workloads:
    """The rows of the table, run on one mounted target directory.

    On a floor mount each row also records the requests the server read during
    its timed loop, per operation (``self.requests``): what one system call
    costs in round trips, which the kernel decides, the same on shmfs."""

    ROWS = ("rand_read_4k", "stat_expired", "append_4k", "append_512", "create_close",
            "unlink", "ioctl", "step", "step_py")
    # unit -> the rows it produces (for --only)
    UNITS = {"rand_read_4k": ("rand_read_4k",), "meta": ("create_close", "stat_expired",
                                                          "unlink"),
             "append_4k": ("append_4k",), "append_512": ("append_512",), "ioctl": ("ioctl",),
             "step": ("step", "step_py")}

    def __init__(self, exe: Path, engine: CEngine, sizes: Sizes) -> None:
        self.exe = exe
        self.engine = engine
        self.sizes = sizes
        self.requests: dict[str, dict[str, float]] = {}

    def run(self, target: str, root: Path, only: set[str] | None = None) -> dict[str, float]:
        """The rows on root (all, or the units or rows named in only); {row: µs per op}."""
        self.requests = {}
        units: dict[str, Callable[[], dict[str, float]]] = {
            "rand_read_4k": lambda: {"rand_read_4k": self.rand_read(root)},
            "meta": lambda: self.meta(root),
            "append_4k": lambda: {"append_4k": self.append(root, 4096,
                                                           self.sizes.append_4k_bytes)},
            "append_512": lambda: {"append_512": self.append(root, 512,
                                                             self.sizes.append_512_bytes)},
            "ioctl": lambda: {"ioctl": self.ioctl(root)},
            "step": lambda: self.step(target, root),
        }
        out: dict[str, float] = {}
        for name, fn in units.items():
            if not only or name in only or only & set(self.UNITS[name]):
                out.update(fn())
        return out

    @contextlib.contextmanager
    def _counted(self, row: str, root: Path, ops: Callable[[], int]) -> Iterator[None]:
        """Record the floor server's requests per operation for the block inside."""
        before = request_counts(root)
        yield
        after = request_counts(root)
        if before is None or after is None:
            return
        n = max(ops(), 1)
        diff = [a - b for a, b in zip(after, before, strict=True)]
        # the measuring itself: the first open's RELEASEDIR, the second's OPENDIR and IOCTL
        for op in (Opcode.RELEASEDIR, Opcode.OPENDIR, Opcode.IOCTL):
            diff[op] = max(diff[op] - 1, 0)
        self.requests[row] = {_opname(i): round(d / n, 2) for i, d in enumerate(diff)
                              if round(d / n, 2)}

    def rand_read(self, root: Path) -> float:
        """bench.py's rand_read_4k: distinct random pages of a cold file, FADV_RANDOM."""
        path = root / "rand"
        try:
            self.engine.seqwrite(path, self.sizes.rand_file, 1 << 20)
            fd = os.open(path, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            _drop_caches(3)
            with self._counted("rand_read_4k", root, lambda: self.sizes.rand_ops):
                s = self.engine.randread(path, self.sizes.rand_ops, 6)
        finally:
            path.unlink(missing_ok=True)
        return _us(s.ns, s.ops)

    def meta(self, root: Path) -> dict[str, float]:
        """bench.py's meta rows: create+close, stat after drop_caches 2 (one LOOKUP each
        on FUSE), unlink -- in the mount's root directory."""
        n = self.sizes.meta_n
        with self._counted("create_close", root, lambda: n):
            c = self.engine.meta("create", root, n)
        _drop_caches(2)
        with self._counted("stat_expired", root, lambda: n):
            s = self.engine.meta("stat", root, n)
        with self._counted("unlink", root, lambda: n):
            u = self.engine.meta("unlink", root, n)
        return {"create_close": _us(c.ns, c.ops), "stat_expired": _us(s.ns, s.ops),
                "unlink": _us(u.ns, u.ops)}

    def append(self, root: Path, bs: int, total: int) -> float:
        """dd-like: a new file, write(2) of bs bytes until total, close (timed)."""
        path = root / f"append{bs}"
        try:
            with self._counted(f"append_{'4k' if bs == 4096 else bs}", root,
                               lambda: total // bs):
                ns, ops = _client(self.exe, "append", path, bs, total)
        finally:
            path.unlink(missing_ok=True)
        return _us(ns, ops)

    def ioctl(self, root: Path) -> float:
        """ioctl(TCGETS) on a regular file: ENOTTY, one IOCTL round trip on FUSE."""
        path = root / "ioctl"
        path.touch()
        try:
            with self._counted("ioctl", root, lambda: self.sizes.ioctl_n):
                ns, ops = _client(self.exe, "ioctl", path, TCGETS, self.sizes.ioctl_n)
        finally:
            path.unlink(missing_ok=True)
        return _us(ns, ops)

    def step(self, target: str, root: Path) -> dict[str, float]:
        """The window-step rows: from C (floor: ioctl STEP; tmpfs: the kernel's
        MAP_FIXED emulation; shmfs: none) and from Python (floor: the same ioctl;
        shmfs, tmpfs: window_bench.py's stream)."""
        if target == "shmfs":
            return {"step_py": self.window_bench_step(target, root)}
        if target == "tmpfs":
            return {"step": self.emul_step(root),
                    "step_py": self.window_bench_step(target, root)}
        return {"step": self.floor_step(root), "step_py": self.floor_step_py(root)}

    def emul_step(self, root: Path) -> float:
        """The kernel emulation's step from C: MAP_FIXED of one page of a 256 MiB
        object over a 4096-page mapping, then one load (window_bench's tmpfs side)."""
        path = root / "emul"
        try:
            ns, ops = _client(self.exe, "emul", path, WIN_PAGES, OBJ_PAGES, self.sizes.step_n)
        finally:
            path.unlink(missing_ok=True)
        return _us(ns, ops)

    def floor_step(self, root: Path) -> float:
        """The window step stand-in from C: ioctl STEP (inval + store), then one load."""
        path = root / "win"
        path.touch()
        os.truncate(path, WIN_PAGES * PAGE)
        try:
            with self._counted("step", root, lambda: self.sizes.step_n):
                ns, ops = _client(self.exe, "step", path, WIN_PAGES, self.sizes.step_n)
        finally:
            path.unlink(missing_ok=True)
        return _us(ns, ops)

    def floor_step_py(self, root: Path) -> float:
        """The same step driven from Python (fcntl.ioctl + a ctypes load), as
        window_bench.py drives shmfs and tmpfs: the like-for-like column."""
        import random

        from windowlib import sysmm

        path = root / "winpy"
        path.touch()
        os.truncate(path, WIN_PAGES * PAGE)
        fd = os.open(path, os.O_RDONLY)
        base = sysmm.mmap(None, WIN_PAGES * PAGE, sysmm.PROT_READ, sysmm.MAP_SHARED, fd, 0)
        try:
            rng = random.Random(12)
            plan = [rng.randrange(WIN_PAGES) for _ in range(self.sizes.step_n)]
            errors = 0
            ioctl, load = libc.ioctl, ctypes.c_uint64.from_address
            t = time.perf_counter_ns()
            for n, page in enumerate(plan):
                arg = ((n + 1) << 32) | page
                if ioctl(fd, FLOOR_IOC_STEP, arg) != 0:
                    raise OSError(ctypes.get_errno(), "ioctl FLOOR_IOC_STEP")
                if load(base + page * PAGE).value != arg:
                    errors += 1
            ns = time.perf_counter_ns() - t
        finally:
            sysmm.munmap(base, WIN_PAGES * PAGE)
            os.close(fd)
            path.unlink(missing_ok=True)
        if errors:
            raise OSError(f"{errors} window-step loads did not see the stored page")
        return _us(ns, len(plan))

    def window_bench_step(self, target: str, root: Path) -> float:
        """scripts/window_bench.py's remap-then-touch stream (REMAP + populate on
        shmfs, the MAP_FIXED emulation on tmpfs), without stores (the floor's step
        stores nothing either)."""
        import window_bench

        side = window_bench._Side(target, root, remapv=True, populate=True)
        try:
            r = window_bench.stream(side, self.sizes.step_n, 12, stores=0.0)
        finally:
            side.close()
        if r["errors"]:
            raise OSError(f"window_bench stream on {target}: {r['errors']} errors")
        return float(r["us_per_step"])


# ---- the report ------------------------------------------------------------------

# row -> (what, goal in µs per op or None, where the goal comes from)
GOALS: dict[str, tuple[str, float | None, str]] = {
    "rand_read_4k": ("cold 4 KiB random read", 1e6 / 80_000, "issue 15: >= 80,000/s"),
    "stat_expired": ("stat of an evicted entry (LOOKUP)", 10.0, "issue 15: <= 10 µs"),
    "append_4k": ("4 KiB append (write(2), new file)", 4096 / 500e6 * 1e6,
                  "issue 15: >= 500 MB/s"),
    "append_512": ("512 B append", 512 / 60e6 * 1e6, "issue 15: >= 60 MB/s"),
    "create_close": ("create+close", 30.0, "issue 15: <= 30 µs"),
    "unlink": ("unlink", 20.0, "issue 15: <= 20 µs"),
    "ioctl": ("ioctl round trip (TCGETS: ENOTTY)", None, "-"),
    "step": ("window step, C client (floor: ioctl + inval + store + load; tmpfs: "
             "MAP_FIXED + load)", None,
             "issue 12: >= 0.5x kernel emulation"),
    "step_py": ("window step, Python client (window_bench stream on shmfs/tmpfs)", None,
                "issue 12: >= 0.5x kernel emulation"),
}


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.1f}"
    return f"{med:.1f} ({min(values):.1f}-{max(values):.1f})"


def goal_us(row: str, results: dict[str, dict[str, list[float]]]) -> float | None:
    """The goal of a row in µs per op; the window step's is twice the kernel
    emulation's step time in the same run (0.5x its rate)."""
    if row in ("step", "step_py"):
        emu = results.get("tmpfs", {}).get(row, [])
        return 2 * statistics.median(emu) if emu else None
    return GOALS[row][1]


def table(results: dict[str, dict[str, list[float]]], targets: list[str]) -> str:
    """The Markdown table: µs per op, median (min-max) over the rounds."""
    floors = [t for t in targets if t not in ("shmfs", "tmpfs")]
    head = ["operation", "goal (µs)"] + [f"floor {t}" for t in floors]
    head += [t for t in targets if t in ("shmfs", "tmpfs")] + ["best floor under goal?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in Workloads.ROWS:
        if not any(results.get(t, {}).get(row) for t in targets):
            continue
        g = goal_us(row, results)
        gtext = f"{g:.1f}" if g is not None else "-"
        if row in ("step", "step_py") and g is not None:
            gtext += " (2x tmpfs)"
        cells = [GOALS[row][0], gtext]
        cells += [_cell(results.get(t, {}).get(row, [])) for t in floors]
        cells += [_cell(results.get(t, {}).get(row, [])) for t in targets
                  if t in ("shmfs", "tmpfs")]
        best = [statistics.median(v) for t in floors if (v := results.get(t, {}).get(row))]
        if g is None or not best:
            verdict = "-"
        else:
            b = min(best)
            verdict = (f"yes ({b:.1f} µs)" if b <= g else f"**no** ({b:.1f} µs > {g:.1f})")
        cells.append(verdict)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds (each mounts every target)")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"floor server configurations, comma-separated ({', '.join(CONFIGS)})")
    p.add_argument("--no-shmfs", action="store_true", help="leave shmfs out")
    p.add_argument("--no-tmpfs", action="store_true", help="leave the kernel tmpfs out")
    p.add_argument("--shmfs-options", default="", help="more -o options for the shmfs")
    p.add_argument("--only", default="",
                   help="comma-separated units to run: " + ", ".join(Workloads.UNITS))
    p.add_argument("--json", type=Path, help="write every figure here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("fuse_floor.py needs root (mount(2), drop_caches, /dev/cpu_dma_latency)",
              file=sys.stderr)
        return 2
    configs = [c for c in args.configs.split(",") if c]
    if bad := [c for c in configs if c not in CONFIGS]:
        raise SystemExit(f"unknown configs: {', '.join(bad)} (known: {', '.join(CONFIGS)})")
    targets = configs + ([] if args.no_shmfs else ["shmfs"]) + ([] if args.no_tmpfs else
                                                               ["tmpfs"])
    only = {r for r in args.only.split(",") if r}
    sizes = Sizes.quick() if args.quick else Sizes()
    results: dict[str, dict[str, list[float]]] = {t: {} for t in targets}
    requests: dict[str, dict[str, dict[str, float]]] = {}  # floor: requests per op, last round
    doc: dict[str, Any] = {"loadavg_start": loadavg(), "rounds": [], "sizes": vars(sizes),
                           "kernel": os.uname().release, "command": sys.argv,
                           "idle_policy": idle_policy()}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fuse-floor-build-") as tmp:
        exe = build(Path(tmp))
        engine = CEngine.build()
        work = Workloads(exe, engine, sizes)
        for r in range(args.rounds):
            order = targets if r % 2 == 0 else targets[::-1]
            rnd: dict[str, Any] = {"loadavg_start": loadavg(), "qos_before": {}}
            for t in order:
                print(f"[round {r + 1}/{args.rounds}] {time.monotonic() - t_start:6.1f}s "
                      f"{t} (load {loadavg()}) ...", file=sys.stderr, flush=True)
                rnd["qos_before"][t] = qos_now()
                with open_target(t, exe, args.shmfs_options) as root:
                    got = work.run(t, root, only)
                    if work.requests:
                        requests[t] = work.requests
                for row, us in got.items():
                    results[t].setdefault(row, []).append(us)
                rnd[t] = got
            rnd["loadavg_end"] = loadavg()
            doc["rounds"].append(rnd)
    doc["loadavg_end"] = loadavg()
    doc["results"] = results
    doc["requests_per_op"] = requests
    print(f"\n`{' '.join(sys.argv)}` -- {len(doc['rounds'])} round(s), kernel "
          f"{doc['kernel']}, {doc['idle_policy']}; µs per operation, median (min-max) "
          "over the rounds\n")
    print(table(results, targets))
    print("\nload (/proc/loadavg) at each round: " + "; ".join(
        f"{x['loadavg_start'].split()[0]}-{x['loadavg_end'].split()[0]}" for x in doc["rounds"]))
    # a column meant to run at the default idle policy, started while someone else's
    # request was held (other shmfs daemons hold 0 while busy): say how often
    held: dict[str, int] = {}
    for x in doc["rounds"]:
        for t, q in x["qos_before"].items():
            if q is not None and q < QOS_DEFAULT and "lat0" not in t and t != "shmfs":
                held[t] = held.get(t, 0) + 1
    if held:
        print("note: another process held a CPU latency request (/dev/cpu_dma_latency) when "
              + ", ".join(f"{t} ({n} of {len(doc['rounds'])} rounds)" for t, n in held.items())
              + " started: those runs did not have the default idle policy")
    if requests:
        print("\nrequests the floor server read per operation (last round, "
              f"{next(iter(requests))}):")
        for row, ops in next(iter(requests.values())).items():
            print(f"  {row:14} " + ", ".join(f"{k} {v:g}" for k, v in ops.items()))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
