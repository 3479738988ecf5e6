"""Mount a fresh shmfs or a kernel tmpfs for a test, and always take it down.

``shmfs_mount`` is a thin wrapper over ``mount.mounting.managed.managed_shmfs`` (the
one implementation shared with the benchmark and the tools): the real CLI in
the foreground as a child process, so the test exercises exactly what a user
runs; readiness through ``--ready-fd`` (written after FUSE_INIT has been
answered), never a sleep. On exit the filesystem is unmounted without being
touched (aborted and detached lazily if something still holds it), the daemon
reaped (killed if it does not end by itself) and the directory removed; a
daemon log that shows the session failed is printed to stderr.

The daemon's log is then read (it holds everything the daemon said, up to its
exit): a record at ERROR or CRITICAL level or a traceback -- a handler that hit
an unexpected exception (ops.handle logs it and answers EIO, or nothing for
FORGET and the other no-reply requests), a session that failed, a reply the
kernel refused -- fails the test with those records (``DaemonErrors``), even
when the test itself passed. A test that provokes such errors on purpose says
which ones with ``allow_errors`` (a regular expression; the ``daemon_errors``
marker for the ``shmfs`` fixture), and only those are let through.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from mount.mounting.managed import ManagedMount, MountFailed, daemon_log_errors, managed_shmfs

__all__ = ["ROOT", "DaemonErrors", "MountFailed", "daemon", "daemon_log_errors", "daemon_pid",
           "leftovers", "shmfs_mount", "tmpfs_mount"]

ROOT = Path(__file__).resolve().parents[2]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_DAEMONS: dict[Path, ManagedMount] = {}


def _umount(path: Path, lazy: bool = False) -> int:
    rc = _libc.umount2(os.fsencode(path), 2 if lazy else 0)
    return 0 if rc == 0 else ctypes.get_errno()


def daemon_pid(mountpoint: Path) -> int:
    """The pid of the shmfs daemon serving mountpoint (mounted by shmfs_mount)."""
    return _DAEMONS[Path(mountpoint)].pid


def daemon(mountpoint: Path) -> ManagedMount:
    """The daemon serving mountpoint (mounted by shmfs_mount): poll(), alive(), read_log()."""
    return _DAEMONS[Path(mountpoint)]


class DaemonErrors(AssertionError):
    """The daemon of a test's mount logged errors or tracebacks the test did not expect."""


@contextlib.contextmanager
def shmfs_mount(options: str = "", *, debug: bool = False, parent: Path | None = None,
                allow_errors: str | None = None,
                command: Sequence[str] | None = None) -> Iterator[Path]:
    """Yield the mountpoint of a fresh shmfs mounted with ``-o options``.

    ``command``: another argv prefix that execs the daemon (managed_shmfs), e.g.
    an interpreter that patches a handler first to inject a fault.

    After the teardown, raises DaemonErrors if the daemon's log holds an error
    record or a traceback not matched by the regular expression
    ``allow_errors`` (see the module docstring); if the body raised, its
    exception is left alone and the records are printed to stderr instead.
    """
    body_failed = True
    with managed_shmfs(options, debug=debug, parent=parent, prefix="shmfs-test-",
                       command=command) as m:
        _DAEMONS[m.path] = m
        try:
            yield m.path
            body_failed = False
        finally:
            _DAEMONS.pop(m.path, None)
            if body_failed:  # the teardown below still runs; report, do not mask
                _report_errors(m, allow_errors)
    errors = daemon_log_errors(m.log_text, allow_errors)
    if errors:
        raise DaemonErrors(f"the shmfs daemon of {m.path} logged {len(errors)} unexpected "
                           f"error(s):\n" + "\n".join(errors))


def _report_errors(m: ManagedMount, allow: str | None) -> None:
    """Print what the daemon logged so far that daemon_log_errors objects to."""
    errors = daemon_log_errors(m.read_log(), allow)
    if errors:
        print(f"the shmfs daemon of {m.path} logged:\n" + "\n".join(errors), file=sys.stderr)


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
