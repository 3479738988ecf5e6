"""User-Mode Linux as a real client of shmfs: boot, workload, memory hot-unplug.

The same scenarios run on a kernel tmpfs (the oracle, test_uml_tmpfs.py) and
on shmfs (test_uml_shmfs.py); the checks both share live here so that the two
files can only differ in the filesystem they hand to the harness.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.uml import (
    MADV_REMOVE_FAILED,
    MADV_REMOVE_OK,
    MIB,
    POWER_DOWN,
    Run,
    payload_md5,
)

# Guest sizing shared by both filesystems: the guest has ~170 MiB usable and
# touches TOUCH_MIB of it (a payload in its own tmpfs, then deleted), so most
# of the free pages that the unplug takes are backed on the host.
MEM_MIB = 192
TOUCH_MIB = 112
UNPLUG_MIB = 64
# Expected share of an unplug that comes back on the host: pages the guest
# never touched were never allocated there, and the guest's idle loop keeps
# allocating a little, so allow a quarter either way.
SLACK = 0.25
# Filesystem noise allowed between "before boot" and "after exit".
END_SLACK_BYTES = 1 * MIB


def check_clean_run(run: Run, tmpdir: Path) -> None:
    """The boot used tmpdir, MADV_REMOVE works there, the workload ran, UML halted."""
    res = run.result
    log = res.log
    assert not res.panicked, f"guest panicked:\n{log[-3000:]}"
    assert f"Checking environment variables for a tempdir...{tmpdir}" in log, log[:3000]
    assert MADV_REMOVE_FAILED not in log, log[:6000]
    assert MADV_REMOVE_OK in log, log[:6000]
    assert res.markers.get("payload_md5") == payload_md5(TOUCH_MIB), res.markers
    assert "done" in res.markers, f"workload did not finish:\n{log[-3000:]}"
    assert POWER_DOWN in log, log[-3000:]
    assert res.returncode == 0 and res.halted, res.summary()
    assert run.leftovers == [], f"UML processes left running: {run.leftovers}"
    # The memory file was unlinked at creation: once UML is gone, so is its space.
    assert run.used_end <= run.used_baseline + END_SLACK_BYTES, (
        run.used_baseline, run.used_end)


def check_unplug(run: Run, daemon_pid: int | None = None) -> None:
    """``config mem=-N`` handed about N bytes back to the filesystem (and daemon)."""
    rep = run.unplug
    assert rep is not None and run.used_ready is not None
    assert rep.reply.startswith("OK"), f"mconsole said {rep.reply!r}"
    # The guest's touched memory lives in this filesystem while it runs.
    assert run.used_ready - run.used_baseline >= TOUCH_MIB * MIB, (
        run.used_baseline, run.used_ready)
    want = rep.requested_bytes
    assert (1 - SLACK) * want <= rep.used_drop <= (1 + SLACK) * want, (
        f"used {rep.used_before} -> {rep.used_after}: dropped {rep.used_drop}, "
        f"asked {want}")
    # The guest sees the same memory gone (MemFree in KiB before/after).
    m = run.result.markers
    guest_drop = (int(m["memfree_kib"]) - int(m["memfree_end_kib"])) * 1024
    assert (1 - SLACK) * want <= guest_drop <= (1 + SLACK) * want, m
    if daemon_pid is not None:
        assert rep.rss_drop is not None
        assert (1 - SLACK) * want <= rep.rss_drop <= (1 + SLACK) * want, (
            f"daemon VmRSS {rep.rss_before} -> {rep.rss_after}, asked {want}")
