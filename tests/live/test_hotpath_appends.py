"""Appends through the C hot path with the arena's reserve (docs/performance.md
change 30) on a live mount: every append size at the ``size=`` limit answers
write(2) exactly as a kernel tmpfs (short counts, ENOSPC), nothing written is
lost, st_blocks and statfs agree, and the reserved frames are never charged and
never leaked -- after ENOSPC, after unlink and when the reserve is off
(``SHMFS_RESERVE=0``, the A/B switch)."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from mount.server import hotpath
from mount.winapi.client import mount_stats
from tests.support.mounts import shmfs_mount, tmpfs_mount

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not hotpath.available(), reason="_hotpath not built")]

LIMIT = "size=64k"  # 16 pages: small enough that every size reaches it quickly
LIMIT_BYTES = 64 << 10
SIZES = [1, 100, 512, 1000, 4095, 4096, 4097, 8192, 12288 + 7, 65536]


def _fill(d: Path, bs: int, append: bool) -> tuple[list[object], bytes]:
    """Write bs-byte blocks (O_APPEND, or at the file offset) until write(2)
    refuses: every result, the file's bytes and what statfs / stat say."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else 0)
    fd = os.open(d / "f", flags, 0o644)
    obs: list[object] = []
    want = bytearray()
    try:
        for i in range(LIMIT_BYTES // bs + 2):  # the last one must be refused
            block = bytes([i % 251 + 1]) * bs
            try:
                n = os.write(fd, block)
            except OSError as e:
                obs.append(("errno", e.errno))
                break
            want += block[:n]
            if n == 0:
                obs.append(("zero", len(obs)))
                break
            if n != bs:
                obs.append(("short", len(obs), n))
        st = os.fstat(fd)
        obs.append(("stat", st.st_size, st.st_blocks))
        vf = os.statvfs(d)
        obs.append(("statfs", vf.f_blocks, vf.f_bfree, vf.f_bavail))
    finally:
        os.close(fd)
    with open(d / "f", "rb") as f:
        got = f.read()
    obs.append(("intact", got == bytes(want)))
    obs.append(("written", len(want)))
    return obs, got


def _space_back(d: Path, timeout: float = 10.0) -> os.statvfs_result:
    """statvfs once the space of the closed, unlinked file is back (or the deadline).

    FUSE sends RELEASE asynchronously, when the kernel drops its last reference to
    the open file (fuse_file_put), and the completion of a READ that the reading
    client no longer waits for can hold one: the RELEASE may then reach the daemon
    after the UNLINK and the STATFS that follow close(2). Until it does the file is
    open as far as shmfs knows, and an open unlinked file keeps its space (tmpfs
    does the same for a file still open). tmpfs returns at once; a lost RELEASE
    would leave the space used and fail the comparison."""
    deadline = time.monotonic() + timeout
    while True:
        vf = os.statvfs(d)
        if vf.f_bfree >= vf.f_blocks or time.monotonic() >= deadline:
            return vf
        os.sched_yield()


def _scenario(d: Path, bs: int, append: bool) -> list[object]:
    obs, _ = _fill(d, bs, append)
    os.unlink(d / "f")
    vf = _space_back(d)
    obs.append(("after-unlink", vf.f_blocks, vf.f_bfree))
    fd = os.open(d / "g", os.O_WRONLY | os.O_CREAT, 0o644)  # all the space is back
    try:
        obs.append(("again", os.write(fd, b"k" * LIMIT_BYTES)))
    finally:
        os.close(fd)
    os.unlink(d / "g")
    return obs


def _arena(mnt: Path) -> dict:
    return mount_stats(mnt)["arena"]


def _until_nothing_is_stored(mnt: Path) -> dict:
    """An unlinked file's pages go at its FORGET, which the kernel sends after the
    background RELEASE, and the daemon evicts between requests: ask (each STATS is
    a request) until no frame is in use (tests/reliability/test_faults.py)."""
    deadline = time.monotonic() + 30
    while (a := _arena(mnt))["frames_in_use"] != 0:
        assert time.monotonic() < deadline, f"{a['frames_in_use']} frames still in use"
        os.statvfs(mnt)
    return a


@pytest.mark.parametrize("append", [True, False], ids=["o_append", "sequential"])
def test_appends_of_every_size_at_the_size_limit_like_tmpfs(append: bool) -> None:
    with tmpfs_mount(LIMIT) as t:
        want = {bs: _scenario(t, bs, append) for bs in SIZES}
    with shmfs_mount(LIMIT) as m:
        pops0 = mount_stats(m)["session"]["hotpath"]["reserve_pops"]
        for bs in SIZES:
            got = _scenario(m, bs, append)
            assert got == want[bs], f"bs={bs}"
            assert ("intact", True) in got and ("errno", errno.ENOSPC) in got
            a = _until_nothing_is_stored(m)  # the reserve goes back with the last frame
            assert a["frames_reserved"] == 0, bs
        # the engine really took new pages from the reserve (not vacuous)
        assert mount_stats(m)["session"]["hotpath"]["reserve_pops"] > pops0


def test_reserve_is_charged_nowhere_and_off_with_the_switch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While a file is open and growing, the reserve holds frames: statfs and the
    budget count the file's pages only, frames_in_use too; SHMFS_RESERVE=0 gives
    the same answers with no reserve at all."""
    results = {}
    for env in ("64", "0"):
        monkeypatch.setenv("SHMFS_RESERVE", env)
        with shmfs_mount("size=4m") as m:
            fd = os.open(m / "f", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                for i in range(37):
                    os.write(fd, bytes([i + 1]) * 4096)
                a = _arena(m)
                vf = os.statvfs(m)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            pops = mount_stats(m)["session"]["hotpath"]["reserve_pops"]
            assert a["frames_in_use"] == 37
            assert a["frames_reserved"] == (64 * 1 - 37 if env == "64" else 0)
            assert (pops > 0) == (env == "64")
            with open(m / "f", "rb") as f:
                data = f.read()
            assert data == b"".join(bytes([i + 1]) * 4096 for i in range(37))
            results[env] = (vf.f_blocks, vf.f_bfree, st.st_size, st.st_blocks)
    assert results["64"] == results["0"]
    assert results["64"][1] == results["64"][0] - 37


def test_the_c_pop_switch_keeps_the_reserve_and_the_data(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """SHMFS_CRESERVE=0: the reserve stays (alloc1 pops it) but the engine calls
    alloc1 for every new page -- the A/B of the C pop alone; the same bytes."""
    monkeypatch.setenv("SHMFS_CRESERVE", "0")
    with shmfs_mount("size=4m") as m:
        with open(m / "f", "wb") as f:
            for i in range(10):
                f.write(bytes([i + 1]) * 4096)
                f.flush()
        hot = mount_stats(m)["session"]["hotpath"]
        assert hot["reserve_pops"] == 0 and hot["write"] >= 10
        assert _arena(m)["frames_reserved"] == 64 - 10
        assert (m / "f").read_bytes() == b"".join(bytes([i + 1]) * 4096 for i in range(10))
