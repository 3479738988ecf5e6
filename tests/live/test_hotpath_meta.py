"""LOOKUP misses, OPEN and RELEASE of regular files in the C hot path, on a live mount.

What must hold with the engine answering them: it is really taken (its STATS counters
move, and a miss is still counted as ENOENT in the daemon's errors); a create+close
and stat of a missing name behave as on tmpfs; the last close of an unlinked file
(which the engine declines: Python reclaims it) frees its space while other processes
open, close, unlink and truncate the same files concurrently; the opens the engine
declines (O_TRUNC, O_APPEND, chattr flags) are answered as on tmpfs; an unprivileged
user on
an allow_other mount gets exactly what tmpfs gives (the kernel checks the directory's
search permission before a LOOKUP reaches the daemon, which adds no check of its own).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from mount.server import hotpath
from mount.winapi.client import mount_stats
from tests.live.helpers import as_user
from tests.support.mounts import shmfs_mount, tmpfs_mount

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not hotpath.available(), reason="_hotpath not built")]

NOBODY = 65534


def _stats(mnt: Path) -> tuple[dict, dict]:
    st = mount_stats(mnt)
    return st["session"]["hotpath"], st


def _create_close_scenario(mnt: Path) -> list[object]:
    """create+close of new names (each a LOOKUP miss, CREATE, RELEASE), stat of
    missing names, a reopen+close, an unlink with the file still open elsewhere."""
    out: list[object] = []
    d = mnt / "d"
    d.mkdir()
    for i in range(50):
        fd = os.open(d / f"n{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"x" * i)
        os.close(fd)
    for name in ("missing", "n1x", "n" * 255):
        try:
            os.stat(d / name)
            out.append("found")
        except OSError as e:
            out.append(errno.errorcode[e.errno])
    fd = os.open(d / "n7", os.O_RDONLY)
    keep = os.open(d / "n7", os.O_RDONLY)
    os.close(fd)
    os.unlink(d / "n7")
    out.append(os.read(keep, 100))
    os.close(keep)  # the last close of an unlinked file
    out.append(sorted(os.listdir(d))[:5])
    out.append(sum(os.stat(d / n).st_size for n in os.listdir(d)))
    return out


def test_create_close_and_misses_are_served_by_the_engine_as_on_tmpfs() -> None:
    with shmfs_mount("size=64m") as mnt, tmpfs_mount() as tmp:
        before, st0 = _stats(mnt)
        got = _create_close_scenario(mnt)
        assert got == _create_close_scenario(tmp)
        after, st1 = _stats(mnt)
        # 50 creates (a miss each), 3 stats of missing names; 50 closes, one reopen and
        # the unlinked file's first close by the engine (its last: Python's reclaim)
        assert after["lookup_miss"] - before["lookup_miss"] >= 53
        assert after["release"] - before["release"] >= 51
        assert after["errors"] == 0 and after["write_errors"] == 0
        enoent = (st1["ops"]["errors"].get("ENOENT", 0) - st0["ops"]["errors"].get("ENOENT", 0))
        assert enoent >= 53  # shmfs stat still counts the misses


_CHURN = r"""
import os, sys
d, rounds, me = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for r in range(rounds):
    name = os.path.join(d, "c%d" % (r % 7))
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        continue
    try:
        os.pwrite(fd, me.encode() * 4096, (r % 5) * 4096)
        if r % 3 == 0:
            os.ftruncate(fd, (r % 4) * 3000)
        if r % 4 == 0:
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)
"""


def test_concurrent_release_unlink_truncate_free_everything() -> None:
    """Three processes create, write, truncate, unlink and close the same seven names
    at once: releases of open files (C) interleave with last closes of unlinked
    ones (Python's reclaim). Afterwards, with every name removed, the space and the
    inodes are all back: no handle, page or inode leaked or freed twice."""
    with shmfs_mount("size=64m,nr_inodes=1000") as mnt:
        d = mnt / "churn"
        d.mkdir()
        base = os.statvfs(mnt)
        procs = [subprocess.Popen([sys.executable, "-c", _CHURN, str(d), "1500", tag])
                 for tag in "abc"]
        for p in procs:
            assert p.wait(timeout=300) == 0
        for name in os.listdir(d):
            os.unlink(d / name)
        end = os.statvfs(mnt)
        assert (end.f_bfree, end.f_ffree) == (base.f_bfree, base.f_ffree)
        hot, st = _stats(mnt)
        assert hot["release"] > 0 and hot["errors"] == 0
        assert st["ops"]["errors"].get("EBADF", 0) == 0


def _user_scenario(mnt: Path) -> list[object]:
    """nobody: create+close in a sticky 1777 directory, stat of missing names there
    and in a 0700 directory of root's (EACCES from the kernel's search check), then
    reopen and close files it may and may not open."""
    (mnt / "pub").mkdir()
    os.chmod(mnt / "pub", 0o1777)
    (mnt / "priv").mkdir()
    os.chmod(mnt / "priv", 0o700)
    (mnt / "priv" / "f").write_bytes(b"p")
    (mnt / "pub" / "root600").write_bytes(b"r")
    os.chmod(mnt / "pub" / "root600", 0o600)

    def run() -> list[object]:
        res: list[object] = []
        for path, flags in ((mnt / "pub" / "mine", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
                            (mnt / "pub" / "mine", os.O_RDONLY),
                            (mnt / "pub" / "root600", os.O_RDONLY),
                            (mnt / "priv" / "f", os.O_RDONLY),
                            (mnt / "priv" / "new", os.O_WRONLY | os.O_CREAT)):
            try:
                os.close(os.open(path, flags, 0o600))
                res.append("ok")
            except OSError as e:
                res.append(errno.errorcode[e.errno])
        for path in (mnt / "pub" / "nope", mnt / "priv" / "nope"):
            try:
                os.stat(path)
                res.append("found")
            except OSError as e:
                res.append(errno.errorcode[e.errno])
        return res

    got = as_user(NOBODY, NOBODY, run)
    st = os.stat(mnt / "pub" / "mine")
    return [got, st.st_uid, oct(st.st_mode), os.path.exists(mnt / "priv" / "new")]


def test_an_unprivileged_user_gets_what_tmpfs_gives() -> None:
    with shmfs_mount("allow_other") as mnt, tmpfs_mount() as tmp:
        os.chmod(mnt, 0o755)
        before, _ = _stats(mnt)
        got = _user_scenario(mnt)
        assert got == _user_scenario(tmp)
        assert got[0] == ("ok", ["ok", "ok", "EACCES", "EACCES", "EACCES", "ENOENT",
                                 "EACCES"])
        after, _ = _stats(mnt)
        assert after["lookup_miss"] > before["lookup_miss"]
        assert after["release"] > before["release"]
        assert after["open"] > before["open"]  # nobody's O_RDONLY of its own file


FS_IOC_SETFLAGS = 0x40086602
FS_APPEND_FL, FS_IMMUTABLE_FL = 0x20, 0x10


def _open_scenario(mnt: Path) -> list[object]:
    """Opens the engine takes (plain flags, then a read through the cache) and the
    ones it declines: O_TRUNC of a file with data, O_APPEND, append-only and
    immutable files (chattr), the set-id bits an unprivileged O_TRUNC clears."""
    out: list[object] = []
    f = mnt / "f"
    f.write_bytes(b"0123456789")
    for flags in (os.O_RDONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND, os.O_WRONLY | os.O_TRUNC):
        fd = os.open(f, flags)
        try:
            out.append(os.write(fd, b"ab") if flags != os.O_RDONLY else os.read(fd, 4))
        finally:
            os.close(fd)
        out.append(f.read_bytes())
    for name, flag in (("a", FS_APPEND_FL), ("i", FS_IMMUTABLE_FL)):
        p = mnt / name
        p.write_bytes(b"x")
        fd = os.open(p, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("<i", flag))
        finally:
            os.close(fd)
        for flags in (os.O_RDONLY, os.O_WRONLY, os.O_WRONLY | os.O_APPEND, os.O_RDWR | os.O_TRUNC):
            try:
                os.close(os.open(p, flags))
                out.append("ok")
            except OSError as e:
                out.append(errno.errorcode[e.errno])
        fd = os.open(p, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("<i", 0))
        finally:
            os.close(fd)
    s = mnt / "suid"
    s.write_bytes(b"s" * 10)
    os.chmod(s, 0o6777)
    out.append(as_user(NOBODY, NOBODY, lambda: os.close(os.open(s, os.O_WRONLY | os.O_TRUNC))))
    out.append((oct(os.stat(s).st_mode), os.stat(s).st_size))
    return out


def test_opens_taken_and_declined_as_on_tmpfs() -> None:
    with shmfs_mount("size=64m,allow_other") as mnt, tmpfs_mount() as tmp:
        before, _ = _stats(mnt)
        got = _open_scenario(mnt)
        assert got == _open_scenario(tmp)
        assert got[-1] == ("0o100777", 0)  # nobody's O_TRUNC cleared set-id (Python's)
        after, _ = _stats(mnt)
        assert after["open"] - before["open"] >= 3
        assert after["errors"] == 0


OLD_A = 10**18  # an old atime: relatime and strictatime would both move it


def _direct_read(fd: int) -> None:
    import mmap

    buf = mmap.mmap(-1, 1 << 16)  # page-aligned for O_DIRECT: every byte from a READ
    try:
        assert os.preadv(fd, [buf], 0) == 4
    finally:
        buf.close()


def test_a_remount_is_seen_by_whichever_c_request_polls_first() -> None:
    """The daemon's atime mode follows `mount -o remount` through a POLLPRI poll of
    mountinfo; a poll consumes the event, so the engine that sees it must refresh
    the mode itself (the watch's own poll would then see nothing). Once with a READ
    first (an O_DIRECT descriptor opened before the remount), once with an OPEN
    first: neither may move atime under noatime, and relatime moves it again."""
    with shmfs_mount("size=1m") as mnt:
        f = mnt / "f"
        f.write_bytes(b"data")
        os.utime(f, ns=(OLD_A, OLD_A))
        fd = os.open(f, os.O_RDONLY | os.O_DIRECT)
        try:
            subprocess.run(["mount", "-o", "remount,noatime", str(mnt)], check=True)
            _direct_read(fd)  # the READ is the first request to poll
            assert f.stat().st_atime_ns == OLD_A
        finally:
            os.close(fd)
        subprocess.run(["mount", "-o", "remount,relatime", str(mnt)], check=True)
        subprocess.run(["mount", "-o", "remount,noatime", str(mnt)], check=True)
        fd = os.open(f, os.O_RDONLY | os.O_DIRECT)  # the OPEN polls first
        try:
            _direct_read(fd)
            assert f.stat().st_atime_ns == OLD_A
        finally:
            os.close(fd)
        subprocess.run(["mount", "-o", "remount,relatime", str(mnt)], check=True)
        fd = os.open(f, os.O_RDONLY | os.O_DIRECT)
        try:
            _direct_read(fd)
        finally:
            os.close(fd)
        assert f.stat().st_atime_ns > OLD_A  # relatime: a day-old atime moves
        hot, _ = _stats(mnt)
        assert hot["open"] >= 2 and hot["read"] >= 3
