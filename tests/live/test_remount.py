"""Changing size= and nr_inodes= of a mounted filesystem, compared with
``mount -o remount`` on a kernel tmpfs (shmem_reconfigure's rules)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mounts import ROOT, shmfs_mount, tmpfs_mount

pytestmark = pytest.mark.mount


def _tmpfs_remount(mnt: Path, opts: str) -> bool:
    r = subprocess.run(["mount", "-o", f"remount,{opts}", str(mnt)], capture_output=True,
                       check=False)
    return r.returncode == 0


def _shmfs_remount(mnt: Path, opts: str) -> bool:
    r = subprocess.run([sys.executable, "-m", "mount.cli", "remount", str(mnt), "-o", opts],
                       cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode == 0


def _limits(mnt: Path) -> tuple[int, int, int, int]:
    st = os.statvfs(mnt)
    return st.f_blocks, st.f_bfree, st.f_files, st.f_ffree


def _scenario(mnt: Path, remount) -> list[object]:
    (mnt / "data").write_bytes(b"d" * 100_000)  # 25 pages
    obs: list[object] = [_limits(mnt)]
    for opts in ("size=512k", "size=64k", "size=100k", "nr_inodes=64", "nr_inodes=1",
                 "nr_inodes=4", "size=2m,nr_inodes=32"):
        obs.append((opts, remount(mnt, opts), _limits(mnt)))
    return obs


def test_remount_limits_like_tmpfs() -> None:
    with shmfs_mount("size=256k,nr_inodes=16") as s, tmpfs_mount("size=256k,nr_inodes=16") as t:
        got = _scenario(s, _shmfs_remount)
        assert got == _scenario(t, _tmpfs_remount)
        assert ("size=64k", False, got[1][2]) in got  # below use: refused, nothing changed


def test_remount_cannot_limit_an_unlimited_mount_like_tmpfs() -> None:
    with shmfs_mount("size=0,nr_inodes=0") as s, tmpfs_mount("size=0,nr_inodes=0") as t:
        for opts in ("size=1m", "nr_inodes=100"):
            assert _shmfs_remount(s, opts) == _tmpfs_remount(t, opts) is False
        assert _limits(s)[0] == _limits(t)[0] == 0


def test_remount_ignores_mount_time_options_like_tmpfs() -> None:
    """tmpfs takes mode=/uid= on remount and changes nothing; so does shmfs, and
    says so. An unknown option is refused with the kernel's words."""
    with shmfs_mount("mode=0755") as s, tmpfs_mount("mode=0755") as t:
        assert _shmfs_remount(s, "mode=0700,uid=5") == _tmpfs_remount(t, "mode=0700,uid=5")
        assert os.stat(s).st_mode == os.stat(t).st_mode and os.stat(s).st_uid == 0
        r = subprocess.run([sys.executable, "-m", "mount.cli", "remount", str(s), "-o",
                            "mode=0700"], cwd=ROOT, capture_output=True, text=True, check=False)
        assert r.returncode == 0 and "ignored, as tmpfs ignores them: mode" in r.stderr
        r = subprocess.run([sys.executable, "-m", "mount.cli", "remount", str(s), "-o",
                            "bogus=1"], cwd=ROOT, capture_output=True, text=True, check=False)
        assert (r.returncode, r.stderr) == (2, "shmfs: Unknown parameter 'bogus'\n")
        assert not _tmpfs_remount(t, "bogus=1")
