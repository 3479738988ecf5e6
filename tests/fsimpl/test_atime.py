"""fs/inode.c atime_needs_update / relatime_need_update, row by row, and
ShmFs applying the mount's current mode at each access."""

from __future__ import annotations

import pytest

from fsimpl import ShmFs
from fsimpl.atime import RELATIME, AtimeMode, atime_needs_update

S = 10**9
DAY = 24 * 3600 * S
NOATIME = AtimeMode(noatime=True, relatime=False)
STRICT = AtimeMode(relatime=False)
NODIR = AtimeMode(nodiratime=True)


@pytest.mark.parametrize(("mode", "is_dir", "a", "m", "c", "now", "want"), [
    (RELATIME, False, 100 * S, 50 * S, 50 * S, 200 * S, False),  # atime newer than m and c
    (RELATIME, False, 100 * S, 100 * S, 50 * S, 200 * S, True),  # mtime == atime
    (RELATIME, False, 100 * S, 50 * S, 150 * S, 200 * S, True),  # ctime after atime
    (RELATIME, False, 100 * S, 50 * S, 50 * S, 100 * S + DAY, True),  # a day old
    (RELATIME, False, 100 * S, 50 * S, 50 * S, 100 * S + DAY - S, False),
    (STRICT, False, 100 * S, 50 * S, 50 * S, 101 * S, True),  # strictatime: always
    (STRICT, False, 100 * S, 50 * S, 50 * S, 100 * S, False),  # ... unless atime == now
    (NOATIME, False, 100 * S, 200 * S, 200 * S, 300 * S, False),
    (NOATIME, True, 100 * S, 200 * S, 200 * S, 300 * S, False),
    (NODIR, True, 100 * S, 200 * S, 200 * S, 300 * S, False),  # nodiratime: dirs only
    (NODIR, False, 100 * S, 200 * S, 200 * S, 300 * S, True),
])
def test_rules(mode: AtimeMode, is_dir: bool, a: int, m: int, c: int, now: int,
               want: bool) -> None:
    assert atime_needs_update(mode, is_dir, a, m, c, now) is want


def test_shmfs_asks_the_mode_at_each_access() -> None:
    clock = [1000 * S]
    fs = ShmFs(clock=lambda: clock[0])
    current = [RELATIME]
    fs.atime_mode = lambda: current[0]
    attr, fh = fs.create(1, b"f", 0o644, 0, _ctx())
    fs.write(attr.ino, fh, 0, memoryview(b"x"))
    clock[0] += S
    fs.read(attr.ino, fh, 0, 1)  # relatime: atime was not after mtime -> updated
    assert fs.getattr(attr.ino).atime_ns == clock[0]
    clock[0] += S
    fs.read(attr.ino, fh, 0, 1)  # relatime: now newer than mtime/ctime -> kept
    assert fs.getattr(attr.ino).atime_ns == clock[0] - S
    current[0] = STRICT
    fs.read(attr.ino, fh, 0, 1)
    assert fs.getattr(attr.ino).atime_ns == clock[0]
    current[0] = NOATIME
    clock[0] += S
    fs.read(attr.ino, fh, 0, 1)
    assert fs.getattr(attr.ino).atime_ns == clock[0] - S


def _ctx():
    from fsimpl.types import Ctx

    return Ctx(0, 0, 1)


def test_open_drops_cache_only_where_a_cached_read_would_hide_atime() -> None:
    clock = [10 * DAY]
    fs = ShmFs(clock=lambda: clock[0])
    current = [RELATIME]
    fs.atime_mode = lambda: current[0]
    attr, fh = fs.create(1, b"f", 0o644, 0, _ctx())
    fs.write(attr.ino, fh, 0, memoryview(b"x" * 4096))
    # relatime, atime not after mtime, but fresh: the kernel keeps its cache
    # (a read right after write(2); docs/divergences.md row 7)
    assert not fs.open_drops_cache(attr.ino)
    fs.setattr(attr.ino, _ctx(), atime_ns=clock[0] - 2 * DAY, mtime_ns=clock[0] - 3 * DAY)
    assert fs.open_drops_cache(attr.ino)  # a day old: the next read must move it
    fs.read(attr.ino, fh, 0, 1)
    assert not fs.open_drops_cache(attr.ino)
    current[0] = STRICT
    clock[0] += 1
    assert fs.open_drops_cache(attr.ino)
    current[0] = NOATIME
    assert not fs.open_drops_cache(attr.ino)
