"""The vm.max_map_count wall: a window whose every page shows a non-adjacent object page.

Window page ``i`` is remapped to object page ``(i * STRIDE) % object_pages``:
neighbouring window pages show object pages ``STRIDE`` apart, so the kernel
cannot merge their VMAs.  The kernel's remap_file_pages emulation (4.0+: one
``mmap(MAP_FIXED)`` per remap, here done by hand on a tmpfs) needs one VMA per
page and fails with ENOMEM once the process holds ``vm.max_map_count`` VMAs
(65530 by default); a shmfs window keeps the whole layout in the daemon's page
table behind a single VMA of the process.  Both sides are verified: sampled
window pages must show the marker written into the object page they map.
"""

from __future__ import annotations

import json
import mmap
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from mount.winapi.client import PAGE_SIZE, PROT_READ, PROT_WRITE, Window
from windowlib import sysmm
from windowlib.pattern import describe, expected

STRIDE = 3
SAMPLES = 256


def _pgoff(i: int, object_pages: int) -> int:
    return (i * STRIDE) % object_pages


def _prepare(path: Path, object_pages: int, npages: int, rng: random.Random
             ) -> tuple[int, list[int]]:
    """Create the object (sparse) and write a marker into the pages sampled windows show."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.ftruncate(fd, object_pages * PAGE_SIZE)
    sample = sorted(rng.sample(range(npages), min(SAMPLES, npages)))
    for i in sample:
        p = _pgoff(i, object_pages)
        os.pwrite(fd, expected(p, 1, PAGE_SIZE), p * PAGE_SIZE)
    return fd, sample


def _check(i: int, data: bytes, object_pages: int, errors: list[str], where: str) -> None:
    p = _pgoff(i, object_pages)
    if data != expected(p, 1, PAGE_SIZE):
        errors.append(f"{where}: window page {i} should show object page {p}, "
                      f"holds {describe(data, PAGE_SIZE)}")


def run_shmfs(dirpath: Path, npages: int, object_pages: int, seed: int) -> dict[str, Any]:
    """Remap every page of an ``npages`` window (REMAPV batches); verify QUERY and data."""
    rng = random.Random(seed)
    obj, win = dirpath / "wall-object", dirpath / "wall-window"
    fd, sample = _prepare(obj, object_pages, npages, rng)
    errors: list[str] = []
    w = Window.create(win, obj, npages, PROT_READ | PROT_WRITE)
    try:
        t = time.perf_counter()
        # laying out a whole window is one batch: REMAPV, 511 pages a call
        w.remapv([(i, 1, _pgoff(i, object_pages)) for i in range(npages)])
        dt = time.perf_counter() - t
        bad = [p for p in w.query() if p.pgoff != _pgoff(p.index, object_pages)]
        if bad:
            errors.append(f"QUERY: {len(bad)} pages show the wrong pgoff, first {bad[0]}")
        m = w.mmap()
        try:
            m.madvise(mmap.MADV_RANDOM)
            for i in sample:
                _check(i, w.pread(i * PAGE_SIZE, PAGE_SIZE), object_pages, errors, "pread")
                _check(i, m[i * PAGE_SIZE:(i + 1) * PAGE_SIZE], object_pages, errors, "mmap")
            vmas = sysmm.vma_count()
        finally:
            m.close()
        info = w.info()
    finally:
        w.close()
        os.close(fd)
        os.unlink(win)
        os.unlink(obj)
    return {"fs": "shmfs", "remaps_wanted": npages, "remaps_done": npages, "enomem_at": None,
            "seconds": dt, "remaps_per_s": npages / dt if dt else 0.0,
            "process_vmas": vmas, "window_vmas_in_daemon": info.nr_vmas,
            "verified_pages": 2 * len(sample), "errors": errors}


def run_tmpfs(dirpath: Path, npages: int, object_pages: int, seed: int) -> dict[str, Any]:
    """The same layout by MAP_FIXED mmaps on a tmpfs object, until ENOMEM."""
    rng = random.Random(seed)
    obj = dirpath / "wall-object"
    fd, sample = _prepare(obj, object_pages, npages, rng)
    errors: list[str] = []
    rw = sysmm.PROT_READ | sysmm.PROT_WRITE
    size = npages * PAGE_SIZE
    base = sysmm.mmap(None, size, rw, sysmm.MAP_SHARED, fd, 0)  # the window's mmap
    limit = sysmm.max_map_count()
    vmas_before = sysmm.vma_count()
    done, enomem_at, vmas_at_wall = 0, None, None
    try:
        t = time.perf_counter()
        for i in range(npages):
            try:
                sysmm.remap_fixed(base + i * PAGE_SIZE, 1, rw, fd, _pgoff(i, object_pages))
            except OSError as e:
                if not sysmm.is_enomem(e):
                    raise
                enomem_at = i
                break
            done += 1
        dt = time.perf_counter() - t
        try:
            vmas_at_wall = sysmm.vma_count()
        except MemoryError:  # the process is at the wall: even Python may not get memory
            vmas_at_wall = None
        for i in sample:
            if i < done:
                _check(i, sysmm.load(base + i * PAGE_SIZE, PAGE_SIZE), object_pages, errors,
                       "load")
    finally:
        sysmm.munmap(base, size)
        os.close(fd)
        os.unlink(obj)
    return {"fs": "tmpfs", "remaps_wanted": npages, "remaps_done": done,
            "enomem_at": enomem_at, "seconds": dt, "remaps_per_s": done / dt if dt else 0.0,
            "process_vmas_before": vmas_before, "process_vmas": vmas_at_wall,
            "max_map_count": limit,
            "verified_pages": sum(1 for i in sample if i < done), "errors": errors}


def summary(res: dict[str, Any]) -> str:
    """One line per side for the tools' report."""
    if res["fs"] == "tmpfs":
        wall = (f"ENOMEM at remap #{res['enomem_at']} with {res['process_vmas']} VMAs "
                f"(vm.max_map_count {res['max_map_count']})" if res["enomem_at"] is not None
                else "no ENOMEM")
        return (f"tmpfs (MAP_FIXED emulation): {res['remaps_done']}/{res['remaps_wanted']} "
                f"page remaps, {res['remaps_per_s']:.0f}/s, {wall}")
    return (f"shmfs window: {res['remaps_done']}/{res['remaps_wanted']} page remaps, "
            f"{res['remaps_per_s']:.0f}/s, process VMAs {res['process_vmas']}, "
            f"window VMAs in the daemon {res['window_vmas_in_daemon']}")


def conclude(doc: dict[str, Any], tool: str, json_path: Any, extra: list[str]) -> int:
    """Gather every run's and wall's errors (plus ``extra``) into ``doc["ok"]``,
    write the JSON if asked, print the verdict; the tool's exit status."""
    errors = [e for r in (*doc["runs"].values(), *doc["wall"].values()) for e in r["errors"]]
    sw = doc["wall"].get("shmfs")
    if sw and sw["remaps_done"] != sw["remaps_wanted"]:
        errors.append("shmfs did not complete the max_map_count layout")
    errors += extra
    doc["ok"] = not errors
    if json_path:
        json_path.write_text(json.dumps(doc, indent=2, sort_keys=True))
    for e in errors:
        print(f"FAILED: {e}", file=sys.stderr)
    print(f"{tool}: " + ("all verifications passed" if doc["ok"] else "FAILED"))
    return 0 if doc["ok"] else 1
