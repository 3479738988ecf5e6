"""A clone reader's reply that must follow queued notifications waits for the window
engine's batches queued before it, not only for Python's (docs/decisions.md, "Clone
readers hand window requests to the engine"): with Python's queue empty and the
engine's not, the reply used to go out at once, ahead of the engine's invalidations.

Over socket pairs standing in for the device and a clone fd, with a stand-in engine
that has batches queued: the clone reader's GETATTR reply is written only after
``wait_written`` was called with the engine's sequence as of the request, and at
that moment nothing has been written yet."""

from __future__ import annotations

import os
import select
import socket
import threading
from pathlib import Path

from fsimpl import FsOptions, ShmFs
from mount.server.ops import Operations, OpsConfig
from mount.server.session import Session
from mount.wire import protocol as P


class _QueuedEngine:
    """The engine's face the session uses, with ``seq`` batches queued (never
    written) and nothing it would answer itself."""

    def __init__(self, seq: int, clone_peer: socket.socket) -> None:
        self.seq = seq
        self.peer = clone_peer
        self.waits: list[tuple[int, bool]] = []  # (seq asked, a reply already there)
        self.done = threading.Event()
        self.received = False  # the test got the reply (set before the reader leaves)

    def pending(self) -> int:
        return 1

    def queued_seq(self) -> int:
        return self.seq

    def wait_written(self, seq: int) -> None:
        # a reply there already, or taken by the test already
        early = self.received or bool(select.select([self.peer], [], [], 0)[0])
        self.waits.append((seq, early))
        if len(self.waits) == 1:
            self.done.set()

    def remap(self, msg: memoryview) -> None:
        return None

    def store_queued(self, ino: int, page: int) -> bool:
        return False


def test_clone_reply_waits_for_the_engines_earlier_batches() -> None:
    main_a, main_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    clone_a, clone_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with main_a, main_b, clone_a, clone_b:
        fs = ShmFs(FsOptions(size_bytes=16 << 20, nr_inodes=100))
        s = Session(main_a.fileno(), Operations(fs, OpsConfig()),
                    Path("/nonexistent-shmfs-clone-deferred"))
        eng = _QueuedEngine(7, clone_b)
        s._winfast = eng
        # the clone reader's setting (Session._start_clone_reader), up (mixed traffic)
        s._fs_lock = threading.Lock()
        s._turn = threading.Condition(threading.Lock())
        s._clones = 1
        s._busy.set()
        fd = os.dup(clone_a.fileno())  # the reader closes its fd on the way out
        t = threading.Thread(target=s._clone_reader, args=(fd,), daemon=True)
        t.start()
        try:
            body = P.GETATTR_IN.pack(0, 0, 0)
            clone_b.send(P.IN_HEADER.pack(40 + len(body), 3, 77, 1, 0, 0, 1, 0, 0) + body)
            clone_b.settimeout(10)
            reply = clone_b.recv(4096)
            eng.received = True
        finally:
            s._done = True
            s._busy.set()
            t.join(10)
        assert not t.is_alive()
        assert P.OUT_HEADER.unpack_from(reply)[1:] == (0, 77)  # the GETATTR, answered
        assert eng.done.is_set()
        # first the deferred reply's wait (the sequence read under the lock), with
        # nothing written before it; then the reader's own on the way out
        assert eng.waits[0] == (7, False), eng.waits
        assert s.stats.second_reader == 1
        # and nothing on the main device fd: the reply is the clone's
        assert select.select([main_b], [], [], 0)[0] == []
