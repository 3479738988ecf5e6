"""The supervisor of ``-o restartable`` (mount/server/supervisor.py) on real mounts:
the pidfile names the serving child, SIGKILL of the child is survived, SIGTERM of
it and umount end everything, nothing is left behind, and only root or the
mounting user may ask for a restart."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mount.mounting import kernel as mounting
from mount.server.supervisor import request_restart
from mount.winapi.client import mount_stats
from tests.live.helpers import as_user
from tests.restart.restartable import restartable_mount
from tests.support.mounts import ROOT, leftovers, shmfs_mount
from tests.support.procs import exited


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


NOBODY = 65534


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mount.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_pidfile_names_the_serving_child_and_kill_9_is_survived() -> None:
    with restartable_mount("size=16m") as m:
        child = m.child()
        assert child != m.supervisor
        assert _ppid(child) == m.supervisor
        argv = _cmdline(child)
        assert "mount.server.daemon" in argv and "--child" in argv
        assert m.serving() == (child, 0)
        (m.path / "f").write_bytes(b"before")
        os.kill(child, 9)
        assert exited(child, 10)
        # the next access waits for the new child instead of failing with ENOTCONN
        assert (m.path / "f").read_bytes() == b"before"
        pid, gen = m.serving()
        assert gen == 1 and pid != child
        assert m.child() == pid  # rewritten before the new child was reported serving
        assert _ppid(pid) == m.supervisor


def _oom_adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())


def test_oom_score_adj_covers_the_supervisor_and_every_child() -> None:
    """oom_score_adj= (decisions 11) on a restartable mount: set by the supervisor
    before it starts children, so the serving child and its successor carry it too
    (500: a value any user may set, so the test does not depend on CAP_SYS_RESOURCE)."""
    with restartable_mount("size=16m,oom_score_adj=500") as m:
        child = m.child()
        assert _oom_adj(m.supervisor) == 500 and _oom_adj(child) == 500
        os.kill(child, 9)
        assert exited(child, 10)
        pid, _gen = m.serving()
        assert _oom_adj(pid) == 500


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _ppid(int(entry)) == pid:
                    out.append(int(entry))
            except (OSError, IndexError):
                continue
    return out


def test_unmount_ends_the_supervisor_and_its_child() -> None:
    with restartable_mount("size=16m") as m:
        child = m.child()
        m.serving()  # the spare is started before this is answered
        kids = _children(m.supervisor)
        assert child in kids and len(kids) == 2, kids  # the serving child and the spare
        (m.path / "f").write_bytes(b"x")
        mounting.unmount(m.path)
        assert all(exited(k, 20) for k in kids)
        assert exited(m.supervisor, 20)
        assert m.managed.poll() == 0
        assert not leftovers(m.managed.base)


def test_sigterm_of_the_child_unmounts_as_for_a_plain_daemon() -> None:
    """SIGTERM is the request to unmount (as for a non-restartable daemon), not a crash."""
    with restartable_mount("size=16m") as m:
        child = m.child()
        os.kill(child, 15)
        assert exited(child, 20)
        assert exited(m.supervisor, 20)
        assert m.managed.poll() == 0
        assert not mounting.is_mounted(m.path)


def test_daemonised_restartable_mount() -> None:
    """Without -f: the command returns once the child serves; the pidfile names the
    child, whose parent is the (setsid) supervisor; umount ends both."""
    base = Path(tempfile.mkdtemp(prefix="shmfs-restart-daemon-"))
    mnt, pidfile = base / "mnt", base / "pid"
    mnt.mkdir()
    child = supervisor = 0
    try:
        r = _cli(str(mnt), "-o", "restartable,size=8m", "--pidfile", str(pidfile))
        assert r.returncode == 0, r.stderr
        child = int(pidfile.read_text())
        supervisor = _ppid(child)
        assert "mount.cli" in " ".join(_cmdline(supervisor))
        (mnt / "f").write_bytes(b"daemonised")
        os.kill(child, 9)
        assert (mnt / "f").read_bytes() == b"daemonised"
        new = int(pidfile.read_text())
        r = _cli("restart", str(mnt))
        assert r.returncode == 0, r.stderr
        assert "generation 2" in r.stdout
        assert int(pidfile.read_text()) not in (child, new)
        mounting.unmount(mnt)
        assert exited(supervisor, 20)
        assert not leftovers(base)
    finally:
        if mounting.is_mounted(mnt):
            mounting.abort_connection(mnt)
            mounting.unmount(mnt, lazy=True)
        for pid in (supervisor, child):
            if pid and not exited(pid, 5):
                os.kill(pid, 9)
        pidfile.unlink(missing_ok=True)
        mnt.rmdir()
        base.rmdir()


def test_restart_of_a_plain_mount_says_it_is_not_restartable() -> None:
    with shmfs_mount("size=8m") as mnt:
        r = _cli("restart", str(mnt))
    assert r.returncode == 1
    assert "not a restartable mount" in r.stderr


def test_restartable_refuses_two_readers() -> None:
    with tempfile.TemporaryDirectory() as d:
        r = _cli(d, "-f", "-o", "restartable,readers=2")
    assert r.returncode == 2
    assert "restartable serves with one reader" in r.stderr


def test_restartable_refuses_uring_on_and_serves_uring_auto_over_the_device() -> None:
    """uring=on cannot be kept across a restart (the ring dies with its server):
    refused; uring=auto on a restartable mount means /dev/fuse, and the mount works."""
    with tempfile.TemporaryDirectory() as d:
        r = _cli(d, "-f", "-o", "restartable,uring=on")
    assert r.returncode == 2
    assert "cannot be combined with -o uring" in r.stderr
    with shmfs_mount("restartable,uring=auto,size=8m") as mnt:
        (mnt / "f").write_bytes(b"x" * 5000)
        assert (mnt / "f").read_bytes() == b"x" * 5000
        assert not mount_stats(mnt)["session"]["uring"]["active"]


def test_another_user_may_not_restart_it() -> None:
    """The restart socket is reachable by anyone (abstract namespace): the supervisor
    checks SO_PEERCRED and refuses all but root and the user who mounted."""
    with restartable_mount("size=8m,allow_other") as m:
        child = m.child()
        res = as_user(NOBODY, NOBODY, lambda: request_restart(m.path, 30))
        assert res == ("ok", (False, "only root or the user who mounted may restart it")), res
        res = as_user(NOBODY, NOBODY, lambda: request_restart(m.path, 30, request="status"))
        assert res == ("ok", (False, "only root or the user who mounted may restart it")), res
        assert m.serving() == (child, 0)  # nothing was restarted


def test_when_the_supervisor_dies_the_child_serves_on_until_unmounted() -> None:
    """docs/reliability.md: the supervisor's death ends restartability, not the mount;
    the spare (waiting on the supervisor's socket) leaves, the child serves on, and
    umount ends it."""
    with restartable_mount("size=8m") as m:
        child, _ = m.serving()
        spare = [k for k in _children(m.supervisor) if k != child]
        assert len(spare) == 1
        (m.path / "f").write_bytes(b"kept")
        os.kill(m.supervisor, 9)
        assert exited(m.supervisor, 10)
        assert exited(spare[0], 20)
        assert (m.path / "f").read_bytes() == b"kept"
        (m.path / "g").write_bytes(b"still served")
        assert sorted(os.listdir(m.path)) == ["f", "g"]
        mounting.unmount(m.path)
        assert exited(child, 20)


def test_when_the_supervisor_and_then_the_child_die_the_mount_ends_as_a_plain_one() -> None:
    """docs/reliability.md: with the supervisor gone the child is the last holder of
    /dev/fuse; its death then ends the connection as a plain daemon's does
    (ENOTCONN), and nothing restarts it."""
    with restartable_mount("size=8m", allow_errors=r"connection|not connected") as m:
        child, _ = m.serving()
        (m.path / "f").write_bytes(b"kept until the child dies")
        os.kill(m.supervisor, 9)
        assert exited(m.supervisor, 10)
        assert (m.path / "f").read_bytes() == b"kept until the child dies"
        os.kill(child, 9)
        assert exited(child, 20)
        try:
            os.stat(m.path / "f")
        except OSError as e:
            assert e.errno == errno.ENOTCONN, e
        else:
            raise AssertionError("the mount still answers with no server")
