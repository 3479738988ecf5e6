"""File data on a live mount: integrity against a model, sparse files, holes,
fallocate, truncate, SEEK_DATA/SEEK_HOLE and st_blocks -- compared with a
kernel tmpfs (the oracle) wherever tmpfs defines the answer."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from tests.live.helpers import PAGE, fallocate

pytestmark = pytest.mark.mount

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10


def test_random_io_matches_model(shmfs: Path) -> None:
    """Random writes and reads at offsets cut around page boundaries."""
    rng = random.Random(1234)
    model = bytearray()
    fd = os.open(shmfs / "data", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for _ in range(400):
            page = rng.randrange(0, 64)
            off = max(0, page * PAGE + rng.choice([-3, -1, 0, 1, 7, 100, 4095]))
            if rng.random() < 0.6:
                n = rng.choice([1, 2, 100, PAGE - 1, PAGE, PAGE + 1, 3 * PAGE + 5, 70000])
                data = rng.randbytes(n)
                assert os.pwrite(fd, data, off) == n
                if off > len(model):
                    model.extend(bytes(off - len(model)))
                model[off:off + n] = data
            else:
                n = rng.choice([1, PAGE, 2 * PAGE + 3, 200000])
                assert os.pread(fd, n, off) == bytes(model[off:off + n])
        assert os.fstat(fd).st_size == len(model)
        os.lseek(fd, 0, os.SEEK_SET)
        whole = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
        assert whole == bytes(model)
    finally:
        os.close(fd)


def test_file_larger_than_1gib_sparse(shmfs: Path) -> None:
    fd = os.open(shmfs / "big", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        offs = [0, (1 << 30) - 1, (1 << 30) + 12345, (5 << 30) + PAGE * 7]
        for i, off in enumerate(offs):
            os.pwrite(fd, bytes([65 + i]) * 10, off)
        for i, off in enumerate(offs):
            assert os.pread(fd, 10, off) == bytes([65 + i]) * 10
        assert os.pread(fd, 4, 1 << 29) == bytes(4)
        st = os.fstat(fd)
        assert st.st_size == offs[-1] + 10
        assert st.st_blocks <= 6 * PAGE // 512
    finally:
        os.close(fd)


def _hole_scenario(d: Path) -> list[object]:
    """Observations of fallocate/truncate/lseek/st_blocks; identical on tmpfs."""
    obs: list[object] = []
    p = d / "f"
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)

    def rec(label: str, fn) -> None:
        try:
            obs.append((label, fn()))
        except OSError as e:
            obs.append((label, "errno", e.errno))

    def stat_() -> tuple[int, int]:
        st = os.fstat(fd)
        return st.st_size, st.st_blocks

    rec("write", lambda: os.pwrite(fd, b"a" * (10 * PAGE + 100), 0))
    rec("stat", stat_)
    rec("punch", lambda: fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                      PAGE + 10, 3 * PAGE))
    rec("stat", stat_)
    rec("read-edge", lambda: os.pread(fd, 20, PAGE))
    rec("read-hole", lambda: os.pread(fd, 10, 2 * PAGE + 5))
    rec("read-after", lambda: os.pread(fd, 20, 4 * PAGE + 5))
    for off in (0, PAGE, PAGE + 10, 2 * PAGE, 3 * PAGE, 4 * PAGE, 10 * PAGE, 11 * PAGE, -1):
        rec(f"hole@{off}", lambda off=off: os.lseek(fd, off, os.SEEK_HOLE))
        rec(f"data@{off}", lambda off=off: os.lseek(fd, off, os.SEEK_DATA))
    rec("punch-nokeep", lambda: fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, PAGE))
    rec("zero-range", lambda: fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, PAGE))
    rec("falloc-extend", lambda: fallocate(fd, 0, 20 * PAGE, 4 * PAGE))
    rec("stat", stat_)
    rec("falloc-keep", lambda: fallocate(fd, FALLOC_FL_KEEP_SIZE, 30 * PAGE, 2 * PAGE))
    rec("stat", stat_)
    # fallocated, never written pages are holes for SEEK_DATA (tmpfs: !Uptodate)
    rec("data@20p", lambda: os.lseek(fd, 20 * PAGE, os.SEEK_DATA))
    rec("hole@20p", lambda: os.lseek(fd, 20 * PAGE, os.SEEK_HOLE))
    rec("falloc-badlen", lambda: fallocate(fd, 0, 0, 0))
    rec("falloc-neg", lambda: fallocate(fd, 0, -1, PAGE))
    rec("truncate-mid", lambda: os.ftruncate(fd, 5 * PAGE + 7))
    rec("stat", stat_)
    rec("tail", lambda: os.pread(fd, 20, 5 * PAGE))
    rec("truncate-up", lambda: os.ftruncate(fd, 9 * PAGE))
    rec("tail-after-extend", lambda: os.pread(fd, 20, 5 * PAGE))
    rec("stat", stat_)
    rec("truncate-neg", lambda: os.ftruncate(fd, -1))
    rec("seek-beyond", lambda: os.lseek(fd, 1 << 50, os.SEEK_DATA))
    rec("pread-far", lambda: os.pread(fd, 10, (1 << 62)))
    os.close(fd)
    return obs


def test_holes_fallocate_truncate_like_tmpfs(shmfs: Path, tmpfs: Path) -> None:
    assert _hole_scenario(shmfs) == _hole_scenario(tmpfs)


def _tools_scenario(d: Path) -> list[object]:
    """The command-line tools people use on tmpfs give the same answers."""
    def sh(*args: str) -> tuple[int, str]:
        p = subprocess.run(args, cwd=d, capture_output=True, text=True, check=False)
        return p.returncode, p.stdout.replace(str(d), "D")

    obs: list[object] = [
        sh("truncate", "-s", "10M", "a"),
        sh("fallocate", "-l", "1M", "b"),
        sh("dd", "if=/dev/urandom", "of=c", "bs=4096", "count=64", "status=none"),
        sh("fallocate", "-p", "-o", "16384", "-l", "65536", "c"),
        sh("stat", "-c", "%s %b %B", "a", "b", "c"),
        sh("cp", "--sparse=always", "c", "d"),
        sh("stat", "-c", "%s %b", "d"),
        sh("cmp", "c", "d"),
        sh("truncate", "-s", "5000", "c"),
        sh("stat", "-c", "%s %b", "c"),
        sh("fallocate", "-d", "d"),
        sh("stat", "-c", "%s %b", "d"),
    ]
    return obs


def test_tools_like_tmpfs(shmfs: Path, tmpfs: Path) -> None:
    assert _tools_scenario(shmfs) == _tools_scenario(tmpfs)


def test_file_written_into_freed_frames_reads_back_exactly_with_zero_holes(shmfs: Path) -> None:
    """A file written after another file's pages were freed gets those frames back
    (the free list is reused first, and the populate-ahead thread pre-faults its
    head: docs/performance.md change 29): it must read back exactly its own bytes,
    and its holes and the tail of its last page as zeros, never the old file's."""
    old = bytes(range(1, 256)) * ((12 << 20) // 255 + 1)  # no zero byte in it
    (shmfs / "old").write_bytes(old[: 12 << 20])  # past the 8 MiB populate-ahead budget
    assert (shmfs / "old").stat().st_size == 12 << 20
    (shmfs / "old").unlink()
    rng = random.Random(29)
    fd = os.open(shmfs / "new", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        model = bytearray()
        for _ in range(3000):  # 4 KiB appends, as dd bs=4k does
            block = rng.randbytes(PAGE)
            assert os.write(fd, block) == PAGE
            model += block
        hole_at = len(model) + 5 * PAGE + 100  # a hole, then a partial page
        tail = rng.randbytes(777)
        assert os.pwrite(fd, tail, hole_at) == len(tail)
        model += bytes(hole_at - len(model)) + tail
        os.ftruncate(fd, len(model) + 3 * PAGE)  # extension reads as zeros
        model += bytes(3 * PAGE)
        os.lseek(fd, 0, os.SEEK_SET)
        whole = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
        assert whole == bytes(model)
    finally:
        os.close(fd)
