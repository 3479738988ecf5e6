"""SEEK_DATA/SEEK_HOLE on a file whose latest writes the kernel may still hold as
dirty pages (``-o writeback_cache``): never "no data here" where there is data.

Found by ``stress-ng --seek`` (scripts/compat_check.py -o writeback_cache): the
kernel does not write dirty pages back before FUSE_LSEEK (fs/fuse/file.c
fuse_lseek), so the daemon answered from pages it had not been sent yet -- ENXIO
for SEEK_DATA at 0 of a file just written, which a sparse-aware copy reads as
"all hole". Now a writeback_cache mount declines LSEEK (ENOSYS) and the kernel
answers from its own size: the whole file is data (docs/divergences.md). Without
writeback_cache holes are reported as tmpfs reports them.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.support.mounts import shmfs_mount, tmpfs_mount

pytestmark = pytest.mark.mount

MIB = 1 << 20


def _seek(fd: int, off: int, whence: int) -> int | str:
    try:
        return os.lseek(fd, off, whence)
    except OSError as e:
        return errno.errorcode[e.errno]


Seen = list[tuple[str, int, "int | str", bytes]]


def _scenario(d: Path) -> tuple[Seen, bytes]:
    """Writes with the file kept open (so dirty pages may stay in the kernel), each
    followed by SEEK_DATA/SEEK_HOLE queries; each answer with the file's contents
    when it was given."""
    fd = os.open(d / "f", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    seen: Seen = []

    def ask(*offsets: int) -> None:
        for o in offsets:
            data = _seek(fd, o, os.SEEK_DATA)
            hole = _seek(fd, o, os.SEEK_HOLE)
            now = os.pread(fd, 4 * MIB, 0)
            seen.append(("data", o, data, now))
            seen.append(("hole", o, hole, now))

    try:
        os.pwrite(fd, b"a" * 100, 0)
        ask(0, 50, 100)
        os.pwrite(fd, b"b" * 100, MIB)
        ask(0, 5000, MIB + 50, MIB + 100)
        os.ftruncate(fd, 2 * MIB)
        ask(MIB + 50, 3 * MIB // 2)
        os.pwrite(fd, b"c", 3 * MIB)
        ask(0, 5 * MIB // 2, 3 * MIB, 3 * MIB + 1)
        return seen, os.pread(fd, 4 * MIB, 0)
    finally:
        os.close(fd)


def _check_never_hides_data(seen: Seen) -> None:
    """SEEK_DATA(o) is at or before the first byte written at or after o, SEEK_HOLE(o)
    is not inside a run of written bytes; past the end both are ENXIO."""
    for kind, o, got, data in seen:
        if o >= len(data):
            assert got == "ENXIO", (kind, o, got)
            continue
        rest = data[o:].lstrip(b"\0")
        if kind == "data" and not rest:
            assert got == "ENXIO" or (isinstance(got, int) and got >= o), (kind, o, got)
            continue  # nothing written from o on: "no data" is true, "data" harmless
        assert isinstance(got, int) and got >= o, (kind, o, got)
        if kind == "data":
            assert got <= len(data) - len(rest), (kind, o, got)
        elif data[o]:
            assert got >= o + len(data[o:]) - len(data[o:].lstrip(data[o:o + 1])), (kind, o, got)


@pytest.mark.parametrize("options", ["writeback_cache", "writeback_cache,readers=1", ""])
def test_seek_data_and_hole_never_hide_written_data(options: str) -> None:
    with tmpfs_mount() as t:
        oracle, oracle_data = _scenario(t)
    _check_never_hides_data(oracle)
    with shmfs_mount(options) as s:
        got, data = _scenario(s)
    assert data == oracle_data
    _check_never_hides_data(got)
    if "writeback_cache" not in options:
        assert got == oracle  # holes reported exactly as tmpfs reports them
    else:  # the whole file is data: SEEK_DATA stays put, SEEK_HOLE is the size
        for (kind, o, g, now), (_k, _o, want, _od) in zip(got, oracle, strict=True):
            if o >= len(now):
                assert g == want == "ENXIO", (kind, o, g)
            elif kind == "data":
                assert g == o, (kind, o, g)
            else:
                assert g == len(now) and isinstance(want, int) and g >= want, (kind, o, g)
