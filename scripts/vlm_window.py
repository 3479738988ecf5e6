#!/usr/bin/env python3
"""Oracle VLM-style buffer cache: a small window onto a huge sparse object, checked.

    .venv/bin/python scripts/vlm_window.py                   # fresh shmfs, ~1 minute
    .venv/bin/python scripts/vlm_window.py --quick           # a few seconds
    .venv/bin/python scripts/vlm_window.py --compare-tmpfs   # + the kernel's emulation
    .venv/bin/python scripts/vlm_window.py --block-size 4096 --compare-tmpfs

Oracle's "very large memory" mode (indirect data buffers on 32-bit Linux) kept
the buffer cache in a big shared-memory file and let each server process see
it through a small window that it remapped with remap_file_pages(2) as buffers
were needed.  Here the object is a sparse file on the mount (default 64 GiB,
8 KiB database blocks), the window a 256 MiB shmfs window file (32768 buffer
slots).  A workload picks blocks from a Zipf-like distribution (rank =
floor(N ** U): P(rank <= k) = ln k / ln N, hot ranks scattered over the
object), keeps an LRU of which block each slot shows, remaps a slot on a miss
(writing a dirty buffer back first with msync), reads every buffer it touches
and writes some of them.  Every read is verified: a block holds zeros until
written, then a pattern derived from its block number and version; sampled
blocks are also read straight from the object to check that window stores
reached it.  Reports remaps/s and the hit ratio.

``--compare-tmpfs`` runs the same access stream on a kernel tmpfs with the
kernel's own remap_file_pages emulation (one MAP_FIXED mmap per remap), and a
65536-page window laid out non-contiguously on both (windowlib/wall.py) shows
where the kernel stops at vm.max_map_count.  With 4 KiB blocks the buffer cache
itself needs 65536 slot mappings, more than the kernel allows.  Exit status 0
only if every verification passed.
"""

from __future__ import annotations

import argparse
import errno
import random
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from windowlib import targets, wall
from windowlib.bufcache import ShmfsSlots, TmpfsSlots
from windowlib.pattern import describe, expected
from windowlib.progress import Progress, handle_signals

from mount.winapi.client import PAGE_SIZE

HEADROOM = 256  # slot mappings given back when the kernel's emulation hits the wall
SCATTER = 0x9E3779B97F4A7C15  # odd: rank -> block is a bijection for power-of-two counts


class Mismatch(Exception):
    pass


class Workload:
    """The buffer cache, its oracle (block -> version) and the access stream."""

    def __init__(self, slots: Any, nslots: int, nblocks: int, args: argparse.Namespace) -> None:
        self.s = slots
        self.bsize = args.block_size
        self.nblocks = nblocks
        self.hot = min(args.hot_blocks or nblocks, nblocks)
        self.rng = random.Random(args.seed)
        self.write_frac = args.write_fraction
        self.lru: OrderedDict[int, int] = OrderedDict()  # block -> slot, oldest first
        self.free = list(range(nslots - 1, -1, -1))
        self.capacity = nslots
        self.dirty: set[int] = set()
        self.ver: dict[int, int] = {}
        self.written: list[int] = []
        self.next_version = 1
        self.c = dict.fromkeys(("accesses", "hits", "misses", "remaps", "reads", "writes",
                                "writebacks", "object_checks", "verified_bytes",
                                "enomem_events"), 0)
        self.wall: dict[str, Any] | None = None

    def pick(self) -> int:
        rank = int(self.hot ** self.rng.random())  # 1 <= rank < hot
        return ((rank - 1) * SCATTER) % self.nblocks

    def _evict(self) -> int:
        _block, slot = self.lru.popitem(last=False)
        if slot in self.dirty:
            self.s.writeback(slot)
            self.dirty.discard(slot)
            self.c["writebacks"] += 1
        return slot

    def _hit_the_wall(self, e: OSError) -> None:
        """The kernel's emulation ran out of VMAs: keep the buffers it holds, give back
        HEADROOM slot mappings, and never map a fresh slot again."""
        self.c["enomem_events"] += 1
        if self.wall is None:
            self.wall = {"access": self.c["accesses"], "buffers_mapped": len(self.lru),
                         "process_vmas": self.s.vmas(), "errno": e.errno}
        self.free.clear()
        for _ in range(min(HEADROOM, len(self.lru))):
            self.s.unmap(self._evict())
        self.capacity = max(1, len(self.lru))
        self.wall["buffers_kept"] = self.capacity

    def slot_for(self, block: int) -> int:
        slot = self.lru.get(block)
        if slot is not None:
            self.lru.move_to_end(block)
            self.c["hits"] += 1
            return slot
        self.c["misses"] += 1
        while True:
            slot = self.free.pop() if self.free and len(self.lru) < self.capacity \
                else self._evict()
            try:
                self.s.remap(slot, block)
                break
            except OSError as e:
                if e.errno != errno.ENOMEM or self.s.kind != "tmpfs":
                    raise
                self._hit_the_wall(e)
        self.c["remaps"] += 1
        self.lru[block] = slot
        return slot

    def _verify(self, block: int, data: bytes, where: str) -> None:
        want = expected(block, self.ver.get(block, 0), self.bsize)
        if data != want:
            raise Mismatch(f"{where} of block {block}: expected "
                           f"{describe(want, self.bsize)}, got {describe(data, self.bsize)}")
        self.c["verified_bytes"] += len(data)

    def access(self) -> None:
        r = self.rng
        block = self.pick()
        slot = self.slot_for(block)
        via = "pread" if r.random() < 0.1 else "mmap"
        self._verify(block, self.s.load(slot, via), f"{via} through slot {slot}")
        self.c["reads"] += 1
        if r.random() < self.write_frac:
            if block not in self.ver:
                self.written.append(block)
            self.ver[block] = v = self.next_version
            self.next_version += 1
            if self.s.store(slot, "pwrite" if r.random() < 0.1 else "mmap",
                            expected(block, v, self.bsize)):
                self.dirty.add(slot)
            self.c["writes"] += 1
        self.c["accesses"] += 1
        if self.c["accesses"] % 64 == 0 and self.written:
            self.check_object()

    def check_object(self) -> None:
        """A written block read straight from the object (after its write-back)."""
        block = self.rng.choice(self.written)
        slot = self.lru.get(block)
        if slot is not None and slot in self.dirty:
            self.s.writeback(slot)
            self.dirty.discard(slot)
            self.c["writebacks"] += 1
        self._verify(block, self.s.read_object(block), "object pread")
        self.c["object_checks"] += 1


def run_workload(target: targets.Target, args: argparse.Namespace) -> dict[str, Any]:
    d = target.path
    obj, win = d / "sga.dbf", d / "sga.window"
    with open(obj, "wb") as f:
        f.truncate(args.object_size)  # sparse: 64 GiB that cost nothing until written
    window_pages = args.window_size // PAGE_SIZE
    nslots = args.window_size // args.block_size
    cls = ShmfsSlots if target.kind == "shmfs" else TmpfsSlots
    slots = cls(obj, win, window_pages, args.block_size)
    wl = Workload(slots, nslots, args.object_size // args.block_size, args)
    errors: list[str] = []
    c = wl.c
    try:
        stats0 = target.stats()
        prog = Progress(f"vlm {target.kind}", lambda: (
            f"{c['accesses']}/{args.accesses} accesses, hit ratio "
            f"{c['hits'] / max(1, c['accesses']):.3f}, {c['remaps']} remaps, "
            f"{len(wl.lru)} buffers cached"), quiet=args.quiet)
        t0 = time.perf_counter()
        try:
            for _ in range(args.accesses):
                wl.access()
                prog.tick()
        except (Mismatch, OSError) as e:
            errors.append(f"{target.kind}: access {c['accesses']}: {type(e).__name__}: {e}")
        seconds = time.perf_counter() - t0
        prog.line()
        stats1 = target.stats()
        vmas = slots.vmas()
        mem = target.daemon_memory()
        used = target.used_bytes()
    finally:
        slots.close()
        if win.exists():
            win.unlink()
        obj.unlink()
    res: dict[str, Any] = {"fs": target.kind, **c, "seconds": seconds, "errors": errors,
                           "slots": nslots, "buffers_cached": len(wl.lru),
                           "hit_ratio": c["hits"] / c["accesses"] if c["accesses"] else 0.0,
                           "accesses_per_s": c["accesses"] / seconds if seconds else 0.0,
                           "remaps_per_s": c["remaps"] / slots.remap_seconds
                           if slots.remap_seconds else 0.0,
                           "process_vmas": vmas, "used_bytes": used, "map_count_wall": wl.wall}
    if mem:
        res["daemon_rss"] = mem.get("VmRSS", 0)
    if stats0 and stats1:
        res["daemon_faults"] = stats1["faults"]["faults"] - stats0["faults"]["faults"]
        res["faults_per_s"] = res["daemon_faults"] / seconds if seconds else 0.0
    return res


def _print_run(r: dict[str, Any]) -> None:
    print(f"{r['fs']}: {r['accesses']} accesses in {r['seconds']:.1f}s "
          f"({r['accesses_per_s']:.0f}/s), hit ratio {r['hit_ratio']:.3f}, "
          f"{r['remaps']} remaps at {r['remaps_per_s']:.0f}/s, {r['writes']} writes, "
          f"{r['writebacks']} write-backs, {r['object_checks']} object checks, "
          f"{r['verified_bytes'] >> 20} MiB verified, process VMAs {r['process_vmas']}"
          + (f", daemon faults {r['daemon_faults']} ({r['faults_per_s']:.0f}/s)"
             if "daemon_faults" in r else ""))
    w = r["map_count_wall"]
    if w:
        print(f"  {r['fs']} buffer cache hit vm.max_map_count at access {w['access']} with "
              f"{w['buffers_mapped']} of {r['slots']} slots mapped ({w['process_vmas']} VMAs); "
              f"it went on with {w['buffers_kept']} buffers")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--object-size", default="64g", help="sparse object (default 64g)")
    p.add_argument("--window-size", default=None, help="window (default 256m; --quick 16m)")
    p.add_argument("--block-size", type=int, default=8192, help="buffer size (default 8192)")
    p.add_argument("--accesses", type=int, default=None,
                   help="buffer accesses (default 100000; --quick 3000)")
    p.add_argument("--hot-blocks", type=int, default=0,
                   help="Zipf ranks drawn from [1, N) (default: every block)")
    p.add_argument("--write-fraction", type=float, default=0.25)
    p.add_argument("--quick", action="store_true", help="a few seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mount", type=Path, help="an existing shmfs (default: mount a fresh one)")
    p.add_argument("--daemon-pid", type=int, help="its daemon's pid (for RSS; else searched)")
    p.add_argument("--size", default="1g", help="-o size= of the fresh mounts (default 1g)")
    p.add_argument("--compare-tmpfs", action="store_true",
                   help="run the same workload on a kernel tmpfs (MAP_FIXED emulation)")
    p.add_argument("--wall-pages", type=int, default=65536,
                   help="window pages of the max_map_count demonstration (0: skip)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    args.object_size = targets.parse_size(args.object_size)
    args.window_size = targets.parse_size(args.window_size or ("16m" if args.quick else "256m"))
    args.accesses = args.accesses or (3000 if args.quick else 100000)
    bs = args.block_size
    if bs <= 0 or bs % PAGE_SIZE or args.window_size % bs or args.object_size % bs \
            or args.object_size < args.window_size:
        p.error("block size: page multiple dividing window and object; object >= window")

    doc: dict[str, Any] = {"tool": "vlm_window", "seed": args.seed,
                           "object_size": args.object_size, "window_size": args.window_size,
                           "block_size": bs, "accesses": args.accesses, "runs": {},
                           "wall": {}}
    for kind in ["shmfs"] + (["tmpfs"] if args.compare_tmpfs else []):
        mnt = args.mount if kind == "shmfs" else None
        with targets.open_target(kind, args.size, mnt, args.daemon_pid) as t:
            doc["runs"][t.kind] = run_workload(t, args)
            _print_run(doc["runs"][t.kind])
            if args.compare_tmpfs and args.wall_pages:
                fn = wall.run_shmfs if t.kind == "shmfs" else wall.run_tmpfs
                doc["wall"][t.kind] = fn(t.path, args.wall_pages,
                                         args.object_size // PAGE_SIZE, args.seed)
                print(wall.summary(doc["wall"][t.kind]))
    sr = doc["runs"].get("shmfs")
    extra = ["the shmfs run hit a map count wall"] if sr and sr["map_count_wall"] else []
    return wall.conclude(doc, "vlm_window", args.json, extra)


if __name__ == "__main__":
    handle_signals()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
