"""``-o readers=2``: a second thread reads a cloned /dev/fuse fd, so small
requests are picked up while the first thread handles a large WRITE
(docs/performance.md, change 13). Every request is still handled under one
lock; what must hold is what holds with one reader: every byte where it was
written, files created concurrently all there, invalidations still delivered
(truncate while another process has the file mapped), and the second reader
really serving."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mount.mounting.options import OptionError, parse_options
from mount.winapi.client import mount_stats
from tests.live.helpers import check_truncate_reaches_mapping
from tests.support.mounts import shmfs_mount

pytestmark = pytest.mark.mount

_WRITER = r"""
import os, sys
path, tag = sys.argv[1], int(sys.argv[2])
for rnd in range(6):
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    for i in range(16):
        os.write(fd, bytes([(tag * 31 + rnd * 7 + i) % 251]) * (1 << 20))
    os.close(fd)
"""


def test_the_option() -> None:
    assert parse_options("").readers == 0  # auto: 3, or 1 with restartable / uring
    assert parse_options("readers=1").readers == 1
    assert parse_options("readers=2").readers == 2
    assert parse_options("readers=3").readers == 3
    with pytest.raises(OptionError):
        parse_options("readers=4")


def test_two_readers_serve_streams_and_small_requests_correctly() -> None:
    with shmfs_mount("size=256m,readers=2") as mnt:
        assert mount_stats(mnt)["session"]["readers"] == 2
        writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(mnt / f"s{t}"), str(t)])
                   for t in range(2)]
        try:
            (mnt / "d").mkdir()
            for i in range(400):
                with open(mnt / "d" / f"f{i}", "wb") as f:
                    f.write(i.to_bytes(4, "little"))
                os.stat(mnt / "d" / f"f{i}")
        finally:
            for w in writers:
                assert w.wait(timeout=300) == 0
        for i in range(400):
            assert (mnt / "d" / f"f{i}").read_bytes() == i.to_bytes(4, "little")
        assert sorted(os.listdir(mnt / "d")) == sorted(f"f{i}" for i in range(400))
        for t in range(2):  # the last round of each writer, block by block
            data = (mnt / f"s{t}").read_bytes()
            assert len(data) == 16 << 20
            for i in range(16):
                v = (t * 31 + 5 * 7 + i) % 251
                assert data[i << 20:(i + 1) << 20] == bytes([v]) * (1 << 20), (t, i)
        # an invalidation (NOTIFY_INVAL_INODE after a truncate by another process)
        # still reaches a mapping of this process
        check_truncate_reaches_mapping(mnt)
        assert mount_stats(mnt)["session"]["second_reader_requests"] > 0
