"""The CPU latency hold (mount/server/cpulatency.py) and its -o cpu_latency= option."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from mount.mounting.options import OptionError, parse_options
from mount.server.cpulatency import CpuLatencyHold

NO_CONSTRAINT = 2_000_000_000


def _written(dev: Path) -> list[int]:
    data = dev.read_bytes()
    return [v for (v,) in struct.iter_unpack("=i", data)]


def test_engage_and_release_write_the_requested_values(tmp_path: Path) -> None:
    dev = tmp_path / "cpu_dma_latency"  # a plain file records what would be written
    dev.touch()
    hold = CpuLatencyHold(5, device=str(dev))
    assert hold.available and not hold.engaged
    hold.engage()
    hold.engage()  # idempotent: no second write
    assert hold.engaged and hold.engagements == 1
    hold.release()
    hold.release()
    assert not hold.engaged
    hold.engage()
    hold.close()
    assert not hold.available and not hold.engaged
    hold.engage()  # after close: a no-op, never an error
    assert _written(dev) == [NO_CONSTRAINT, 5, NO_CONSTRAINT, 5]
    assert hold.engagements == 2


def test_disabled_or_missing_device_is_a_no_op(tmp_path: Path) -> None:
    off = CpuLatencyHold(None, device=str(tmp_path / "never-opened"))
    missing = CpuLatencyHold(0, device=str(tmp_path / "missing"))
    for hold in (off, missing):
        hold.engage()
        hold.release()
        hold.close()
        assert not hold.available and not hold.engaged and hold.engagements == 0
    assert not (tmp_path / "never-opened").exists()


def test_write_failure_disables_the_hold_instead_of_raising(tmp_path: Path) -> None:
    hold = CpuLatencyHold(0, device="/dev/full")  # every write fails with ENOSPC
    assert not hold.available  # the initial write failed and closed it
    hold.engage()
    assert not hold.engaged


@pytest.mark.parametrize(("text", "want"), [
    ("", 0), ("cpu_latency=0", 0), ("cpu_latency=25", 25), ("cpu_latency=off", None),
    ("size=1m,cpu_latency=off,mode=700", None),
])
def test_option_parsing(text: str, want: int | None) -> None:
    assert parse_options(text).cpu_latency_us == want


@pytest.mark.parametrize("text", ["cpu_latency=", "cpu_latency=fast", "cpu_latency=-1",
                                  "cpu_latency=2000000000"])
def test_bad_option_values_are_refused(text: str) -> None:
    with pytest.raises(OptionError, match="cpu_latency"):
        parse_options(text)
