"""The one-page punch's shortcuts on a live mount: the same guest-like sequence on a
daemon with them (the default) and on one with ``SHMFS_WINUNMAP=0 SHMFS_PUNCH1=0``.

uml_physmem's pattern at a small scale: an object shown by three windows of 2,048 pages
(four page-table chunks each, so the C filter has tables to skip), remapped page by
page to scattered object pages; the windows are mapped and read (present PTEs, pages the
kernel caches); then a random sequence of one-page FALLOCATE(PUNCH_HOLE)s of the object
(of pages one window shows, several show, or none), one-page MADV_REMOVEs through a
window, remaps, window WRITEs and reads through every way in.  Every read must equal a
model of the object (zeros where punched) and be the same on both daemons, and so must
st_blocks and statfs after every punch (docs/decisions.md, "A one-page punch ...").
"""

from __future__ import annotations

import mmap
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from mount.winapi.client import MADV_REMOVE, Window
from tests.live.helpers import fallocate
from tests.support.mounts import shmfs_mount
from tests.windows.helpers import P, make_object, page_of

pytestmark = pytest.mark.mount

PUNCH = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
OBJ_PAGES, NWIN, WIN_PAGES = 1024, 3, 2048
ZERO = bytes(P)


def _used(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _run(mnt: Path, seed: int) -> Iterator[tuple]:
    """The sequence on ``mnt``: yields what every step observed."""
    r = random.Random(seed)
    obj = mnt / "physmem"
    make_object(obj, OBJ_PAGES)
    model = {pg: page_of(pg) for pg in range(OBJ_PAGES)}
    fd = os.open(obj, os.O_RDWR)
    wins, maps, shown = [], [], []
    try:
        for k in range(NWIN):
            w = Window.create(mnt / f"guest{k}", obj, WIN_PAGES)
            wins.append(w)
            show = [r.randrange(OBJ_PAGES) for _ in range(WIN_PAGES)]
            w.remapv([(i, 1, pg) for i, pg in enumerate(show)])
            shown.append(show)
            m = mmap.mmap(w.fd, WIN_PAGES * P, mmap.MAP_SHARED)
            maps.append(m)
            for i in range(0, WIN_PAGES, 3):  # present and cached
                assert m[i * P : i * P + 16] == model[show[i]][:16]
        for step in range(400):
            k = r.randrange(NWIN)
            i = r.randrange(WIN_PAGES)
            kind = r.choice(["punch", "punch", "punch_unshown", "madv", "remap", "write",
                             "read"])
            if kind in ("punch", "punch_unshown"):
                pg = shown[k][i] if kind == "punch" else r.randrange(OBJ_PAGES)
                fallocate(fd, PUNCH, pg * P, P)
                model[pg] = ZERO
                yield step, kind, os.fstat(fd).st_blocks, _used(mnt)
            elif kind == "madv":
                wins[k].madvise(i, 1, MADV_REMOVE)
                model[shown[k][i]] = ZERO
                yield step, kind, os.fstat(fd).st_blocks, _used(mnt)
            elif kind == "remap":
                shown[k][i] = r.randrange(OBJ_PAGES)
                wins[k].remap(i, 1, shown[k][i])
            elif kind == "write":
                data = page_of(r.randrange(1 << 20), step)
                wins[k].pwrite(i * P, data)
                os.fsync(wins[k].fd)  # where a store is coherent for other inodes' views
                model[shown[k][i]] = data
            pg = shown[k][i]
            got = (maps[k][i * P : (i + 1) * P], wins[k].pread(i * P, P),
                   os.pread(fd, P, pg * P))
            assert got == (model[pg],) * 3, (step, kind, k, i, pg)
            yield step, kind, pg, got[0][:16]
    finally:
        for m in maps:
            m.close()
        for w in wins:
            w.close()
        os.close(fd)


def _observe(monkeypatch: pytest.MonkeyPatch, on: bool, seed: int) -> list[tuple]:
    with monkeypatch.context() as mp:
        for var in ("SHMFS_WINUNMAP", "SHMFS_PUNCH1"):
            mp.setenv(var, "1" if on else "0")
        with shmfs_mount("size=64m") as mnt:  # the daemon reads them at import
            return list(_run(mnt, seed))


@pytest.mark.parametrize("seed", [1, 2])
def test_guest_sequence_same_with_and_without_shortcuts(monkeypatch: pytest.MonkeyPatch,
                                                         seed: int) -> None:
    on = _observe(monkeypatch, True, seed)
    off = _observe(monkeypatch, False, seed)
    assert on == off
    punches = [x for x in on if x[1] in ("punch", "punch_unshown", "madv")]
    assert len(punches) > 100
    assert len({x[3] for x in punches}) > 10  # statfs moved with the punches
