#!/usr/bin/env python3
"""UML-style physical memory through shmfs windows, checked against an oracle.

    .venv/bin/python scripts/uml_physmem.py                  # fresh shmfs, ~1 minute
    .venv/bin/python scripts/uml_physmem.py --quick          # a few seconds
    .venv/bin/python scripts/uml_physmem.py --compare-tmpfs  # + the kernel's emulation
    .venv/bin/python scripts/uml_physmem.py --mount /mnt/shm --json out.json

User-Mode Linux keeps guest physical memory in one host file ("physmem") and
gives each guest process a host address space into which it maps physmem
frames as the guest's page tables say.  Here physmem is a sparse file on the
mount (default 256 MiB), and each of N guest processes (default 4, real host
processes) owns a window over it.  The controller plays the guest kernel, one
guest at a time as a uniprocessor UML does: random page-table updates (REMAP of
a window page to a frame, with a per-page protection), protection changes,
frees of guest frames (MADV_REMOVE through the window, or a hole punch of
physmem as UML does), loads and stores through pread/pwrite and through a
MAP_SHARED mmap of the window.  Frames are shared between guests, so a store
in one guest must be seen by the others.  The oracle knows what every frame
holds and what every window page maps; every load is checked byte for byte,
accesses the protection forbids must fail with EACCES, and QUERY must agree
with the oracle's page tables.

At the end every frame is freed (MADV_REMOVE of each window, punch of physmem)
and the memory returned is measured: statfs used blocks and the daemon's RSS.
With ``--compare-tmpfs`` the same operation stream runs on a kernel tmpfs with
the kernel's remap_file_pages emulation (one MAP_FIXED mmap per remapped page),
and a 65536-page window laid out non-contiguously shows the vm.max_map_count
wall (windowlib/wall.py).  Exit status 0 only if every verification passed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from windowlib import targets, wall
from windowlib.guest import COUNTERS, RW, serve
from windowlib.progress import Progress, handle_signals

from mount.winapi.client import PAGE_SIZE, PROT_NONE, PROT_READ, Window

PROTS = (RW, PROT_READ, PROT_NONE)
PROT_WEIGHTS = (6, 3, 1)
OPS = ("remap", "protect", "load", "store", "free", "deny", "query")
OP_WEIGHTS = (15, 7, 36, 24, 6, 4, 3)


class Oracle:
    """What every physmem frame holds (a version; 0 = zeros) and what every guest maps."""

    def __init__(self, nframes: int, nguests: int, gpages: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.nframes, self.gpages = nframes, gpages
        self.ver = [0] * nframes
        self.next_version = 1
        self.base = [(g * gpages) % (nframes - gpages + 1) for g in range(nguests)]
        self.pte = [[b + i for i in range(gpages)] for b in self.base]
        self.prot = [[RW] * gpages for _ in range(nguests)]
        self.shown = [{b + i: i for i in range(gpages)} for b in self.base]
        self.counts = dict.fromkeys(OPS, 0)
        self.trail: list[tuple[int, tuple[Any, ...]]] = []

    def log(self, g: int, ops: list[tuple[Any, ...]]) -> None:
        """Remember the operations a guest ran (for the failure report)."""
        self.trail.extend((g, o) for o in ops)
        if len(self.trail) > 200000:
            del self.trail[:100000]

    def history(self, g: int, failed: tuple[Any, ...]) -> list[str]:
        """The earlier operations that touched the failed op's window page or frame."""
        i = failed[1]
        frame = failed[3] if failed[0] in ("load", "store", "free") else None
        lines = [f"failed op of guest {g}: {failed!r}; earlier ops on that page or frame:"]
        hits = []
        for n, (h, o) in enumerate(self.trail):
            same_page = h == g and o[0] != "query" and len(o) > 1 and o[1] == i
            same_frame = frame is not None and (
                (o[0] in ("load", "store", "free") and o[3] == frame)
                or (o[0] == "remap" and o[2] == frame))
            if same_page or same_frame:
                hits.append(f"  #{n} guest {h}: {o!r}")
        return lines + hits[-16:]

    def _page(self, g: int, want: int | None = None) -> int | None:
        """A random page of guest g, with protection ``want`` (or any), or None."""
        for _ in range(8):
            i = self.rng.randrange(self.gpages)
            if want is None or self.prot[g][i] == want or (
                    want == PROT_READ and self.prot[g][i] & PROT_READ):
                return i
        return None

    def _new_frame(self, g: int) -> int:
        while True:  # no two pages of one window show the same frame (docs/windows.md)
            f = self.rng.randrange(self.nframes)
            if f not in self.shown[g]:
                return f

    def op(self, g: int) -> tuple[Any, ...] | None:
        """The next operation of guest g, applied to the model; None if none fits."""
        r = self.rng
        kind = r.choices(OPS, OP_WEIGHTS)[0]
        out: tuple[Any, ...] | None = None
        if kind == "remap":
            i = r.randrange(self.gpages)
            f = self._new_frame(g)
            prot = r.choices(PROTS, PROT_WEIGHTS)[0]
            del self.shown[g][self.pte[g][i]]
            self.shown[g][f] = i
            self.pte[g][i], self.prot[g][i] = f, prot
            out = ("remap", i, f, prot, r.random() < 0.2)
        elif kind == "protect":
            i = r.randrange(self.gpages)
            self.prot[g][i] = r.choices(PROTS, PROT_WEIGHTS)[0]
            out = ("protect", i, self.prot[g][i])
        elif kind == "load":
            i = self._page(g, PROT_READ)
            if i is not None:
                f = self.pte[g][i]
                out = ("load", i, r.choice(("pread", "mmap")), f, self.ver[f])
        elif kind == "store":
            i = self._page(g, RW)
            if i is not None:
                f = self.pte[g][i]
                self.ver[f] = self.next_version
                self.next_version += 1
                out = ("store", i, r.choice(("pwrite", "mmap")), f, self.ver[f])
        elif kind == "free":
            i = r.randrange(self.gpages)
            f = self.pte[g][i]
            how = "madvise" if self.prot[g][i] == RW and r.random() < 0.5 else "punch"
            self.ver[f] = 0
            out = ("free", i, how, f)
        elif kind == "deny":
            i = self._page(g, PROT_NONE)
            if i is not None:
                out = ("deny", i, "load")
            else:
                i = self._page(g, PROT_READ)
                if i is not None and self.prot[g][i] == PROT_READ:
                    out = ("deny", i, "store")
        else:
            first = r.randrange(max(1, self.gpages - 16))
            n = min(16, self.gpages - first)
            out = ("query", first, [(self.pte[g][j], self.prot[g][j])
                                    for j in range(first, first + n)])
        if out is not None:
            self.counts[out[0]] += 1
        return out

    def zero_loads(self, g: int, n: int) -> list[tuple[Any, ...]]:
        """Loads of up to n readable pages of guest g, all expected to hold zeros now."""
        ops = []
        for k in range(n):
            i = self._page(g, PROT_READ)
            if i is not None:
                f = self.pte[g][i]
                ops.append(("load", i, ("pread", "mmap")[k % 2], f, self.ver[f]))
        return ops


class Guests:
    """The guest processes of one run and the pipes to them."""

    def __init__(self, kind: str, args: list[tuple[Any, ...]]) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conns = []
        self.procs = []
        for a in args:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=serve, args=(child, kind, a), daemon=True)
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)

    def run(self, g: int, ops: list[tuple[Any, ...]]) -> tuple[int, str] | None:
        self.conns[g].send(ops)
        return self.conns[g].recv()

    def finish(self) -> dict[str, float]:
        """Stop every guest and sum their counters.  A guest that was interrupted
        mid-slice first delivers that slice's answer (skipped here); one that does not
        answer is killed -- its files must be closed before the mount can go."""
        total = dict.fromkeys((*COUNTERS, "minflt", "majflt"), 0.0)
        for conn, p in zip(self.conns, self.procs, strict=True):
            try:
                conn.send(None)
                while conn.poll(30):
                    msg = conn.recv()
                    if isinstance(msg, dict):
                        for k, v in msg.items():
                            total[k] += v
                        break
            except (OSError, EOFError):
                pass
            finally:
                p.join(10)
                if p.is_alive():
                    p.kill()
                    p.join()
                conn.close()
        return total


def run_workload(target: targets.Target, args: argparse.Namespace) -> dict[str, Any]:
    """The whole workload on one filesystem; a result dict with 'errors'."""
    nframes = args.physmem // PAGE_SIZE
    oracle = Oracle(nframes, args.guests, args.guest_pages, args.seed)
    d = target.path
    phys = d / "physmem"
    fd = os.open(phys, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, args.physmem)  # sparse: the guest's RAM costs nothing until touched
    wins = [d / f"guest{g}.win" for g in range(args.guests)]
    if target.kind == "shmfs":
        for g, path in enumerate(wins):
            Window.create(path, phys, args.guest_pages, RW, pgoff=oracle.base[g]).close()
        gargs: list[tuple[Any, ...]] = [(str(w), str(phys), not args.strict_deny)
                                        for w in wins]
    else:
        gargs = [(str(phys), oracle.base[g], args.guest_pages) for g in range(args.guests)]
    errors: list[str] = []
    res: dict[str, Any] = {"fs": target.kind}
    guests = Guests(target.kind, gargs)
    try:
        stats0 = target.stats()
        done = 0
        prog = Progress(f"uml {target.kind}", lambda: (
            f"{done}/{args.ops} ops, {oracle.counts['remap']} remaps, "
            f"{oracle.counts['load']} loads, {oracle.counts['store']} stores, "
            f"{oracle.counts['free']} frees"), quiet=args.quiet)
        t0 = time.perf_counter()
        rng = oracle.rng
        while done < args.ops and not errors:
            g = rng.randrange(args.guests)
            n = min(rng.randint(1, 64), args.ops - done)
            ops = [o for o in (oracle.op(g) for _ in range(n)) if o is not None]
            err = guests.run(g, ops)
            if err:
                errors.append(f"guest {g}: {err[1]}")
                errors.extend(oracle.history(g, ops[err[0]]))
            oracle.log(g, ops)
            done += n
            prog.tick()
        seconds = time.perf_counter() - t0
        prog.line()
        stats1 = target.stats()
        res.update(_memory_phase(target, oracle, guests, fd, args, errors))
    finally:
        counters = guests.finish()
        os.close(fd)
        for path in wins:
            if path.exists():
                path.unlink()
        phys.unlink()
    res.update(_rates(counters, seconds, stats0, stats1))
    res["op_counts"] = dict(oracle.counts)
    res["errors"] = errors
    return res


def _memory_phase(target: targets.Target, oracle: Oracle, guests: Guests, fd: int,
                  args: argparse.Namespace, errors: list[str]) -> dict[str, Any]:
    """Free every frame (MADV_REMOVE of each window, punch of physmem); measure what the
    filesystem and the daemon give back; then every frame must read as zeros."""
    from windowlib import sysmm

    if errors:
        return {}
    used0, mem0 = target.used_bytes(), target.daemon_memory()
    t0 = time.perf_counter()
    for g in range(args.guests):
        err = guests.run(g, [("remove_all",)])
        if err:
            errors.append(f"guest {g} MADV_REMOVE of the window: {err[1]}")
    t1 = time.perf_counter()
    sysmm.punch(fd, 0, args.physmem)
    t2 = time.perf_counter()
    oracle.ver = [0] * oracle.nframes
    used1, mem1 = target.used_bytes(), target.daemon_memory()
    for g in range(args.guests):
        err = guests.run(g, oracle.zero_loads(g, 32))
        if err:
            errors.append(f"guest {g} after the frees: {err[1]}")
    out: dict[str, Any] = {"used_before_free": used0, "used_after_free": used1,
                           "returned_bytes": used0 - used1, "madv_remove_seconds": t1 - t0,
                           "punch_seconds": t2 - t1, "zero_check_seconds": time.perf_counter() - t2}
    if mem0 and mem1:
        out["daemon_rss_before_free"] = mem0.get("VmRSS", 0)
        out["daemon_rss_after_free"] = mem1.get("VmRSS", 0)
        out["daemon_rss_returned"] = mem0.get("VmRSS", 0) - mem1.get("VmRSS", 0)
        # the arena is anonymous memory (vmcore/arena.py): RssAnon holds the file pages
        out["daemon_anon_returned"] = mem0.get("RssAnon", 0) - mem1.get("RssAnon", 0)
    if used1 > used0:
        errors.append(f"freeing every frame grew the used blocks: {used0} -> {used1} bytes")
    return out


def _rates(c: dict[str, float], seconds: float, s0: dict[str, Any], s1: dict[str, Any]
           ) -> dict[str, Any]:
    out: dict[str, Any] = {k: int(c[k]) for k in ("ops", "loads", "stores", "remaps",
                                                   "remap_batches",
                                                   "protects", "frees", "denied", "queries",
                                                   "verified_bytes")}
    out["seconds"] = seconds
    out["ops_per_s"] = c["ops"] / seconds if seconds else 0.0
    out["remaps_per_s"] = c["remaps"] / c["remap_seconds"] if c["remap_seconds"] else 0.0
    out["guest_minor_faults_per_s"] = c["minflt"] / seconds if seconds else 0.0
    if s0 and s1:
        faults = s1["faults"]["faults"] - s0["faults"]["faults"]
        out["daemon_faults"] = faults
        out["faults_per_s"] = faults / seconds if seconds else 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--physmem", default="256m", help="guest physical memory (default 256m)")
    p.add_argument("--guests", type=int, default=4, help="guest processes (default 4)")
    p.add_argument("--guest-pages", type=int, default=4096,
                   help="pages of each guest's window (default 4096 = 16 MiB)")
    p.add_argument("--ops", type=int, default=None, help="operations (default 60000)")
    p.add_argument("--quick", action="store_true", help="a few seconds: 1500 ops, 1024 pages")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mount", type=Path, help="an existing shmfs (default: mount a fresh one)")
    p.add_argument("--daemon-pid", type=int, help="its daemon's pid (for RSS; else searched)")
    p.add_argument("--size", help="-o size= of the fresh mounts (default: 2 x physmem)")
    p.add_argument("--compare-tmpfs", action="store_true",
                   help="run the same workload on a kernel tmpfs (MAP_FIXED emulation)")
    p.add_argument("--wall-pages", type=int, default=65536,
                   help="window pages of the max_map_count demonstration (0: skip)")
    p.add_argument("--strict-deny", action="store_true",
                   help="no read-back after a refused pwrite (exposes the stale-folio issue "
                        "described in windowlib/guest.py)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    args.physmem = targets.parse_size(args.physmem)
    if args.quick:
        args.ops = args.ops or 1500
        args.guest_pages = min(args.guest_pages, 1024)
    args.ops = args.ops or 60000
    if args.guest_pages * PAGE_SIZE > args.physmem or args.physmem % PAGE_SIZE:
        p.error("each guest window must fit in physmem (page multiples)")
    size = args.size or str(max(2 * args.physmem, 64 << 20))

    doc: dict[str, Any] = {"tool": "uml_physmem", "seed": args.seed, "physmem": args.physmem,
                           "guests": args.guests, "guest_pages": args.guest_pages,
                           "ops": args.ops, "runs": {}, "wall": {}}
    kinds = ["shmfs"] + (["tmpfs"] if args.compare_tmpfs else [])
    wall_frames = min(args.physmem // PAGE_SIZE, args.wall_pages)
    for kind in kinds:
        mnt = args.mount if kind == "shmfs" else None
        with targets.open_target(kind, size, mnt, args.daemon_pid) as t:
            doc["runs"][t.kind] = run_workload(t, args)
            _print_run(doc["runs"][t.kind])
            if args.compare_tmpfs and args.wall_pages:
                fn = wall.run_shmfs if t.kind == "shmfs" else wall.run_tmpfs
                doc["wall"][t.kind] = fn(t.path, args.wall_pages, wall_frames, args.seed)
                print(wall.summary(doc["wall"][t.kind]))
    return wall.conclude(doc, "uml_physmem", args.json, [])


def _print_run(r: dict[str, Any]) -> None:
    line = (f"{r['fs']}: {r['ops']} ops in {r['seconds']:.1f}s ({r['ops_per_s']:.0f}/s), "
            f"{r['remaps']} remaps at {r['remaps_per_s']:.0f}/s, {r['loads']} loads verified, "
            f"{r['stores']} stores, {r['frees']} frees, {r['denied']} EACCES checks, "
            f"guest faults {r['guest_minor_faults_per_s']:.0f}/s")
    if "faults_per_s" in r:
        line += f", daemon faults {r['daemon_faults']} ({r['faults_per_s']:.0f}/s)"
    print(line)
    if "returned_bytes" in r:
        mem = (f"memory returned: statfs used {r['used_before_free'] >> 10} KiB -> "
               f"{r['used_after_free'] >> 10} KiB")
        if "daemon_rss_before_free" in r:
            mem += (f", daemon RSS {r['daemon_rss_before_free'] >> 10} KiB -> "
                    f"{r['daemon_rss_after_free'] >> 10} KiB")
        print(mem)


if __name__ == "__main__":
    handle_signals()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
