"""SHMFS_IOC_WIN_REMAPV through a live mount: many remaps in one ioctl.

The vector must be exactly its entries as REMAPs in order (QUERY and the data
agree), an existing mmap in another process sees every change once the ioctl
returns, a failing entry stops the vector with its errno and the count applied
(copied out although the ioctl fails), and it grants no more than REMAP does.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
from pathlib import Path

import pytest

from mount.winapi import abi
from mount.winapi.client import PROT_READ, Window
from tests.live.helpers import as_user
from tests.support.mounts import shmfs_mount
from tests.windows.helpers import MapChild, P, make_object, page_of, shmfs_cli

pytestmark = pytest.mark.mount


def test_remapv_equals_the_remaps_and_an_existing_mapping_sees_it(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 64)
    rng = random.Random(7)
    n = 48
    with Window.create(wdir / "win", obj, n) as w, MapChild(wdir / "win", n * P) as c:
        for i in range(n):  # the other process caches every window page
            assert c.read(i * P, 16) == page_of(i)[:16]
        # more entries than one call holds (511), overlapping: later ones win
        ents = [(rng.randrange(n), rng.choice([1, 1, 2]), rng.randrange(60))
                for _ in range(700)]
        ents = [(i, min(k, n - i), pg) for i, k, pg in ents]
        want = list(range(n))
        for i, k, pg in ents:
            want[i : i + k] = range(pg, pg + k)
        assert w.remapv(ents) == len(ents)
        assert [p.pgoff for p in w.query()] == want
        for i in range(n):
            assert c.read(i * P, 16) == page_of(want[i])[:16], i
            assert w.pread(i * P, 16) == page_of(want[i])[:16]


def test_remapv_stops_at_the_failing_entry_with_its_errno_and_the_count(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 16)
    with Window.create(wdir / "win", obj, 8) as w:
        with pytest.raises(OSError) as ei:
            w.remapv([(0, 1, 5), (1, 1, 6), (7, 2, 0), (2, 1, 9)])  # #2 runs off the end
        assert ei.value.errno == errno.EINVAL
        assert ei.value.done == 2  # type: ignore[attr-defined]
        assert [p.pgoff for p in w.query(0, 3)] == [5, 6, 2]
        with pytest.raises(OSError) as ei:  # unknown flag bits in an entry
            w.remapv_bytes([(0, P, 1, 0, 0), (P, P, 1, 0, 0x4)])
        assert ei.value.errno == errno.EINVAL and ei.value.done == 1  # type: ignore[attr-defined]
        bad = abi.encode_remapv([(0, P, 1, 0, 0)])
        abi.REMAPV_HEAD.pack_into(bad, 0, abi.REMAPV_MAX + 1, 0, 0, 0)  # count > 511
        with pytest.raises(OSError) as ei:
            fcntl.ioctl(w.fd, abi.SHMFS_IOC_WIN_REMAPV, bad, True)
        assert ei.value.errno == errno.EINVAL
        assert w.remapv([]) == 0
    with Window.create(wdir / "ro", obj, 4, PROT_READ) as w:
        with pytest.raises(OSError) as ei:  # page prot beyond the window's
            w.remapv([(0, 1, 3, PROT_READ | 2)])
        assert ei.value.errno == errno.EACCES
    fd = os.open(wdir / "win", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as ei:
            Window(fd, owns_fd=False).remapv([(0, 1, 1)])
        assert ei.value.errno == errno.EBADF
    finally:
        os.close(fd)
    plain = wdir / "plain"
    plain.write_bytes(b"x")
    with pytest.raises(OSError) as ei:
        Window.open(plain).remapv([(0, 1, 1)])
    assert ei.value.errno == errno.ENOTTY


def test_another_user_can_remapv_only_what_open_grants() -> None:
    """allow_other: a user who may only read the window file gets it read-only, so
    REMAPV is EBADF; one who may not open it at all gets EACCES from open(2)."""
    with shmfs_mount("allow_other") as mnt:
        obj, win = mnt / "obj", mnt / "win"
        make_object(obj, 8)
        os.chmod(obj, 0o644)
        with Window.create(win, obj, 4) as w:
            os.chmod(win, 0o644)

            def try_remapv(writable: bool) -> int:
                ww = Window.open(win, writable=writable)
                try:
                    return ww.remapv([(0, 1, 3)])
                finally:
                    ww.close()

            assert as_user(65534, 65534, lambda: try_remapv(False)) == ("errno", errno.EBADF)
            assert as_user(65534, 65534, lambda: try_remapv(True)) == ("errno", errno.EACCES)
            assert [p.pgoff for p in w.query(0, 1)] == [0]  # unchanged


def test_garbage_vectors_get_an_errno_and_the_daemon_lives(wdir: Path) -> None:
    """Random entries (huge values, random flags, counts up to 511) never kill the
    daemon: each call succeeds or fails with one of REMAP's errnos."""
    obj = wdir / "obj"
    make_object(obj, 16)
    rng = random.Random(12)
    allowed = {errno.EINVAL, errno.EACCES, errno.ENOMEM}
    with Window.create(wdir / "win", obj, 16) as w:
        for _ in range(60):
            n = rng.choice([0, 1, 3, 9, 100, abi.REMAPV_MAX])
            ents = [(rng.choice([0, rng.randrange(1 << 64), rng.randrange(16) * P]),
                     rng.choice([0, P, 3 * P, rng.randrange(1 << 64)]),
                     rng.choice([rng.randrange(32), rng.randrange(1 << 64)]),
                     rng.randrange(1 << 32) if rng.random() < 0.3 else 0,
                     rng.choice([0, 0x8000, 0x10000, 0x20000, rng.randrange(1 << 32)]))
                    for _ in range(n)]
            try:
                assert w.remapv_bytes(ents) == n
            except OSError as e:
                assert e.errno in allowed, e
                assert 0 <= e.done < n  # type: ignore[attr-defined]
        assert len(w.query()) == 16  # still answering
        assert w.info().nr_vmas == 1
        w.remapv([(0, 16, 0, PROT_READ | 2)])  # and still obeying
        assert w.pread(0, 16) == page_of(0)[:16]


def test_cli_remapv(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 16)
    win = str(wdir / "win")
    assert shmfs_cli("window", "create", win, str(obj), "--pages", "4").returncode == 0
    r = shmfs_cli("window", "remapv", win, "0:2:9", "3:1:15", "1:1:4", "--populate")
    assert r.returncode == 0, r.stderr
    with Window.open(win) as w:
        assert [p.pgoff for p in w.query()] == [9, 4, 2, 15]
    bad = shmfs_cli("window", "remapv", win, "0:1:1", "3:2:0")
    assert bad.returncode == 1 and "EINVAL" in bad.stderr
    assert shmfs_cli("window", "remapv", win, "0-1-1").returncode == 2  # usage error
