"""Unlinks of files with pages on a real mount, against a kernel tmpfs (issue 15,
unlinkpages): the eviction each unlink's FORGET leaves is reaped in the C loop, pages
included (native/hotmeta.c, reap_pages_*), and must free exactly what tmpfs frees,
when tmpfs frees it.

- A burst of unlinks of files of one to a few pages, sparse ones and fallocated ones:
  free blocks and inodes (statvfs), the directory's link count, ENOENT after, as on
  tmpfs; the daemon's own counters (its budget, the arena's frames in use) back to
  where they were, and the engine's ``reap_pages`` counter moved.
- Files unlinked while open, while mapped (MAP_SHARED, the descriptor closed), and an
  object file unlinked while a window shows it: the data stays readable through what
  still holds the file, and the space is freed only when the last holder lets go --
  statvfs's free blocks at each step as tmpfs shows them.
- nobody on an ``allow_other`` mount may not unlink root's file with pages in a sticky
  directory (EPERM, as on tmpfs), and the file's bytes stay.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import time
from pathlib import Path

import pytest

from mount.server import hotpath
from mount.winapi.client import Window, mount_stats
from tests.live.helpers import as_user
from tests.support.mounts import shmfs_mount, tmpfs_mount

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not hotpath.available(), reason="_hotpath not built")]

NOBODY = 65534
P = 4096


def _err(fn: object) -> object:
    try:
        return fn()  # type: ignore[operator]
    except OSError as e:
        return errno.errorcode[e.errno]


def _used(mnt: Path) -> tuple[int, int]:
    """(blocks, inodes) in use as statvfs(2) shows them."""
    s = os.statvfs(mnt)
    return s.f_blocks - s.f_bfree, s.f_files - s.f_ffree


def _burst(mnt: Path, n: int) -> list[object]:
    """n files with pages (1-3 pages, a sparse one, a fallocated one each ten), then
    all unlinked in a row: what statvfs and stat show on the way."""
    d = mnt / "pages"
    d.mkdir()
    base = _used(mnt)
    for i in range(n):
        p = d / f"f{i:04d}"
        if i % 10 == 7:  # sparse: one page far out
            with open(p, "wb") as f:
                f.seek(300 * P)
                f.write(b"s" * 10)
        elif i % 10 == 9:  # fallocated pages (!UPTODATE), one written
            fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
            os.posix_fallocate(fd, 0, 3 * P)
            os.pwrite(fd, b"w", P)
            os.close(fd)
        else:
            p.write_bytes(bytes([i & 0xFF]) * ((i % 3) * P + 100))
    full = _used(mnt)
    for p in sorted(d.iterdir()):
        os.unlink(p)
    end = _used(mnt)
    return [full[0] - base[0], full[1] - base[1], end[0] - base[0], end[1] - base[1],
            os.stat(d).st_nlink, os.listdir(d), _err(lambda: os.stat(d / "f0000"))]


def test_an_unlink_burst_of_files_with_pages_frees_what_tmpfs_frees() -> None:
    n = 300
    with shmfs_mount("size=64m,nr_inodes=2000") as mnt, \
            tmpfs_mount("size=64m,nr_inodes=2000") as tmp:
        s0 = mount_stats(mnt)
        got = _burst(mnt, n)
        assert got == _burst(tmp, n)
        assert got[0] > n and got[2:4] == [0, 0]
        s1 = mount_stats(mnt)  # reaps what is left first (exact counts)
        hot0, hot1 = s0["session"]["hotpath"], s1["session"]["hotpath"]
        assert hot1["reap_pages"] - hot0["reap_pages"] > 0  # pages freed in C
        assert hot1["reap"] - hot0["reap"] > 0
        assert hot1["errors"] == 0 and hot1["write_errors"] == 0
        assert s1["fs"]["used_pages"] == s0["fs"]["used_pages"] == 0
        assert s1["fs"]["inodes"] == 2  # the root and the directory
        assert s1["arena"]["frames_in_use"] == s0["arena"]["frames_in_use"]
        assert s1["arena"]["frames_freed"] == s1["arena"]["frames_allocated"]


def _held(mnt: Path) -> list[object]:
    """Files unlinked while something still holds them: an open descriptor, a
    MAP_SHARED mapping whose descriptor is closed. The data read through the holder
    and the blocks in use after each step."""
    out: list[object] = []
    base = _used(mnt)[0]
    a = mnt / "open"
    a.write_bytes(b"A" * (2 * P + 5))
    fd = os.open(a, os.O_RDWR)
    os.unlink(a)
    out += [_used(mnt)[0] - base, os.pread(fd, 8, 2 * P), _err(lambda: os.stat(a))]
    os.pwrite(fd, b"B" * P, 3 * P)  # still writable: a new page, charged
    out += [_used(mnt)[0] - base, os.fstat(fd).st_blocks]
    os.close(fd)
    out.append(_used(mnt)[0] - base)
    m = mnt / "mapped"
    m.write_bytes(b"M" * (3 * P))
    fd = os.open(m, os.O_RDWR)
    mm = mmap.mmap(fd, 3 * P)
    os.close(fd)
    os.unlink(m)
    out += [_used(mnt)[0] - base, mm[P:P + 4], _err(lambda: os.stat(m))]
    mm[2 * P:2 * P + 4] = b"mmmm"
    out.append(bytes(mm[2 * P:2 * P + 6]))
    mm.close()
    out.append(_used(mnt)[0] - base)
    return out


def test_files_unlinked_while_open_or_mapped_keep_their_pages_as_on_tmpfs() -> None:
    with shmfs_mount("size=64m") as mnt, tmpfs_mount("size=64m") as tmp:
        got = _held(mnt)
        assert got == _held(tmp)
        assert got[1] == b"AAAAA" and got[-1] == 0
        stats = _after_release(mnt)  # the munmap's RELEASE and FORGET come later
        assert stats["fs"]["used_pages"] == 0 and stats["fs"]["inodes"] == 1
        assert stats["arena"]["frames_in_use"] == 0, json.dumps(stats["arena"])
        assert stats["session"]["hotpath"]["errors"] == 0


def _window_case(mnt: Path) -> dict:
    """An object with four pages shown by a window; the object's last name unlinked
    and its descriptors closed while the window holds it: the window still shows its
    pages and may store into them (the eviction must not free them under it). Then the
    window file is unlinked and closed. The statistics once both are gone."""
    obj, win = mnt / "obj", mnt / "win"
    obj.write_bytes(b"".join(bytes([65 + k]) * P for k in range(4)))
    base = mount_stats(mnt)
    w = Window.create(win, obj, 4)
    try:
        os.unlink(obj)
        assert _err(lambda: os.stat(obj)) == "ENOENT"
        mid = mount_stats(mnt)  # reaps whatever the FORGETs left first
        assert os.pread(w.fd, 4, 2 * P) == b"CCCC"
        assert mid["arena"]["frames_in_use"] == base["arena"]["frames_in_use"] == 4
        os.pwrite(w.fd, b"zz", 3 * P)
        assert os.pread(w.fd, 3, 3 * P) == b"zzD"
        os.unlink(win)
    finally:
        w.close()
    end = _after_release(mnt)
    assert end["fs"]["inodes"] == 1 and end["windows"]["windows"] == 0
    assert end["fs"]["used_pages"] == 0
    assert end["session"]["hotpath"].get("errors", 0) == 0
    return end


def test_an_object_unlinked_under_a_window_keeps_its_pages_until_the_window_goes() -> None:
    """A window holds its object: its pages outlive the object's name and descriptors
    (readable and writable through the window), and both inodes and their space go
    once the window file is unlinked and closed."""
    with shmfs_mount("size=64m") as mnt:
        _window_case(mnt)


def test_an_object_evicted_after_its_window_gives_its_frames_back() -> None:
    """The eviction of the object after its window's frees its frames, and the STATS
    document shows it: its arena counters are taken after the reap its fs counters
    make (they were taken before, and showed the frames of inodes already gone)."""
    with shmfs_mount("size=64m") as mnt:
        end = _window_case(mnt)
        assert end["arena"]["frames_in_use"] == 0, json.dumps(end["arena"])


def _after_release(mnt: Path, timeout: float = 10.0) -> dict:
    """mount_stats once the last RELEASEs and FORGETs arrived (only the root left): the
    kernel sends them in the background after close(2), munmap(2) and unlink(2), and
    a STATS ioctl may overtake them. Polled on that condition, bounded; what was freed
    is then asserted by the caller."""
    deadline = time.monotonic() + timeout
    while True:
        st = mount_stats(mnt)
        if st["fs"]["inodes"] == 1 or time.monotonic() > deadline:
            return st
        time.sleep(0.01)


def _sticky(mnt: Path) -> list[object]:
    """nobody in a sticky 1777 directory: root's file with pages may not go (EPERM),
    nobody's own may; root's bytes stay."""
    d = mnt / "tmp"
    d.mkdir()
    os.chmod(d, 0o1777)
    (d / "roots").write_bytes(b"r" * (3 * P))

    def run() -> list[object]:
        (d / "mine").write_bytes(b"m" * (2 * P))
        return [_err(lambda: os.unlink(d / "roots")), _err(lambda: os.unlink(d / "mine"))]

    got = as_user(NOBODY, NOBODY, run)
    return [got, sorted(os.listdir(d)), (d / "roots").read_bytes() == b"r" * (3 * P),
            _used(mnt)[0]]


def test_nobody_may_not_unlink_roots_file_with_pages_in_a_sticky_directory() -> None:
    with shmfs_mount("allow_other,size=64m") as mnt, tmpfs_mount("size=64m") as tmp:
        os.chmod(mnt, 0o755)
        os.chmod(tmp, 0o755)
        got = _sticky(mnt)
        assert got == _sticky(tmp)
        assert got[0] == ("ok", ["EPERM", None]) and got[1] == ["roots"] and got[2]
