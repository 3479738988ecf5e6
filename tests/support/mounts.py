"""Mount a fresh shmfs or a kernel tmpfs for a test, and always take it down.

``shmfs_mount`` is a thin wrapper over ``mount.mounting.managed.managed_shmfs`` (the
one implementation shared with the benchmark and the tools): the real CLI in
the foreground as a child process, so the test exercises exactly what a user
runs; readiness through ``--ready-fd`` (written after FUSE_INIT has been
answered), never a sleep. On exit the filesystem is unmounted without being
touched (aborted and detached lazily if something still holds it), the daemon
reaped (killed if it does not end by itself) and the directory removed; a
daemon log that shows the session failed is printed to stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mount.mounting.managed import ManagedMount, MountFailed, managed_shmfs

__all__ = ["ROOT", "MountFailed", "daemon_pid", "leftovers", "shmfs_mount", "tmpfs_mount"]

ROOT = Path(__file__).resolve().parents[2]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_DAEMONS: dict[Path, ManagedMount] = {}


def _umount(path: Path, lazy: bool = False) -> int:
    rc = _libc.umount2(os.fsencode(path), 2 if lazy else 0)
    return 0 if rc == 0 else ctypes.get_errno()


def daemon_pid(mountpoint: Path) -> int:
    """The pid of the shmfs daemon serving mountpoint (mounted by shmfs_mount)."""
    return _DAEMONS[Path(mountpoint)].pid


@contextlib.contextmanager
def shmfs_mount(options: str = "", *, debug: bool = False,
                parent: Path | None = None) -> Iterator[Path]:
    """Yield the mountpoint of a fresh shmfs mounted with ``-o options``."""
    with managed_shmfs(options, debug=debug, parent=parent, prefix="shmfs-test-") as m:
        _DAEMONS[m.path] = m
        try:
            yield m.path
        finally:
            _DAEMONS.pop(m.path, None)


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


def leftovers(directory: Path) -> list[str]:
    """What a run confined to ``directory`` (its TMPDIR) left behind: mounts under
    it and processes whose command line names it -- nothing, if it cleaned up.

    Scoped to one directory so that other test runs on the machine (other
    checkouts mount shmfs and tmpfs on /tmp too) cannot make it fail.
    """
    where = os.path.realpath(directory) + "/"
    found = []
    with open("/proc/self/mounts") as f:
        found += [f"mount {ln.split()[1]}" for ln in f if ln.split()[1].startswith(where)]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if where in argv:
                found.append(f"process {entry}: {argv.replace(chr(0), ' ')}")
    return found
