"""Where a reply goes: a clone reader's deferred reply is written to its own device
fd even while another reader's large WRITE has a chunk capture installed as the
session's sink (the seventh session's window hang: the deferred REMAP reply,
written outside the fs lock, was swallowed by the chunk's capture and the remapping
process waited forever; tests/windows/test_window_mixed.py is the live case)."""

from __future__ import annotations

import socket
from pathlib import Path

from fsimpl import FsOptions, ShmFs
from mount.server.fairness import _Capture
from mount.server.ops import Operations, OpsConfig
from mount.server.session import Session


def _session(fd: int) -> Session:
    fs = ShmFs(FsOptions(size_bytes=16 << 20, nr_inodes=100))
    return Session(fd, Operations(fs, OpsConfig()), Path("/nonexistent-shmfs-routing"))


def test_explicit_fd_reply_bypasses_a_chunk_capture() -> None:
    main_a, main_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    clone_a, clone_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with main_a, main_b, clone_a, clone_b:
        s = _session(main_a.fileno())
        cap = _Capture()
        s._sink = cap  # the first reader is inside a chunk of a large WRITE
        s._write([b"deferred ", b"reply"], clone_a.fileno())  # the clone, outside the lock
        clone_b.settimeout(5)
        assert clone_b.recv(64) == b"deferred reply"
        assert cap.out is None  # the chunk's capture saw nothing of it
        s._write([b"chunk reply"])  # the chunk's own handler: into the capture
        assert cap.out == b"chunk reply"
        s._sink = None
        s._write([b"plain"])  # no sink: the request's reply fd (the main device)
        main_b.settimeout(5)
        assert main_b.recv(64) == b"plain"
        assert s.stats.write_errors == 0


def test_a_reply_written_during_an_unlocked_copy_is_not_the_chunks() -> None:
    """holcopy: while a chunk's copy runs with the fs lock let go (_copy_unlock), the
    small request another reader answers in the gap replies to the main device, not
    into the chunk's capture or pipe; _copy_relock gives the chunk its routing back."""
    import threading

    main_a, main_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with main_a, main_b:
        s = _session(main_a.fileno())
        s._fs_lock = threading.Lock()
        s._fs_lock.acquire()  # the chunking reader holds it
        cap = _Capture()
        s._sink, s._reply_fd, s._deferred = cap, 12345, b"kept"
        assert not s._copy_unlock()  # not a chunk of this thread: the lock stays
        assert s._fs_lock.locked() and s._sink is cap
        s._copy_tid = threading.get_ident()
        assert s._copy_unlock()
        assert not s._fs_lock.locked()  # let go for the copy
        with s._fs_lock:  # another reader's small request, in the gap
            s._write([b"small reply"])
        main_b.settimeout(5)
        assert main_b.recv(64) == b"small reply"
        assert cap.out is None
        s._copy_relock()
        assert s._fs_lock.locked()
        assert (s._sink, s._reply_fd, s._deferred) == (cap, 12345, b"kept")
        s._fs_lock.release()
