"""UML with its physical memory on shmfs: the same scenarios as the tmpfs oracle.

UML maps its memory file MAP_SHARED from the mount, so the guest's pages are
faulted in through FUSE_READ and written back through FUSE_WRITE, and the
hot-unplug's MADV_REMOVE arrives as FUSE_FALLOCATE(PUNCH_HOLE|KEEP_SIZE).
Unlike tmpfs, a FUSE mount cannot report TMPFS_MAGIC, so UML prints
"Warning: tempdir ... is not on tmpfs" and carries on; that is expected.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mounts import daemon_pid, shmfs_mount
from tests.support.uml import boot, unplug_run
from tests.uml import MEM_MIB, TOUCH_MIB, UNPLUG_MIB, check_clean_run, check_unplug

pytestmark = [pytest.mark.uml, pytest.mark.mount, pytest.mark.timeout(150)]


@pytest.fixture
def memdir() -> Iterator[Path]:
    """A fresh shmfs for UML's TMPDIR, big enough for the touched memory."""
    with shmfs_mount("size=1G") as mnt:
        yield mnt


def test_boot_runs_workload_and_halts(memdir: Path) -> None:
    run = boot(memdir, mem_mib=MEM_MIB, touch_mib=TOUCH_MIB)
    check_clean_run(run, memdir)


def test_unplug_returns_memory_to_shmfs(memdir: Path) -> None:
    pid = daemon_pid(memdir)
    run = unplug_run(memdir, UNPLUG_MIB, daemon_pid=pid, mem_mib=MEM_MIB,
                     touch_mib=TOUCH_MIB)
    check_clean_run(run, memdir)
    check_unplug(run, daemon_pid=pid)
