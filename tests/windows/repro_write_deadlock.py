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
D state.  Seen on 6.18 within a minute.  The cure, in the session: a WRITE's
reply goes before its notifications (docs/windows.md).

How a run is judged:

* **Hang** means no progress: each worker reports every ``REPORT_EVERY``
  iterations through a pipe, and a worker still running that has reported
  nothing for ``STALL_S`` seconds is hung (the FUSE connection is then aborted
  to clean up).  A slow run is not a hang; the workers run for SECONDS,
  however many iterations that is.
* **Worker errors**: every worker must exit 0 with nothing on stderr; a worker
  that dies (an exception, a signal, a file it cannot open) fails the run.
* **Contents**: each worker owns byte slots in every page (8 bytes for its
  stores, 100 for its pwrites), so the four never write the same bytes while
  sharing every page.  The concurrent phase cannot leave exact bytes behind
  (a page stored through one inode is written back whole, and may carry an
  older copy of another worker's slot), so after it each worker in turn, alone,
  stores and pwrites a final record naming itself and its iteration count,
  with msync and fsync.  The object and each window, read with O_DIRECT (what
  the daemon holds), must then be exactly those records and zeros elsewhere.

Exit status 0: no hang, every worker exited 0, contents exact; 1: hang;
2: a worker failed; 3: wrong contents.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mount.winapi.client import Window
from tests.live.helpers import read_from_daemon
from tests.support.mounts import shmfs_mount

P = 4096
NPAGES = 4
STALL_S = 20.0  # a running worker silent this long is hung
REPORT_EVERY = 16  # iterations between two progress bytes
NAMES = ("w1", "w2", "w3", "obj")

WORKER = """
import os, sys, mmap, time
path, j, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
P, every = 4096, int(sys.argv[4])
store = lambda k: k * P + 16 * j          # this worker's 8 bytes for stores in page k
pw = lambda k: k * P + 1024 + 128 * j     # and its 100 bytes for pwrites
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, 4 * P)
end = time.monotonic() + seconds
i = 0
while time.monotonic() < end:
    k = i % 4
    m[store(k):store(k) + 8] = (i + 1).to_bytes(8, 'little')
    if i % 3 == 0:
        m.flush()
    else:
        os.pwrite(fd, bytes([j + 1]) * 92 + (i + 1).to_bytes(8, 'little'), pw((k + 1) % 4))
    m[((k + 2) % 4) * P]
    i += 1
    if i % every == 0:
        os.write(1, b'.')
m.flush()
os.fsync(fd)
os.write(1, b'\\nready %d\\n' % i)
assert sys.stdin.readline() == 'final\\n'
final = (1 << 62 | j << 32 | i).to_bytes(8, 'little')
for k in range(4):
    m[store(k):store(k) + 8] = final
m.flush()
for k in range(4):
    os.pwrite(fd, bytes([0x80 | j]) * 92 + final, pw(k))
os.fsync(fd)
os.write(1, b'done\\n')
assert sys.stdin.readline() == ''  # the parent closed stdin: leave
"""


def expected_contents(counts: list[int]) -> bytes:
    """The object after each worker j wrote its final record for counts[j] iterations."""
    out = bytearray(NPAGES * P)
    for j, n in enumerate(counts):
        final = (1 << 62 | j << 32 | n).to_bytes(8, "little")
        for k in range(NPAGES):
            out[k * P + 16 * j:k * P + 16 * j + 8] = final
            pw = k * P + 1024 + 128 * j
            out[pw:pw + 100] = bytes([0x80 | j]) * 92 + final
    return bytes(out)


def _abort(mnt: Path) -> None:
    """Write 1 to /sys/fs/fuse/connections/N/abort for the connection of ``mnt``."""
    target = str(mnt.resolve())
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                minor = fields[2].split(":")[1]
                Path(f"/sys/fs/fuse/connections/{minor}/abort").write_text("1")


class Workers:
    """The four worker processes, their progress and their output."""

    def __init__(self, mnt: Path, seconds: float) -> None:
        self.procs = [subprocess.Popen(
            [sys.executable, "-c", WORKER, str(mnt / n), str(j), str(seconds), str(REPORT_EVERY)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for j, n in enumerate(NAMES)]
        self.out = [b""] * len(self.procs)
        self.progress = [0] * len(self.procs)  # progress bytes received
        self.last = [time.monotonic()] * len(self.procs)

    def wait_for(self, who: list[int], word: bytes) -> str | None:
        """Read the workers' pipes until each of ``who`` printed ``word``; None, or
        why not: a worker silent for STALL_S seconds (a hang) or one that ended."""
        fds = {p.stdout.fileno(): j for j, p in enumerate(self.procs)}  # type: ignore[union-attr]
        while not all(word in self.out[j] for j in who):
            waiting = [j for j in who if word not in self.out[j]]
            now = time.monotonic()
            stalled = [j for j in waiting if now - self.last[j] >= STALL_S]
            if stalled:
                return "hang: " + ", ".join(
                    f"{NAMES[j]} made no progress for {now - self.last[j]:.0f} s "
                    f"(after {self.progress[j] * REPORT_EVERY} iterations)" for j in stalled)
            timeout = min(self.last[j] for j in waiting) + STALL_S - now
            ready, _, _ = select.select([self.procs[j].stdout for j in waiting], [], [], timeout)
            for f in ready:
                j = fds[f.fileno()]
                chunk = os.read(f.fileno(), 65536)
                if not chunk:
                    return f"{NAMES[j]} ended before '{word.decode()}': {self.failure(j)}"
                self.out[j] += chunk
                self.progress[j] += chunk.count(b".")
                self.last[j] = time.monotonic()
        return None

    def count(self, j: int) -> int:
        """The iterations worker j reported at the end of the concurrent phase."""
        return int(self.out[j].split(b"ready ")[1].split()[0])

    def failure(self, j: int) -> str:
        p = self.procs[j]
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            return "still running"
        return f"exit status {p.returncode}; stderr:\n{err.decode(errors='replace')}"

    def finish(self) -> list[str]:
        """Close stdin, reap every worker; the failures (status != 0 or stderr)."""
        errors = []
        for j, p in enumerate(self.procs):
            if p.stdin is not None:
                try:
                    p.stdin.close()
                except BrokenPipeError:
                    pass
                p.stdin = None  # communicate() must not flush it again
            try:
                _, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            if p.returncode != 0 or err:
                errors.append(f"{NAMES[j]}: exit status {p.returncode}; stderr:\n"
                              f"{err.decode(errors='replace')}")
        return errors

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def make_windows(mnt: Path) -> None:
    """The 4-page object and three windows over it (the window helper's create)."""
    obj = mnt / "obj"
    obj.write_bytes(bytes(NPAGES * P))
    for n in NAMES[:3]:
        Window.create(mnt / n, obj, NPAGES).close()


def run(mnt: Path, seconds: float) -> tuple[int, str]:
    """Run the workers on mnt/{w1,w2,w3,obj} and judge; (status, message).
    (tests/windows/test_write_deadlock.py also runs it on plain files, where it
    must fail.)"""
    w = Workers(mnt, seconds)
    try:
        why = w.wait_for(list(range(len(NAMES))), b"ready ")
        for j in range(len(NAMES)):  # the final records, one worker at a time
            if why is not None:
                break
            w.procs[j].stdin.write(b"final\n")  # type: ignore[union-attr]
            w.procs[j].stdin.flush()  # type: ignore[union-attr]
            why = w.wait_for([j], b"done\n")
        if why is not None and why.startswith("hang"):
            if mnt.is_mount():
                _abort(mnt)
            return 1, why
        counts = [w.count(j) for j in range(len(NAMES))] if why is None else []
        errors = w.finish()
        if why is not None or errors:
            return 2, "\n".join(([why] if why else []) + errors)
    finally:
        w.kill()
    want = expected_contents(counts)
    for n in NAMES:
        got = read_from_daemon(mnt / n)
        if got != want:
            bad = next(i for i in range(len(want)) if i >= len(got) or got[i] != want[i])
            return 3, (f"{n}: wrong contents from byte {bad} (page {bad // P}, offset "
                       f"{bad % P}): {got[bad:bad + 16].hex()} instead of "
                       f"{want[bad:bad + 16].hex()}; iterations {counts}")
    return 0, f"no hang; {len(NAMES)} workers exited 0, contents exact; iterations {counts}"


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    with shmfs_mount() as mnt:
        make_windows(mnt)
        status, message = run(mnt, seconds)
    print(message, file=sys.stdout if status == 0 else sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
