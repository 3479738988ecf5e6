"""Mount a fresh shmfs on a private temporary mountpoint, and always take it down.

The one implementation behind the test fixtures (tests/support/mounts.py), the
benchmark (scripts/benchlib/targets.py), the window tools
(scripts/windowlib/targets.py) and the stress tool (scripts/stresslib/runner.py)::

    with managed_shmfs("size=1g") as m:
        work_in(m.path)            # m.pid is the daemon, m.command what started it

It runs the real CLI, so a caller exercises exactly what a user runs, in the
foreground as a child process (``python -m mount.cli MNT -f --ready-fd FD
[-o OPTIONS]``) in a session of its own (a Ctrl-C in the terminal reaches the
caller, which then unmounts, not the daemon), with stdin on /dev/null and
stdout/stderr in a log file. Readiness comes through ``--ready-fd``, written
after FUSE_INIT has been answered -- never a sleep, never a search of /proc
for the daemon: the process started is the daemon, so its pid is known.

Teardown always runs (errors, KeyboardInterrupt) and never touches the
filesystem itself, since a stat of a mount whose daemon hangs hangs too: only
/proc/self/mountinfo and fusectl are consulted. umount2(2); if that fails (a
file still open, a daemon that is gone) the connection is aborted through
fusectl and the mount detached lazily. Then the daemon is waited for (and
continued, in case it was stopped): it normally leaves by itself once
unmounted; if not, SIGTERM, then SIGKILL -- only ever the process started here.
The temporary directory is removed once nothing is mounted on it.

Only stdlib and mount.mounting.kernel are imported: the tools load this module with
nothing but the standard library installed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mount.mounting.kernel import MountError, abort_connection, is_mounted, unmount

REPO = Path(__file__).resolve().parents[2]  # the checkout: mount/mounting/managed.py
READY_TIMEOUT = 60.0  # from start to "ok" on the ready fd
EXIT_TIMEOUT = 20.0  # after the unmount, before SIGTERM
TERM_GRACE = 5.0  # after SIGTERM, before SIGKILL
UNMOUNT_TRIES = 5  # umount2 answering EBUSY, before the connection is aborted
LOG_IN_ERRORS = 16 * 1024  # the tail of the daemon's log quoted in an error


class MountFailed(RuntimeError):
    """The daemon did not become ready; the message carries why and its log."""


def daemon_command() -> list[str]:
    """The argv prefix that starts the daemon: this interpreter running the CLI module."""
    return [sys.executable, "-m", "mount.cli"]


@dataclass
class ManagedMount:
    """A shmfs mounted by ``managed_shmfs``: where, which daemon, how it was started.

    ``returncode`` and ``log_text`` are filled in by the teardown, so they can
    be read after the ``with`` block (the log file itself is gone by then
    unless the caller chose where it goes).
    """

    path: Path
    pid: int
    options: str
    command: list[str]
    log: Path
    base: Path
    returncode: int | None = None
    log_text: str = ""
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def poll(self) -> int | None:
        """The daemon's exit status once it has exited, else None (it is serving)."""
        return self._proc.poll() if self._proc is not None else self.returncode

    def alive(self) -> bool:
        """True while the daemon process runs (it leaves when the mount goes away)."""
        return self._proc is not None and self._proc.poll() is None

    def read_log(self) -> str:
        """What the daemon has written to stdout/stderr so far."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return self.log_text

    def session_failed(self) -> bool:
        """True if the log shows the daemon's session ending on an exception."""
        text = self.log_text or self.read_log()
        return "Traceback" in text and "session failed" in text


@contextlib.contextmanager
def managed_shmfs(
    options: str = "",
    *,
    parent: Path | None = None,
    prefix: str = "shmfs-",
    debug: bool = False,
    log: Path | None = None,
    extra_args: Sequence[str] = (),
    command: Sequence[str] | None = None,
    ready_timeout: float = READY_TIMEOUT,
    exit_timeout: float = EXIT_TIMEOUT,
    term_grace: float = TERM_GRACE,
) -> Iterator[ManagedMount]:
    """Mount a fresh shmfs with ``-o options`` on ``PARENT/PREFIXxxxx/mnt`` and yield it.

    ``parent``: where the temporary directory goes (default: the system's).
    ``debug``: ``--debug`` (every request logged). ``log``: where the daemon's
    stdout/stderr go (default: a file in the temporary directory, removed with
    it). ``extra_args``: more CLI arguments. ``command``: the argv prefix to
    start the daemon with instead of ``daemon_command()``; it must exec the
    daemon (``setpriv ... python -m mount.cli``, not a wrapper that forks),
    because the process started is the one signalled and reported as ``pid``.
    Raises MountFailed, after cleaning up, if the daemon does not report
    ready within ``ready_timeout`` seconds. If the log shows the session failed,
    it is printed to stderr at teardown (it would otherwise vanish with the
    temporary directory).
    """
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    base.chmod(0o755)  # other users (allow_other tests) must be able to reach the mount
    mnt = base / "mnt"
    mnt.mkdir()
    log_path = log if log is not None else base / "daemon.log"
    r, w = os.pipe()
    argv = [*(command if command is not None else daemon_command()), str(mnt), "-f",
            "--ready-fd", str(w)]
    if options:
        argv += ["-o", options]
    if debug:
        argv.append("--debug")
    argv += list(extra_args)
    m = ManagedMount(path=mnt, pid=0, options=options, command=argv, log=log_path, base=base)
    owner = os.getpid()
    failure = None
    try:
        with open(log_path, "wb") as logf:
            m._proc = subprocess.Popen(argv, cwd=REPO, pass_fds=(w,), stdin=subprocess.DEVNULL,
                                       stdout=logf, stderr=logf, start_new_session=True)
        m.pid = m._proc.pid
        os.close(w)
        w = -1
        status = _wait_ready(m._proc, r, ready_timeout)
        os.close(r)
        r = -1
        if status == "ok":
            yield m
        else:
            failure = status
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
        # A process forked inside the block (a worker) that unwinds through it must
        # not take down its parent's mount: only the process that mounted does.
        if os.getpid() == owner:
            # a daemon that never got ready has nothing to finish: SIGTERM it soon
            _teardown(m, exit_timeout if failure is None else min(exit_timeout, 2.0),
                      term_grace, report=failure is None)
    if failure is not None:
        log_text = m.log_text
        if len(log_text) > LOG_IN_ERRORS:
            log_text = "[...]\n" + log_text[-LOG_IN_ERRORS:]
        raise MountFailed(f"shmfs did not mount on {mnt}: {failure}\n"
                          f"command: {' '.join(argv)}\n"
                          f"daemon log:\n{log_text or '(empty)'}")


def _wait_ready(proc: subprocess.Popen[bytes], r: int, timeout: float) -> str:
    """The daemon's report on the ready fd: "ok", its error, or what went wrong."""
    ready, _, _ = select.select([r], [], [], timeout)
    if not ready:
        return f"no readiness report within {timeout:g} s"
    data = os.read(r, 4096).decode(errors="replace")
    if data:
        return data
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2)  # it closed the fd without a word: normally it is exiting
    if proc.returncode is None:
        return "the daemon closed the ready fd without a report"
    return f"the daemon exited before the mount was ready (status {proc.returncode})"


def _teardown(m: ManagedMount, exit_timeout: float, term_grace: float, *,
              report: bool = True) -> None:
    """Unmount, reap the daemon, remove the directory; never waits on the mount itself.

    ``report``: print the daemon's log to stderr if it shows the session failed.
    """
    _unmount(m.path)
    if m._proc is not None:
        m.returncode = _stop(m._proc, m.path, exit_timeout, term_grace)
    if is_mounted(m.path):  # the daemon died without unmounting, or umount failed before
        _unmount(m.path)
    with contextlib.suppress(OSError):
        m.log_text = m.log.read_text(errors="replace")
    if report and m.session_failed():
        print(f"shmfs daemon of {m.path} failed; its log:\n{m.log_text}", file=sys.stderr)
    if is_mounted(m.path):
        print(f"shmfs: {m.path} is still mounted; {m.base} left in place", file=sys.stderr)
    else:
        shutil.rmtree(m.base, ignore_errors=True)


def _unmount(mnt: Path) -> None:
    """umount2(2); if it fails, abort the connection (fusectl) and detach lazily."""
    if not is_mounted(mnt):
        return
    for attempt in range(UNMOUNT_TRIES):
        try:
            unmount(mnt)
            return
        except MountError as e:
            # EBUSY can be a moment's reference from another process (one reading
            # /proc/PID/fd links, a path walk): try again before giving up on it
            if e.errno == errno.EBUSY and attempt + 1 < UNMOUNT_TRIES:
                time.sleep(0.02 * (attempt + 1))
                continue
            print(f"shmfs: {e}; aborting the connection", file=sys.stderr)
            break
    abort_connection(mnt)  # a busy or dead mount: nothing may wait on it any more
    with contextlib.suppress(MountError):
        unmount(mnt, lazy=True)


def _stop(proc: subprocess.Popen[bytes], mnt: Path, exit_timeout: float,
          term_grace: float) -> int:
    """Wait for the daemon to leave; SIGTERM, then SIGKILL it if it does not.

    A stopped daemon (SIGSTOP, a debugger let go) is continued first: it has
    nothing to do but read ENODEV and leave.
    """
    proc.send_signal(signal.SIGCONT)  # a no-op unless it was stopped
    with contextlib.suppress(subprocess.TimeoutExpired):
        return proc.wait(timeout=exit_timeout)
    proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        return proc.wait(timeout=term_grace)
    abort_connection(mnt)
    proc.kill()
    return proc.wait()


# A log record's first line: "<date> <time> shmfs[<pid>] <LEVEL> <logger>: <message>"
# (mount/cli/main.py); lines that do not start like this continue the record above.
_RECORD = re.compile(r"^\S+ \S+ shmfs\[\d+\] (?P<level>[A-Z]+) ")
_BAD_LEVELS = ("ERROR", "CRITICAL")


def daemon_log_errors(text: str, allow: str | None = None) -> list[str]:
    """The records of a daemon log at ERROR/CRITICAL level, and tracebacks printed
    outside any record (an exception that escaped a thread), each with its
    continuation lines; those matching the regular expression ``allow``
    (re.search over the whole record) are left out."""
    found: list[str] = []
    current: list[str] | None = None  # the bad record being collected
    for line in text.splitlines():
        m = _RECORD.match(line)
        if m is not None:
            current = [line] if m["level"] in _BAD_LEVELS else None
            if current is not None:
                found.append("")
        elif line.startswith("Traceback (most recent call last)") and current is None:
            current = [line]
            found.append("")
        elif current is None:
            continue
        else:
            current.append(line)
        if current is not None:
            found[-1] = "\n".join(current)
    pattern = re.compile(allow) if allow is not None else None
    return [r for r in found if pattern is None or not pattern.search(r)]
