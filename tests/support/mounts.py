"""Mount a fresh shmfs or a kernel tmpfs for a test, and always take it down.

``shmfs_mount`` runs the real CLI in the foreground as a child process, so the
test exercises exactly what a user runs; readiness comes through ``--ready-fd``
(written after FUSE_INIT has been answered), never through a sleep. On exit
the filesystem is unmounted (lazily if something still holds it), the daemon
is reaped (killed if it does not end by itself) and the directory removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mount.mounting import abort_connection, is_mounted

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0
EXIT_TIMEOUT = 30.0

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_DAEMONS: dict[Path, subprocess.Popen[bytes]] = {}


class MountFailed(RuntimeError):
    """The daemon did not become ready; carries its stderr."""


def _umount(path: Path, lazy: bool = False) -> int:
    rc = _libc.umount2(os.fsencode(path), 2 if lazy else 0)
    return 0 if rc == 0 else ctypes.get_errno()


def daemon_pid(mountpoint: Path) -> int:
    """The pid of the shmfs daemon serving mountpoint (mounted by shmfs_mount)."""
    return _DAEMONS[Path(mountpoint)].pid


def _wait_ready(proc: subprocess.Popen[bytes], r: int) -> str:
    ready, _, _ = select.select([r], [], [], READY_TIMEOUT)
    if not ready:
        return "timeout"
    data = os.read(r, 4096).decode(errors="replace")
    return data or f"daemon exited (status {proc.poll()})"


@contextlib.contextmanager
def shmfs_mount(options: str = "", *, debug: bool = False,
                parent: Path | None = None) -> Iterator[Path]:
    """Yield the mountpoint of a fresh shmfs mounted with ``-o options``."""
    base = Path(tempfile.mkdtemp(prefix="shmfs-test-", dir=parent))
    base.chmod(0o755)  # other users' tests must be able to reach the mountpoint
    mnt = base / "mnt"
    mnt.mkdir()
    logf = open(base / "daemon.log", "wb")  # closed in the finally below
    r, w = os.pipe()
    cmd = [sys.executable, "-m", "mount.cli", str(mnt), "-f", "--ready-fd", str(w)]
    if options:
        cmd += ["-o", options]
    if debug:
        cmd.append("--debug")
    proc = subprocess.Popen(cmd, cwd=ROOT, pass_fds=(w,), stdin=subprocess.DEVNULL,
                            stdout=logf, stderr=logf, start_new_session=True)
    os.close(w)
    try:
        status = _wait_ready(proc, r)
        if status != "ok":
            logf.flush()
            raise MountFailed(f"shmfs did not mount: {status}\n"
                              f"{(base / 'daemon.log').read_text(errors='replace')}")
        _DAEMONS[mnt] = proc
        yield mnt
    finally:
        os.close(r)
        _DAEMONS.pop(mnt, None)
        _teardown(mnt, proc)
        logf.close()
        log_text = (base / "daemon.log").read_text(errors="replace")
        shutil.rmtree(base, ignore_errors=True)
        if "Traceback" in log_text and "session failed" in log_text:
            print(log_text, file=sys.stderr)


def _teardown(mnt: Path, proc: subprocess.Popen[bytes]) -> None:
    """Unmount, reap the daemon; a daemon that hangs is aborted, never waited on forever.

    Only mountinfo and sysfs are consulted: a stat of a hung mount would hang too.
    """
    if is_mounted(mnt) and _umount(mnt) != 0:
        _umount(mnt, lazy=True)
    try:
        proc.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        abort_connection(mnt)
        proc.kill()
        proc.wait()
    if is_mounted(mnt):  # the daemon died without unmounting: clear ENOTCONN
        abort_connection(mnt)
        _umount(mnt, lazy=True)


@contextlib.contextmanager
def tmpfs_mount(options: str = "", *, parent: Path | None = None) -> Iterator[Path]:
    """Yield a fresh kernel tmpfs (the oracle), unmounted on exit."""
    base = Path(tempfile.mkdtemp(prefix="tmpfs-oracle-", dir=parent))
    base.chmod(0o755)
    mnt = base / "mnt"
    mnt.mkdir()
    cmd = ["mount", "-t", "tmpfs"]
    if options:
        cmd += ["-o", options]
    subprocess.run([*cmd, "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        if _umount(mnt) != 0:
            _umount(mnt, lazy=True)
        shutil.rmtree(base, ignore_errors=True)
