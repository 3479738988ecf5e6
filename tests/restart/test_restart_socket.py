"""The restart socket is named after the connection number, which the kernel hands
out again at once (the lowest free one); the supervisor of the unmounted mount that
had it holds the name a moment longer (20-335 ms seen in a full-suite run) while
it reaps its child. A new mount's supervisor must wait that moment out instead of
serving without a restart socket ("not a restartable mount" to ``shmfs restart``:
test_kill_requests failed so in a full-suite run). Fails on the old code (None)."""

from __future__ import annotations

import os
import socket
import threading

from mount.server import supervisor


def _holder(dev: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.bind(supervisor.socket_name(dev))
    s.listen(1)
    return s


def _free_dev() -> str:
    """A device name no supervisor uses (no mount has minor 2^20 - pid)."""
    return f"0:{(1 << 20) - os.getpid()}"


def test_a_name_held_by_the_predecessor_is_taken_once_it_lets_go() -> None:
    dev = _free_dev()
    old = _holder(dev)
    let_go = threading.Timer(0.2, old.close)  # the predecessor reaps its child, leaves
    let_go.start()
    try:
        s = supervisor._bind_listener(dev)
        assert s is not None
        try:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            c.connect(supervisor.socket_name(dev))  # ours now
            conn, _ = s.accept()
            conn.close()
            c.close()
        finally:
            s.close()
    finally:
        let_go.join()
        old.close()


def test_a_name_held_for_good_is_given_up_after_the_wait() -> None:
    dev = _free_dev()
    old = _holder(dev)
    try:
        assert supervisor._bind_listener(dev, wait=0.05) is None
    finally:
        old.close()
