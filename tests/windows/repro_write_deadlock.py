"""Reproducer of a session hang under concurrent write-backs through windows (fixed;
tests/windows/test_write_deadlock.py runs it for 15 s).

    .venv/bin/python tests/windows/repro_write_deadlock.py [SECONDS]

Three processes store through mmaps of three windows over one 4-page object (and
a fourth through an mmap of the object itself), with msync and pwrite mixed in.
A WRITE whose handler queued invalidations has its reply written *after* them
(mount/server/session.py); an invalidation waits for the pages it drops -- locked, or
under writeback until the reply of another in-flight WRITE, or laundered through
a new WRITE -- and when that other WRITE's reply is itself queued behind a
notification, nobody moves: the daemon's notifier thread sits in
``invalidate_inode_pages2_range`` -> ``folio_wait_writeback`` and the writers in
D state.  Seen on 6.18 within a minute.  Exit status 0: no hang; 1: hang (the
FUSE connection is aborted to clean up).  The cure, in the session: a WRITE's
reply goes before its notifications (docs/windows.md).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mount.winapi.client import Window
from tests.support.mounts import shmfs_mount

P = 4096
WORKER = """
import os, sys, mmap
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 4 * 4096)
for i in range(int(sys.argv[2])):
    k = i % 4
    m[k * 4096:k * 4096 + 8] = i.to_bytes(8, 'little')
    if i % 3 == 0:
        m.flush()
    else:
        os.pwrite(fd, b'x' * 100, ((k + 1) % 4) * 4096 + 200)
    m[((k + 2) % 4) * 4096]
"""


def _abort(mnt: Path) -> None:
    """Write 1 to /sys/fs/fuse/connections/N/abort for the connection of ``mnt``."""
    target = str(mnt.resolve())
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                minor = fields[2].split(":")[1]
                Path(f"/sys/fs/fuse/connections/{minor}/abort").write_text("1")


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    with shmfs_mount() as mnt:
        obj = mnt / "obj"
        obj.write_bytes(bytes(4 * P))
        for n in ("w1", "w2", "w3"):
            Window.create(mnt / n, obj, 4).close()
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(mnt / n), "6000"])
                 for n in ("w1", "w2", "w3", "obj")]
        deadline = time.monotonic() + seconds
        hung = False
        for p in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                hung = True
                break
        if hung:
            print("hang: writers stuck; aborting the FUSE connection", file=sys.stderr)
            _abort(mnt)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    print("hung" if hung else "no hang")
    return 1 if hung else 0


if __name__ == "__main__":
    sys.exit(main())
