"""The mount fixtures fail a test whose daemon logged an unexpected exception.

A handler that raises something other than FsError is logged by ops.handle
and answered EIO -- or not answered at all for FORGET and the other no-reply
requests, so the client never notices. tests/support/mounts.py reads the
daemon's log at teardown and raises DaemonErrors for every ERROR record or
traceback the test did not declare. Here a daemon whose FORGET or RELEASE
handler raises (patched in before the CLI starts) must be caught, a declared
error must be let through, and the log parser must find records and nothing
else.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tests.support.mounts import DaemonErrors, daemon_log_errors, shmfs_mount

pytestmark = pytest.mark.mount

# Execs the daemon (managed_shmfs passes MOUNTPOINT -f --ready-fd N after it) with
# one fsimpl method replaced by one that raises.
FAULTY = """
import sys
from fsimpl import ShmFs
def broken(self, *args):
    raise RuntimeError("injected failure in ShmFs.%s" % METHOD)
setattr(ShmFs, METHOD, broken)
from mount.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _faulty(method: str) -> list[str]:
    return [sys.executable, "-c", f"METHOD = {method!r}\n" + FAULTY]


def _create_close_unlink(mnt: Path) -> None:
    """A RELEASE (the close) and a FORGET (the unlinked inode is evicted); the
    kernel queues the FORGET ahead of the STATFS that follows."""
    fd = os.open(mnt / "f", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"data")
    os.close(fd)
    os.unlink(mnt / "f")
    os.statvfs(mnt)


def _until_the_daemon_erred(mnt: Path) -> None:
    """The FORGET of the unlinked inode follows the RELEASE reply, which the kernel
    processes in the background: under load it may come after the STATFS. Ask the
    daemon (each STATS ioctl is a request of its own) until it counted the failure."""
    from mount.winapi.client import mount_stats

    deadline = time.monotonic() + 30
    while mount_stats(mnt)["ops"]["unexpected"] == 0:
        assert time.monotonic() < deadline, "the daemon never ran the broken handler"
        os.statvfs(mnt)


@pytest.mark.parametrize("method", ["forget", "release"])
def test_a_handler_crash_on_a_live_mount_fails_the_test(method: str) -> None:
    with pytest.raises(DaemonErrors) as exc, shmfs_mount(command=_faulty(method)) as mnt:
        _create_close_unlink(mnt)
        _until_the_daemon_erred(mnt)
    text = str(exc.value)
    assert f"injected failure in ShmFs.{method}" in text, text
    assert "Traceback" in text, text


def test_a_declared_error_is_let_through_and_others_are_not() -> None:
    with shmfs_mount(command=_faulty("forget"), allow_errors="ShmFs.forget") as mnt:
        _create_close_unlink(mnt)
        _until_the_daemon_erred(mnt)
    with pytest.raises(DaemonErrors), \
            shmfs_mount(command=_faulty("release"), allow_errors="ShmFs.forget") as mnt:
        _create_close_unlink(mnt)
        _until_the_daemon_erred(mnt)


def test_a_clean_daemon_passes(shmfs: Path) -> None:
    """The same requests on an unpatched daemon log no error (the fixture checks)."""
    _create_close_unlink(shmfs)


@pytest.mark.daemon_errors("ShmFs.release")
def test_the_marker_declares_errors_for_the_fixture(shmfs: Path) -> None:
    """The marker only matters with an erring daemon; here it must not get in the way."""
    _create_close_unlink(shmfs)


LOG = """\
2026-12-07 07:00:00,001 shmfs[42] INFO shmfs.ops: FUSE 7.41, granted flags 0x1
2026-12-07 07:00:00,002 shmfs[42] WARNING shmfs.session: malformed request (unique=3): x
2026-12-07 07:00:00,003 shmfs[42] ERROR shmfs.ops: unexpected error in FORGET (unique=0 nodeid=5)
Traceback (most recent call last):
  File "ops.py", line 1, in handle
RuntimeError: boom
2026-12-07 07:00:00,004 shmfs[42] INFO shmfs: signal 15: unmounting /mnt
Exception in thread notifier:
Traceback (most recent call last):
  File "session.py", line 2, in _notifier
OSError: bad
2026-12-07 07:00:00,005 shmfs[42] CRITICAL shmfs: gone
"""


def test_log_parser_finds_error_records_and_stray_tracebacks_only() -> None:
    found = daemon_log_errors(LOG)
    assert len(found) == 3, found
    assert found[0].startswith("2026-12-07 07:00:00,003") and found[0].endswith("boom")
    assert found[1].startswith("Traceback") and found[1].endswith("OSError: bad")
    assert found[2].endswith("CRITICAL shmfs: gone")
    assert daemon_log_errors(LOG, allow="boom|bad|gone") == []
    assert daemon_log_errors(LOG.replace("ERROR", "INFO").replace("CRITICAL", "INFO")
                             .replace("Traceback", "Trace")) == []
