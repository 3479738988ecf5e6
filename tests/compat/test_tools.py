"""External tools as a new user runs them, on shmfs and on a kernel tmpfs: a
compact slice of scripts/compat_check.py's matrix (stress-ng stressors that verify
their data, fio with crc32c verification at block sizes that straddle pages),
through the C hot path with every large WRITE chunked. A row must pass wherever it
passes on tmpfs. The full matrix: ``scripts/compat_check.py`` (docs/reliability.md).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.mounts import shmfs_mount, tmpfs_mount

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import compat_check

pytestmark = pytest.mark.mount

STRESSORS = [
    ("hdd", 2, ["--hdd-opts", "wr-rnd,rd-seq,iovec", "--verify", "--hdd-bytes", "2m",
                "--hdd-write-size", "3000"]),
    ("mmap", 2, ["--mmap-file", "--mmap-bytes", "4m", "--verify"]),
    ("fallocate", 2, []), ("fpunch", 1, []), ("rename", 2, []), ("xattr", 1, []),
]
FIO = [("psync", "randrw", "3000"), ("mmap", "randwrite", "512"), ("libaio", "randrw", "1m"),
       ("pvsync2", "write", "4k")]


@pytest.fixture(autouse=True)
def _always_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHMFS_CHUNK_WINDOW_MS", "-1")
    monkeypatch.setenv("SHMFS_WRITE_CHUNK", "12345")


def _need(tool: str) -> None:
    """scripts/bootstrap.sh installs the tool as root, so a root run without it is a
    broken set-up (fail); a non-root run may lack it (skip, saying how to get it)."""
    if shutil.which(tool):
        return
    if os.geteuid() == 0:
        pytest.fail(f"{tool} is missing although bootstrap installs it as root")
    pytest.skip(f"{tool} is not installed (as root: apt-get install {tool})")


@pytest.mark.parametrize("name,workers,extra", STRESSORS, ids=[s[0] for s in STRESSORS])
def test_stress_ng_passes_where_tmpfs_passes(name: str, workers: int, extra: list[str]) -> None:
    _need("stress-ng")
    with tmpfs_mount("size=256m") as t:
        oracle = compat_check.stress_ng(t, name, workers, extra, 2)
    assert oracle.ok, oracle.detail  # the row is meaningful: it passes on tmpfs
    with shmfs_mount("size=256m") as s:
        got = compat_check.stress_ng(s, name, workers, extra, 2)
    assert got.ok, got.detail


@pytest.mark.parametrize("engine,pattern,bs", FIO, ids=["-".join(f) for f in FIO])
def test_fio_verifies_where_tmpfs_verifies(engine: str, pattern: str, bs: str) -> None:
    _need("fio")
    with tmpfs_mount("size=256m") as t:
        oracle = compat_check.fio(t, engine, pattern, bs)
    assert oracle.ok, oracle.detail
    with shmfs_mount("size=256m") as s:
        got = compat_check.fio(s, engine, pattern, bs)
    assert got.ok, got.detail
