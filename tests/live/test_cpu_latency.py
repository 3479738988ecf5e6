"""The daemon's CPU latency hold on a live mount (mount/server/cpulatency.py),
observed from outside the daemon.

While requests stream in, a root daemon holds a PM QoS CPU latency request and
releases it once the mount is quiet. What the daemon says about itself (STATS)
is checked against what the kernel saw: the power:pm_qos_update_request
tracepoint records each write of /dev/cpu_dma_latency with the writer's pid
and value, and pm_qos_update_target the aggregate constraint the kernel
computed right after -- which must be at most what the daemon asked for while
the hold is on (tests/live/qos_trace.py says why a second reader of the
device cannot tell our daemon from the other daemons on a shared machine).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mount.winapi.client import mount_stats
from tests.live.qos_trace import NO_CONSTRAINT, QosTrace, qos_trace
from tests.support.mounts import daemon_pid, shmfs_mount

pytestmark = [
    pytest.mark.mount,
    pytest.mark.skipif(os.geteuid() != 0, reason="the hold needs root (/dev/cpu_dma_latency is "
                       "root's), and so do tracefs and mounting"),
]


def _hold_stats(mnt: Path) -> dict[str, object]:
    return mount_stats(mnt)["session"]["cpu_latency"]


def _engaged(qt: QosTrace, pid: int, value: int) -> int:
    return sum(1 for w in qt.of(pid) if w.value == value)


def _released_after_last_engage(qt: QosTrace, pid: int, value: int) -> bool:
    writes = qt.of(pid)
    last = max((i for i, w in enumerate(writes) if w.value == value), default=None)
    return last is not None and any(w.value == NO_CONSTRAINT for w in writes[last + 1:])


def _check_hold(mnt: Path, qt: QosTrace, latency_us: int) -> None:
    """A burst engages the hold (the kernel gets the value, the aggregate obeys
    it), quiet releases it (the kernel gets "no constraint"), a new burst
    engages it again; STATS agrees with the kernel's record."""
    pid = daemon_pid(mnt)
    (mnt / "f").write_bytes(b"x" * 4096)
    stats = _hold_stats(mnt)  # the STATS ioctl is itself a request: answered engaged
    assert {k: stats[k] for k in ("available", "latency_us", "engaged")} == {
        "available": True, "latency_us": latency_us, "engaged": True}
    first = stats["engagements"]
    assert isinstance(first, int) and first >= 1
    # every engagement the daemon counted is a write the kernel saw (written before
    # the STATS reply, so already in the trace buffer)
    qt.wait_until(lambda t: _engaged(t, pid, latency_us) >= first, pid=pid)
    for w in qt.of(pid):
        if w.value == latency_us:
            assert w.aggregate is not None and w.aggregate <= latency_us, qt.of(pid)
    # quiet: the daemon withdraws the constraint by itself
    qt.wait_until(lambda t: _released_after_last_engage(t, pid, latency_us), pid=pid)
    # a new burst engages it again, in the kernel as in STATS
    seen = _engaged(qt, pid, latency_us)
    again = _hold_stats(mnt)
    assert again["engaged"] is True and again["engagements"] >= first + 1
    qt.wait_until(lambda t: _engaged(t, pid, latency_us) > seen, pid=pid)
    qt.wait_until(lambda t: _released_after_last_engage(t, pid, latency_us), pid=pid)


def test_hold_is_engaged_while_serving_and_released_when_quiet() -> None:
    with qos_trace() as qt, shmfs_mount() as mnt:
        _check_hold(mnt, qt, 0)


def test_a_chosen_latency_is_what_the_daemon_asks_for() -> None:
    with qos_trace() as qt, shmfs_mount("cpu_latency=50") as mnt:
        _check_hold(mnt, qt, 50)


def test_cpu_latency_off_never_opens_the_device() -> None:
    with qos_trace() as qt, shmfs_mount("cpu_latency=off") as mnt:
        (mnt / "f").write_bytes(b"y")
        stats = _hold_stats(mnt)
        assert stats == {"available": False, "latency_us": None, "engaged": False,
                         "engagements": 0}
        qt.drain()  # any write the daemon made happened before the STATS reply
        assert qt.of(daemon_pid(mnt)) == []
