"""A burst of unlink(2)s as the bench makes them (its C helper: create N empty
files, then unlink them in a row) on a fresh shmfs mount, several rounds: µs per
unlink, the requests the kernel sent (``shmfs stat``'s session.requests) and the
hot path's counters (C loop entries and requests served, declines, evictions
reaped in C), differenced around each unlink burst.

    .venv/bin/python scripts/unlink_probe.py [--n 5000] [--rounds 3] [--options size=1g]
                                             [--pages K] [--env NAME=VALUE ...]

Why: the bench's quick meta row unlinks 2,000 names, too few for a burst to fill
``evict_later``; at 5,000 the counters show whether the C loop kept serving and
whether FORGETs were declined to Python (docs/performance.md change 32).
``SHMFS_TREE``-style A/B: run this file from the other checkout.
``--pages K`` gives every file K pages of data first (written from Python, outside
the timing): an ``rm`` of real files, whose evictions free frames (change 34).
``--env NAME=VALUE`` (repeatable) sets the daemon's environment for A/B runs, e.g.
``--env SHMFS_REAP_PAGES=0`` (evictions with pages reaped in Python).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from benchlib.engine import CEngine  # noqa: E402

from mount.winapi.client import mount_stats  # noqa: E402
from tests.support.mounts import shmfs_mount  # noqa: E402


def _snapshot(mnt: Path) -> tuple[dict[str, int], dict[str, int]]:
    s = mount_stats(mnt)["session"]
    reqs = {k: v["count"] for k, v in s["requests"].items()}
    hot = {k: v for k, v in s["hotpath"].items() if isinstance(v, int) and k != "engaged"}
    return reqs, hot


def _write(d: Path, i: int, data: bytes) -> None:
    """The helper's i-th name (helper.c name_of: "f%07lld") given its data."""
    fd = os.open(d / f"f{i:07d}", os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: b[k] - a.get(k, 0) for k in sorted(b) if b[k] - a.get(k, 0)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--options", default="size=1g")
    p.add_argument("--pages", type=int, default=0)
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = p.parse_args()
    for item in args.env:  # the daemon inherits this process's environment
        name, _, value = item.partition("=")
        os.environ[name] = value
    eng = CEngine.build()
    print("load", open("/proc/loadavg").read().split()[:3])
    with shmfs_mount(args.options) as mnt:
        d = mnt / "d"
        d.mkdir()
        for _ in range(args.rounds):
            eng._run("create", d, args.n)
            if args.pages:
                data = b"p" * (args.pages * 4096)
                for i in range(args.n):
                    _write(d, i, data)
            r0, h0 = _snapshot(mnt)
            s = eng._run("unlink", d, args.n)[0]
            r1, h1 = _snapshot(mnt)
            h = _diff(h0, h1)
            h.pop("last_decline_line", None)
            print(f"unlink {s.ns / s.ops / 1000:.2f} µs/op  requests {_diff(r0, r1)}  "
                  f"hotpath {h}")
    print("load", open("/proc/loadavg").read().split()[:3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
