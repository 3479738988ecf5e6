"""Who may make a window over what (issue 11): the attack, its variants, the rules.

A root mount with ``allow_other,mode=1777``; root's ``privdir`` (0700) holds
``readable`` (0644, "inner secret") and ``w666`` (0666).  An unprivileged user
cannot open either by path, so no window may show them to that user: an inode
number is not a capability, a token is only minted from a handle the kernel let
the caller open, and it serves one ATTACH by its own uid while that handle lives.
Every assertion here runs the attacker in a forked child with dropped ids.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mount.winapi import abi as W
from mount.winapi.client import PROT_READ, PROT_WRITE, Window, grant
from tests.live.helpers import as_user
from tests.support.mounts import shmfs_mount
from tests.windows.helpers import P

pytestmark = pytest.mark.mount

NOBODY = 65534
OTHER = 65533
RW = PROT_READ | PROT_WRITE


def _ioctl(fd: int, cmd: int, buf: bytes) -> tuple[int, bytes]:
    b = bytearray(buf)
    try:
        fcntl.ioctl(fd, cmd, b, True)
    except OSError as e:
        return e.errno or 0, b""
    return 0, bytes(b)


@pytest.fixture(scope="module")
def amount() -> Iterator[Path]:
    """The issue's mount: root's, allow_other, world-writable sticky root."""
    with shmfs_mount("allow_other,mode=1777") as mnt:
        priv = mnt / "privdir"
        priv.mkdir(mode=0o700)
        (priv / "readable").write_bytes(b"inner secret".ljust(P, b"."))
        os.chmod(priv / "readable", 0o644)
        (priv / "w666").write_bytes(b"root's data".ljust(P, b"."))
        os.chmod(priv / "w666", 0o666)
        (mnt / "secret600").write_bytes(b"six hundred".ljust(P, b"."))
        os.chmod(mnt / "secret600", 0o600)
        (mnt / "public").write_bytes(b"public bytes".ljust(P, b"."))
        os.chmod(mnt / "public", 0o644)
        yield mnt


def _targets(mnt: Path) -> dict[str, int]:
    """Inode numbers an attacker would try: real files it cannot open, a directory,
    numbers that do not exist."""
    return {
        "readable": os.stat(mnt / "privdir" / "readable").st_ino,
        "w666": os.stat(mnt / "privdir" / "w666").st_ino,
        "secret600": os.stat(mnt / "secret600").st_ino,
        "dir": os.stat(mnt / "privdir").st_ino,
        "root": 1,
        "missing": 999_999,
        "zero": 0,
    }


def test_the_issue_attack_reads_and_writes_nothing(amount: Path) -> None:
    priv = amount / "privdir"
    targets = _targets(amount)
    assert as_user(NOBODY, NOBODY, lambda: (priv / "readable").read_bytes()) == (
        "errno", errno.EACCES)  # as on tmpfs: the path is closed to nobody

    def attack() -> object:
        out: dict[str, object] = {}
        for name, ino in targets.items():
            for prot in (PROT_READ, RW):
                path = amount / f"atk-{name}-{prot}"
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    # the released ABI's struct: refused by its size alone
                    old = W._ioc(W.IOC_WRITE, ord("S"), 1, 32)
                    e_old, _ = _ioctl(fd, old, ino.to_bytes(8, "little") + P.to_bytes(8, "little")
                                      + bytes(8) + prot.to_bytes(4, "little") + bytes(4))
                    # an inode number where the token goes
                    forged = ino.to_bytes(8, "little").ljust(16, b"\0")
                    e_new, _ = _ioctl(fd, W.SHMFS_IOC_WIN_ATTACH,
                                      W.ATTACH.pack(forged, P, 0, prot, 0))
                    out[f"{name}/{prot}"] = (e_old, e_new, os.fstat(fd).st_size,
                                             os.pread(fd, P, 0))
                finally:
                    os.close(fd)
                    os.unlink(path)
        return out

    res = as_user(NOBODY, NOBODY, attack)
    assert res[0] == "ok", res
    seen = res[1]
    # the same answer for every number: nothing to learn about what exists, or its type
    assert set(seen.values()) == {(errno.EINVAL, errno.EACCES, 0, b"")}, seen
    assert (priv / "readable").read_bytes().startswith(b"inner secret")
    assert (priv / "w666").read_bytes().startswith(b"root's data")


def test_nobody_cannot_get_a_token_for_what_it_cannot_open(amount: Path) -> None:
    def grab(path: Path, mode: int, prot: int) -> object:
        fd = os.open(path, mode)
        try:
            return grant(fd, prot)
        finally:
            os.close(fd)

    priv = amount / "privdir"
    for name in ("readable", "w666"):
        assert as_user(NOBODY, NOBODY, lambda n=name: grab(priv / n, os.O_RDONLY, PROT_READ)) \
            == ("errno", errno.EACCES)
    assert as_user(NOBODY, NOBODY, lambda: grab(amount / "secret600", os.O_RDONLY,
                                                 PROT_READ)) == ("errno", errno.EACCES)
    # a read-only handle is not enough for a writable window (as mmap(2) says)
    assert as_user(NOBODY, NOBODY, lambda: grab(amount / "public", os.O_RDONLY, RW)) == (
        "errno", errno.EACCES)
    ok = as_user(NOBODY, NOBODY, lambda: len(grab(amount / "public", os.O_RDONLY, PROT_READ)))
    assert ok == ("ok", 16)


def test_a_token_serves_its_uid_once_while_its_handle_lives(amount: Path) -> None:
    obj = amount / "root-obj"
    obj.write_bytes(b"root object".ljust(P, b"."))
    os.chmod(obj, 0o600)
    ofd = os.open(obj, os.O_RDWR)
    try:
        token = grant(ofd, RW)

        def steal() -> object:
            os.close(ofd)  # the forked child must not keep root's handle either
            path = amount / "thief-win"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                return _ioctl(fd, W.SHMFS_IOC_WIN_ATTACH, W.ATTACH.pack(token, P, 0, RW, 0))[0]
            finally:
                os.close(fd)
                os.unlink(path)

        assert as_user(NOBODY, NOBODY, steal) == ("ok", errno.EACCES)  # another uid
        with pytest.raises(OSError) as ei:  # and a token another uid presented is burnt
            Window.create(amount / "w-burnt", token, 1)
        assert ei.value.errno == errno.EACCES
        assert not (amount / "w-burnt").exists()
        token = grant(ofd, RW)
        with Window.create(amount / "w-once", token, 1) as w:
            assert w.pread(0, 11) == b"root object"
        with pytest.raises(OSError) as ei:  # replayed
            Window.create(amount / "w-replay", token, 1)
        assert ei.value.errno == errno.EACCES
        token = grant(ofd, PROT_READ)
        with pytest.raises(OSError) as ei:  # beyond the protection granted
            Window.create(amount / "w-beyond", token, 1, RW)
        assert ei.value.errno == errno.EACCES
        late = grant(ofd, RW)
    finally:
        os.close(ofd)
    # the handle is gone (RELEASE is queued before close returns, ahead of this ATTACH)
    with pytest.raises(OSError) as ei:
        Window.create(amount / "w-late", late, 1)
    assert ei.value.errno == errno.EACCES
    for n in ("w-once",):
        os.unlink(amount / n)


def test_a_window_over_what_the_user_may_open_works_for_that_user(amount: Path) -> None:
    def make() -> object:
        with Window.create(amount / "nobody-win", amount / "public", 1, PROT_READ) as w:
            data = w.pread(0, 12)
            try:
                w.pwrite(0, b"X")
                wrote: object = "wrote"
            except OSError as e:
                wrote = e.errno
        os.unlink(amount / "nobody-win")
        return data, wrote

    assert as_user(NOBODY, NOBODY, make) == ("ok", (b"public bytes", errno.EACCES))
    assert (amount / "public").read_bytes().startswith(b"public bytes")


def test_only_the_owner_turns_a_file_into_a_window(amount: Path) -> None:
    shared = amount / "roots-empty"
    fd = os.open(shared, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)
    os.chmod(shared, 0o666)

    def hijack() -> object:
        ofd = os.open(amount / "public", os.O_RDONLY)
        wfd = os.open(shared, os.O_RDWR)
        try:
            return _ioctl(wfd, W.SHMFS_IOC_WIN_ATTACH,
                          W.ATTACH.pack(grant(ofd, PROT_READ), P, 0, PROT_READ, 0))[0]
        finally:
            os.close(wfd)
            os.close(ofd)

    assert as_user(NOBODY, NOBODY, hijack) == ("ok", errno.EPERM)
    with open(shared, "w") as f:  # the owner's file is still a file
        f.write("hello\n")
    with open(shared, "a") as f:
        f.write("more\n")
    assert shared.read_text() == "hello\nmore\n"
    os.unlink(shared)


def test_a_token_from_another_mount_is_worthless(amount: Path) -> None:
    with shmfs_mount() as other:
        (other / "obj").write_bytes(bytes(P))
        ofd = os.open(other / "obj", os.O_RDWR)
        try:
            token = grant(ofd, RW)
            with pytest.raises(OSError) as ei:
                Window.create(amount / "cross", token, 1)
            assert ei.value.errno == errno.EACCES
            assert not (amount / "cross").exists()
        finally:
            os.close(ofd)


def test_page_tables_are_bounded_by_pt_size_and_returned(tmp_path: Path) -> None:
    """As nobody: remapping far more pages than pt_size= allows is ENOMEM, the charge
    stays under the limit, and destroying the window gives it all back."""
    from mount.winapi.client import mount_stats

    with shmfs_mount("allow_other,mode=1777,pt_size=2m") as mnt:
        def fill() -> object:
            obj = mnt / "obj"
            with open(obj, "wb") as f:
                f.truncate(1 << 33)
            with Window.create(mnt / "win", obj, 1 << 20) as w:
                w.remap(0, 64, pgoff=5)  # small remaps fit
                try:
                    w.remap(0, 1 << 20, pgoff=1 << 20)  # 2048 chunks: ~20 MiB of tables
                except OSError as e:
                    return e.errno, mount_stats(mnt)["windows"]["page_tables"]
            return "no error", None

        res = as_user(NOBODY, NOBODY, fill)
        assert res[0] == "ok", res
        err, pt = res[1]
        assert err == errno.ENOMEM
        assert 0 < pt["pt_bytes"] <= pt["pt_limit"] == 2 << 20
        os.unlink(mnt / "win")
        # the window goes at the FORGET that follows the unlink and last close: wait for it
        deadline = time.monotonic() + 30
        while mount_stats(mnt)["windows"]["windows"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mount_stats(mnt)["windows"]["page_tables"]["pt_bytes"] == 0
