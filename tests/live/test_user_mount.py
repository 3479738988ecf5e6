"""Mounting without privileges: fusermount3 mounts, hands /dev/fuse back over
the _FUSE_COMMFD socket, and unmounts (issue 2, "as a normal user")."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mount.mounting.kernel import is_mounted
from tests.support.mounts import ROOT

pytestmark = pytest.mark.mount

NOBODY = 65534


@contextlib.contextmanager
def _dev_fuse_mode(mode: int) -> Iterator[None]:
    """Debian's udev gives /dev/fuse 0666; this VM's image ships 0600."""
    old = os.stat("/dev/fuse").st_mode & 0o7777
    os.chmod("/dev/fuse", mode)
    try:
        yield
    finally:
        os.chmod("/dev/fuse", old)


@contextlib.contextmanager
def _traversable(*paths: Path) -> Iterator[None]:
    """Let other users reach paths (the repo and this venv's packages) for the test:
    directories on the way that others cannot search get o+x, restored after. A
    checkout may live under a 0700 directory (mktemp -d)."""
    changed: list[tuple[Path, int]] = []
    try:
        for path in paths:
            for d in [path, *path.parents]:
                mode = d.stat().st_mode & 0o7777
                if not mode & 0o001 and all(d != c for c, _ in changed):
                    changed.append((d, mode))
                    os.chmod(d, mode | 0o001)
        yield
    finally:
        for d, mode in reversed(changed):
            os.chmod(d, mode)


def _python_for(uid: int) -> list[str]:
    """An interpreter the user can run, with this venv's packages importable."""
    site = sysconfig.get_paths()["purelib"]
    env_path = f"PYTHONPATH={ROOT}:{site}"
    probe = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                            "env", env_path, sys.executable, "-c", "import trio, numpy"],
                           cwd=ROOT, capture_output=True, check=False)
    if probe.returncode == 0:
        return ["env", env_path, sys.executable]
    # the venv's interpreter lives under /root here; Debian's python3 of the same version
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if not os.access(system, os.X_OK):
        pytest.fail(f"no interpreter that uid {uid} may run (tried {sys.executable}, {system})")
    return ["env", env_path, system]


def test_root_can_take_the_fusermount3_path(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ, SHMFS_FUSERMOUNT="1")
    r = subprocess.run([sys.executable, "-m", "mount.cli", str(mnt)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60, check=False)
    try:
        assert r.returncode == 0, r.stderr
        assert is_mounted(mnt)
        (mnt / "f").write_bytes(b"through fusermount3")
        assert (mnt / "f").read_bytes() == b"through fusermount3"
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
    assert not is_mounted(mnt)


def test_normal_user_mounts_uses_and_unmounts() -> None:
    base = Path(tempfile.mkdtemp(prefix="shmfs-user-"))
    base.chmod(0o755)
    mnt = base / "mnt"
    mnt.mkdir()
    os.chown(mnt, NOBODY, NOBODY)
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    try:
        site = Path(sysconfig.get_paths()["purelib"])
        with _dev_fuse_mode(0o666), _traversable(ROOT, site):
            py = _python_for(NOBODY)
            r = subprocess.run([*as_nobody, *py, "-m", "mount.cli", str(mnt), "-o", "size=1m"],
                               cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
            assert r.returncode == 0, r.stderr
            line = next(x for x in Path("/proc/mounts").read_text().splitlines()
                        if f" {mnt} " in x)
            assert "fuse.shmfs" in line and f"user_id={NOBODY}" in line
            w = subprocess.run([*as_nobody, "sh", "-c",
                                f"echo hi > {mnt}/f && cat {mnt}/f && stat -c %u {mnt}/f"],
                               capture_output=True, text=True, check=False)
            assert w.stdout == f"hi\n{NOBODY}\n", w.stderr
            # without allow_other not even root gets in: FUSE protects the mounter
            with pytest.raises(PermissionError):
                os.stat(mnt / "f")
            u = subprocess.run([*as_nobody, *py, "-m", "mount.cli", "unmount", str(mnt)],
                               cwd=ROOT, capture_output=True, text=True, check=False)
            assert u.returncode == 0, u.stderr
            assert not is_mounted(mnt)
    finally:
        if is_mounted(mnt):
            subprocess.run(["umount", "-l", str(mnt)], check=False)
        shutil.rmtree(base, ignore_errors=True)
