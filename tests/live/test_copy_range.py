"""copy_file_range(2) and cp(1) on a live mount: frames shared copy-on-write
(vmcore/cow.py), checked against a kernel tmpfs wherever tmpfs defines the
result (bytes copied, contents, sizes, errnos, statfs), and against the source
itself where shmfs does better (holes stay holes: SEEK_DATA of the copy)."""

from __future__ import annotations

import errno
import mmap
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from mount.winapi.client import Window, mount_stats
from tests.live.helpers import PAGE as P
from tests.live.helpers import as_user, fallocate, used_blocks
from tests.support.mounts import shmfs_mount, tmpfs_mount
from tests.windows.helpers import MapChild

PUNCH = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


def _pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 131 + seed * 7 + (i >> 12)) % 251 for i in range(n))


def _copy(src: Path, dst: Path, off_in: int, off_out: int, n: int) -> object:
    """os.copy_file_range between two paths: bytes copied or ('errno', e)."""
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(dst, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        return os.copy_file_range(fi, fo, n, off_in, off_out)
    except OSError as e:
        return ("errno", e.errno)
    finally:
        os.close(fi)
        os.close(fo)


def _both(shmfs: Path, tmpfs: Path, scenario: Callable[[Path], object]) -> object:
    """Run the same scenario on both filesystems; they must agree."""
    got, want = scenario(shmfs), scenario(tmpfs)
    assert got == want
    return got


def _arena(mnt: Path) -> dict[str, int]:
    return mount_stats(mnt)["arena"]


def test_cp_shares_frames_and_charges_like_tmpfs(shmfs: Path, tmpfs: Path) -> None:
    data = _pattern(8 << 20) + b"partial-tail"

    def scenario(d: Path) -> object:
        (d / "src").write_bytes(data)
        before = used_blocks(d)
        subprocess.run(["cp", str(d / "src"), str(d / "dst")], check=True)
        st = os.stat(d / "dst")
        return ((d / "dst").read_bytes() == data, st.st_size, st.st_blocks,
                used_blocks(d) - before)

    in_use = None

    def on_shmfs(d: Path) -> object:
        nonlocal in_use
        (d / "warm").write_bytes(b"")
        in_use = _arena(d)["frames_in_use"]
        return scenario(d)

    assert on_shmfs(shmfs) == scenario(tmpfs)
    arena = _arena(shmfs)
    assert arena["frames_in_use"] == in_use + 2049  # the source only: the copy shares it
    assert arena["frames_shared_now"] == 2049  # EOF page included (the copy ends at EOF)


CASES = [  # (off_in, off_out, len) over a 40-page source with holes
    (0, 0, 1 << 30),
    (100, 100, 10 * P),
    (P, 3 * P, 7 * P + 5),
    (5, 9, 6 * P),  # misaligned: copied, not shared
    (3 * P - 1, 3 * P - 1, 2),
    (38 * P, 0, 10 * P),  # clipped at the source's EOF
    (50 * P, 0, P),  # past EOF: 0
    (0, 1 << 33, 2 * P),  # far past the destination's EOF
]


@pytest.mark.parametrize(("off_in", "off_out", "n"), CASES)
def test_offsets_partial_pages_and_holes(shmfs: Path, tmpfs: Path, off_in: int, off_out: int,
                                         n: int) -> None:
    def scenario(d: Path) -> object:
        src = d / "src"
        with open(src, "wb") as f:
            f.write(_pattern(4 * P))
            f.seek(10 * P)
            f.write(_pattern(3 * P + 17, 2))  # pages 10..13 (13 partial), then a hole
            f.truncate(40 * P - 300)
        dst = d / "dst"
        dst.write_bytes(_pattern(20 * P, 3))  # old data where the source has holes
        got = _copy(src, dst, off_in, off_out, n)
        return got, os.stat(dst).st_size, dst.read_bytes()

    _both(shmfs, tmpfs, scenario)
    src, dst = shmfs / "src", shmfs / "dst"
    if off_in % P == off_out % P and off_in < os.stat(src).st_size:
        # beyond tmpfs: the copy has a hole wherever the source has one
        fi, fo = os.open(src, os.O_RDONLY), os.open(dst, os.O_RDONLY)
        try:
            end = min(off_in + n, os.stat(src).st_size)
            first = -(-off_in // P) * P
            for pos in range(first, end - end % P, P):
                try:
                    want = os.lseek(fi, pos, os.SEEK_DATA) == pos
                except OSError:
                    want = False
                at = pos - off_in + off_out
                try:
                    got = os.lseek(fo, at, os.SEEK_DATA) == at
                except OSError:
                    got = False
                assert got == want, pos
        finally:
            os.close(fi)
            os.close(fo)


def test_writes_truncates_and_punches_of_either_side_stay_there(shmfs: Path,
                                                                tmpfs: Path) -> None:
    def scenario(d: Path) -> object:
        a, b = d / "a", d / "b"
        a.write_bytes(_pattern(16 * P))
        assert _copy(a, b, 0, 0, 16 * P) == 16 * P
        fa, fb = os.open(a, os.O_RDWR), os.open(b, os.O_RDWR)
        try:
            os.pwrite(fa, b"A-wrote", P + 3)
            os.pwrite(fb, b"B-wrote", 2 * P + 3)
            fallocate(fa, PUNCH, 4 * P, 2 * P)
            fallocate(fb, PUNCH, 6 * P + 100, 200)
            os.ftruncate(fa, 12 * P + 5)
            with mmap.mmap(fb, 16 * P) as m:  # mmap writeback reaches shmfs as WRITE
                m[9 * P : 9 * P + 4] = b"MMAP"
                m.flush()
        finally:
            os.close(fa)
            os.close(fb)
        return a.read_bytes(), b.read_bytes()

    a, b = _both(shmfs, tmpfs, scenario)
    assert b"A-wrote" not in b and b"B-wrote" not in a and b"MMAP" not in a
    assert _arena(shmfs)["cow_breaks"] >= 3


def test_same_file_overlap_is_einval_disjoint_is_copied(shmfs: Path, tmpfs: Path) -> None:
    def scenario(d: Path) -> object:
        f = d / "f"
        f.write_bytes(_pattern(8 * P))
        overlap = _copy(f, f, 0, 2 * P, 4 * P)
        disjoint = _copy(f, f, 0, 8 * P, 4 * P)
        return overlap, disjoint, f.read_bytes()

    assert _both(shmfs, tmpfs, scenario)[0] == ("errno", errno.EINVAL)


def test_cross_filesystem_falls_back_like_the_kernel(shmfs: Path, tmpfs: Path) -> None:
    (tmpfs / "t").write_bytes(_pattern(3 * P + 1))
    with tmpfs_mount("") as other:
        # the kernel's answer between two different filesystems is the oracle
        assert _copy(tmpfs / "t", shmfs / "x", 0, 0, 3 * P) == _copy(
            tmpfs / "t", other / "x", 0, 0, 3 * P)
    subprocess.run(["cp", str(tmpfs / "t"), str(shmfs / "c")], check=True)
    assert (shmfs / "c").read_bytes() == (tmpfs / "t").read_bytes()
    shutil.copyfile(shmfs / "c", tmpfs / "back")
    assert (tmpfs / "back").read_bytes() == (tmpfs / "t").read_bytes()


@pytest.mark.shmfs_options("size=64k")
def test_enospc_short_copy_and_overwrite_of_shared_pages(shmfs: Path, tmpfs: Path) -> None:
    def scenario(d: Path) -> object:
        a, b = d / "a", d / "b"
        a.write_bytes(_pattern(10 * P))
        first = _copy(a, b, 0, 0, 10 * P)
        again = _copy(a, b, 6 * P, 6 * P, 4 * P)
        fb = os.open(b, os.O_RDWR)
        try:  # rewriting every copied page needs no new block (charged at copy):
            n = os.pwrite(fb, b"w" * 3 * P, 3 * P)  # write(2), and mmap stores (no SIGBUS)
            with mmap.mmap(fb, 3 * P) as m:
                m[:] = b"m" * 3 * P
                m.flush()
            n += 3 * P
        finally:
            os.close(fb)
        return first, again, n, a.read_bytes(), b.read_bytes(), used_blocks(d)

    first, again, n, *_ = _both(shmfs, tmpfs, scenario)
    assert (first, again, n) == (6 * P, ("errno", errno.ENOSPC), 6 * P)


def test_windows_over_the_copy_and_the_source(shmfs: Path) -> None:
    a, b = shmfs / "a", shmfs / "b"
    a.write_bytes(_pattern(8 * P))
    with Window.create(shmfs / "wa", a, 8), MapChild(shmfs / "wa", 8 * P) as ca:
        ca.store(0, b"before-copy")  # a window store into the source
        assert ca.msync() == 0
        assert _copy(a, b, 0, 0, 8 * P) == 8 * P
        assert b.read_bytes()[:11] == b"before-copy"
        ca.store(P, b"after-copy")  # the window's PTE was write-protected by the copy
        assert ca.msync() == 0
        assert a.read_bytes()[P : P + 10] == b"after-copy"
        assert b.read_bytes()[P : P + 10] == _pattern(8 * P)[P : P + 10]
        with Window.create(shmfs / "wb", b, 8) as wb, MapChild(shmfs / "wb", 8 * P) as cb:
            assert cb.read(2 * P, 16) == _pattern(8 * P)[2 * P : 2 * P + 16]
            wb.pwrite(2 * P, b"via-wb")  # write(2) through the copy's window
            wb.sync()
            assert cb.read(2 * P, 6) == b"via-wb"
            assert ca.read(2 * P, 6) == _pattern(8 * P)[2 * P : 2 * P + 6]
            assert a.read_bytes()[2 * P : 2 * P + 6] == _pattern(8 * P)[2 * P : 2 * P + 6]
            fa = os.open(a, os.O_WRONLY)
            try:
                os.pwrite(fa, b"src-write", 3 * P)
                os.fsync(fa)
            finally:
                os.close(fa)
            assert cb.read(3 * P, 9) == _pattern(8 * P)[3 * P : 3 * P + 9]
            assert ca.read(3 * P, 9) == b"src-write"
            # copying into a window file is not shared: EOPNOTSUPP, the kernel copies
            assert _copy(a, shmfs / "wb", 0, 0, P) == P
            assert wb.pread(0, 11) == b"before-copy"


def test_unprivileged_user_gets_what_open_grants() -> None:
    def scenario(d: Path) -> object:
        d.chmod(0o777)
        secret = d / "secret"
        secret.write_bytes(b"s" * 2 * P)
        secret.chmod(0o600)
        mine = d / "mine"
        mine.write_bytes(b"m" * P)
        os.chown(mine, 1000, 1000)

        def attempt(fn: Callable[[], object]) -> object:
            try:
                return fn()
            except OSError as e:
                return ("errno", e.errno)

        def appending() -> object:
            fi = os.open(mine, os.O_RDONLY)
            fo = os.open(d / "out", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                return os.copy_file_range(fi, fo, P)
            finally:
                os.close(fi)
                os.close(fo)

        def attack() -> object:
            return [attempt(lambda: _copy(secret, d / "stolen", 0, 0, 2 * P)),
                    attempt(appending),
                    attempt(lambda: _copy(mine, d / "out2", 0, 0, P))]

        return as_user(1000, 1000, attack), (d / "out2").read_bytes()

    with shmfs_mount("allow_other") as s, tmpfs_mount() as t:
        got = _both(s, t, scenario)
    assert got[0] == ("ok", [("errno", errno.EACCES), ("errno", errno.EBADF), P])


def test_copy_by_another_user_drops_setuid_like_tmpfs() -> None:
    def scenario(d: Path) -> object:
        d.chmod(0o777)
        (d / "src").write_bytes(b"x" * 2 * P)
        (d / "src").chmod(0o644)
        (d / "dst").write_bytes(b"y" * 100)
        os.chown(d / "dst", 1000, 1000)
        os.chmod(d / "dst", 0o6775)
        got = as_user(1000, 1000, lambda: _copy(d / "src", d / "dst", 0, 0, 2 * P))
        st = os.stat(d / "dst")
        return got, oct(st.st_mode), st.st_size

    with shmfs_mount("allow_other") as s, tmpfs_mount() as t:
        assert _both(s, t, scenario) == (("ok", 2 * P), "0o100775", 2 * P)
