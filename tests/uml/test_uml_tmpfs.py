"""UML with its physical memory on a kernel tmpfs: the oracle for the shmfs run.

Proves the harness itself: if these fail, the shmfs twin's failures say
nothing about shmfs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mounts import tmpfs_mount
from tests.support.uml import boot, unplug_run
from tests.uml import MEM_MIB, TOUCH_MIB, UNPLUG_MIB, check_clean_run, check_unplug

pytestmark = [pytest.mark.uml, pytest.mark.timeout(150)]


@pytest.fixture
def memdir() -> Iterator[Path]:
    """A fresh kernel tmpfs for UML's TMPDIR, big enough for the touched memory."""
    with tmpfs_mount("size=1G") as mnt:
        yield mnt


def test_boot_runs_workload_and_halts(memdir: Path) -> None:
    run = boot(memdir, mem_mib=MEM_MIB, touch_mib=TOUCH_MIB)
    check_clean_run(run, memdir)
    assert f"Checking if {memdir} is on tmpfs...OK" in run.result.log


def test_unplug_returns_memory_to_tmpfs(memdir: Path) -> None:
    run = unplug_run(memdir, UNPLUG_MIB, mem_mib=MEM_MIB, touch_mib=TOUCH_MIB)
    check_clean_run(run, memdir)
    check_unplug(run)
