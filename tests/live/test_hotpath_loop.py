"""The first reader's loop in C (native/hotloop.c) on a live mount: it is taken (its
counters in STATS move), and requests it gives back to Python in the middle of a
stream of hot ones -- another opcode (SETATTR), a WRITE the engine declines (the
size= limit's ENOSPC) -- are each answered once, correctly, by Python;
``SHMFS_CLOOP=0`` in the daemon's environment turns it off (the A/B switch).
Over a socket with bursts, malformed messages and the Python loop as the oracle:
tests/server/test_hotpath_loop.py."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from mount.server import hotpath
from mount.winapi.client import mount_stats
from tests.live.helpers import PAGE, read_from_daemon
from tests.support.mounts import shmfs_mount

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not hotpath.available(), reason="_hotpath not built")]

N = 200
WRITE, SETATTR = "WRITE", "SETATTR"


def _count(session: dict, op: str) -> int:
    return session["requests"].get(op, {}).get("count", 0)


def _interleaved(mnt: Path) -> tuple[dict, dict]:
    """N rounds of: a hot overwrite of a, a WRITE of a full fs (declined: Python's
    ENOSPC), a chmod of a (SETATTR: never the loop's). The session statistics
    before and after."""
    a, big = mnt / "a", mnt / "big"
    a.write_bytes(b"\0" * (16 * PAGE))
    with open(big, "wb", buffering=0) as f:  # fill the fs
        with pytest.raises(OSError) as full:
            while True:
                f.write(b"b" * PAGE)
        assert full.value.errno == errno.ENOSPC
    fa = os.open(a, os.O_RDWR)
    fb = os.open(big, os.O_WRONLY)
    end = os.fstat(fb).st_size
    want = bytearray(16 * PAGE)
    try:
        before = mount_stats(mnt)["session"]
        for i in range(N):
            data = bytes([i & 0xFF]) * 100
            off = (i * 331) % (16 * PAGE - 100)
            assert os.pwrite(fa, data, off) == 100
            want[off:off + 100] = data
            with pytest.raises(OSError) as e:
                os.pwrite(fb, b"x" * PAGE, end + PAGE * (i % 3))
            assert e.value.errno == errno.ENOSPC
            mode = 0o600 | (0o040 if i & 1 else 0)
            os.fchmod(fa, mode)
            assert stat.S_IMODE(os.fstat(fa).st_mode) == mode
        after = mount_stats(mnt)["session"]
    finally:
        os.close(fa)
        os.close(fb)
    assert read_from_daemon(a) == bytes(want)
    assert os.stat(big).st_size == end
    return before, after


def test_the_loop_serves_hot_requests_and_python_the_ones_between() -> None:
    with shmfs_mount("size=1m") as mnt:
        before, after = _interleaved(mnt)
    hb, ha = before["hotpath"], after["hotpath"]
    assert ha["cloop_served"] > hb["cloop_served"]  # the loop in C was taken
    assert ha["cloop_returned"] > hb["cloop_returned"]  # ... and gave requests back
    assert ha["write"] - hb["write"] == N  # the overwrites: the engine's
    assert ha["declined"] - hb["declined"] >= N  # the full fs's WRITEs: Python's
    # each request handled once: N hot + N declined WRITEs, N chmods
    assert _count(after, WRITE) - _count(before, WRITE) == 2 * N
    assert _count(after, SETATTR) - _count(before, SETATTR) == N
    assert after["write_errors"] == before["write_errors"]
    assert ha["errors"] == 0 and ha["write_errors"] == 0


def test_shmfs_cloop_0_keeps_the_python_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHMFS_CLOOP", "0")  # the daemon inherits it
    with shmfs_mount("size=1m") as mnt:
        before, after = _interleaved(mnt)
    hb, ha = before["hotpath"], after["hotpath"]
    assert ha["cloop_entries"] == 0 and ha["cloop_served"] == 0
    assert ha["write"] - hb["write"] == N  # the engine still answers, from Python's loop
    assert _count(after, WRITE) - _count(before, WRITE) == 2 * N
