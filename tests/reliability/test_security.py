"""Security on a live shmfs: who gets in, what permissions hold, whose inodes new
files become, and that no request reaches memory outside its own file's pages.

The mounting user is root (the tests run as root). Permission scenarios run
on a kernel tmpfs too and must observe the same thing: tmpfs is the oracle,
the explicit asserts say what that thing is.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.live.helpers import PAGE, as_user, fallocate
from tests.support.mounts import shmfs_mount, tmpfs_mount

pytestmark = pytest.mark.mount

NOBODY = 65534
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


def _nobody(fn: Callable[[], object]) -> object:
    return as_user(NOBODY, NOBODY, fn)


def test_without_allow_other_only_the_mounting_user_gets_in(shmfs: Path) -> None:
    (shmfs / "f").write_bytes(b"root's")
    os.chmod(shmfs / "f", 0o644)
    assert (shmfs / "f").read_bytes() == b"root's"  # the mounting user: in
    assert _nobody(lambda: os.stat(shmfs / "f")) == ("errno", errno.EACCES)
    assert _nobody(lambda: os.listdir(shmfs)) == ("errno", errno.EACCES)
    assert _nobody(lambda: open(shmfs / "f", "rb").read()) == ("errno", errno.EACCES)
    assert _nobody(lambda: os.mkdir(shmfs / "d")) == ("errno", errno.EACCES)
    assert not (shmfs / "d").exists()


def _permission_scenario(d: Path) -> list[object]:
    obs: list[object] = []
    os.chmod(d, 0o1777)
    secret = d / "secret"
    secret.write_bytes(b"root only")
    os.chmod(secret, 0o600)
    public = d / "public"
    public.write_bytes(b"everyone may read")
    os.chmod(public, 0o644)
    rootdir = d / "rootdir"
    rootdir.mkdir(mode=0o755)
    obs.append(("read secret", _nobody(lambda: secret.read_bytes())))
    obs.append(("stat secret", _nobody(lambda: os.stat(secret).st_mode & 0o777)))
    obs.append(("read public", _nobody(lambda: public.read_bytes())))
    obs.append(("write public", _nobody(lambda: os.open(public, os.O_WRONLY))))
    obs.append(("truncate public", _nobody(lambda: os.truncate(public, 0))))
    obs.append(("chmod public", _nobody(lambda: os.chmod(public, 0o666))))
    obs.append(("chown public", _nobody(lambda: os.chown(public, NOBODY, NOBODY))))
    obs.append(("create in rootdir", _nobody(lambda: os.open(rootdir / "x", os.O_CREAT, 0o644))))
    obs.append(("unlink in sticky root", _nobody(lambda: os.unlink(public))))
    obs.append(("rename in sticky root", _nobody(lambda: os.rename(public, d / "stolen"))))
    obs.append(("setxattr public",
                _nobody(lambda: os.setxattr(public, "user.x", b"1"))))

    def punch_read_only() -> object:
        fd = os.open(public, os.O_RDONLY)
        try:
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PAGE)
        finally:
            os.close(fd)
        return "punched"

    obs.append(("punch via O_RDONLY", _nobody(punch_read_only)))

    def create_own() -> object:
        p = d / "nobodys"
        p.write_bytes(b"mine")
        st = os.stat(p)
        return st.st_uid, st.st_gid, p.read_bytes()

    obs.append(("create own", _nobody(create_own)))
    obs.append(("root reads nobody's", (d / "nobodys").read_bytes()))
    obs.append(("public intact", public.read_bytes(), secret.read_bytes()))
    return obs


def test_with_allow_other_permissions_hold_for_every_user_like_tmpfs() -> None:
    with shmfs_mount("allow_other") as s, tmpfs_mount() as t:
        got, want = _permission_scenario(s), _permission_scenario(t)
    assert got == want
    o = dict((k[0], k[1]) for k in got)
    eacces, eperm = ("errno", errno.EACCES), ("errno", errno.EPERM)
    assert o["read secret"] == eacces
    assert o["stat secret"] == ("ok", 0o600)
    assert o["read public"] == ("ok", b"everyone may read")
    assert o["write public"] == eacces and o["truncate public"] == eacces
    assert o["chmod public"] == eperm and o["chown public"] == eperm
    assert o["create in rootdir"] == eacces
    assert o["unlink in sticky root"] == eperm and o["rename in sticky root"] == eperm
    assert o["setxattr public"] == eperm or o["setxattr public"] == eacces
    assert o["punch via O_RDONLY"] == ("errno", errno.EBADF)  # a read-only opener cannot punch
    assert o["create own"] == ("ok", (NOBODY, NOBODY, b"mine"))


def _setgid_scenario(d: Path) -> list[object]:
    os.chmod(d, 0o1777)
    sg = d / "sg"
    sg.mkdir()
    os.chown(sg, 0, 1234)
    os.chmod(sg, 0o2777)

    def make() -> object:
        (sg / "file").write_bytes(b"x")
        os.mkdir(sg / "sub")
        os.mkdir(d / "plain")
        f, s, p = os.stat(sg / "file"), os.stat(sg / "sub"), os.stat(d / "plain")
        return ((f.st_uid, f.st_gid, bool(f.st_mode & stat.S_ISGID)),
                (s.st_uid, s.st_gid, bool(s.st_mode & stat.S_ISGID)),
                (p.st_uid, p.st_gid, bool(p.st_mode & stat.S_ISGID)))

    return [_nobody(make)]


def test_new_inodes_take_the_callers_ids_and_the_setgid_directory_rule() -> None:
    with shmfs_mount("allow_other") as s, tmpfs_mount() as t:
        got, want = _setgid_scenario(s), _setgid_scenario(t)
    assert got == want
    assert got == [("ok", ((NOBODY, 1234, False),  # gid from the setgid dir
                           (NOBODY, 1234, True),  # subdirectory inherits S_ISGID
                           (NOBODY, NOBODY, False)))]  # elsewhere: the caller's gid


# --- memory bounds ------------------------------------------------------------------------------


def _try(fn: Callable[[], object]) -> object:
    try:
        return ("ok", fn())
    except OSError as e:
        return ("errno", e.errno)


def _offsets_scenario(d: Path) -> dict[str, object]:
    obs: dict[str, object] = {}
    fd = os.open(d / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"data" * 1000)
        for off in (2**63 - 1, 2**63 - PAGE, 2**62, 4000, 4001):
            obs[f"pread 1 at {off}"] = _try(lambda off=off: os.pread(fd, 1, off))
            obs[f"pread 4096 at {off}"] = _try(lambda off=off: os.pread(fd, PAGE, off))
        obs["pwrite at 2^63-1"] = _try(lambda: os.pwrite(fd, b"x", 2**63 - 1))
        obs["pread at -1"] = _try(lambda: os.pread(fd, 10, -1))
        obs["pwrite at -4096"] = _try(lambda: os.pwrite(fd, b"x", -4096))
        obs["pread at -2^63"] = _try(lambda: os.pread(fd, 10, -(2**63)))
        obs["size"] = os.fstat(fd).st_size
        obs["pwrite last byte"] = _try(lambda: os.pwrite(fd, b"z", 2**63 - 2))
        obs["read it"] = _try(lambda: os.pread(fd, 1, 2**63 - 2))
        obs["read before it"] = _try(lambda: os.pread(fd, 2, 2**63 - 4))
        obs["size after"] = os.fstat(fd).st_size
        obs["head intact"] = os.pread(fd, 8, 0)
    finally:
        os.close(fd)
    return obs


def test_offsets_at_the_limits_reach_nothing(shmfs: Path, tmpfs: Path) -> None:
    got, want = _offsets_scenario(shmfs), _offsets_scenario(tmpfs)
    assert got == want
    einval = ("errno", errno.EINVAL)  # rw_verify_area: pos < 0 or pos + count past 2^63-1
    assert got["pread 1 at 9223372036854775807"] == einval
    assert got["pread 4096 at 9223372036854771712"] == einval
    assert got["pwrite at 2^63-1"] == einval
    for off in (2**63 - PAGE, 2**62, 4000, 4001):  # in range, at or past EOF: nothing
        assert got[f"pread 1 at {off}"] == ("ok", b"")
    assert got["pread 4096 at 4611686018427387904"] == ("ok", b"")
    assert got["pread at -1"] == got["pwrite at -4096"] == got["pread at -2^63"] == einval
    assert got["read it"] == ("ok", b"z") and got["read before it"] == ("ok", b"\0\0")
    assert got["size after"] == 2**63 - 1 and got["head intact"] == b"datadata"


def _shrink_scenario(d: Path) -> list[object]:
    p = d / "shrink"
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"\xaa" * (3 * PAGE))
        os.ftruncate(fd, 100)
        past = os.pread(fd, 3 * PAGE, 0)
        os.ftruncate(fd, 3 * PAGE)
        regrown = os.pread(fd, 3 * PAGE, 0)
        with mmap.mmap(fd, 3 * PAGE, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            mapped = m[:]
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PAGE)
        punched = os.pread(fd, 200, 0)
    finally:
        os.close(fd)
    return [past, regrown, mapped, punched]


def test_a_file_that_shrank_returns_no_old_data(shmfs: Path, tmpfs: Path) -> None:
    got, want = _shrink_scenario(shmfs), _shrink_scenario(tmpfs)
    assert got == want
    past, regrown, mapped, punched = got
    assert past == b"\xaa" * 100
    assert regrown == b"\xaa" * 100 + bytes(3 * PAGE - 100)
    assert mapped == regrown
    assert punched == bytes(200)


def test_holes_never_show_freed_frames_of_other_files(shmfs: Path) -> None:
    secret = (b"SECRET-" * 586)[:PAGE]
    npages = 2048  # 8 MiB: the frames these free are the ones B's writes reuse
    a = shmfs / "a"
    with open(a, "wb") as f:
        for _ in range(npages):
            f.write(secret)
    a.unlink()
    b = shmfs / "b"
    fd = os.open(b, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 2 * npages * PAGE)
        # every other page written (these take frames A gave back), the rest holes
        for i in range(0, 2 * npages, 2):
            os.pwrite(fd, b"b", i * PAGE + PAGE - 1)
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 64 * PAGE)  # preallocated pages read as zeros
        data = os.pread(fd, 2 * npages * PAGE, 0)
        with mmap.mmap(fd, 2 * npages * PAGE, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            mapped = m[:]
    finally:
        os.close(fd)
    assert b"SECRET" not in data and b"SECRET" not in mapped
    want = b"".join((bytes(PAGE - 1) + b"b") if i % 2 == 0 else bytes(PAGE)
                    for i in range(2 * npages))
    assert data == want and mapped == want
