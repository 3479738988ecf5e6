"""The ioctl ABI from outside: command numbers, bad calls, read-only descriptors, CLI.

Bad calls get the kernel's errnos and never hurt the daemon: after a burst of
garbage the mount still answers and the daemon process is alive.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
from pathlib import Path

import pytest

from mount.winapi import abi as W
from mount.winapi.client import PROT_READ, Window, grant, mount_stats
from tests.support.mounts import daemon_pid
from tests.windows.helpers import P, make_object, shmfs_cli

pytestmark = pytest.mark.mount


def test_command_numbers_are_the_documented_ones() -> None:
    # docs/windows.md lists these next to the C macros
    assert W.SHMFS_IOC_WIN_ATTACH == 0x40285301  # 40 bytes: a token, not an inode number
    assert W.SHMFS_IOC_WIN_REMAP == 0x40205302
    assert W.SHMFS_IOC_WIN_MPROTECT == 0x40185303
    assert W.SHMFS_IOC_WIN_MADVISE == 0x40185304
    assert W.SHMFS_IOC_WIN_QUERY == 0xE0205305
    assert W.SHMFS_IOC_WIN_INFO == 0x80305306
    assert W.SHMFS_IOC_STATS == 0xFFF85307
    assert W.SHMFS_IOC_WIN_GRANT == 0xC0185309
    assert (W.ATTACH.size, W.REMAP.size, W.MPROTECT.size, W.MADVISE.size, W.INFO.size,
            W.GRANT.size) == (40, 32, 24, 24, 48, 24)
    assert W.QUERY_SIZE == 8224 and W.STATS_SIZE == 16376 <= W.IOC_SIZE_MAX


def _ioctl(fd: int, cmd: int, buf: bytes | int) -> int:
    try:
        if isinstance(buf, int):
            fcntl.ioctl(fd, cmd, buf)
        else:
            fcntl.ioctl(fd, cmd, bytearray(buf), True)
    except OSError as e:
        return e.errno or 0
    return 0


def test_bad_calls_get_errnos(wdir: Path, wmount: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 4)
    with Window.create(wdir / "win", obj, 4) as w:
        fd = w.fd
        assert _ioctl(fd, 0x5401, bytes(64)) == errno.ENOTTY  # TCGETS
        assert _ioctl(fd, W._ioc(W.IOC_WRITE, ord("S"), 99, 8), bytes(8)) == errno.ENOTTY
        wrong = W._ioc(W.IOC_WRITE, ord("S"), 2, 16)  # REMAP's number with a 16-byte struct
        assert _ioctl(fd, wrong, bytes(16)) == errno.EINVAL
        wrong_dir = W._ioc(W.IOC_READ, ord("S"), 2, W.REMAP.size)
        assert _ioctl(fd, wrong_dir, bytes(W.REMAP.size)) == errno.EINVAL
        assert _ioctl(fd, W.SHMFS_IOC_WIN_REMAP, 0) == errno.EFAULT  # NULL: the kernel's
        bad_query = bytearray(W.QUERY_SIZE)
        W.QUERY_HEAD.pack_into(bad_query, 0, 0, 513, 0, 0, 0)
        assert _ioctl(fd, W.SHMFS_IOC_WIN_QUERY, bad_query) == errno.EINVAL
        assert _ioctl(fd, W.SHMFS_IOC_WIN_MADVISE, W.MADVISE.pack(0, P, 4, 1)) == errno.EINVAL
        assert _ioctl(fd, W.SHMFS_IOC_WIN_REMAP,
                      W.REMAP.pack(0, P, 0, 0, 0x1)) == errno.EINVAL  # unknown flag
        assert _ioctl(fd, W.SHMFS_IOC_WIN_REMAP,
                      W.REMAP.pack(0, P, 1 << 46, 0, 0)) == errno.EINVAL  # pgoff too big
        assert _ioctl(fd, W.SHMFS_IOC_WIN_ATTACH,
                      W.ATTACH.pack(bytes(16), P, 0, 3, 0)) == errno.EBUSY
        old_attach = W._ioc(W.IOC_WRITE, ord("S"), 1, 32)  # the inode-number form
        assert _ioctl(fd, old_attach, bytes(32)) == errno.EINVAL
        # window commands on a plain file and on a directory
        ofd = os.open(obj, os.O_RDWR)
        dfd = os.open(wdir, os.O_RDONLY)
        try:
            assert _ioctl(ofd, W.SHMFS_IOC_WIN_REMAP, W.REMAP.pack(0, P, 1, 0, 0)) == errno.ENOTTY
            assert _ioctl(dfd, W.SHMFS_IOC_WIN_INFO, bytes(W.INFO.size)) == errno.ENOTTY
        finally:
            os.close(ofd)
            os.close(dfd)
        assert mount_stats(wmount)["windows"]["windows"] >= 1  # STATS on the root


def test_read_only_descriptor_cannot_change_a_window(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 4)
    Window.create(wdir / "win", obj, 4).close()
    with Window.open(wdir / "win", writable=False) as ro:
        for call in (lambda: ro.remap(0, 1, 3), lambda: ro.protect(0, 1, PROT_READ),
                     lambda: ro.madvise(0, 1, 9), lambda: ro.madvise(0, 1, 4)):
            with pytest.raises(OSError) as ei:
                call()
            assert ei.value.errno == errno.EBADF
        assert [p.pgoff for p in ro.query()] == [0, 1, 2, 3]  # looking is allowed
        ro.madvise(0, 4, 3)  # WILLNEED too
    fd = os.open(wdir / "plain", os.O_RDONLY | os.O_CREAT, 0o600)
    ofd = os.open(obj, os.O_RDWR)
    try:  # ATTACH needs a writable descriptor as well
        assert _ioctl(fd, W.SHMFS_IOC_WIN_ATTACH,
                      W.ATTACH.pack(grant(ofd), P, 0, 3, 0)) == errno.EBADF
    finally:
        os.close(fd)
        os.close(ofd)


def test_garbage_never_hurts_the_daemon(wdir: Path, wmount: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 8)
    rng = random.Random(1234)
    allowed = {0, errno.EINVAL, errno.ENOTTY, errno.EACCES, errno.ENOMEM, errno.ENOENT,
               errno.EBUSY, errno.EIO, errno.EOVERFLOW, errno.EBADF}
    seen: set[int] = set()
    with Window.create(wdir / "win", obj, 8) as w:
        for _ in range(300):
            nr = rng.randrange(1, 10)
            name_cmd = W.COMMANDS.get(nr)
            cmd = name_cmd[1] if name_cmd else W._ioc(W.IOC_WRITE, ord("S"), nr, 8)
            size = W.ioc_size(cmd)
            payload = bytes(rng.getrandbits(8) for _ in range(min(size, 64))) + bytes(
                max(0, size - 64))
            if rng.random() < 0.5 and size >= 24:  # plausible small numbers too
                payload = (rng.randrange(16 * P).to_bytes(8, "little")
                           + rng.randrange(16 * P).to_bytes(8, "little")
                           + rng.randrange(20).to_bytes(8, "little") + payload[24:])
            if nr == 7:
                payload = bytes(size)  # STATS with offset 0
            res = _ioctl(w.fd, cmd, payload)
            seen.add(res)
            assert res in allowed, (nr, res)
        os.kill(daemon_pid(wmount), 0)  # still alive
        assert w.pread(0, 1) is not None  # and still answering
        assert len(os.listdir(wdir)) == 2
    assert len(seen) > 2


def test_cli_drives_a_window(wdir: Path, wmount: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 8)
    win = str(wdir / "win")
    assert shmfs_cli("window", "create", win, str(obj), "--pages", "4").returncode == 0
    assert os.stat(win).st_size == 4 * P
    assert shmfs_cli("window", "remap", win, "0", "2", "6").returncode == 0
    assert shmfs_cli("window", "protect", win, "3", "1", "r").returncode == 0
    r = shmfs_cli("window", "query", win, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [p["pgoff"] for p in doc["pages"]] == [6, 7, 2, 3]
    assert [p["prot"] for p in doc["pages"]] == [3, 3, 3, 1]
    r = shmfs_cli("window", "query", win)
    assert r.returncode == 0 and "nonlinear" in r.stdout
    blocks = os.stat(obj).st_blocks
    assert shmfs_cli("window", "madvise", win, "0", "1", "remove").returncode == 0
    assert os.stat(obj).st_blocks == blocks - P // 512
    bad = shmfs_cli("window", "remap", win, "9", "1", "0")
    assert bad.returncode == 1 and "EINVAL" in bad.stderr
    st = shmfs_cli("stat", str(wmount), "--json")
    assert st.returncode == 0
    stats = json.loads(st.stdout)
    for key in ("faults", "arena", "fs", "windows", "session", "ops"):
        assert key in stats
    assert stats["session"]["requests"]["IOCTL"]["count"] >= 1
    assert stats["arena"]["frames_returned"] >= 1  # the MADV_REMOVE gave a frame back
    human = shmfs_cli("stat", str(wmount))
    assert human.returncode == 0 and "notifications sent" in human.stdout
    assert shmfs_cli("window", "destroy", win).returncode == 0
    assert not os.path.exists(win)


BAD_ARGS = [
    ("remap", "W", "-1", "1", "5"), ("remap", "W", "0", "1", "-5"),
    ("remap", "W", "0", "1", str(1 << 64)), ("remap", "W", "0", str(1 << 52), "0"),
    ("remap", "W", str(1 << 52), "1", "0"), ("remap", "W", "0", "-1", "0"),
    ("protect", "W", "-1", "1", "r"), ("madvise", "W", "0", "-2", "remove"),
    ("query", "W", "-5", "3"), ("query", "W", "0", "-3"), ("query", "W", str(1 << 64)),
    ("create", "NEW", "OBJ", "--pages", "-3"), ("create", "NEW", "OBJ", "--pages", "0"),
    ("create", "NEW", "OBJ", "--pages", str(1 << 52)),
    ("create", "NEW", "OBJ", "--pages", "2**52"),
    ("create", "NEW", "OBJ", "--pages", "1", "--pgoff", "-1"),
    ("create", "NEW", "OBJ", "--pages", "1", "--pgoff", str(1 << 64)),
]


@pytest.mark.parametrize("args", BAD_ARGS, ids=lambda a: " ".join(a)[:40])
def test_cli_refuses_out_of_range_numbers_without_a_traceback(wdir: Path, args: tuple) -> None:
    obj = wdir / "obj"
    make_object(obj, 4)
    Window.create(wdir / "W", obj, 4).close()
    names = {"W": str(wdir / "W"), "NEW": str(wdir / "new"), "OBJ": str(obj)}
    r = shmfs_cli("window", *[names.get(a, a) for a in args])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "struct.error" not in r.stderr
    assert "usage:" in r.stderr and ("must be" in r.stderr or "too large" in r.stderr
                                     or "whole number" in r.stderr)
    assert not (wdir / "new").exists()


def test_a_failed_create_leaves_no_file_and_a_retry_works(wdir: Path, tmp_path: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, 4)
    win = str(wdir / "win")
    r = shmfs_cli("window", "create", win, str(obj), "--pages", "4", "--pgoff",
                  str((1 << 64) - 1))  # fits the field, but pgoff + pages overflows
    assert r.returncode == 1 and "EOVERFLOW" in r.stderr and "Traceback" not in r.stderr
    assert not os.path.exists(win)
    r = shmfs_cli("window", "create", win, str(wdir / "missing"), "--pages", "4")
    assert r.returncode == 1 and "ENOENT" in r.stderr and "missing" in r.stderr
    assert not os.path.exists(win)
    elsewhere = tmp_path / "obj"  # a file on another filesystem: refused by name
    elsewhere.write_bytes(bytes(P))
    r = shmfs_cli("window", "create", win, str(elsewhere), "--pages", "1")
    assert r.returncode == 1 and "not on the filesystem" in r.stderr, r.stderr
    assert not os.path.exists(win)
    r = shmfs_cli("window", "create", win, str(obj), "--pages", "4")
    assert r.returncode == 0, r.stderr
    assert os.stat(win).st_size == 4 * P
