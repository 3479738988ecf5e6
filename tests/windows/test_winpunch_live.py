"""A whole-page hole punched in a window's object (FALLOCATE PUNCH_HOLE), on a live
mount, against the kernel's remap_file_pages emulation on a tmpfs.

Since the punch of whole pages skips the reverse-map lookup (fsimpl
``object_punched``; test_winpunch_twin.py compares it with the lookup in process),
this proves the kernel's side: a page a window shows, cached by an mmap of the window
and by an mmap and a pread of the object, is punched through the object; afterwards
the window's mapping, the object's mapping and a pread read zeros, and st_blocks and
statfs drop by one page -- as on tmpfs, where the guest's "window" is a MAP_FIXED
mapping of the object page.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import pytest

from mount.winapi.client import PROT_READ, PROT_WRITE, Window
from tests.live.helpers import fallocate
from tests.support.mounts import tmpfs_mount
from tests.windows.helpers import MapChild, P, make_object, page_of

pytestmark = pytest.mark.mount

PUNCH = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


def _used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _punch_case(obj: Path, view: MapChild, view_off: int) -> dict:
    """Punch object page 5 (shown by ``view`` at ``view_off``), read every view."""
    kid = MapChild(obj, 8 * P)
    fd = os.open(obj, os.O_RDWR)
    try:
        out: dict = {"before": (view.read(view_off, 16), kid.read(5 * P, 16),
                                os.pread(fd, 16, 5 * P))}
        blocks, used = os.fstat(fd).st_blocks, _used(obj.parent)
        fallocate(fd, PUNCH, 5 * P, P)
        out["blocks"] = blocks - os.fstat(fd).st_blocks
        out["used"] = used - _used(obj.parent)
        out["after"] = (view.read(view_off, P), kid.read(5 * P, P), os.pread(fd, P, 5 * P))
        # a read fault through a shared mapping allocates the hole again (shmem_fault;
        # a window READ's fault does the same): the page is back, holding zeros
        out["blocks_refaulted"] = blocks - os.fstat(fd).st_blocks
        out["neighbours"] = (kid.read(4 * P, 16), kid.read(6 * P, 16))
    finally:
        os.close(fd)
        kid.close()
    return out


def test_punch_under_a_window_matches_tmpfs(wmount: Path, wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 8)
    with Window.create(wdir / "w", obj, 8) as w:
        w.remap(3, 1, 5, prot=PROT_READ | PROT_WRITE, populate=True)
        view = MapChild(wdir / "w", 8 * P)
        try:
            got = _punch_case(obj, view, 3 * P)
            assert view.read(3 * P, P) == bytes(P)  # still zeros on a second look
        finally:
            view.close()
        assert w.pread(3 * P, 16) == bytes(16)
    with tmpfs_mount("size=16m") as t:
        tobj = t / "obj"
        make_object(tobj, 8)
        # the kernel's emulation: the guest's page 3 is a MAP_FIXED mapping of page 5;
        # here a mapping of the object at page 5's offset, read at offset 0
        fd = os.open(tobj, os.O_RDWR)
        try:
            m = mmap.mmap(fd, P, mmap.MAP_SHARED, offset=5 * P)
        finally:
            os.close(fd)

        class _View:  # MapChild's read over the tmpfs mapping
            @staticmethod
            def read(off: int, n: int) -> bytes:
                return m[off:off + n]

        try:
            want = _punch_case(tobj, _View(), 0)  # type: ignore[arg-type]
        finally:
            m.close()
    five = page_of(5)[:16]
    assert got["before"] == want["before"] == (five, five, five)
    assert got["after"] == want["after"] == (bytes(P), bytes(P), bytes(P))
    assert got["blocks"] == want["blocks"] == P // 512
    assert got["used"] == want["used"] == P
    assert got["blocks_refaulted"] == want["blocks_refaulted"] == 0
    assert got["neighbours"] == want["neighbours"] == (page_of(4)[:16], page_of(6)[:16])
