"""A FORGET the dead server had read but not journalled (the kernel never resends one).

The first child is killed right after reading the FORGET of an unlinked file
(``before_record``: nothing journalled). Without the restart's check that FORGET
was simply lost: the inode's lookup count stayed at 1 and its record stayed in
the server until unmount (its storage was already given back at unlink + close).
A restarted server now asks the kernel about every unlinked inode it still
counts lookups for (mount/server/restart.py ``_forget_lost``) and forgets those
the kernel no longer holds; an unlinked file still open elsewhere is kept.
"""

from __future__ import annotations

import os
import time

import pytest

from mount.winapi.client import mount_stats
from tests.restart.restartable import restartable_mount
from tests.support.procs import exited

pytestmark = pytest.mark.mount

# inode numbers of a fresh mount: root 1, then one per creation in order
KEPT_INO, LOST_INO = 2, 3


def _inodes(path: os.PathLike[str]) -> int:
    return int(mount_stats(path)["fs"]["inodes"])


def test_a_lost_forget_of_an_unlinked_file_does_not_keep_its_inode() -> None:
    with restartable_mount(kill=f"FORGET:before_record:1@{LOST_INO}") as m:
        first, _ = m.serving()
        kept = os.open(m.path / "kept", os.O_RDWR | os.O_CREAT, 0o600)  # ino 2
        try:
            os.write(kept, b"k" * 5000)
            (m.path / "lost").write_bytes(b"x" * 10000)  # ino 3
            assert os.stat(m.path / "lost").st_ino == LOST_INO
            assert os.fstat(kept).st_ino == KEPT_INO
            before = _inodes(m.path)  # root, kept, lost
            os.unlink(m.path / "kept")  # unlinked but open: the kernel holds it
            os.unlink(m.path / "lost")  # the kernel evicts it: FORGET, the kill
            assert exited(first, 30), "the first child should have died at the FORGET"
            assert m.serving()[0] != first
            # the lost inode goes (its eviction may wait for the idle-time reap), the
            # unlinked-but-open one stays and still reads back
            deadline = time.monotonic() + 30
            while _inodes(m.path) != before - 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _inodes(m.path) == before - 1
            assert os.pread(kept, 5000, 0) == b"k" * 5000
        finally:
            os.close(kept)
        log = m.managed.read_log()
        assert "forgot 1 unlinked inodes" in log, log[-3000:]
