"""``-o restartable``: the serving process dies (SIGKILL) in the middle of a
concurrent workload and the workload's result is still exactly tmpfs's.

The child kills itself at the Nth WRITE through the restart module's test hook
(``SHMFS_TEST_KILL``, mount/server/restart.py), either after journalling the
request but before handling it or after committing it but before replying, so the
point is exact and no sleep is involved; the supervisor starts the next child,
which must answer the kernel's outstanding requests without losing, doubling or
tearing a write (O_APPEND records, 3 MiB overwrites, mmap stores racing pwrite,
reads racing punch/truncate: tests/compat/workloads.py).
"""

from __future__ import annotations

import pytest

from tests.compat import workloads
from tests.compat.oracle import summary
from tests.restart.restartable import restartable_mount

pytestmark = pytest.mark.mount

KILL_AT = {"append": 300, "big_writes_vs_creates": 10, "mmap_vs_pwrite": 500,
           "punch_truncate_readers": 100}




@pytest.mark.parametrize("point", ["after_record", "after_commit"])
@pytest.mark.parametrize("name", list(workloads.NAMES))
def test_a_killed_server_changes_no_result(name: str, point: str,
                                           oracle: dict[str, dict[str, object]]) -> None:
    with restartable_mount("size=256m", kill=f"WRITE:{point}:{KILL_AT[name]}") as m:
        got = summary(name, m.path)
        _pid, generation = m.serving()
    assert generation >= 1  # the first child did die at that WRITE
    assert got == oracle[name]
