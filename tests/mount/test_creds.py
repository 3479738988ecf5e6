"""mount/server/creds.py: a caller's groups and capabilities from /proc."""

from __future__ import annotations

import os
import signal

import pytest

from mount.server.creds import read_creds


def test_own_creds() -> None:
    me = read_creds(os.getpid(), os.getuid(), os.getgid())
    assert me is not None
    assert me.groups == frozenset(os.getgroups())
    if os.geteuid() == 0:
        assert me.caps >> 4 & 1  # CAP_FSETID


def test_mismatched_ids_or_pid_give_none() -> None:
    assert read_creds(os.getpid(), os.getuid() + 1, os.getgid()) is None
    assert read_creds(os.getpid(), os.getuid(), os.getgid() + 1) is None
    assert read_creds(0, os.getuid(), os.getgid()) is None
    assert read_creds(2**22 + 12345, 0, 0) is None  # beyond pid_max: no such thread


def test_dropped_user_has_no_caps() -> None:
    """A child that became uid 1000 with a supplementary group: seen as such."""
    if os.geteuid() != 0:
        pytest.fail("needs root to drop to another uid")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setgroups([1500])
        os.setgid(1000)
        os.setuid(1000)
        os.write(w, b"x")
        os.close(w)
        signal.pause()  # until the parent has looked and kills it
        os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"x"
        c = read_creds(pid, 1000, 1000)
        assert c is not None and c.groups == frozenset({1500}) and c.caps == 0
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)
