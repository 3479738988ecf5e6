"""Several processes at once through the new serving paths, shmfs against a kernel
tmpfs: the C hot path for regular-file READ/WRITE/GETATTR (native/hotpath.c), large
WRITEs split into chunks with small requests served between them
(mount/server/fairness.py), with one reader and with three, with the kernel's
write-back cache and with the restartable supervisor.

Each workload (tests/compat/workloads.py) reduces its run to a summary that does
not depend on the interleaving; the tmpfs summary is the oracle and the explicit
asserts say what it is. The daemons chunk every large WRITE (no time window) and
in odd-sized chunks that straddle pages and records, so the chunk boundaries
land where a bug would show.
"""

from __future__ import annotations

import pytest

from mount.winapi.client import mount_stats
from tests.compat import workloads
from tests.compat.oracle import summary
from tests.support.mounts import shmfs_mount

pytestmark = pytest.mark.mount

OPTIONS = ["size=256m", "size=256m,readers=1", "size=256m,writeback_cache",
           "size=256m,restartable"]


@pytest.fixture(autouse=True)
def _always_chunk_oddly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemons started here split every WRITE of more than 12345 bytes (not the
    256 KiB default, not a page multiple), whether or not small requests came."""
    monkeypatch.setenv("SHMFS_CHUNK_WINDOW_MS", "-1")
    monkeypatch.setenv("SHMFS_WRITE_CHUNK", "12345")




@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("name", list(workloads.NAMES))
def test_workload_matches_tmpfs(name: str, options: str,
                                oracle: dict[str, dict[str, object]]) -> None:
    with shmfs_mount(options) as mnt:
        got = summary(name, mnt)
        session = mount_stats(mnt)["session"]
    assert got == oracle[name]
    if name == "big_writes_vs_creates" and "readers=1" not in options \
            and "restartable" not in options:
        assert session["write_chunks"] > 0, session  # the chunked path was taken
    if "restartable" not in options:  # (which journals every request in Python)
        assert session["hotpath"]["engaged"] is True  # the C hot path served


def test_the_oracle_says_what_is_expected(oracle: dict[str, dict[str, object]]) -> None:
    """What tmpfs observed, spelled out (so that an oracle that changed is noticed)."""
    a = oracle["append"]
    n = workloads.APPENDERS * workloads.RECORDS
    assert a["records"] == a["whole"] == n and a["in_order"] is True
    assert a["size"] == sum(len(workloads._record(k, i)) for k in range(workloads.APPENDERS)
                            for i in range(workloads.RECORDS))
    b = oracle["big_writes_vs_creates"]
    assert (b["bad_size"], b["bad_read"], b["odd_sizes"], b["left"]) == (0, 0, [], [])
    assert b["size"] == workloads.BIG and b["last_write"] is True
    m = oracle["mmap_vs_pwrite"]
    assert m["cached_intact"] == m["direct_intact"] == workloads.MM_PAGES
    p = oracle["punch_truncate_readers"]
    assert p["garbage_reads"] == 0 and p["md5"] == p["direct_md5"]
    assert p["size"] == p["st_size"] == ((workloads.PT_ROUNDS - 1) % 5 + 1) * 8 * 4096 + 123
    for result in oracle.values():
        assert set(result["exit"]) == {0}
