"""The FSYNC of a file answered by the window engine (native/winfsync.c), on a live
mount.

tests/windows/test_winfsync_twin.py proves the C answer is the Python one, byte for
byte, and that it waits for queued notifications; these tests prove the kernel's side:
an msync(MS_SYNC) of a store through a window mapping and an fsync(2) of the object
are answered by the engine (STATS), and afterwards every view reads the store (the
guarantee of docs/windows.md, "Stores through an mmap of a window"); and an
unprivileged user gets nothing through an FSYNC that open(2) does not give.
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import pytest

from mount.server import hotpath, winfast
from mount.winapi.client import PROT_READ, PROT_WRITE, Window, mount_stats
from tests.windows.helpers import MapChild, P, make_object, page_of, readonly_for_others

pytestmark = pytest.mark.mount

RW = PROT_READ | PROT_WRITE


def _fsyncs(mnt: Path) -> tuple[int, int]:
    """(FSYNCs the engine answered, FSYNC requests the session counted)."""
    s = mount_stats(mnt)["session"]
    eng = s.get("winfast") or {}
    return (eng.get("fsync", {}).get("answered", 0),
            s["requests"].get("FSYNC", {}).get("count", 0))


def test_msync_and_fsync_answered_in_c(wmount: Path, wdir: Path) -> None:
    """A store through window a's mapping shown by window b and the object: msync(MS_SYNC)
    returns 0 once the engine answered the FSYNC, and every other view then reads the
    store; fsync(2) of the object and of a read-only descriptor of the window too."""
    obj = wdir / "obj"
    make_object(obj, 8)
    a = Window.create(wdir / "a", obj, 8)
    b = Window.create(wdir / "b", obj, 8)
    kids: list[MapChild] = []
    try:
        a.remap(2, 1, 6, prot=RW, populate=True)
        b.remap(5, 1, 6, prot=RW, populate=True)
        kids = [MapChild(wdir / "a", 8 * P), MapChild(wdir / "b", 8 * P), MapChild(obj, 8 * P)]
        assert kids[1].read(5 * P, 16) == page_of(6)[:16]
        assert kids[2].read(6 * P, 16) == page_of(6)[:16]
        before = _fsyncs(wmount)
        kids[0].store(2 * P + 64, b"msync through a!")
        assert kids[0].msync() == 0
        mid = _fsyncs(wmount)
        assert mid[1] > before[1]  # the kernel sent FSYNC after the write-back
        assert kids[1].read(5 * P + 64, 16) == b"msync through a!"
        assert kids[2].read(6 * P + 64, 16) == b"msync through a!"
        fd = os.open(obj, os.O_RDWR)
        rfd = os.open(wdir / "b", os.O_RDONLY)
        try:
            os.fsync(fd)
            os.fdatasync(fd)
            os.fsync(rfd)  # as on tmpfs: fsync of a read-only descriptor succeeds
        finally:
            os.close(fd)
            os.close(rfd)
        after = _fsyncs(wmount)
        assert after[1] >= mid[1] + 3
        if winfast.available():  # the engine is built: it answered them, not Python
            assert mid[0] > before[0], (before, mid)
            assert after[0] >= mid[0] + 3, (mid, after)
        assert obj.read_bytes()[6 * P + 64:6 * P + 80] == b"msync through a!"
    finally:
        for kid in kids:
            kid.close()
        a.close()
        b.close()


@pytest.mark.skipif(not (winfast.available() and hotpath.available()),
                    reason="the C extensions are not built (scripts/bootstrap.sh)")
def test_fsync_burst_stays_in_the_c_loop(wmount: Path, wdir: Path) -> None:
    """FSYNCs of a file while the window engine exists are handed to it by the first
    reader's loop in C (its ``cloop_window`` counter), not returned to Python."""
    obj = wdir / "obj"
    make_object(obj, 2)
    n = 200
    with Window.create(wdir / "w", obj, 2):  # the engine exists from the first IOCTL
        fd = os.open(obj, os.O_RDWR)
        try:
            s0 = mount_stats(wmount)["session"]
            for _ in range(n):
                os.fsync(fd)
            s1 = mount_stats(wmount)["session"]
        finally:
            os.close(fd)
    answered = s1["winfast"]["fsync"]["answered"] - s0["winfast"]["fsync"]["answered"]
    loop = s1["hotpath"]["cloop_window"] - s0["hotpath"]["cloop_window"]
    assert answered == n, (answered, n)
    assert loop >= n // 2, (loop, n)  # a few may meet Python's loop (a STATS, a wake-up)


def test_fsync_attack_read_only_user(tmp_path: Path) -> None:
    """An unprivileged user on an allow_other mount with root's 0644 window over root's
    0644 object: the window cannot be opened for writing (EACCES) nor mapped shared and
    writable through a read-only descriptor (EACCES); fsync(2) of the read-only
    descriptor succeeds, as on tmpfs, and writes nothing; the object is unchanged (the
    helper checks it on leaving)."""
    from tests.live.helpers import as_user

    with readonly_for_others(RW) as (mnt, _obj, _w):
        def user() -> object:
            out: list[object] = []
            try:
                os.close(os.open(mnt / "win", os.O_RDWR))
                out.append("opened")
            except OSError as e:
                out.append(e.errno)
            fd = os.open(mnt / "win", os.O_RDONLY)
            try:
                try:
                    m = mmap.mmap(fd, P, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
                    m[:8] = b"attacker"
                    m.flush()
                    m.close()
                    out.append("mapped")
                except OSError as e:
                    out.append(e.errno)
                os.fsync(fd)
                os.fdatasync(fd)
                out.append("synced")
            finally:
                os.close(fd)
            return out

        got = as_user(65534, 65534, user)
        assert got == ("ok", [errno.EACCES, errno.EACCES, "synced"]), got
