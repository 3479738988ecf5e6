"""The daemon's life: the CLI returns once mounted, and every way of ending it
(SIGTERM, SIGINT, umount, fusermount3 -u) ends it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mount.mounting.kernel import is_mounted
from tests.support.mounts import ROOT, daemon, daemon_log_errors, shmfs_mount
from tests.support.procs import exited

pytestmark = pytest.mark.mount


def _shmfs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mount.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def mountpoint() -> Iterator[Path]:
    """A directory to mount on; a daemon mounted there by _mount logs to
    _log(dir), which must hold no error record or traceback at the end."""
    d = Path(tempfile.mkdtemp(prefix="shmfs-life-"))
    try:
        yield d
    finally:
        if is_mounted(d):
            subprocess.run(["umount", "-l", str(d)], check=False)
        os.rmdir(d)
        log = _log(d)
        text = log.read_text(errors="replace") if log.exists() else ""
        log.unlink(missing_ok=True)
        assert daemon_log_errors(text) == [], text


def _log(mountpoint: Path) -> Path:
    return mountpoint.with_name(mountpoint.name + ".log")


def _mount(mountpoint: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI mounting in the background (it daemonises), its log in _log(mountpoint)."""
    return _shmfs(str(mountpoint), "--log", str(_log(mountpoint)), *args)


def _daemon_of(mnt: Path) -> int:
    out = subprocess.run(["pgrep", "-f", f"mount.cli {mnt}"], capture_output=True, text=True,
                         check=False).stdout.split()
    assert len(out) == 1, out
    return int(out[0])


def _wait_gone(pid: int) -> None:
    # The daemon is not our child (it daemonised): its pidfd says when it exits.
    assert exited(pid), f"daemon {pid} did not exit"


def test_cli_daemonises_after_mount_and_umount_ends_it(mountpoint: Path) -> None:
    r = _mount(mountpoint, "-o", "size=1m")
    assert r.returncode == 0, r.stderr
    assert is_mounted(mountpoint)
    (mountpoint / "f").write_bytes(b"usable at once")
    pid = _daemon_of(mountpoint)
    subprocess.run(["umount", str(mountpoint)], check=True)
    _wait_gone(pid)
    assert not is_mounted(mountpoint)


def test_fusermount_u_ends_daemon(mountpoint: Path) -> None:
    assert _mount(mountpoint).returncode == 0
    pid = _daemon_of(mountpoint)
    subprocess.run(["fusermount3", "-u", str(mountpoint)], check=True)
    _wait_gone(pid)
    assert not is_mounted(mountpoint)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_and_exits(mountpoint: Path, sig: signal.Signals) -> None:
    assert _mount(mountpoint).returncode == 0
    pid = _daemon_of(mountpoint)
    os.kill(pid, sig)
    _wait_gone(pid)
    assert not is_mounted(mountpoint)


def _wait_unmounted(mnt: Path, timeout: float = 30) -> None:
    """Wait until mnt has left this mount namespace. /proc/self/mountinfo is
    pollable: POLLPRI on every change of the mount table since the file was
    opened, so this wakes on the change itself, not on a timer."""
    import select
    import time

    with open("/proc/self/mountinfo", "rb") as f:  # opened first: no change can slip by
        poller = select.poll()
        poller.register(f, select.POLLPRI)
        deadline = time.monotonic() + timeout
        while is_mounted(mnt):
            left = deadline - time.monotonic()
            assert left > 0, f"{mnt} still mounted {timeout:g} s after SIGTERM"
            poller.poll(left * 1000)


def _wait_child_exit(pid: int, timeout: float = 30) -> None:
    assert exited(pid, timeout), f"daemon {pid} still running {timeout:g} s after the last close"


def test_sigterm_with_open_file_detaches_and_keeps_serving_it() -> None:
    """SIGTERM with a file open: the daemon detaches the mount lazily (gone from
    the namespace at once), keeps answering requests on the open file -- a
    truncate, a write and a read the kernel's cache cannot serve -- and exits
    by itself, status 0, once the last file is closed: all checked before the
    fixture's teardown, which would otherwise kill it."""
    with shmfs_mount() as mnt:
        d = daemon(mnt)
        fd = os.open(mnt / "open", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"still here")
            os.kill(d.pid, signal.SIGTERM)
            _wait_unmounted(mnt)
            assert d.alive(), f"daemon exited with a file still open: {d.read_log()}"
            os.ftruncate(fd, 5)  # SETATTR
            os.pwrite(fd, b" more", 5)  # WRITE
            # drop the clean pages the kernel kept (FOPEN_KEEP_CACHE): READ asks the daemon
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            assert os.pread(fd, 100, 0) == b"still more"
            assert os.fstat(fd).st_size == 10
        finally:
            os.close(fd)
        _wait_child_exit(d.pid)
        assert d.poll() == 0, d.read_log()
        assert not is_mounted(mnt)


@pytest.mark.parametrize("opt,word", [("huge=always", "huge"), ("mpol=local", "mpol"),
                                      ("bogus", "Unknown parameter 'bogus'"),
                                      ("size=12q", "Bad value for 'size'")])
def test_bad_options_refused_clearly(mountpoint: Path, opt: str, word: str) -> None:
    r = _shmfs(str(mountpoint), "-o", opt)
    assert r.returncode == 2
    assert word in r.stderr
    assert not is_mounted(mountpoint)


def test_unlinked_open_file_lives_until_close(shmfs: Path) -> None:
    free0 = os.statvfs(shmfs).f_bfree
    fd = os.open(shmfs / "gone", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x" * 100_000)
        os.unlink(shmfs / "gone")
        assert os.fstat(fd).st_nlink == 0
        os.pwrite(fd, b"more", 100_000)
        assert os.pread(fd, 4, 100_000) == b"more"
        assert os.statvfs(shmfs).f_bfree < free0
    finally:
        os.close(fd)
    # The last close queues RELEASE and the inode's eviction queues FORGET; the
    # kernel delivers both before the STATFS below, so the blocks are back.
    assert os.statvfs(shmfs).f_bfree == free0
