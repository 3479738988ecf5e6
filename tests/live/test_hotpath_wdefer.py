"""A cached WRITE's counters, times and buffers kept in C (appends3, docs/decisions.md
"A cached WRITE's counters, times and buffers kept in C") on a live mount.

Runs of appending WRITEs that the C loop serves from its WRITE cache leave their
inode's mtime/ctime, the fault counters, ``ops['write']`` and the session's request
counts in C until the cache is emptied; a truncate, a hole punch and a chmod (Python's
requests) come between the runs.  What any reader sees must be what it saw with the
deferral off (``SHMFS_WC_DEFER=0``, the A/B switch): the bytes, size and st_blocks of a
kernel tmpfs running the same calls, every counter equal in both modes, and after each
run an mtime taken during that run's last write(2) -- between the clock read before it
and the one after it, with ctime equal -- never an earlier WRITE's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mount.server import hotpath
from mount.winapi.client import mount_stats
from tests.posix.libc import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocate
from tests.support.mounts import shmfs_mount, tmpfs_mount

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not hotpath.available(), reason="_hotpath not built")]

RUNS = 6


def _workload(d: Path, *, stamps: bool) -> tuple[list[object], bytes]:
    """O_APPEND runs of 4 KiB and 512 B writes with a truncate, a punch and a chmod
    between them: each write's count, per run (size, blocks) and, with ``stamps``, the
    check that mtime = ctime was stamped by the run's last write; the bytes."""
    fd = os.open(d / "f", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    obs: list[object] = []
    try:
        for r in range(RUNS):
            bs = 4096 if r % 2 == 0 else 512
            for i in range(199):
                assert os.write(fd, bytes([(r * 7 + i) % 251 + 1]) * bs) == bs
            before = time.time_ns()
            assert os.write(fd, b"z" * bs) == bs
            after = time.time_ns()
            st = os.fstat(fd)
            obs.append(("run", r, st.st_size, st.st_blocks))
            if stamps:
                assert st.st_mtime_ns == st.st_ctime_ns
                assert before <= st.st_mtime_ns <= after, (r, before, st.st_mtime_ns, after)
            if r % 3 == 0:  # Python's requests between two runs of C WRITEs
                os.ftruncate(fd, st.st_size - 3 * 4096 - 100)
            elif r % 3 == 1:
                fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8 * 4096)
            else:
                os.fchmod(fd, 0o4755 if r % 2 else 0o600)
            st = os.fstat(fd)
            obs.append(("between", r, st.st_size, st.st_blocks, st.st_mode & 0o7777))
    finally:
        os.close(fd)
    return obs, (d / "f").read_bytes()


def _counters(mnt: Path) -> tuple[dict, int]:
    """What deferral must leave exact: the fault counters, ops['write'], the session's
    WRITE count; and how many WRITEs were deferred."""
    doc = mount_stats(mnt)
    hot = doc["session"]["hotpath"]
    same = {"faults": doc["faults"], "ops_write": doc["fs"]["ops"].get("write"),
            "requests_write": doc["session"]["requests"]["WRITE"]["count"],
            "engine_write": hot["write"]}
    return same, hot.get("write_deferred", 0)


def test_deferred_counts_and_times_are_what_a_reader_sees(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with tmpfs_mount() as t:
        want_obs, want_data = _workload(t, stamps=False)
    counts = {}
    for defer in ("1", "0"):
        monkeypatch.setenv("SHMFS_WC_DEFER", defer)
        with shmfs_mount("size=64m") as m:
            obs, data = _workload(m, stamps=True)
            assert obs == want_obs and data == want_data, defer
            counts[defer] = _counters(m)
    (on, deferred_on), (off, deferred_off) = counts["1"], counts["0"]
    assert on == off
    # every write(2) at least one WRITE (an unaligned one over a page the kernel does
    # not hold is two), each counted once in each place, all served by the engine
    assert on["requests_write"] == on["ops_write"] == on["engine_write"] >= RUNS * 200
    assert on["faults"]["write"] == on["requests_write"]
    assert deferred_off == 0 and deferred_on > 0
