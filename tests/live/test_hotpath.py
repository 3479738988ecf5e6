"""The C hot path of READ/WRITE/GETATTR (native/hotpath.c) on a live mount (LOOKUP
misses, OPEN and RELEASE: tests/live/test_hotpath_meta.py).

What must hold with the engine answering: it is really taken (its counters in
STATS move with the requests); every byte is where it was written, under
concurrent truncates from other processes too (a read sees the data or zeros,
never bytes of another file); shared mappings stay coherent with write(2) and
truncate; the requests it declines (set-id bits to clear, ENOSPC at size=)
are answered as on tmpfs; an unprivileged user gets through it exactly what
open(2) granted (tmpfs as the oracle).
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mount.server import hotpath
from mount.winapi.client import mount_stats
from tests.live.helpers import PAGE, as_user, check_truncate_reaches_mapping, read_from_daemon
from tests.support.mounts import shmfs_mount, tmpfs_mount

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not hotpath.available(), reason="_hotpath not built")]

NOBODY = 65534


def _hot(mnt: Path) -> dict:
    return mount_stats(mnt)["session"]["hotpath"]


def test_reads_writes_and_stats_are_served_by_the_engine() -> None:
    with shmfs_mount("size=64m") as mnt:
        before = _hot(mnt)
        assert before["engaged"]
        path = mnt / "f"
        with open(path, "wb", buffering=0) as f:
            for i in range(64):  # 4 KiB appends, then a 512-byte tail
                f.write(bytes([i]) * PAGE)
            f.write(b"t" * 512)
        with open(path, "r+b", buffering=0) as f:
            f.seek(PAGE * 10 + 100)
            f.write(b"o" * 5000)  # an overwrite across two resident pages
        want = bytearray(b"".join(bytes([i]) * PAGE for i in range(64)) + b"t" * 512)
        want[PAGE * 10 + 100:PAGE * 10 + 5100] = b"o" * 5000
        assert read_from_daemon(path) == bytes(want)  # O_DIRECT: every byte from a READ
        assert read_from_daemon(path, 3 * PAGE)[-PAGE:] == bytes([2]) * PAGE
        st = os.stat(path)
        assert st.st_size == len(want) and st.st_blocks == 65 * 8
        after = _hot(mnt)
        assert after["write"] - before["write"] >= 66
        assert after["read"] - before["read"] >= 2
        assert after["bytes_written"] - before["bytes_written"] >= len(want)
        assert after["errors"] == 0 and after["write_errors"] == 0


_TRUNCATOR = r"""
import os, sys, random
path, rounds = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
for _ in range(rounds):
    os.truncate(path, rng.choice([0, 100, 4096, 8192 + 17, 65536, 300000]))
"""

_WRITER = r"""
import os, sys
path, rounds = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY)
for r in range(rounds):
    os.pwrite(fd, b"w" * (1 + r % 70000), (r * 4099) % 250000)
os.close(fd)
"""


def test_concurrent_truncates_reads_and_writes_from_other_processes() -> None:
    """Reads race truncates and writes of two other processes: every byte read is
    the written byte or a zero, never another file's (whose frames the truncates
    free and the writes reuse); the daemon logs no error (shmfs_mount checks)."""
    with shmfs_mount("size=128m") as mnt:
        other = mnt / "other"
        path = mnt / "f"
        path.write_bytes(b"w" * 300000)
        procs = [subprocess.Popen([sys.executable, "-c", _TRUNCATOR, str(path), "3000"]),
                 subprocess.Popen([sys.executable, "-c", _WRITER, str(path), "3000"])]
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
            buf = mmap.mmap(-1, 1 << 20)
            try:
                while any(p.poll() is None for p in procs):
                    other.write_bytes(b"S" * 200000)  # frames for the race to reuse
                    other.unlink()
                    for off in (0, 4096, 65536, 200704):
                        n = os.preadv(fd, [buf], off)
                        assert set(buf[:n]) <= {ord("w"), 0}, off
            finally:
                os.close(fd)
                buf.close()
        finally:
            for p in procs:
                assert p.wait(timeout=300) == 0
        data = read_from_daemon(path)
        assert set(data) <= {ord("w"), 0}
        assert _hot(mnt)["read"] > 0


def test_mappings_stay_coherent_with_write_and_truncate() -> None:
    with shmfs_mount("size=64m") as mnt:
        path = mnt / "m2"
        path.write_bytes(b"a" * (4 * PAGE))
        with open(path, "r+b") as f, mmap.mmap(f.fileno(), 4 * PAGE) as m:
            assert m[PAGE] == ord("a")
            r = subprocess.run([sys.executable, "-c",
                                "import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY);"
                                "os.pwrite(fd, b'B'*100, 4096); os.close(fd)", str(path)],
                               capture_output=True, text=True, timeout=60, check=False)
            assert r.returncode == 0, r.stderr
            assert m[PAGE:PAGE + 100] == b"B" * 100  # write(2) reached the mapping
            m[2 * PAGE:2 * PAGE + 5] = b"store"
            m.flush()
            assert read_from_daemon(path)[2 * PAGE:2 * PAGE + 5] == b"store"
        check_truncate_reaches_mapping(mnt)


def _suid_scenario(mnt: Path) -> tuple[int, int, bytes]:
    """nobody writes to a 04777 / 02777 file: the set-id bits go (the engine declines
    such a write, Python clears them); then to a plain 0666 file (the engine)."""
    modes = []
    for name, mode in (("suid", 0o4777), ("sgid", 0o2777)):
        p = mnt / name
        p.write_bytes(b"x")
        os.chmod(p, mode)
        got = as_user(NOBODY, NOBODY, lambda p=p: os.write(os.open(p, os.O_WRONLY), b"y"))
        assert got == ("ok", 1)
        modes.append(stat.S_IMODE(os.stat(p).st_mode))
    plain = mnt / "plain"
    plain.write_bytes(b"p" * 10)
    os.chmod(plain, 0o666)
    assert as_user(NOBODY, NOBODY,
                   lambda: os.pwrite(os.open(plain, os.O_WRONLY), b"N" * 3, 2)) == ("ok", 3)
    return modes[0], modes[1], plain.read_bytes()


def test_an_unprivileged_user_gets_what_open_granted() -> None:
    with shmfs_mount("allow_other") as mnt, tmpfs_mount() as tmp:
        os.chmod(mnt, 0o1777)
        got, want = _suid_scenario(mnt), _suid_scenario(tmp)
        assert got == want
        assert got[0] == 0o777 and got[2] == b"ppNNNppppp"
        before = _hot(mnt)
        secret = mnt / "secret"
        secret.write_bytes(b"s" * PAGE)
        os.chmod(secret, 0o600)
        ro = mnt / "ro"
        ro.write_bytes(b"r" * PAGE)
        os.chmod(ro, 0o644)
        assert as_user(NOBODY, NOBODY, lambda: open(secret, "rb").read()) == (
            "errno", errno.EACCES)
        assert as_user(NOBODY, NOBODY, lambda: os.open(ro, os.O_WRONLY)) == (
            "errno", errno.EACCES)
        # a read-only descriptor: write(2) fails in the kernel, nothing reaches the daemon
        assert as_user(NOBODY, NOBODY, lambda: os.write(os.open(ro, os.O_RDONLY), b"Z")) == (
            "errno", errno.EBADF)
        assert as_user(NOBODY, NOBODY, lambda: open(ro, "rb").read()) == ("ok", b"r" * PAGE)
        assert ro.read_bytes() == b"r" * PAGE and secret.read_bytes() == b"s" * PAGE
        assert _hot(mnt)["write"] > before["write"]


def _enospc_scenario(mnt: Path) -> list[object]:
    """size=64k: fill it with 4 KiB appends, then one more; the errno of write(2)."""
    out: list[object] = []
    fd = os.open(mnt / "full", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for _ in range(16):
            out.append(os.write(fd, b"f" * PAGE))
        try:
            out.append(os.write(fd, b"g" * PAGE))
        except OSError as e:
            out.append(errno.errorcode[e.errno])
    finally:
        os.close(fd)
    out.append(os.stat(mnt / "full").st_size)
    return out


def test_enospc_at_the_size_limit_as_on_tmpfs() -> None:
    with shmfs_mount("size=64k") as mnt, tmpfs_mount("size=64k") as tmp:
        got = _enospc_scenario(mnt)
        assert got == _enospc_scenario(tmp)
        assert got[-2:] == ["ENOSPC", 16 * PAGE]
        assert _hot(mnt)["write"] >= 16


def test_two_readers_use_the_engine_with_each_fd() -> None:
    with shmfs_mount("size=64m,readers=2") as mnt:
        data = os.urandom(1 << 20)
        (mnt / "big").write_bytes(data)
        for _ in range(20):
            assert read_from_daemon(mnt / "big") == data
        st = mount_stats(mnt)["session"]
        assert st["hotpath"]["read"] > 0 and st["readers"] == 2
        assert st["hotpath"]["gil_released"] > 0  # 1 MiB READs and WRITEs copy without it
