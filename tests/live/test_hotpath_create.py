"""CREATE, UNLINK, MKDIR, RMDIR and FORGET in the C hot path (native/hotmeta.c), live.

What must hold with the engine answering them: it is really taken (its STATS counters
move); creates, unlinks, links and the errors around them (EEXIST, ENOENT, EISDIR,
ENAMETOOLONG, O_APPEND and set-gid directories the engine declines) come out as on a
kernel tmpfs, modes after the umask and the space statfs reports included; an
unprivileged user on an allow_other mount can create and unlink exactly where tmpfs
lets it (the kernel checks write+exec on the directory and the sticky bit before the
request reaches the daemon, which adds no check of its own, in C or in Python); and
processes racing to create and unlink the same names leave the same consistent
state as on tmpfs, with every inode and page given back.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mount.server import hotpath
from mount.winapi.client import mount_stats
from tests.live.helpers import as_user
from tests.support.mounts import ROOT, shmfs_mount, tmpfs_mount

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not hotpath.available(), reason="_hotpath not built")]

NOBODY = 65534


def _hot(mnt: Path) -> dict:
    return mount_stats(mnt)["session"]["hotpath"]


def _err(fn: object) -> object:
    try:
        return fn()  # type: ignore[operator]
    except OSError as e:
        return errno.errorcode[e.errno]


def _scenario(mnt: Path) -> list[object]:
    """Creates with umasks and modes, exclusive and plain creates of existing names,
    long names, O_APPEND creates, a set-gid directory; unlinks of closed files with
    data, of open ones, of one name of two, of missing names and of a directory; the
    free inodes and blocks before and after."""
    out: list[object] = []
    d = mnt / "d"
    d.mkdir()
    base = os.statvfs(mnt)
    old = os.umask(0o022)
    try:
        for i, (mode, umask) in enumerate(((0o644, 0o022), (0o777, 0o022), (0o4755, 0),
                                           (0o666, 0o077))):
            os.umask(umask)
            fd = os.open(d / f"m{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            os.write(fd, b"m" * (i * 5000))
            os.close(fd)
        os.umask(0o022)
        out.append(sorted((n, oct(os.stat(d / n).st_mode), os.stat(d / n).st_size)
                          for n in os.listdir(d)))
        out.append(_err(lambda: os.open(d / "m0", os.O_WRONLY | os.O_CREAT | os.O_EXCL)))
        fd = os.open(d / "m1", os.O_RDWR | os.O_CREAT, 0o600)  # exists: opened
        out.append(os.read(fd, 3))
        os.close(fd)
        out.append(_err(lambda: os.open(d / ("x" * 256), os.O_WRONLY | os.O_CREAT)))
        os.close(os.open(d / ("y" * 255), os.O_WRONLY | os.O_CREAT, 0o600))
        fd = os.open(d / "ap", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(fd, b"12")
        os.write(fd, b"34")
        os.close(fd)
        out.append((d / "ap").read_bytes())
        (d / "sg").mkdir()
        os.chown(d / "sg", 0, 4321)
        os.chmod(d / "sg", 0o2775)
        os.close(os.open(d / "sg" / "f", os.O_WRONLY | os.O_CREAT, 0o640))
        st = os.stat(d / "sg" / "f")
        out.append((st.st_gid, oct(st.st_mode)))
        mid = os.statvfs(mnt)
        out.append((base.f_ffree - mid.f_ffree, base.f_bfree - mid.f_bfree))
        # unlinks: closed with data (its space back), open (data readable after), one
        # name of two, then the other; missing names, a directory
        os.unlink(d / "m2")
        keep = os.open(d / "m3", os.O_RDONLY)
        os.unlink(d / "m3")
        out.append(len(os.read(keep, 1 << 20)))
        os.link(d / "m1", d / "hard")
        os.unlink(d / "m1")
        out.append(os.stat(d / "hard").st_nlink)
        os.unlink(d / "hard")
        out.append(_err(lambda: os.unlink(d / "m1")))
        out.append(_err(lambda: os.unlink(d / "sg")))
        out.append(_err(lambda: os.unlink(d / ("x" * 256))))
        os.close(keep)
        for n in ("m0", "y" * 255, "ap", "sg/f"):
            os.unlink(d / n)
        os.rmdir(d / "sg")
        end = os.statvfs(mnt)
        out.append((base.f_ffree - end.f_ffree, base.f_bfree - end.f_bfree))
        out.append(sorted(os.listdir(d)))
    finally:
        os.umask(old)
    return out


def test_creates_and_unlinks_are_served_by_the_engine_as_on_tmpfs() -> None:
    with shmfs_mount("size=64m,nr_inodes=1000") as mnt, \
            tmpfs_mount("size=64m,nr_inodes=1000") as tmp:
        before = _hot(mnt)
        got = _scenario(mnt)
        assert got == _scenario(tmp)
        assert got[-2] == (0, 0) and got[-1] == []  # every inode and block back
        after = _hot(mnt)
        assert after["create"] - before["create"] >= 5  # not O_APPEND, not in "sg"
        assert after["unlink"] - before["unlink"] >= 6
        assert after["forget"] > before["forget"]
        assert after["errors"] == 0 and after["write_errors"] == 0


def _dirs_scenario(mnt: Path) -> list[object]:
    """mkdir with modes and umasks, nested; rmdir of empty, non-empty, open and missing
    directories and of a file; link counts, modes and free inodes along the way."""
    out: list[object] = []
    base = os.statvfs(mnt).f_ffree
    old = os.umask(0o022)
    try:
        for name, mode, umask in (("a", 0o755, 0o022), ("b", 0o1777, 0), ("c", 0o777, 0o077)):
            os.umask(umask)
            os.mkdir(mnt / name, mode)
        os.umask(0o022)
        os.makedirs(mnt / "a" / "x" / "y")
        out.append(sorted((n, oct(os.stat(mnt / n).st_mode), os.stat(mnt / n).st_nlink)
                          for n in ("a", "b", "c")))
        out.append(_err(lambda: os.mkdir(mnt / "a")))
        out.append(_err(lambda: os.rmdir(mnt / "a")))
        (mnt / "b" / "f").write_bytes(b"f")
        out.append(_err(lambda: os.rmdir(mnt / "b" / "f")))
        out.append(_err(lambda: os.rmdir(mnt / "nope")))
        fd = os.open(mnt / "c", os.O_RDONLY | os.O_DIRECTORY)
        os.rmdir(mnt / "c")  # still open
        out.append(os.fstat(fd).st_nlink)
        os.close(fd)
        os.rmdir(mnt / "a" / "x" / "y")
        os.rmdir(mnt / "a" / "x")
        out.append(os.stat(mnt / "a").st_nlink)
        os.rmdir(mnt / "a")
        os.unlink(mnt / "b" / "f")
        os.rmdir(mnt / "b")
        out.append((base - os.statvfs(mnt).f_ffree, sorted(os.listdir(mnt))))
    finally:
        os.umask(old)
    return out


def test_mkdirs_and_rmdirs_are_served_by_the_engine_as_on_tmpfs() -> None:
    with shmfs_mount("nr_inodes=100") as mnt, tmpfs_mount("nr_inodes=100") as tmp:
        before = _hot(mnt)
        got = _dirs_scenario(mnt)
        assert got == _dirs_scenario(tmp)
        assert got[-1] == (0, [])
        after = _hot(mnt)
        assert after["mkdir"] - before["mkdir"] >= 5
        assert after["rmdir"] - before["rmdir"] >= 5
        assert after["errors"] == 0


def test_enospc_when_nr_inodes_runs_out_as_on_tmpfs() -> None:
    """nr_inodes=6: the creates that fit are the engine's, the next one ENOSPC (Python's
    answer), and an unlink gives the slot back at once, as on tmpfs."""
    def run(mnt: Path) -> list[object]:
        out: list[object] = []
        for i in range(7):
            out.append(_err(lambda i=i: os.close(os.open(mnt / f"n{i}",
                                                         os.O_WRONLY | os.O_CREAT, 0o644))))
        os.unlink(mnt / "n0")
        out.append(_err(lambda: os.close(os.open(mnt / "again", os.O_WRONLY | os.O_CREAT))))
        out.append(sorted(os.listdir(mnt)))
        return out

    with shmfs_mount("nr_inodes=6") as mnt, tmpfs_mount("nr_inodes=6") as tmp:
        got = run(mnt)
        assert got == run(tmp)
        assert got[5:7] == ["ENOSPC", "ENOSPC"] and got[7] is None
        assert _hot(mnt)["create"] >= 6


def _user_scenario(mnt: Path) -> list[object]:
    """nobody on an allow_other mount: create and unlink in a 0755 directory of root's
    (EACCES), a 0772 one (write, no search: EACCES), a 0777 one (root's file may go),
    a sticky 1777 one (its own file may go, root's not: EPERM)."""
    for name, mode in (("ro", 0o755), ("nox", 0o772), ("pub", 0o777), ("tmp", 0o1777)):
        (mnt / name).mkdir()
        os.chmod(mnt / name, mode)
        (mnt / name / "roots").write_bytes(b"r")

    def run() -> list[object]:
        res: list[object] = []
        for name in ("ro", "nox", "pub", "tmp"):
            d = mnt / name
            res.append(_err(lambda d=d: os.close(os.open(d / "mine", os.O_WRONLY | os.O_CREAT
                                                         | os.O_EXCL, 0o600))))
            res.append(_err(lambda d=d: os.unlink(d / "roots")))
            res.append(_err(lambda d=d: os.unlink(d / "mine")))
        return res

    got = as_user(NOBODY, NOBODY, run)
    return [got, sorted((n, sorted(os.listdir(mnt / n))) for n in ("ro", "pub", "tmp"))]


def test_an_unprivileged_user_creates_and_unlinks_where_tmpfs_lets_it() -> None:
    with shmfs_mount("allow_other") as mnt, tmpfs_mount() as tmp:
        os.chmod(mnt, 0o755)
        before = _hot(mnt)
        got = _user_scenario(mnt)
        assert got == _user_scenario(tmp)
        assert got[0] == ("ok", ["EACCES", "EACCES", "ENOENT", "EACCES", "EACCES", "EACCES",
                                 None, None, None, None, "EPERM", None])
        after = _hot(mnt)
        assert after["create"] - before["create"] >= 2  # nobody's, in pub and tmp
        assert after["unlink"] - before["unlink"] >= 3


_RACE = r"""
import errno, json, os, sys
from multiprocessing import get_context
d, procs, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def work(k, q):
    created = unlinked = 0
    for r in range(rounds):
        name = os.path.join(d, "n%d" % ((r * 7 + k) % 11))
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            os.write(fd, b"%08d" % k)
            os.close(fd)
            created += 1
        victim = os.path.join(d, "n%d" % ((r * 3 + k + 5) % 11))
        try:
            os.unlink(victim)
            unlinked += 1
        except FileNotFoundError:
            pass
    q.put((created, unlinked))

ctx = get_context("fork")
q = ctx.Queue()
ps = [ctx.Process(target=work, args=(k, q)) for k in range(procs)]
for p in ps:
    p.start()
res = [q.get(timeout=120) for _ in ps]
for p in ps:
    p.join()
left = sorted(os.listdir(d))
contents = [open(os.path.join(d, n), "rb").read() for n in left]
print(json.dumps({"exit": sorted({p.exitcode for p in ps}),
                  "balance": sum(c for c, _ in res) - sum(u for _, u in res) == len(left),
                  "whole": all(len(c) == 8 and c.isdigit() for c in contents),
                  "anything_created": sum(c for c, _ in res) > 0}))
"""


def _race(mnt: Path) -> dict[str, object]:
    """Four processes create (O_EXCL) and unlink eleven names at once; then every name
    left is removed: free inodes and blocks must be back where they started."""
    d = mnt / "race"
    d.mkdir()
    base = os.statvfs(mnt)
    p = subprocess.run([sys.executable, "-c", _RACE, str(d), "4", "600"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    for n in os.listdir(d):
        os.unlink(d / n)
    end = os.statvfs(mnt)
    out["space_back"] = (end.f_ffree, end.f_bfree) == (base.f_ffree, base.f_bfree)
    return out


def test_racing_creates_and_unlinks_leave_what_tmpfs_leaves() -> None:
    with shmfs_mount("size=64m,nr_inodes=1000") as mnt, \
            tmpfs_mount("size=64m,nr_inodes=1000") as tmp:
        before = _hot(mnt)
        got = _race(mnt)
        assert got == _race(tmp)
        assert got == {"exit": [0], "balance": True, "whole": True, "anything_created": True,
                       "space_back": True}
        after = _hot(mnt)
        assert after["create"] - before["create"] > 100
        assert after["unlink"] - before["unlink"] > 100
        assert after["errors"] == 0 and after["write_errors"] == 0


def _unlink_burst(mnt: Path, n: int) -> list[object]:
    """n empty files and two with pages, all unlinked in a row (an rm of a directory's
    files): the directory's link count and the free inodes and blocks on the way."""
    d = mnt / "burst"
    d.mkdir()
    base = os.statvfs(mnt)
    for i in range(n):
        os.close(os.open(d / f"e{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    (d / "p0").write_bytes(b"p" * 9000)
    (d / "p1").write_bytes(b"q" * 5000)
    mid = os.statvfs(mnt)
    for name in sorted(os.listdir(d)):
        os.unlink(d / name)
    end = os.statvfs(mnt)
    st = os.stat(d)
    return [base.f_ffree - mid.f_ffree, base.f_bfree - mid.f_bfree,
            base.f_ffree - end.f_ffree, base.f_bfree - end.f_bfree,
            st.st_nlink, os.listdir(d), _err(lambda: os.unlink(d / "e0"))]


def test_an_unlink_burst_is_reaped_in_c_and_frees_what_tmpfs_frees() -> None:
    """The evictions the unlinks' FORGETs leave for later: the C loop reaps those of
    empty files itself (its `reap` counter), Python those with pages; every inode and
    block comes back as on tmpfs, and the daemon ends with no inode but the root and
    the directory."""
    n = 400
    with shmfs_mount("size=64m,nr_inodes=1000") as mnt, \
            tmpfs_mount("size=64m,nr_inodes=1000") as tmp:
        before = _hot(mnt)
        got = _unlink_burst(mnt, n)
        assert got == _unlink_burst(tmp, n)
        assert got[2:4] == [0, 0]  # every inode and block back
        stats = mount_stats(mnt)  # reaps what is left first (exact counts)
        after = stats["session"]["hotpath"]
        assert after["unlink"] - before["unlink"] == n + 2
        assert after["reap"] - before["reap"] > 0
        assert stats["fs"]["inodes"] == 2 and stats["fs"]["inodes_evicted"] >= n + 2
        assert after["errors"] == 0 and after["write_errors"] == 0
