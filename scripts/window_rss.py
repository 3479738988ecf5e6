"""Daemon memory for window page tables: 2^24 remapped pages as an unprivileged user.

    .venv/bin/python scripts/window_rss.py [--pages 16777216] [-o OPTIONS]

Run as root: mounts a fresh shmfs (``-o allow_other`` plus OPTIONS), then, as
uid 65534, makes a window of PAGES pages over a sparse object and remaps all
of it nonlinearly in chunks of 2^20 pages (every page-table chunk is populated),
until done or ENOMEM (``pt_size=``); then destroys the window (unlink + close)
and waits for the daemon to drop it.  Prints the daemon's VmRSS at each step,
the page-table bytes the daemon charged, and the load average (docs/windows.md,
"Page-table memory", quotes its output).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mount.mounting.managed import managed_shmfs
from mount.winapi.client import Window, mount_stats

NOBODY = 65534
STEP = 1 << 20


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def as_nobody(mnt: Path, pages: int, pid: int) -> dict[str, object]:
    """Fork, drop to nobody, build and remap the window; report what happened."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        out: dict[str, object] = {}
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            obj = mnt / "obj"
            with open(obj, "wb") as f:
                f.truncate(pages * 2 * 4096)
            win = Window.create(mnt / "win", obj, pages)
            done = 0
            t0 = time.perf_counter()
            try:
                while done < pages:
                    n = min(STEP, pages - done)
                    win.remap(done, n, pgoff=pages + done)  # nonlinear: every chunk filled
                    done += n
            except OSError as e:
                out["error"] = errno.errorcode.get(e.errno or 0, str(e.errno))
            out["remapped"] = done
            out["seconds"] = round(time.perf_counter() - t0, 2)
            out["rss_after_remap_mib"] = round(rss_mib(pid), 1)
            out["pt"] = mount_stats(mnt)["windows"]["page_tables"]
            win.close()
            os.unlink(mnt / "win")
            os.unlink(obj)
        except BaseException as e:  # report, never fall back into the caller
            out["exception"] = repr(e)
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(child, 0)
    return json.loads(data)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pages", type=int, default=1 << 24)
    p.add_argument("-o", "--options", default="")
    ns = p.parse_args()
    opts = ",".join(filter(None, ["allow_other", ns.options]))
    with managed_shmfs(opts) as m:
        os.chmod(m.path, 0o1777)
        before = rss_mib(m.pid)
        res = as_nobody(m.path, ns.pages, m.pid)
        deadline = time.monotonic() + 30
        while mount_stats(m.path)["windows"]["windows"] and time.monotonic() < deadline:
            time.sleep(0.1)  # the window goes at the FORGET after the last close
        res["rss_before_mib"] = round(before, 1)
        res["rss_after_destroy_mib"] = round(rss_mib(m.pid), 1)
        res["pt_after_destroy"] = mount_stats(m.path)["windows"]["page_tables"]
        res["options"] = opts
        with open("/proc/loadavg") as f:
            res["loadavg"] = f.read().strip()
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
