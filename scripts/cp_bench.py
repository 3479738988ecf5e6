#!/usr/bin/env python3
"""cp(1) of a big file on shmfs beside a kernel tmpfs (issue 14, copy_file_range).

coreutils cp copies with copy_file_range(2); on shmfs that is one
COPY_FILE_RANGE_64 request whose whole pages share the source's frames
(vmcore/cow.py), so the daemon's memory grows by the page-cache index only.
For each target: write a SIZE file (timed: a fresh write), then REPEAT times ``cp src dst`` (dst
removed between runs), recording the wall time of each cp and the daemon's
RSS (VmRSS) and arena residency before and after; then the time to overwrite
the whole copy (every share broken: the memory is spent now) and the RSS
after that.  Mounts are fresh and removed on exit.

    sudo .venv/bin/python scripts/cp_bench.py                 # 1 GiB, 3 runs
    sudo .venv/bin/python scripts/cp_bench.py --mib 256 --repeat 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mount.mounting.managed import managed_shmfs  # noqa: E402
from mount.winapi.client import mount_stats  # noqa: E402

MIB = 1 << 20


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@contextlib.contextmanager
def tmpfs() -> Iterator[Path]:
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="cpbench-tmpfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=False)
        d.rmdir()


def fill(path: Path, size: int) -> None:
    chunk = os.urandom(MIB)
    with open(path, "wb") as f:
        for _ in range(size // MIB):
            f.write(chunk)


def overwrite(path: Path, size: int) -> float:
    chunk = b"\x5a" * MIB
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY)
    try:
        for off in range(0, size, MIB):
            os.pwrite(fd, chunk, off)
    finally:
        os.close(fd)
    return time.perf_counter() - t


def run(name: str, root: Path, size: int, repeat: int, pid: int | None) -> dict[str, object]:
    src, dst = root / "src", root / "dst"
    t = time.perf_counter()
    fill(src, size)
    out: dict[str, object] = {"target": name, "fill_s": time.perf_counter() - t}
    times = []
    for i in range(repeat):
        if dst.exists():
            dst.unlink()
        before = rss_kib(pid) if pid else 0
        t = time.perf_counter()
        subprocess.run(["cp", str(src), str(dst)], check=True)
        times.append(time.perf_counter() - t)
        if pid and i == 0:
            out["rss_before_mib"] = before / 1024
            out["rss_after_cp_mib"] = rss_kib(pid) / 1024
            out["arena"] = {k: mount_stats(root)["arena"][k]
                            for k in ("frames_in_use", "frames_shared_now", "bytes_resident")}
    out["cp_s"] = times
    out["overwrite_copy_s"] = overwrite(dst, size)
    if pid:
        out["rss_after_overwrite_mib"] = rss_kib(pid) / 1024
        out["cow_breaks"] = mount_stats(root)["arena"]["cow_breaks"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024, help="file size in MiB (default 1024)")
    ap.add_argument("--repeat", type=int, default=3, help="cp runs per target (default 3)")
    a = ap.parse_args()
    size = a.mib * MIB
    print(f"loadavg before: {open('/proc/loadavg').read().strip()}")
    results = []
    with managed_shmfs("", prefix="cpbench-shmfs-") as m:
        results.append(run("shmfs", m.path, size, a.repeat, m.pid))
    with tmpfs() as t:
        results.append(run("tmpfs", t, size, a.repeat, None))
    print(f"loadavg after:  {open('/proc/loadavg').read().strip()}")
    for r in results:
        cps = ", ".join(f"{x:.3f}" for x in r["cp_s"])  # type: ignore[union-attr]
        print(f"{r['target']:6} cp of {a.mib} MiB: {cps} s (best "
              f"{min(r['cp_s']):.3f} s); overwrite of the copy "  # type: ignore[type-var]
              f"{r['overwrite_copy_s']:.3f} s; first write of the source {r['fill_s']:.3f} s")
        if "rss_before_mib" in r:
            print(f"       daemon RSS {r['rss_before_mib']:.1f} MiB before cp, "
                  f"{r['rss_after_cp_mib']:.1f} after, {r['rss_after_overwrite_mib']:.1f} "
                  f"after the overwrite; arena after cp {r['arena']}; "
                  f"cow_breaks {r['cow_breaks']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
