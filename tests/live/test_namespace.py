"""Names, links, permissions and xattrs on a live mount, against tmpfs."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mount.syscalls import RENAME_EXCHANGE, RENAME_NOREPLACE, renameat2
from tests.live.helpers import as_user
from tests.support.mounts import shmfs_mount, tmpfs_mount

pytestmark = pytest.mark.mount

NOBODY = 65534
def _names_scenario(d: Path) -> list[object]:
    obs: list[object] = []

    def t(label: str, fn) -> None:
        try:
            r = fn()
            obs.append((label, r if r is not None else "ok"))
        except OSError as e:
            obs.append((label, errno.errorcode[e.errno]))

    (d / "a").write_bytes(b"A")
    (d / "b").write_bytes(b"B")
    os.mkdir(d / "dir")
    t("name255", lambda: os.close(os.open(d / ("n" * 255), os.O_CREAT, 0o600)))
    t("name256", lambda: os.close(os.open(d / ("n" * 256), os.O_CREAT, 0o600)))
    t("noreplace", lambda: renameat2(d / "a", d / "b", RENAME_NOREPLACE))
    t("exchange", lambda: renameat2(d / "a", d / "b", RENAME_EXCHANGE))
    t("after-exchange", lambda: ((d / "a").read_bytes(), (d / "b").read_bytes()))
    t("exchange-missing", lambda: renameat2(d / "a", d / "zz", RENAME_EXCHANGE))
    t("link", lambda: os.link(d / "a", d / "dir" / "a2"))
    t("nlink", lambda: os.stat(d / "a").st_nlink)
    t("link-dir", lambda: os.link(d / "dir", d / "dir2"))
    t("rename-into-self", lambda: os.rename(d / "dir", d / "dir" / "sub"))
    t("rmdir-nonempty", lambda: os.rmdir(d / "dir"))
    t("unlink-dir", lambda: os.unlink(d / "dir"))
    t("dir-nlink", lambda: os.stat(d / "dir").st_nlink)
    t("mkdir-sub", lambda: os.mkdir(d / "dir" / "sub"))
    t("dir-nlink2", lambda: os.stat(d / "dir").st_nlink)
    t("symlink", lambda: os.symlink("a" * 4095, d / "longlink"))
    t("symlink-too-long", lambda: os.symlink("a" * 4096, d / "longlink2"))
    t("readlink-len", lambda: len(os.readlink(d / "longlink")))
    t("loop1", lambda: os.symlink("loop2", d / "loop1"))
    t("loop2", lambda: os.symlink("loop1", d / "loop2"))
    t("eloop", lambda: open(d / "loop1").close())
    t("rename-over-file", lambda: os.rename(d / "b", d / "a"))
    t("ls", lambda: sorted(p.name for p in d.iterdir() if len(p.name) < 200))
    t("setx", lambda: os.setxattr(d / "a", "user.k", b"v"))
    t("setx-create", lambda: os.setxattr(d / "a", "user.k", b"w", os.XATTR_CREATE))
    t("setx-replace-missing", lambda: os.setxattr(d / "a", "user.m", b"w", os.XATTR_REPLACE))
    t("getx", lambda: os.getxattr(d / "a", "user.k"))
    t("getx-missing", lambda: os.getxattr(d / "a", "user.none"))
    t("listx", lambda: sorted(os.listxattr(d / "a")))
    t("trusted", lambda: os.setxattr(d / "a", "trusted.t", b"1"))
    t("badns", lambda: os.setxattr(d / "a", "bogus.t", b"1"))
    t("removex", lambda: os.removexattr(d / "a", "user.k"))
    t("removex-missing", lambda: os.removexattr(d / "a", "user.k"))
    t("big-value", lambda: os.setxattr(d / "a", "user.big", b"x" * 65537))
    return obs


def test_names_links_xattrs_like_tmpfs(shmfs: Path, tmpfs: Path) -> None:
    assert _names_scenario(shmfs) == _names_scenario(tmpfs)


def _perm_scenario(d: Path) -> list[object]:
    os.chmod(d, 0o1777)
    own = d / "rootfile"
    own.write_bytes(b"secret")
    os.chmod(own, 0o600)
    pub = d / "pub"
    pub.write_bytes(b"public")
    os.chmod(pub, 0o644)
    os.mkdir(d / "sgid")
    os.chown(d / "sgid", 0, 4242)
    os.chmod(d / "sgid", 0o2777)

    def as_nobody() -> list[object]:
        out: list[object] = []

        def t(fn) -> None:
            try:
                out.append(fn())
            except OSError as e:
                out.append(errno.errorcode[e.errno])

        t(lambda: open(own, "rb").read())
        t(lambda: open(pub, "rb").read())
        t(lambda: open(pub, "ab").write(b"x"))
        t(lambda: os.unlink(pub))  # sticky dir, not the owner
        t(lambda: os.chmod(pub, 0o777))
        t(lambda: os.chown(pub, NOBODY, -1))
        t(lambda: (d / "mine").write_bytes(b"m"))
        t(lambda: (os.stat(d / "mine").st_uid, os.stat(d / "mine").st_gid))
        t(lambda: os.chmod(d / "mine", 0o4755))
        t(lambda: oct(os.stat(d / "mine").st_mode))
        t(lambda: os.mkdir(d / "sgid" / "child"))
        t(lambda: (os.stat(d / "sgid" / "child").st_gid,
                   oct(os.stat(d / "sgid" / "child").st_mode)))
        t(lambda: (d / "sgid" / "f").write_bytes(b""))
        t(lambda: os.stat(d / "sgid" / "f").st_gid)
        t(lambda: os.access(own, os.R_OK))
        t(lambda: os.access(pub, os.R_OK))
        t(lambda: os.rename(d / "mine", d / "mine2"))
        return out

    res = as_user(NOBODY, NOBODY, as_nobody)
    # root writes to a setuid file owned by someone else: the kernel clears S_ISUID
    mine2 = d / "mine2"
    before = oct(os.stat(mine2).st_mode)
    os.chown(mine2, NOBODY, NOBODY)
    after_chown = oct(os.stat(mine2).st_mode)
    return [res, before, after_chown]


def test_permissions_as_other_user_like_tmpfs() -> None:
    with shmfs_mount("allow_other") as s, tmpfs_mount() as t:
        got, want = _perm_scenario(s), _perm_scenario(t)
        assert got == want
        assert got[0][1][0] == "EACCES"


def _huge_scenario(d: Path) -> list[object]:
    obs: list[object] = []

    def t(label: str, fn) -> None:
        try:
            obs.append((label, fn()))
        except OSError as e:
            obs.append((label, errno.errorcode[e.errno]))

    t("mkdir256", lambda: os.mkdir(d / ("x" * 256)))
    fd = os.open(d / "f", os.O_RDWR | os.O_CREAT, 0o644)
    top = (1 << 63) - 1
    t("pwrite-top", lambda: os.pwrite(fd, b"x", top))
    t("pwrite-near-top", lambda: os.pwrite(fd, b"xy", top - 1))
    t("pread-top", lambda: os.pread(fd, 10, top - 100))
    t("truncate-top", lambda: os.ftruncate(fd, top))
    t("size", lambda: os.fstat(fd).st_size)
    t("read-end", lambda: os.pread(fd, 10, top - 5))
    t("seek-data", lambda: os.lseek(fd, 0, os.SEEK_DATA))
    t("truncate-0", lambda: os.ftruncate(fd, 0))
    os.close(fd)
    return obs


def test_name_too_long_and_huge_offsets_like_tmpfs(shmfs: Path, tmpfs: Path) -> None:
    assert _huge_scenario(shmfs) == _huge_scenario(tmpfs)
    (shmfs / "still-alive").write_bytes(b"yes")
    assert (shmfs / "still-alive").read_bytes() == b"yes"
