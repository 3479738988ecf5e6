"""Streaming writers for the live tests: other processes sending 1 MiB WRITEs.

Several tests need large WRITEs from other processes while they do something else
(small requests, window IOCTLs) -- the mixed traffic that wakes the clone readers --
and then need to know that every streamed byte landed where it belongs. Writer
``tag`` of ``start_writers(path, rounds)`` pwrites ``rounds`` records of 1 MiB into
one shared file, record ``r`` at record slot ``tag * rounds + r``, each filled with
the byte ``tag * 16 + r % 16``: a record lost, misplaced, torn or written by the
wrong writer shows in ``check_records``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

RECORD = 1 << 20

_WRITER = r"""
import os, sys
path, tag, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
for r in range(rounds):
    rec = bytes([tag * 16 + r % 16]) * (1 << 20)
    assert os.pwrite(fd, rec, (tag * rounds + r) << 20) == 1 << 20
os.close(fd)
"""


def record(tag: int, r: int) -> bytes:
    """What writer ``tag`` writes as its record ``r``."""
    return bytes([tag * 16 + r % 16]) * RECORD


def start_writers(path: Path, rounds: int, tags: Iterable[int] = (0, 1)
                  ) -> list[subprocess.Popen[bytes]]:
    """One writer process a tag, each streaming ``rounds`` records into ``path``."""
    return [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(t), str(rounds)])
            for t in tags]


def wait_all(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 300) -> None:
    """Wait for every process (each within ``timeout``); each must have exited 0.

    All are waited for before a failure is raised, and one still running after its
    timeout is killed, so that a failing test leaves no writer behind."""
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            codes.append("timeout")
    assert codes == [0] * len(procs), codes


@contextlib.contextmanager
def running(procs: list[subprocess.Popen[bytes]], timeout: float = 300
            ) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Yield ``procs``; on a normal exit ``wait_all`` of them, on an exception kill
    and reap those still running (no writer outlives a failed test)."""
    try:
        yield procs
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        raise
    wait_all(procs, timeout)


def check_records(data: bytes, rounds: int, tags: Iterable[int] = (0, 1),
                  where: object = None) -> None:
    """``data`` (the file's bytes) holds exactly every writer's records."""
    tags = list(tags)
    assert len(data) == (max(tags) + 1) * rounds * RECORD, (where, len(data))
    for t in tags:
        for r in range(rounds):
            off = (t * rounds + r) * RECORD
            assert data[off:off + RECORD] == record(t, r), (where, t, r)
