"""Issue 15: a quiet mount with three readers pays nothing for them (the first
reader keeps the fs lock while every clone reader is parked: fairness.py
``_serve_first``), and gives the lock up whenever large WRITEs of mixed traffic
wake the clone readers -- with every byte and every file still exact.

No timing: the tests look at the session's counters (``lock_kept``,
``lock_owned``, ``second_reader_requests``) and at file contents.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mount.winapi.client import mount_stats
from tests.support.mounts import shmfs_mount
from tests.support.streams import (
    check_created,
    check_records,
    go,
    running,
    start_creator,
    start_writers,
    stop_creator,
)

pytestmark = pytest.mark.mount


def _mixed_traffic(mnt: Path, name: str, rounds: int, least: int) -> Callable[[], None]:
    """Two writers stream ``rounds`` 1 MiB pwrites each into ``mnt/big{name}`` while a
    third process creates, writes and unlinks small files in ``mnt/small{name}`` --
    all three released together once started (tests/support/streams.py: on a loaded
    machine a process's start-up can outlast a stream, and the clients would take
    turns instead of mixing), the creator going on until the streams are done (and
    ``least`` files). Returns the check that every record and every small file is
    exact (its READs are requests too: the caller reads the counters first)."""
    big, small = mnt / f"big{name}", mnt / f"small{name}"
    creator = start_creator(small, least)
    with running([*start_writers(big, rounds, wait=True), creator]) as ps:
        go(ps)
        for p in ps[:2]:
            assert p.wait(timeout=300) == 0
        made = stop_creator(creator)

    def check() -> None:
        check_records(big.read_bytes(), rounds, where=name)
        check_created(small, made)
    return check


@pytest.fixture(autouse=True)
def _always_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every large WRITE counts as mixed traffic (no time window): it wakes the clone
    readers, so the lock is given up for it."""
    monkeypatch.setenv("SHMFS_CHUNK_WINDOW_MS", "-1")


def _session(mnt: Path) -> dict:
    return mount_stats(mnt)["session"]


def _quiet_until_owned(mnt: Path, tries: int = 2000) -> dict:
    """Small requests until the first reader keeps the lock again (the clone readers
    park once they see no large request: at most one CLONE_POLL_MS later)."""
    for i in range(tries):
        os.stat(mnt)
        (mnt / f"q{i}").touch()
        os.unlink(mnt / f"q{i}")
        s = _session(mnt)
        if s["lock_owned"]:
            return s
    raise AssertionError(f"the lock was never kept again: {_session(mnt)}")


def test_a_quiet_mount_keeps_the_lock() -> None:
    with shmfs_mount("size=64m") as mnt:
        s = _quiet_until_owned(mnt)
        assert s["readers"] == 3, s
        assert s["lock_kept"] >= 1, s
        # a quiet mount's requests all go to the first reader; no clone spins
        assert s["second_reader_requests"] == 0 and s["clone_spins"] == 0, s


def test_readers_1_never_keeps_a_lock() -> None:
    with shmfs_mount("size=64m,readers=1") as mnt:
        for i in range(50):
            (mnt / f"f{i}").touch()
        s = _session(mnt)
    assert s["readers"] == 1 and s["lock_kept"] == 0 and not s["lock_owned"], s


@pytest.mark.parametrize("stay", ["0", "1", "spin"])
def test_streams_take_the_lock_back_and_quiet_returns_it(monkeypatch: pytest.MonkeyPatch,
                                                         stay: str) -> None:
    """Quiet, then two writers streaming 1 MiB pwrites into one file while a third
    process creates, writes and unlinks small files, then quiet again, twice over:
    the clone readers served requests (the lock was given up), the first reader kept
    the lock again afterwards, and the big file and every small file are exact.
    SHMFS_CLONES_STAY=1 (the clone readers up while the traffic is mixed, which
    without a time window is from the first large request on): the same bytes; the
    lock is not kept again there, by design. ``spin``: the same with the clone readers
    looking at their fd without sleeping after each request they answer
    (SHMFS_CLONE_SPIN_US; 1 ms here): the same bytes, and the spins happened -- a
    reply followed by a preemption longer than the spin counts none, so the clients
    overlap by construction (_mixed_traffic) and the clones answer hundreds of
    requests, not the writers' dozen (docs/decisions.md, "test_fairness_quiet's
    clients overlap by construction")."""
    monkeypatch.setenv("SHMFS_CLONES_STAY", "0" if stay == "0" else "1")
    monkeypatch.setenv("SHMFS_CLONE_SPIN_US", "1000" if stay == "spin" else "0")
    rounds = 12
    with shmfs_mount("size=256m") as mnt:
        kept = _quiet_until_owned(mnt)["lock_kept"]
        served = 0
        for phase in range(2):
            _mixed_traffic(mnt, str(phase), rounds, 300)()
            s = _session(mnt)
            assert s["write_chunks"] > 0, s
            served = s["second_reader_requests"]
            if stay == "spin":
                assert 0 < s["clone_spins"] and s["clone_spin_hits"] <= s["clone_spins"], s
            else:
                assert s["clone_spins"] == 0, s
            if stay != "0":
                continue
            s = _quiet_until_owned(mnt)
            assert s["lock_kept"] > kept, s  # kept again after the streams
            kept = s["lock_kept"]
        # the clone readers did serve while the streams ran
        assert served > 0, s


def test_clones_staying_up_park_once_the_traffic_is_no_longer_mixed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SHMFS_CLONES_STAY=1 (the opt-in; the spin as shipped), with a mixed
    spell that ends: while two writers stream and another process creates, the clone
    readers serve requests and spin; once the streams are done the small requests that
    keep coming are no longer mixed traffic, the clone readers park and the first reader
    keeps the lock again -- even though the clones are kept awake by those requests
    (a clone parks after a request it answered once the spell is over). Files exact."""
    monkeypatch.setenv("SHMFS_CHUNK_WINDOW_MS", "20")  # a spell ends 20 ms after the last
    monkeypatch.setenv("SHMFS_CLONES_STAY", "1")
    monkeypatch.delenv("SHMFS_CLONE_SPIN_US", raising=False)
    rounds = 24
    with shmfs_mount("size=256m") as mnt:
        kept = _quiet_until_owned(mnt)["lock_kept"]
        check = _mixed_traffic(mnt, "", rounds, 600)
        s = _session(mnt)
        assert s["second_reader_requests"] > 0, s  # the clones were up and served
        s = _quiet_until_owned(mnt, tries=20000)
        assert s["lock_kept"] > kept, s
        check()
