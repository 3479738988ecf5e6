#!/usr/bin/env python3
"""Provoke the unmount/read race of fs/fuse/dev.c and count what the daemon made of it.

Each round mounts a fresh shmfs (mount.mounting.managed, the fixtures' helper),
closes 64 files just before the teardown unmounts it -- so that background
RELEASE requests are still queued when umount(2) returns and fuse_conn_destroy
aborts the connection -- and then reads the daemon's log:

- ``raced``: a reader of the daemon had taken a queued request when the abort
  came and read ECONNABORTED (the INFO record of mount/server/devabort.py);
- ``failed``: the daemon logged an error or a traceback, or exited non-zero --
  what every raced round did before ECONNABORTED was handled (the intermittent
  failures of full-suite runs).

    .venv/bin/python scripts/unmount_race.py [ROUNDS] [-o OPTIONS]

Exit status 1 if any round failed. Root only (the fixtures mount as root).
docs/decisions.md, "ECONNABORTED from /dev/fuse".
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mount.mounting.managed import daemon_log_errors, managed_shmfs

FILES = 64
RACED = "said ECONNABORTED"


def one_round(options: str) -> tuple[bool, list[str], int | None]:
    """(raced, error records, exit status) of one mount's life."""
    with managed_shmfs(options, prefix="shmfs-race-") as m:
        fds = [os.open(m.path / f"f{i}", os.O_CREAT | os.O_RDWR, 0o644) for i in range(FILES)]
        for fd in fds:
            os.close(fd)  # RELEASE goes out in the background; the unmount follows
    return RACED in m.log_text, daemon_log_errors(m.log_text), m.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rounds", nargs="?", type=int, default=200)
    ap.add_argument("-o", dest="options", default="")
    ns = ap.parse_args()
    raced = failed = 0
    for i in range(ns.rounds):
        hit, errors, code = one_round(ns.options)
        raced += hit
        if errors or code != 0:
            failed += 1
            print(f"round {i}: exit {code}; " + "\n".join(errors), flush=True)
        elif hit:
            print(f"round {i}: raced, handled (exit 0)", flush=True)
    print(f"{ns.rounds} rounds: {raced} raced (ECONNABORTED read), {failed} failed "
          f"(load {os.getloadavg()[0]:.2f})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
