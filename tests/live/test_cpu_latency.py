"""The daemon's CPU latency hold on a live mount (mount/server/cpulatency.py).

While requests stream in, a root daemon holds a PM QoS CPU latency request
(the value it asked for is visible in /dev/cpu_dma_latency, which reads back
the system-wide effective constraint) and releases it once the mount is quiet.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from mount.winapi.client import mount_stats

pytestmark = pytest.mark.mount

DEVICE = Path("/dev/cpu_dma_latency")
NO_CONSTRAINT = 2_000_000_000
ROOT = os.geteuid() == 0


def _effective_latency_us() -> int:
    return struct.unpack("=i", DEVICE.read_bytes()[:4])[0]


def _wait_for_release(deadline_s: float = 10.0) -> int:
    """Poll the effective constraint until nobody holds one (our daemon released)."""
    end = time.monotonic() + deadline_s
    while (value := _effective_latency_us()) != NO_CONSTRAINT and time.monotonic() < end:
        time.sleep(0.001)
    return value


def test_hold_is_engaged_while_serving_and_released_when_quiet(shmfs: Path) -> None:
    (shmfs / "f").write_bytes(b"x" * 4096)
    stats = mount_stats(shmfs)["session"]["cpu_latency"]
    if not ROOT:  # /dev/cpu_dma_latency is root's: the daemon runs without the hold
        assert stats["available"] is False and stats["engagements"] == 0
        return
    # the STATS ioctl is itself a request: it is answered with the hold engaged
    assert stats == {"available": True, "latency_us": 0, "engaged": True,
                     "engagements": stats["engagements"]}
    first = stats["engagements"]
    assert first >= 1
    assert _wait_for_release() == NO_CONSTRAINT
    # a new burst engages it again
    again = mount_stats(shmfs)["session"]["cpu_latency"]
    assert again["engaged"] and again["engagements"] >= first + 1


@pytest.mark.shmfs_options("cpu_latency=off")
def test_cpu_latency_off_never_opens_the_device(shmfs: Path) -> None:
    (shmfs / "f").write_bytes(b"y")
    stats = mount_stats(shmfs)["session"]["cpu_latency"]
    assert stats == {"available": False, "latency_us": None, "engaged": False,
                     "engagements": 0}


@pytest.mark.shmfs_options("cpu_latency=50")
def test_a_chosen_latency_is_what_the_daemon_asks_for(shmfs: Path) -> None:
    if not ROOT:
        assert mount_stats(shmfs)["session"]["cpu_latency"]["available"] is False
        return
    _wait_for_release()
    with open(shmfs / "g", "wb") as f:
        f.write(b"z")
    stats = mount_stats(shmfs)["session"]["cpu_latency"]
    assert stats["latency_us"] == 50 and stats["engaged"]
    assert _wait_for_release() == NO_CONSTRAINT
