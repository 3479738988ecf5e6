"""Window stores the C engine now takes (native/winwrite.c), on a live mount: a store
over an object page the kernel caches and that another window shows (its INVALs after
the reply), and the store fault of a page that is not present (a hole allocated).

tests/windows/test_winoinval_twin.py proves the C path leaves every notification and
every piece of state as the Python path does; these tests prove the result on the
kernel's side: every view (a pread of the object, an mmap of the other window, an
mmap of the object) reads the new bytes, st_blocks and statfs count the allocated
page, the engine (not Python) took the WRITE, and an unprivileged user gets no more
than open(2) gives.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mount.winapi.client import PROT_READ, PROT_WRITE, Window, mount_stats
from tests.windows.helpers import MapChild, P, make_object, page_of, readonly_for_others

pytestmark = pytest.mark.mount

RW = PROT_READ | PROT_WRITE


def _engine(mnt: Path) -> dict:
    return mount_stats(mnt)["session"].get("winfast", {})


def _used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_store_over_cached_views_reaches_every_view(wmount: Path, wdir: Path) -> None:
    """Object page 5 shown by windows a (page 3) and b (page 9), cached by an mmap of b,
    by an mmap of the object and by a pread of the object; a store through a's mapping,
    written back by msync: every view reads it, and the engine invalidated the others."""
    obj = wdir / "obj"
    make_object(obj, 16)
    a = Window.create(wdir / "a", obj, 16)
    b = Window.create(wdir / "b", obj, 16)
    kids: list[MapChild] = []
    try:
        a.remap(3, 1, 5, prot=RW, populate=True)
        b.remap(9, 1, 5, prot=RW, populate=True)
        kids = [MapChild(wdir / "b", 16 * P), MapChild(obj, 16 * P), MapChild(wdir / "a", 16 * P)]
        assert kids[0].read(9 * P, 16) == page_of(5)[:16]
        assert kids[1].read(5 * P, 16) == page_of(5)[:16]
        fd = os.open(obj, os.O_RDONLY)
        try:
            assert os.pread(fd, 16, 5 * P) == page_of(5)[:16]  # the object's own cache
            before = _engine(wmount)
            kids[2].store(3 * P + 32, b"stored through a")
            assert kids[2].msync() == 0
            after = _engine(wmount)
            assert os.pread(fd, 16, 5 * P + 32) == b"stored through a"
        finally:
            os.close(fd)
        assert kids[0].read(9 * P + 32, 16) == b"stored through a"
        assert kids[1].read(5 * P + 32, 16) == b"stored through a"
        assert obj.read_bytes()[5 * P + 32:5 * P + 48] == b"stored through a"
        if before:  # the C engine is built: it took the write-back and its INVALs
            assert after["wstore_invals"] > before["wstore_invals"], (before, after)
    finally:
        for kid in kids:
            kid.close()
        a.close()
        b.close()


def test_store_fault_allocates_a_hole(wmount: Path, wdir: Path) -> None:
    """A whole-page write(2) into window page 2, which shows the object's hole 12 and
    is not present: the page is allocated (statfs grows by one page),
    reads back through the object and an mmap of it, and the rest stays a hole."""
    obj = wdir / "obj"
    make_object(obj, 4)
    os.truncate(obj, 16 * P)
    with Window.create(wdir / "w", obj, 16) as w:
        w.remap(2, 1, 12, prot=RW)  # a file PTE, not populated
        used, before = _used(wdir), _engine(wmount)
        blocks = os.stat(obj).st_blocks  # now the kernel's cached attribute
        data = page_of(99)
        assert w.pwrite(2 * P, data) == P
        os.fsync(w.fd)
        after = _engine(wmount)
        # statfs counts the page at once, and so does the object's st_blocks: the store
        # fault's attribute INVAL of the object (test_winblocks_live.py) preceded the
        # fsync's reply
        assert _used(wdir) == used + P
        assert os.stat(obj).st_blocks == blocks + P // 512
        got = obj.read_bytes()
        assert got[12 * P:13 * P] == data
        assert got[13 * P:] == bytes(3 * P) and got[4 * P:12 * P] == bytes(8 * P)
        kid = MapChild(obj, 16 * P)
        try:
            assert kid.read(12 * P, P) == data
        finally:
            kid.close()
        assert w.pread(2 * P, 16) == data[:16]
        if before:
            assert after["wstore_faults"] > before["wstore_faults"], (before, after)


def test_store_beyond_eof_and_read_only_get_errnos(wmount: Path, wdir: Path) -> None:
    """The store faults the engine leaves to Python still fail as they did: a page
    beyond the object's end (EFAULT, as a SIGBUS), a read-only page (EACCES or
    EFAULT), and the daemon keeps serving."""
    obj = wdir / "obj"
    make_object(obj, 4)
    with Window.create(wdir / "w", obj, 8) as w:
        w.remap(1, 1, 6)  # beyond EOF (4 pages)
        w.remap(2, 1, 2, prot=PROT_READ)
        for page in (1, 2):
            with pytest.raises(OSError) as ei:
                w.pwrite(page * P, page_of(1))
                os.fsync(w.fd)
            assert ei.value.errno in (errno.EFAULT, errno.EACCES, errno.EIO), page
        assert obj.read_bytes() == b"".join(page_of(k) for k in range(4))
        w.remap(3, 1, 1, prot=RW)
        assert w.pwrite(3 * P, b"fine") == 4
        os.fsync(w.fd)
        assert obj.read_bytes()[P:P + 4] == b"fine"


def test_store_attack_read_only_user(tmp_path: Path) -> None:
    """An unprivileged user on an allow_other mount: root's 0644 window cannot be opened
    for writing (EACCES) and a read-only descriptor cannot write (EBADF); the user's own
    window over root's 0644 object is read-only, and a store into its not-present page
    -- the new C fault path's case -- is refused; nothing of the object changes (the
    helper checks it on leaving)."""
    from tests.live.helpers import as_user

    with readonly_for_others(RW) as (mnt, obj, _w):
        def user() -> object:
            out: list[object] = []
            try:
                os.close(os.open(mnt / "win", os.O_RDWR))
                out.append("opened")
            except OSError as e:
                out.append(e.errno)
            fd = os.open(mnt / "win", os.O_RDONLY)
            try:
                os.pwrite(fd, b"x" * 8, 0)
                out.append("written")
            except OSError as e:
                out.append(e.errno)
            finally:
                os.close(fd)
            with Window.create(mnt / "mine", obj, 4, PROT_READ) as mine:
                mine.remap(1, 1, 6, prot=PROT_READ)  # a file PTE, not present
                try:
                    mine.pwrite(P, b"y" * P)
                    os.fsync(mine.fd)
                    out.append("stored")
                except OSError as e:
                    out.append(e.errno)
            return out

        got = as_user(65534, 65534, user)
        assert got[0] == "ok", got
        assert got[1][:2] == [errno.EACCES, errno.EBADF], got
        assert got[1][2] in (errno.EBADF, errno.EACCES, errno.EFAULT), got
