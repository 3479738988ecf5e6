"""The object's attributes after a window fault allocates one of its holes (decisions 33).

A store through a window (write(2) of the window, or the write-back of a MAP_SHARED
mapping of it at msync) or a window READ whose fault allocates a hole of the object
charges and allocates an object page behind the kernel's back: the kernel's cached
attributes of the *object* must be dropped, or ``stat(object).st_blocks`` shows the
old count until ``attr_timeout`` (a day).  The oracle is tmpfs: the kernel's own
equivalent of a window page is a MAP_SHARED mapping of the object at that page, and a
store (or a load) through it into a hole shows the new st_blocks at once.  Each case is
run on tmpfs and on shmfs -- with the C window engine and with it off (SHMFS_WINFAST=0,
the Python path) -- and the object's (st_size, st_blocks) after every step compared.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mount.winapi.client import PROT_READ, PROT_WRITE, Window, mount_stats
from tests.support.mounts import shmfs_mount, tmpfs_mount
from tests.windows.helpers import P, page_of

pytestmark = pytest.mark.mount

RW = PROT_READ | PROT_WRITE
NPAGES = 8
HOLE = 5  # the object page every case allocates (a hole of a sparse object)
WPAGE = 0  # the window page that shows it (a one-page window: the kernel's readahead
#           of a window mmap would otherwise read, and so allocate, its other pages)


def _attrs(obj: Path) -> tuple[int, int]:
    st = os.stat(obj)
    return st.st_size, st.st_blocks


def _sparse_object(obj: Path) -> None:
    """Pages 0-1 data, the rest of NPAGES a hole; its attributes then cached by a stat."""
    obj.write_bytes(page_of(0) + page_of(1))
    os.truncate(obj, NPAGES * P)
    _attrs(obj)


# --- the three ways in: each ``(path, obj) -> bytes read or written`` ---------------
def _tmpfs_write(d: Path, obj: Path, mark: Callable[[], None]) -> bytes:
    """tmpfs: the store of write(2) through the window page = a store through an mmap
    of the object at that page (the kernel's own emulation), then msync."""
    fd = os.open(obj, os.O_RDWR)
    try:
        mark()
        with mmap.mmap(fd, P, offset=HOLE * P) as m:
            m[100:105] = b"hello"
            m.flush()
    finally:
        os.close(fd)
    return b"hello"


def _tmpfs_read(d: Path, obj: Path, mark: Callable[[], None]) -> bytes:
    """tmpfs: a load through a shared mapping of a hole (the window READ's fault)."""
    fd = os.open(obj, os.O_RDWR)
    try:
        mark()
        with mmap.mmap(fd, P, offset=HOLE * P) as m:
            return bytes(m[100:105])
    finally:
        os.close(fd)


def _window(d: Path, obj: Path, mark: Callable[[], None]) -> Window:
    """A one-page window showing the hole through a file PTE (not populated: the access
    faults it); the object's attributes are cached again after the ATTACH (whose
    invalidation of the whole object would otherwise refresh them)."""
    w = Window.create(d / "win", obj, 1)
    w.remap(WPAGE, 1, HOLE, prot=RW)
    mark()
    return w


def _shmfs_pwrite(d: Path, obj: Path, mark: Callable[[], None]) -> bytes:
    with _window(d, obj, mark) as w:
        assert w.pwrite(WPAGE * P + 100, b"hello") == 5
        os.fsync(w.fd)
    return b"hello"


def _shmfs_mmap_store(d: Path, obj: Path, mark: Callable[[], None]) -> bytes:
    with _window(d, obj, mark) as w, w.mmap(RW) as m:
        m[WPAGE * P + 100:WPAGE * P + 105] = b"hello"
        m.flush()  # msync(MS_SYNC): the write-back reaches the daemon before it returns
    return b"hello"


def _shmfs_read(d: Path, obj: Path, mark: Callable[[], None]) -> bytes:
    with _window(d, obj, mark) as w:
        return w.pread(WPAGE * P + 100, 5)


Run = Callable[[Path, Path, Callable[[], None]], bytes]
CASES: dict[str, tuple[Run, Run]] = {
    "pwrite": (_tmpfs_write, _shmfs_pwrite),
    "mmap_store": (_tmpfs_write, _shmfs_mmap_store),
    "read": (_tmpfs_read, _shmfs_read),
}


@pytest.fixture(scope="module")
def tmpfs() -> Iterator[Path]:
    with tmpfs_mount("size=64m") as mnt:
        yield mnt


@pytest.fixture(scope="module", params=["engine", "python"])
def mnt(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A shmfs with the C window engine (when built) and one serving windows in Python."""
    mp = pytest.MonkeyPatch()
    if request.param == "python":
        mp.setenv("SHMFS_WINFAST", "0")
    try:
        with shmfs_mount("size=64m") as m:
            yield m
    finally:
        mp.undo()


@pytest.mark.parametrize("case", sorted(CASES))
def test_object_attributes_after_window_fault_as_tmpfs(case: str, mnt: Path, tmpfs: Path,
                                                        request: pytest.FixtureRequest
                                                        ) -> None:
    """stat(object) right after the window access shows what tmpfs shows after the
    same access through a shared mapping: one more page allocated, the same size."""
    name = f"{case}_{request.node.callspec.params['mnt']}"
    on_tmpfs, on_shmfs = CASES[case]
    native = request.node.callspec.params["mnt"] == "engine" and _engine(mnt)
    stats: list[dict] = []
    got = {}
    for fs, run in ((tmpfs, on_tmpfs), (mnt, on_shmfs)):
        d = fs / name
        d.mkdir()
        obj = d / "obj"
        _sparse_object(obj)
        seen: list[tuple[int, int]] = []

        def mark(obj: Path = obj, fs: Path = fs, seen: list = seen) -> None:
            seen.append(_attrs(obj))
            if fs == mnt:
                stats.append(mount_stats(mnt)["session"])
        data = run(d, obj, mark)
        before = seen[0]
        after = _attrs(obj)
        got[fs] = (before, after, data, obj.read_bytes()[HOLE * P + 100:HOLE * P + 105])
    assert got[mnt] == got[tmpfs], got
    before, after, _data, _back = got[tmpfs]
    assert after[1] > before[1]  # the oracle allocates: the comparison is not vacuous
    if native:  # the C engine is built: it, not Python, took the faulting request and
        # sent the one attribute INVAL (an mmap store reads the page in first: its READ
        # is the fault that allocates, the write-back then finds the page present)
        stats.append(mount_stats(mnt)["session"])
        eng = [s["winfast"] for s in stats]
        sent = [e["read"]["attr_invals"] + e["wstore_invals"] for e in eng]
        assert sent[1] == sent[0] + 1, eng
        if case == "pwrite":
            assert eng[1]["wstore_faults"] == eng[0]["wstore_faults"] + 1
        # and the session's total counts it (the engine's INVALs of window WRITEs and
        # READs were missing from it): nothing else was sent meanwhile
        assert stats[1]["notifications"] == stats[0]["notifications"] + 1, stats



def test_object_attributes_after_populating_remap_of_a_hole(mnt: Path, tmpfs: Path,
                                                            request: pytest.FixtureRequest
                                                            ) -> None:
    """REMAP with SHMFS_REMAP_POPULATE onto a hole prefaults it (a read fault through
    a shared mapping, which on tmpfs allocates: MAP_POPULATE of the hole)."""
    name = f"remap_{request.node.callspec.params['mnt']}"
    got = {}
    for fs in (tmpfs, mnt):
        d = fs / name
        d.mkdir()
        obj = d / "obj"
        _sparse_object(obj)
        if fs == tmpfs:
            before = _attrs(obj)
            fd = os.open(obj, os.O_RDWR)
            try:
                mmap.mmap(fd, P, offset=HOLE * P, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE
                          ).close()
            finally:
                os.close(fd)
        else:
            with Window.create(d / "win", obj, 1) as w:
                w.remap(0, 1, 1)  # nonlinear
                before = _attrs(obj)
                w.remap(0, 1, HOLE, populate=True)
        got[fs] = (before, _attrs(obj))
    assert got[tmpfs][1][1] > got[tmpfs][0][1]
    assert got[mnt] == got[tmpfs], got


def _engine(mnt: Path) -> dict:
    return mount_stats(mnt)["session"].get("winfast", {})
