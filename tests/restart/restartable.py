"""A restartable shmfs for the live tests of tests/restart (engineer A's side).

``restartable_mount`` mounts with ``-o restartable`` through the real CLI in the
foreground (mount.mounting.managed: readiness through --ready-fd, always taken
down), with ``--pidfile`` so the test knows the serving child, and an optional
``SHMFS_TEST_KILL`` spec that only the first serving child obeys
(mount/server/restart.py). At exit the log of the supervisor and its children
must hold no error record (tests/support/mounts.daemon_log_errors).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mount.mounting.managed import ManagedMount, daemon_log_errors, managed_shmfs
from mount.server.supervisor import request_restart
from tests.support.mounts import DaemonErrors


@dataclass
class RestartableMount:
    """A mounted restartable shmfs: ``path``, the supervisor (``managed.pid``)."""

    path: Path
    pidfile: Path
    managed: ManagedMount

    @property
    def supervisor(self) -> int:
        return self.managed.pid

    def child(self) -> int:
        """The serving child as the pidfile names it."""
        return int(self.pidfile.read_text())

    def serving(self, timeout: float = 60.0) -> tuple[int, int]:
        """Wait until a child serves (asks the supervisor): (pid, generation)."""
        ok, msg = request_restart(self.path, timeout, request="status")
        assert ok, msg
        _, pid, gen = msg.split()
        return int(pid), int(gen)

    def restart(self, timeout: float = 60.0) -> tuple[int, int]:
        """``shmfs restart``'s request: (new pid, generation) once it serves."""
        ok, msg = request_restart(self.path, timeout)
        assert ok, msg
        _, pid, gen = msg.split()
        return int(pid), int(gen)


@contextlib.contextmanager
def restartable_mount(options: str = "", *, kill: str | None = None,
                      allow_errors: str | None = None) -> Iterator[RestartableMount]:
    """Yield a fresh ``-o restartable`` shmfs (see the module docstring)."""
    opts = ",".join(o for o in ("restartable", options) if o)
    saved = os.environ.get("SHMFS_TEST_KILL")
    if kill is not None:
        os.environ["SHMFS_TEST_KILL"] = kill
    body_failed = True
    piddir = Path(tempfile.mkdtemp(prefix="shmfs-restart-pid-"))
    pidfile = piddir / "pid"
    try:
        with managed_shmfs(opts, prefix="shmfs-restart-",
                           extra_args=("--pidfile", str(pidfile))) as m:
            yield RestartableMount(m.path, pidfile, m)
            body_failed = False
    finally:
        shutil.rmtree(piddir, ignore_errors=True)
        if kill is not None:
            if saved is None:
                os.environ.pop("SHMFS_TEST_KILL", None)
            else:
                os.environ["SHMFS_TEST_KILL"] = saved
    errors = daemon_log_errors(m.log_text, allow_errors)
    if errors and not body_failed:
        raise DaemonErrors(f"the restartable shmfs of {m.path} logged {len(errors)} "
                           "unexpected error(s):\n" + "\n".join(errors))
