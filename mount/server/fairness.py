"""Fairness between readers: small requests are not queued behind large WRITEs.

Mixed into ``Session`` (mount/server/session.py), whose readers call it with
more than one reader (docs/decisions.md 25, docs/performance.md change 24):

- ``_acquire(view)`` takes the fs lock; a reader holding a *small* request
  (``SMALL``: no file data) counts itself as waiting, so that a large WRITE in
  progress lets it in at its next chunk boundary, and requests with data wait
  while it does;
- ``_serve_locked`` is the first reader's request: while it is a large one
  the clone readers read the device too (``Session._busy``), and by default
  (CLONES_STAY) for as long as the traffic stays
  mixed -- opt-in, spinning for a
  while after each request they answer (CLONE_SPIN_NS; docs/decisions.md 36);
- ``_dispatch`` handles a request under the lock: a WRITE of more than
  ``CHUNK_BYTES`` as consecutive WRITEs (``_chunked_write``) while small
  requests have recently had to wait, everything else whole; each chunk's C
  WRITE copies its data with the lock let go (``_copy_unlock``, COPY_UNLOCKED;
  docs/decisions.md, "A large WRITE's copy outside the fs lock").

A quiet mount pays none of this (``_serve_first``): while every clone reader
is parked (not reading, not in a request: ``_parked``) the first reader keeps
the fs lock across requests (``_owned``) and handles small ones as ``readers=1``
does; it lets go of the lock only after a large request of mixed traffic, the
one moment the clone readers are woken (docs/decisions.md, "A quiet mount
with three readers").

What it uses of the session: ``_fs_lock``, ``_turn``, ``_waiting``,
``_busy``, ``_owned``, ``_parked``, ``_clones``, ``_last_small``, ``chunk_bytes``,
``_chunk_pipe``, ``_reply_fd``, ``_deferred``, ``_sink``, ``_handle``, ``_write``, ``fd``,
``stats``, ``restart``, ``debug``, ``_stores``.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
import time
from collections.abc import Sequence
from typing import Any

from mount.wire.codec import reply_error

OPCODE_WRITE = 16
_WRITE_CACHE = 1  # FUSE_WRITE_CACHE in write_flags: the kernel's write-back of its cache

# With two readers or more a WRITE larger than this is handled as consecutive WRITEs of at
# most this size, and a small request the other reader holds is served between
# them (Fairness._chunked_write; docs/performance.md, change 24). 0: never split.
CHUNK_BYTES = int(os.environ.get("SHMFS_WRITE_CHUNK", 256 << 10))  # env: A/B runs
# ... and the clone readers woken for large requests, only while the traffic is
# mixed: within this long of a small request from another process than the last
# large one's (Fairness._note), or of one that had to wait for the lock. Each extra
# chunk costs ~60-130 us end to end, a lone 1 MiB writer 25-30 % (change 24).
# SHMFS_CHUNK_WINDOW_MS=-1: always (the tests, which must not depend on timing).
_WINDOW_MS = float(os.environ.get("SHMFS_CHUNK_WINDOW_MS", "100"))
MIXED_WINDOW_NS = int(_WINDOW_MS * 1e6) if _WINDOW_MS >= 0 else None  # None: always
# The other readers read the device only while the first one handles a request
# larger than this (Fairness._serve_locked).
BIG_REQUEST = 64 << 10
# A clone reader that is up waits this long in poll(2) for a request before it looks
# at the first reader again: a timer that fired every millisecond cost a 1 MiB
# writer 28 % (each wake-up takes the GIL from the handler between its copies);
# an arrival wakes it anyway, so it notices a quiet device at the next request.
CLONE_POLL_MS = int(os.environ.get("SHMFS_CLONE_POLL_MS", "100"))
SWITCH_INTERVAL_S = float(os.environ.get("SHMFS_SWITCH_INTERVAL", "0"))
# The clone readers stay up for as long as the traffic is mixed (1, the default), not
# only while the first reader is in a large request (0: the sixth session's rule): the
# first reader's own read(2) of the next 1 MiB WRITE (~0.25 ms) is a time when a small
# request finds no reader otherwise. Idle, create+close under two streams: median
# 92-96 us / p99 1.9-2.2 ms against 97-531 / 2.8-7.7 ms with 0 (docs/benchmarks.md,
# seventh session). Windowed mounts too: a clone reader hands window requests to the C
# window engine as the first reader does (decisions 41). A/B runs
CLONES_STAY = os.environ.get("SHMFS_CLONES_STAY", "1") != "0"
# A clone reader that has just answered a request looks at the device without sleeping
# for this long (poll(0) turns) before it sleeps in poll(2), as the first reader spins
# after each of its requests: a client's requests come one after another a few us
# apart (LOOKUP, CREATE, FLUSH, RELEASE), and a clone asleep in poll(2) is woken for
# each on this VM at ~40 us (docs/performance.md, "halt-poll"), on a CPU that two
# streaming writers keep busy. Only one clone spins at a time (Session._spinning).
# Clones are up only for mixed traffic, so a quiet mount never spins here. 0 (the
# default): sleep at once -- with cpu_latency=off the spin made the tail worse in the
# runs of change 31 (docs/performance.md), and with it on nothing could be told from
# the noise of a loaded machine; opt-in for the idle run to decide. The clone loop in C
# (native/hotclone.c) runs the spin itself between the requests it answers (CC_CSPIN;
# SHMFS_CLONE_CSPIN=0: Python's spin around it); again not better under load
# (docs/performance.md, change 42).
CLONE_SPIN_NS = int(float(os.environ.get("SHMFS_CLONE_SPIN_US", "0")) * 1000)
# A chunk of a large WRITE copies its data into the arena with the fs lock let go (the
# C WRITE calls Fairness._copy_unlock / _copy_relock around its copy): small requests
# waiting for the lock are served during the copy instead of after it (docs/decisions.md,
# "A large WRITE's copy outside the fs lock"). SHMFS_COPY_UNLOCKED=0: the copy under the
# lock, as before (A/B runs).
COPY_UNLOCKED = os.environ.get("SHMFS_COPY_UNLOCKED", "1") != "0"

_IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid extlen pad
_WRITE_IN = struct.Struct("<QQIIQII")  # fh offset size write_flags lock_owner flags pad
_WRITE_DATA = _IN_HEADER.size + _WRITE_IN.size
_OUT_HEADER = struct.Struct("<IiQ")  # len error unique
_WRITE_OUT = struct.Struct("<II")  # size pad
# Requests that touch no file data: served between the chunks of a large WRITE.
# LOOKUP FORGET GETATTR READLINK SYMLINK MKNOD MKDIR UNLINK RMDIR RENAME LINK OPEN
# STATFS RELEASE SETXATTR GETXATTR LISTXATTR REMOVEXATTR FLUSH OPENDIR READDIR
# RELEASEDIR ACCESS CREATE BATCH_FORGET READDIRPLUS RENAME2 STATX
RECENT_NS = 10_000_000  # "a large request was just served": within 10 ms
_FORGETS = (2, 42)  # FORGET, BATCH_FORGET: the kernel's, nobody waits for them
SMALL = frozenset({1, 2, 3, 5, 6, 8, 9, 10, 11, 12, 13, 14, 17, 18, 21, 22, 23, 24, 25,
                    27, 28, 29, 34, 35, 42, 44, 45, 52})
_OPEN, _CREATE = 14, 35


def _small(view: memoryview) -> bool:
    """A request that may run between two chunks of a WRITE: SMALL, except an OPEN
    or CREATE with O_TRUNC. That one truncates the file (FUSE_ATOMIC_O_TRUNC) and
    the kernel does not hold the inode lock for it (fuse_open takes it only with
    the writeback cache or DAX), so between two chunks it could zero the start of a
    write(2) that tmpfs would have made whole (tests/live/test_fairness_races.py)."""
    op = view[4]
    if op not in SMALL:
        return False
    if op in (_OPEN, _CREATE) and len(view) >= 44:
        return not int.from_bytes(view[40:44], "little") & os.O_TRUNC
    return True


class _Capture:
    """The reply sink of one chunk of a large WRITE (Session._chunked_write): keeps
    the reply instead of writing it; notifications are queued as usual."""

    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out: bytes | None = None

    def reply(self, buffers: Sequence[bytes | memoryview]) -> None:
        self.out = b"".join(buffers)

    def flush(self) -> None:
        pass

    def defer(self, reply: bytes) -> None:  # not reached for WRITE; kept exact anyway
        self.out = reply

    def result(self) -> tuple[int, int]:
        """(-errno or 0, bytes written) from the captured reply."""
        if self.out is None or len(self.out) < 16:
            return errno.EIO, 0
        err = _OUT_HEADER.unpack_from(self.out, 0)[1]
        if err:
            return -err, 0
        return 0, _WRITE_OUT.unpack_from(self.out, 16)[0]


class Fairness:
    """The fairness half of ``Session`` (a mixin: the state lives in the session)."""

    _fs_lock: threading.Lock | None
    _turn: threading.Condition | None
    _waiting: int
    _chunking = False  # a chunked WRITE is in progress (only small requests in between)
    _busy: threading.Event
    _owned: bool
    _parked: set[int]
    _clones: int
    _last_small: int
    _big_pid: int
    _big_ns: int
    chunk_bytes: int
    _chunk_pipe: tuple[int, int] | None
    _reply_fd: int
    _deferred: bytes | None
    _sink: Any
    fd: int
    stats: Any
    restart: Any
    debug: bool
    _stores: dict[tuple[int, int], int]
    _hotpath: Any
    _copy_tid = 0  # the thread whose chunk may copy without the fs lock (_copy_unlock)
    _copy_saved: tuple = ()
    _copy_hooked = False

    def _handle(self, msg: memoryview) -> None:  # Session's
        raise NotImplementedError

    def _write(self, buffers: Sequence[bytes | memoryview], fd: int | None = None) -> None:
        raise NotImplementedError  # Session's

    def _acquire(self, view: memoryview) -> None:
        """Take the fs lock for the request in ``view``. A reader holding a small
        request (SMALL: no file data, see _small) counts itself as waiting first, so
        that a large WRITE in progress lets it in at its next chunk boundary."""
        lock = self._fs_lock
        assert lock is not None and self._turn is not None
        small = _small(view)
        if not self._waiting and lock.acquire(False):  # uncontended: no bookkeeping
            if small or not self._chunking:
                return
            lock.release()  # a chunked WRITE let small requests in: not this one
        turn = self._turn
        if small:
            # a small request that has to wait: large WRITEs are chunked from now on
            # for a while (_dispatch); a lone writer's own OPEN or FLUSH does not wait
            self._last_small = time.perf_counter_ns()
        else:
            # small requests first (with three readers or more); never between two
            # chunks of a WRITE, which _chunked_write holds open for small ones only
            while True:
                if self._waiting or self._chunking:
                    with turn:
                        turn.wait_for(lambda: not self._waiting and not self._chunking,
                                      timeout=0.05)
                lock.acquire()
                if not self._chunking:
                    return
                lock.release()
        with turn:
            self._waiting += 1
        try:
            lock.acquire()
        finally:
            with turn:
                self._waiting -= 1
                turn.notify_all()

    def _serve_first(self, view: memoryview, n: int) -> None:
        """The first reader's request with clone readers (the loops call it for
        every request but a small one while ``_owned``).

        While ``_owned`` the first reader holds the fs lock already, and every clone
        reader is parked in ``_busy.wait()``: a large request is handled under that
        lock; if it is one of mixed traffic the clones are woken (``_busy``) for its
        duration and the lock is let go after it, so that they can take it. Otherwise
        (some clone reader awake) the request takes the lock as ``_serve_locked``
        says, and afterwards the lock is kept if every clone has parked meanwhile.

        Why no clone reader can touch the fs while ``_owned``: a clone reader adds
        itself to ``_parked`` only after it saw ``_busy`` clear, and takes itself out
        only after ``_busy.wait()`` returned; between the two it reads nothing.
        ``_busy.wait()`` returns only once ``_busy`` is set, which only this thread
        does, and only for a request it then handles before letting go of the lock.
        So with ``_busy`` clear and all ``_clones`` in ``_parked`` (_try_own), every
        clone reader reads nothing until this thread sets ``_busy``; a clone that
        had just returned from an earlier wait looks at ``_busy`` again first."""
        if not self._owned:
            self._serve_locked(view, n)
            if CLONES_STAY and self._busy.is_set():
                self._rest()
            self._try_own()
            return
        if self._note(view, n) and self._mixed():
            self._owned = False  # from now on the lock is taken per request
            self._busy.set()
            try:
                self._dispatch(view, n)
            finally:
                self._fs_lock.release()  # type: ignore[union-attr]
                self._rest()
        else:
            self._dispatch(view, n)

    def _rest(self) -> None:
        """After a request of the first reader: the clone readers go back to sleep
        (``_busy`` cleared) -- with CLONES_STAY only once the traffic is no longer
        mixed, since the first reader's next read(2) of a 1 MiB WRITE (~0.3 ms) is
        itself a time when small requests find no reader otherwise."""
        if not CLONES_STAY or not self._mixed():
            self._busy.clear()

    def _try_own(self) -> None:
        """Keep the fs lock from now on if every clone reader is parked (_serve_first)."""
        if (len(self._parked) == self._clones and not self._busy.is_set()
                and self._fs_lock.acquire(False)):  # type: ignore[union-attr]
            self._owned = True
            self.stats.lock_kept += 1

    def _disown(self) -> None:
        """Let go of a kept fs lock (the first reader leaving its loop)."""
        if self._owned:
            self._owned = False
            self._fs_lock.release()  # type: ignore[union-attr]

    def _serve_locked(self, view: memoryview, n: int) -> None:
        """The first reader's request with two readers: under the fs lock. While it
        handles a large request the other readers read the device too (_clone_reader):
        only then, so that a lone client's requests are all read by this spinning
        thread, never by a sleeping one that has to be woken (~40 us here)."""
        big = self._note(view, n)
        if big and self._mixed():
            self._busy.set()
        self._acquire(view)
        try:
            self._dispatch(view, n)
        finally:
            self._fs_lock.release()  # type: ignore[union-attr]
            if big:
                self._rest()

    def _note(self, view: memoryview, n: int) -> bool:
        """Whether this request is large; a large one's sender is remembered, and a
        small one from another process marks the traffic as mixed (_mixed). A lone
        writer's own OPEN, FLUSH or GETATTR does not: its WRITEs stay whole and the
        clone readers asleep (each cost it: change 24)."""
        pid = int.from_bytes(view[32:36], "little")
        if n > BIG_REQUEST:
            self._big_pid = pid
            self._big_ns = time.perf_counter_ns()
            return True
        if pid != self._big_pid and view[4] in SMALL and view[4] not in _FORGETS:
            now = time.perf_counter_ns()
            if now - self._big_ns < RECENT_NS:  # a large request is (or was just) in the way
                self._last_small = now
        return False

    def _mixed(self) -> bool:
        """Small requests of other processes came within MIXED_WINDOW_NS (or had to
        wait for the lock): chunk large WRITEs, wake the clone readers for them."""
        return (MIXED_WINDOW_NS is None
                or time.perf_counter_ns() - self._last_small < MIXED_WINDOW_NS)

    def _dispatch(self, view: memoryview, n: int) -> None:
        """Handle a request (fs lock held): a large WRITE in chunks while the traffic
        is mixed (_mixed), the rest as is. With COPY_UNLOCKED a large WRITE no larger
        than a chunk goes the same way as one chunk, for its copy without the lock."""
        if (view[4] == OPCODE_WRITE and 0 < self.chunk_bytes
                and (self.chunk_bytes < n - _WRITE_DATA
                     or (COPY_UNLOCKED and n > BIG_REQUEST))
                and self._mixed()
                and self._sink is None and self.restart is None and not self.debug
                and not self._stores):
            self._chunked_write(view, n)
        else:
            self._handle(view[:n])

    def _chunked_write(self, view: memoryview, n: int) -> None:
        """A WRITE of more than chunk_bytes as consecutive WRITEs of chunk_bytes, each
        handled as a request of its own (the same handler, the same events and
        their ordering) with its reply captured; between two chunks, a small request
        that the other reader holds is served (_yield_to_small). One reply for the
        whole: the bytes written, or the first chunk's error.

        Why this keeps the semantics: each chunk is a complete write of the fs, so
        whatever runs between two chunks sees a consistent fs in which the write has
        progressed partly -- as it would with two write(2)s -- and only requests
        without file data run there (_small; any other request that finds the lock
        free between two chunks gives it back, _acquire). For the same file nothing
        else can come: the kernel holds the inode lock for the whole write(2)
        (fuse_perform_write), which excludes other writes, truncates, fallocates and
        O_APPEND writes to it -- but not an open(O_TRUNC), which is why that one is
        not small;
        a concurrent READ of the pages being written waits for their page locks in the
        kernel. A chunk is laid out in place: its 80 bytes of headers are written just
        before its data, over bytes of the previous chunk already stored. Its reply is
        caught whichever way the handler answers: through _write (the _sink) or, for
        a handler that writes to _reply_fd itself (a C engine), through a pipe that
        stands in for the device meanwhile."""
        hdr = _IN_HEADER.unpack_from(view, 0)
        fh, off, size, wflags, owner, flags, _pad = _WRITE_IN.unpack_from(view, 40)
        if size != n - _WRITE_DATA or hdr[7]:  # not the plain layout: no splitting
            self._handle(view[:n])
            return
        unique = hdr[2]
        self._chunking = True
        try:
            self._chunks(view, hdr, fh, off, size, wflags, owner, flags, unique)
        finally:
            with self._turn:  # type: ignore[union-attr]
                self._chunking = False
                self._turn.notify_all()  # type: ignore[union-attr]

    def _chunks(self, view: memoryview, hdr: tuple, fh: int, off: int, size: int,
                wflags: int, owner: int, flags: int, unique: int) -> None:
        """_chunked_write's loop: the chunks, the yields between them, one reply."""
        cap = _Capture()
        if not self._copy_hooked:
            self._copy_hooked = True
            if COPY_UNLOCKED and self._hotpath is not None:
                self._hotpath.copy_hooks((self._copy_unlock, self._copy_relock))
        if self._chunk_pipe is None:
            self._chunk_pipe = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        pipe_r, pipe_w = self._chunk_pipe
        reply_fd = self._reply_fd
        step = self.chunk_bytes
        done = 0
        chunks = 0
        error = 0
        while done < size:
            k = min(step, size - done)
            base = done  # the chunk's headers go at [done, done + 80)
            _IN_HEADER.pack_into(view, base, _WRITE_DATA + k, *hdr[1:])
            _WRITE_IN.pack_into(view, base + 40, fh, off + done, k, wflags, owner, flags, 0)
            cap.out = None
            # a handler that writes its reply itself (a C engine given _reply_fd)
            # writes it into the pipe; one that goes through _write, into cap
            self._sink = cap
            self._reply_fd = pipe_w
            self._copy_tid = threading.get_ident()
            try:
                self._handle(view[base:base + _WRITE_DATA + k])
            finally:
                self._copy_tid = 0
                self._sink = None
                self._reply_fd = reply_fd
            if cap.out is None:
                try:
                    cap.out = os.read(pipe_r, 4096)
                except BlockingIOError:
                    pass  # no reply at all: result() says EIO
            chunks += 1
            err, written = cap.result()
            if err:
                if done == 0 or wflags & _WRITE_CACHE:
                    error = err  # a write-back is never short (ShmFs.write)
                break
            done += written
            if written < k:
                break
            if done < size and self._waiting:
                self._yield_to_small()
        entry = self.stats.requests.get(OPCODE_WRITE)
        if entry is not None and chunks > 1:
            entry[0] -= chunks - 1  # one request, as the kernel sent it
        self.stats.write_chunks += chunks
        if error:
            self._write([reply_error(unique, error)])
        else:
            self._write([_OUT_HEADER.pack(_OUT_HEADER.size + _WRITE_OUT.size, 0, unique),
                         _WRITE_OUT.pack(done, 0)])

    def _copy_unlock(self) -> bool:
        """Called by the C WRITE (native/hotpath.c do_write, GIL held, fs lock held)
        once a large WRITE's frames are allocated and indexed, just before it copies
        the data into them: True if it let go of the fs lock for the copy, which it
        does only for a chunk of ``_chunked_write`` on this thread (``_copy_tid``).
        ``_copy_relock`` takes the lock back after the copy, before anything else
        changes; the request's reply routing (``_sink``, ``_reply_fd``, ``_deferred``)
        is set aside meanwhile, as ``_yield_to_small`` does, so that the small
        request another reader answers in the gap replies to its own fd.

        Why nothing can free, reuse or read the frames being copied into meanwhile
        (docs/decisions.md, "A large WRITE's copy outside the fs lock"): the lock is
        let go with ``_chunking`` set, so only requests without file data take it
        (``_acquire``, ``_small``): no READ, WRITE, SETATTR (truncate), FALLOCATE
        (punch), IOCTL (window remap, MADV_REMOVE), COPY_FILE_RANGE (a shared frame
        broken), LSEEK or FSYNC, and no OPEN/CREATE with O_TRUNC. Of what may run,
        nothing frees a frame of a file with an open handle: UNLINK/RENAME drop a name
        only, an eviction (FORGET, RELEASE, the first reader's ``_reap``) needs the
        inode without handles, and this WRITE's handle is held by the kernel until it
        is answered; frames freed for *other* files are other frames, and the arena
        grows by new mappings, never moving one. The bytes become readable only
        through a READ (excluded until the whole write(2) is answered) -- the kernel
        holds these pages locked and its i_size unchanged meanwhile. One slot
        (``_copy_saved``) is enough: no other WRITE takes the lock while ``_chunking``,
        so one copy at most is out at a time."""
        if self._copy_tid != threading.get_ident():
            return False
        self._copy_saved = (self._sink, self._reply_fd, self._deferred)
        self._sink = None
        self._reply_fd = self.fd
        self._fs_lock.release()  # type: ignore[union-attr]
        return True

    def _copy_relock(self) -> None:
        """After an unlocked copy (_copy_unlock): the fs lock back, the routing of
        this request's reply restored."""
        self._fs_lock.acquire()  # type: ignore[union-attr]
        self._sink, self._reply_fd, self._deferred = self._copy_saved
        self._copy_saved = ()

    def _yield_to_small(self) -> None:
        """Between two chunks: let the reader waiting with a small request take the fs
        lock, wait until it has it, then queue for the lock again (it is free once
        that request is answered). The reply fd and deferred reply of our own request
        are kept across."""
        lock, turn = self._fs_lock, self._turn
        assert lock is not None and turn is not None
        reply_fd, deferred = self._reply_fd, self._deferred
        self._reply_fd = self.fd  # what a reader finds when it takes the lock
        self.stats.yields += 1
        lock.release()
        try:
            with turn:
                turn.wait_for(lambda: not self._waiting, timeout=0.05)
        finally:
            lock.acquire()
            self._reply_fd, self._deferred = reply_fd, deferred
