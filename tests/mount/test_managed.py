"""mount/mounting/managed.py: a fresh shmfs on a private mountpoint, always taken down.

Against live mounts: mounting and unmounting, what is left afterwards (no
mount, no directory, no daemon), a daemon that fails to mount or never says
it is ready, and the teardowns that must not hang -- after the daemon was
SIGKILLed (dead connection), with a file still open in the mount, with the
daemon stopped. Waiting is on events (pidfd, waitid), never on a sleep.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from mount.mounting.kernel import is_mounted
from mount.mounting.managed import MountFailed, managed_shmfs
from tests.support.procs import exited

pytestmark = [pytest.mark.mount, pytest.mark.timeout(120)]


def _wait_exit(pid: int, timeout: float = 30) -> None:
    assert exited(pid, timeout), f"process {pid} did not exit"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_mounts_serves_and_takes_everything_down(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with managed_shmfs("size=1m", parent=tmp_path, prefix="managed-",
                       extra_args=["--pidfile", str(pidfile)]) as m:
        assert is_mounted(m.path) and m.alive()
        assert m.path.parent.name.startswith("managed-") and m.path.parent.parent == tmp_path
        (m.path / "f").write_bytes(b"served")
        assert (m.path / "f").read_bytes() == b"served"
        # the pid is the daemon's own, as the daemon itself reports it
        assert int(pidfile.read_text()) == m.pid
        assert str(m.path) in _cmdline(m.pid)
        assert m.options == "size=1m"
        assert m.command[m.command.index("-o") + 1] == "size=1m"
        assert "-f" in m.command and "--ready-fd" in m.command
        pid, base = m.pid, m.base
    assert not is_mounted(m.path)
    assert not base.exists()  # the mountpoint and its temporary directory are gone
    assert m.returncode == 0 and _gone(pid)
    assert list(tmp_path.iterdir()) == [pidfile]


def test_log_goes_where_asked_and_is_complete_after_teardown(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    with managed_shmfs(debug=True, log=log, parent=tmp_path) as m:
        (m.path / "f").write_bytes(b"x")
        assert "--debug" in m.command
    text = log.read_text()
    assert m.log_text == text
    assert "<-" in text  # --debug: the requests
    assert "session for" in text and "ended" in text  # written as the daemon left
    assert not m.session_failed()


def test_a_daemon_that_fails_to_mount_says_why_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(MountFailed) as exc, managed_shmfs("bogus", parent=tmp_path):
        raise AssertionError("must not be reached")
    msg = str(exc.value)
    assert "shmfs did not mount" in msg
    assert "status 2" in msg  # the CLI's exit status for bad options
    assert "Unknown parameter 'bogus'" in msg  # what the daemon wrote to its log
    assert "-o bogus" in msg  # the command
    assert list(tmp_path.iterdir()) == []


FAKE_DAEMON = """
import os, signal, sys
print(f"fake daemon {os.getpid()} ignoring SIGTERM", flush=True)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
{after}
signal.pause()
"""


def _fake(after: str) -> list[str]:
    return [sys.executable, "-c", FAKE_DAEMON.replace("{after}", after)]


def _fake_pid(msg: str) -> int:
    found = re.search(r"fake daemon (\d+) ignoring", msg)
    assert found, msg
    return int(found.group(1))


def test_a_daemon_that_closes_the_ready_fd_without_a_word_is_killed(tmp_path: Path) -> None:
    # argv[-1] is the ready fd number (no -o given): close it without writing "ok"
    command = _fake("os.close(int(sys.argv[-1]))")
    with pytest.raises(MountFailed) as exc, managed_shmfs(
            parent=tmp_path, command=command, exit_timeout=0.2, term_grace=0.2):
        raise AssertionError("must not be reached")
    msg = str(exc.value)
    assert "closed the ready fd without a report" in msg
    pid = _fake_pid(msg)  # the log is in the message
    assert _gone(pid)  # SIGTERM was ignored: SIGKILL, and reaped
    assert list(tmp_path.iterdir()) == []


def test_a_daemon_that_never_reports_is_killed_after_the_ready_timeout(
        tmp_path: Path) -> None:
    with pytest.raises(MountFailed) as exc, managed_shmfs(
            parent=tmp_path, command=_fake(""), ready_timeout=3, exit_timeout=0.2,
            term_grace=0.2):
        raise AssertionError("must not be reached")
    msg = str(exc.value)
    assert "no readiness report within 3 s" in msg
    assert _gone(_fake_pid(msg))
    assert list(tmp_path.iterdir()) == []


def test_teardown_after_the_daemon_was_sigkilled(tmp_path: Path) -> None:
    with managed_shmfs(parent=tmp_path) as m:
        (m.path / "f").write_bytes(b"x")
        os.kill(m.pid, signal.SIGKILL)
        _wait_exit(m.pid)
        with pytest.raises(OSError) as exc:
            os.stat(m.path)
        assert exc.value.errno == errno.ENOTCONN  # a dead connection is left behind
        assert is_mounted(m.path)
    assert not is_mounted(m.path)
    assert m.returncode == -signal.SIGKILL
    assert list(tmp_path.iterdir()) == []


def test_teardown_with_a_file_still_open_in_the_mount(tmp_path: Path) -> None:
    with managed_shmfs(parent=tmp_path) as m:
        fd = os.open(m.path / "open", os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"still open")
    try:
        assert not is_mounted(m.path)
        assert m.returncode == 0  # the aborted connection ended the daemon
        assert list(tmp_path.iterdir()) == []
        with pytest.raises(OSError) as exc:
            os.pread(fd, 10, 0)
        assert exc.value.errno == errno.ENOTCONN  # the connection was aborted, not waited on
    finally:
        os.close(fd)


def test_teardown_of_a_stopped_daemon(tmp_path: Path) -> None:
    with managed_shmfs(parent=tmp_path) as m:
        (m.path / "f").write_bytes(b"x")
        os.kill(m.pid, signal.SIGSTOP)
        os.waitid(os.P_PID, m.pid, os.WSTOPPED | os.WNOWAIT)  # until it is stopped
    assert not is_mounted(m.path)
    assert m.returncode == 0
    assert "signal 15" not in m.log_text  # continued, it left by itself: no SIGTERM needed
    assert list(tmp_path.iterdir()) == []


TERM_LOGGER = """
import os, signal, sys
def leave(signum, frame):
    print("got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, leave)
os.write(int(sys.argv[-1]), b"ok")  # ready, though it never mounts anything
signal.pause()
"""


def test_a_daemon_that_does_not_leave_by_itself_gets_sigterm(tmp_path: Path) -> None:
    with managed_shmfs(parent=tmp_path, command=[sys.executable, "-c", TERM_LOGGER],
                       exit_timeout=0.2) as m:
        assert m.alive()
    assert m.returncode == 0
    assert "got SIGTERM" in m.log_text
    assert list(tmp_path.iterdir()) == []


def test_an_exception_in_the_block_still_unmounts(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), managed_shmfs(parent=tmp_path) as m:
        raise KeyboardInterrupt
    assert not is_mounted(m.path)
    assert m.returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_a_forked_child_leaving_the_block_does_not_take_the_mount_down(tmp_path: Path) -> None:
    cm = managed_shmfs(parent=tmp_path)
    m = cm.__enter__()
    try:
        (m.path / "f").write_bytes(b"parent's")
        child = os.fork()
        if child == 0:  # what a forked worker unwinding through the with block does
            try:
                cm.__exit__(None, None, None)
            finally:
                os._exit(0)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert is_mounted(m.path) and m.alive()
        assert (m.path / "f").read_bytes() == b"parent's"
    finally:
        cm.__exit__(None, None, None)
    assert not is_mounted(m.path) and m.returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_the_daemon_runs_from_the_checkout_root() -> None:
    # python -m mount.cli must resolve to this checkout even without an install
    from mount.mounting import managed

    assert (managed.REPO / "mount" / "cli" / "main.py").is_file()
    assert (managed.REPO / "pyproject.toml").is_file()
