"""The one-page window MADV_REMOVE (docs/decisions.md, "A one-page MADV_REMOVE without
numpy") on a live mount: what it frees, what every view then shows, its errnos, and
that an unprivileged user can punch through a window no more than open(2) allows.

tests/windows/test_winmadv_twin.py proves the shortcuts leave every notification and
every piece of state as the general path does; these tests prove the mount's result
is right in the kernel's page caches (mmaps of three windows and of the object), in
st_blocks and statfs, and that bad calls get an errno and leave a working daemon.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from mount.winapi.abi import MADVISE, SHMFS_IOC_WIN_MADVISE
from mount.winapi.client import PROT_READ, PROT_WRITE, Window, mount_stats
from tests.windows.helpers import MapChild, P, make_object, page_of, readonly_for_others

pytestmark = pytest.mark.mount

RW = PROT_READ | PROT_WRITE
MADV_DONTNEED, MADV_REMOVE = 4, 9


def _used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _madvise_raw(fd: int, start: int, size: int, advice: int) -> None:
    fcntl.ioctl(fd, SHMFS_IOC_WIN_MADVISE, MADVISE.pack(start, size, advice, 0))


def _madvises(mnt: Path) -> int:
    st = mount_stats(mnt)["windows"]["counters"]
    return int(st.get(f"madvise_{MADV_REMOVE}", 0))


def test_one_page_punch_of_a_shared_page_reads_zero_everywhere(wmount: Path,
                                                              wdir: Path) -> None:
    """Object page 5 shown by three windows (at different pages) and cached by an mmap
    of each and of the object; one one-page MADV_REMOVE through the first: every
    mapping then reads zeros there, the object too, one page of space comes back,
    and the other pages are untouched."""
    obj = wdir / "obj"
    make_object(obj, 16)
    at = {"a": 3, "b": 9, "c": 15}
    wins = {k: Window.create(wdir / k, obj, 16) for k in at}
    kids: list[MapChild] = []
    try:
        for k, i in at.items():
            wins[k].remap(i, 1, 5, prot=RW, populate=True)
            kids.append(MapChild(wdir / k, 16 * P))
        kids.append(MapChild(obj, 16 * P))
        for kid, i in zip(kids, [*at.values(), 5], strict=True):
            assert kid.read(i * P, 16) == page_of(5)[:16]  # cached by the kernel now
        blocks, used, n = os.stat(obj).st_blocks, _used(wdir), _madvises(wmount)
        wins["a"].madvise(at["a"], 1, MADV_REMOVE)
        assert _madvises(wmount) == n + 1
        assert os.stat(obj).st_blocks == blocks - P // 512
        assert _used(wdir) == used - P
        for kid, i in zip(kids, [*at.values(), 5], strict=True):
            assert kid.read(i * P, P) == bytes(P), i
        data = obj.read_bytes()
        assert data[5 * P:6 * P] == bytes(P)
        assert all(data[p * P:(p + 1) * P] == page_of(p) for p in range(16) if p != 5)
        # the window still works: a store through b fills the hole again, a seen by all
        wins["b"].pwrite(at["b"] * P, b"again")
        os.fsync(wins["b"].fd)  # written back (the kernel may cache the write)
        assert kids[0].read(at["a"] * P, 5) == b"again"
        assert obj.read_bytes()[5 * P:5 * P + 5] == b"again"
    finally:
        for kid in kids:
            kid.close()
        for w in wins.values():
            w.close()


def test_bad_madvises_get_an_errno_and_the_daemon_lives(wmount: Path, wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 8)
    with Window.create(wdir / "win", obj, 8) as w:
        w.remap(0, 1, 3, populate=True)
        for args, want in [((100, P, MADV_REMOVE), errno.EINVAL),  # unaligned start
                           ((0, P, 77), errno.EINVAL),  # unknown advice
                           ((6 * P, 4 * P, MADV_REMOVE), errno.ENOMEM)]:  # past the end
            with pytest.raises(OSError) as ei:
                _madvise_raw(w.fd, *args)
            assert ei.value.errno == want, args
        ro = Window.open(wdir / "win", writable=False)
        try:
            with pytest.raises(OSError) as ei:
                ro.madvise(0, 1, MADV_REMOVE)
            assert ei.value.errno == errno.EBADF
        finally:
            ro.close()
        assert obj.read_bytes()[3 * P:4 * P] == page_of(3)  # nothing was punched
        w.madvise(0, 1, MADV_REMOVE)  # and a good one still works
        assert obj.read_bytes()[3 * P:4 * P] == bytes(P)
        _madvise_raw(w.fd, 0, 0, MADV_REMOVE)  # an empty range: nothing to do


def test_punch_attack_read_only_user(tmp_path: Path) -> None:
    """An unprivileged user on an allow_other mount: through root's 0644 window (a
    read-only open, as open(2) grants) MADV_REMOVE is EBADF; its own window over
    root's 0644 object can only be read-only (EACCES for MADV_REMOVE, row 11); nothing
    of the object is freed."""
    from tests.live.helpers import as_user

    with readonly_for_others(RW) as (mnt, obj, w):
        def user() -> object:
            out: list[object] = []
            fd = os.open(mnt / "win", os.O_RDONLY)
            try:
                _madvise_raw(fd, 0, P, MADV_REMOVE)
                out.append("punched")
            except OSError as e:
                out.append(e.errno)
            finally:
                os.close(fd)
            try:
                Window.create(mnt / "mine", obj, 4, RW)
                out.append("rw window")
            except OSError as e:
                out.append(e.errno)
            with Window.create(mnt / "mine2", obj, 4, PROT_READ) as mine:
                mine.remap(0, 1, 5, prot=PROT_READ)
                for advice in (MADV_REMOVE, MADV_DONTNEED):
                    try:
                        mine.madvise(0, 1, advice)
                        out.append("done")
                    except OSError as e:
                        out.append(e.errno)
            return out

        got = as_user(65534, 65534, user)
        assert got[0] == "ok", got
        assert got[1] == [errno.EBADF, errno.EACCES, errno.EACCES, "done"]
        assert w.pread(0, 8) == page_of(5)[:8]
