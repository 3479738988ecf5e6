"""The FUSE session: a reader thread answers /dev/fuse; trio watches signals.

Every request is handled synchronously by ``Operations.handle`` (all state is
in memory, so there is nothing to wait for) and its reply is written before the
next request is read. The reader spins briefly on the non-blocking device after
each request and then sleeps in poll(2), so a busy stream of requests costs one
syscall each way and an idle one no CPU (docs/decisions.md, docs/performance.md).
While nothing else needs Python, the first reader's loop runs in C
(native/hotloop.c, ``Engine.serve``): it reads, spins and answers the C hot path's
requests with the GIL released between them, and returns every other request to
this loop (``_cloop_ok``; docs/decisions.md, "The first reader's loop in C").

Kernel notifications (NOTIFY_INVAL_INODE / INVAL_ENTRY) that a handler queued in
fsimpl are written by a dedicated writer thread, never by the reader: an
inval_inode waits for page locks that may belong to a READ still queued in
/dev/fuse, which only the reader can answer, so writing it inline could
deadlock. The hand-off is a plain queue: an earlier version went through
trio.from_thread and trio worker threads, and under concurrent window
write-backs the reader and the writer ended up waiting on each other inside
trio's entry queue (tests/windows/test_write_deadlock.py).

Ordering, so that a change is visible everywhere once its syscall returns:
the reply of a request that produced notifications is written *after* them
(ioctls, truncate, punch), and any other reply waits behind notifications
still queued (an fsync returns only when every earlier invalidation reached
the kernel). Two kinds of reply never wait: READ (an invalidation may wait on
the page lock that READ holds) and WRITE (its pages are under writeback or
locked until the reply, and two WRITEs through windows sharing object pages
would wait on each other). A WRITE's invalidations follow its reply; those of
its own inode matter when the daemon refused bytes the kernel already cached.
docs/windows.md states the guarantees.

Fairness (docs/decisions.md 25): by default three threads read the device,
the others on cloned fds and only while the first is in a large request;
every request is handled under one lock, and a large WRITE is handled in
chunks between which a small request (no file data) that another reader holds
is answered, so creates and stats do not queue behind streaming writers.

The session ends when the device says ENODEV (unmounted, by ``umount``,
``fusermount3 -u`` or our own signal handler) or after DESTROY.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import logging
import os
import queue
import select
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from mount.mounting import kernel as mounting
from mount.server import devabort, hotpath, reqtrace, winfast
from mount.server.cpulatency import RELEASE_AFTER_S, CpuLatencyHold
from mount.server.fairness import (
    BIG_REQUEST,
    CHUNK_BYTES,
    CLONE_POLL_MS,
    CLONE_SPIN_NS,
    CLONES_STAY,
    MIXED_WINDOW_NS,
    RECENT_NS,
    SWITCH_INTERVAL_S,
    Fairness,
)
from mount.server.ops import Operations
from mount.server.restart import RestartHooks
from mount.wire.codec import CodecError, encode_notify, parse_request, reply_error

log = logging.getLogger("shmfs.session")

# A request is at most max_write (1 MiB) plus its headers; the kernel refuses
# reads into buffers smaller than that.
BUFFER_SIZE = (1 << 20) + 64 * 1024
# Fresh arena memory kept populated ahead of large writes by a background thread
# (vmcore.arena.Arena.start_populate_ahead): 1 MiB writes 0.8 -> 1.2 GB/s on a quiet
# machine, no gain when both cores are busy (docs/performance.md).
# After each request the reader polls the device for this long before it sleeps:
# on this VM (cpuidle haltpoll with guest_halt_poll_ns=0) a sleeping CPU costs
# ~40 us more per round trip (docs/performance.md). 0 turns it off.
SPIN_NS = int(os.environ.get("SHMFS_SPIN_US", "50")) * 1000  # env: A/B runs
# SHMFS_PY_SPIN=1: the readers' spins in Python even with the C engine (A/B runs of
# Session._spin_fn: a Python spin holds the GIL between its turns)
PY_SPIN = os.environ.get("SHMFS_PY_SPIN", "0") != "0"
# The first reader's loop in C (native/hotloop.c, Engine.serve): reads, spins and
# answers the hot path's requests without returning to Python while nothing else is
# to be done (docs/decisions.md, "The first reader's loop in C"). 0: the Python loop.
CLOOP = os.environ.get("SHMFS_CLOOP", "1") != "0"  # env: A/B runs
# ... and hands window IOCTLs and window READ/WRITEs straight to the window engine's C
# entry points (docs/decisions.md, "Window IOCTLs, READs and WRITEs in the C loop").
# 0: those return to Python, as before (A/B runs).
CLOOP_IOCTL = os.environ.get("SHMFS_CLOOP_IOCTL", "1") != "0"  # env: A/B runs
# The clone readers' loop in C (native/hotclone.c, Engine.serve_clone): a clone reader
# polls, reads, takes the fs lock and answers the hot path's small requests in C
# (docs/decisions.md, "Clone readers' small requests in C"). 0: in Python (A/B runs).
CLONE_CLOOP = os.environ.get("SHMFS_CLONE_CLOOP", "1") != "0"  # env: A/B runs
# the clone spin (SHMFS_CLONE_SPIN_US) inside the clone loop in C rather than in Python
# around it (docs/decisions.md, "The clone spin in the clone loop"); 0: Python's, A/B
CLONE_CSPIN = os.environ.get("SHMFS_CLONE_CSPIN", "1") != "0"
POPULATE_AHEAD_BYTES = 8 << 20  # 0 turns it off; at most this much RSS holds no data
# Threads reading /dev/fuse: the second one reads a cloned device fd
# (FUSE_DEV_IOC_CLONE), so a small request is picked up while the first thread
# waits for the kernel's copy of a large WRITE (docs/performance.md, change 13).
READERS = 1  # a Session made directly (tests over a socket)
# -o readers unset: enough for two streaming writers and a free reader (change 24)
DEFAULT_READERS = 3
FUSE_DEV_IOC_CLONE = 0x8004E500  # _IOR(229, 0, uint32_t)
# Cyclic GC while serving: every gen0 collection walks the young objects, and
# with the default threshold (700 allocations) one ran every few dozen requests:
# 4 KiB appends 27 -> 21.6 us, creates 27 -> 25 us in process at 5,000
# (scripts/request_probe.py), for a gen0 pause of ~0.2 ms (docs/performance.md).
GC_THRESHOLD0 = 5000

OPCODE_READ = 15
OPCODE_WRITE = 16
OPCODE_INIT = 26
OPCODE_DESTROY = 38
OPCODE_IOCTL = 39
OPCODE_FSYNC = 20  # answered by the window engine once it exists (native/winfsync.c)
_UNORDERED = (OPCODE_READ, OPCODE_WRITE)  # replies that never wait for notifications
_NATIVE_IO = (OPCODE_READ, OPCODE_WRITE)  # window READ/WRITE the C engine may answer


def _read_request(fd: int, buf: bytearray) -> int | None:
    """Read one request into buf: its length; None to read again (interrupted, or
    the request was aborted before we got it); -1 once unmounted (ENODEV), or once
    the connection was aborted under the read (ECONNABORTED: an unmount racing it,
    logged by devabort). BlockingIOError passes through for the callers that poll."""
    try:
        return os.readv(fd, [buf])
    except InterruptedError:
        return None
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        if e.errno == errno.ENODEV:
            return -1
        if e.errno == errno.ECONNABORTED:
            return devabort.aborted(fd)
        raise


@dataclass(slots=True)
class _Store:
    """A queued NOTIFY_STORE of window page ``key`` = (ino, page): written only if still
    current (``Session._stores[key] == gen``), i.e. no READ or write(2) of that page
    was answered since it was queued (the kernel then holds newer data)."""

    key: tuple[int, int]
    gen: int
    msg: bytes


@dataclass(slots=True)
class SessionStats:
    """Requests by opcode with their total service time (for ``shmfs stat``)."""

    requests: dict[int, list[int]] = field(default_factory=dict)  # opcode -> [count, ns]
    notifications: int = 0
    stores_skipped: int = 0
    codec_errors: int = 0
    write_errors: int = 0
    second_reader: int = 0  # requests read from the cloned fd (readers >= 2)
    write_chunks: int = 0  # chunks of large WRITEs handled in pieces (readers >= 2)
    yields: int = 0  # times a large WRITE let a small request in between two chunks
    lock_kept: int = 0  # times the first reader kept the fs lock (all clones parked)
    clone_spins: int = 0  # a clone reader looked at its fd without sleeping (CLONE_SPIN_NS)
    clone_spin_hits: int = 0  # ... and found a request there
    # window requests read by a clone reader and answered by the C window engine, by
    # opcode (IOCTL, READ, WRITE): docs/decisions.md, "Clone readers hand window requests
    # to the engine"
    clone_window: dict[int, int] = field(default_factory=dict)


class Session(Fairness):
    """Serves one mounted /dev/fuse channel until it is unmounted."""

    def __init__(
        self,
        fd: int,
        ops: Operations,
        mountpoint: Path,
        *,
        on_ready: Callable[[], None] | None = None,
        debug: bool = False,
        populate_ahead: int = POPULATE_AHEAD_BYTES,
        spin_ns: int = SPIN_NS,
        cpu_latency: CpuLatencyHold | None = None,
        readers: int = READERS,
        uring: bool = False,
        persist: object | None = None,
        recovered: object | None = None,
        refuse: Callable[[str], None] | None = None,
    ) -> None:
        self.fd = fd
        self.ops = ops
        self.fs = ops.fs
        self.mountpoint = mountpoint
        self.on_ready = on_ready
        self.debug = debug
        self.populate_ahead = populate_ahead
        self.spin_ns = spin_ns
        # held while requests stream in (mount/server/cpulatency.py); disabled by default here,
        # the CLI passes the -o cpu_latency= choice
        self.cpu_latency = cpu_latency if cpu_latency is not None else CpuLatencyHold(None)
        self.stats = SessionStats()
        self._buf = bytearray(BUFFER_SIZE)
        self._view = memoryview(self._buf)
        self._done = False
        self._notify_q: queue.SimpleQueue[list | None] = queue.SimpleQueue()
        self._signals = 0
        self._pending = 0  # notification batches queued and not yet written
        self._pending_lock = threading.Condition()
        self._queued_seq = self._written_seq = 0  # batches handed to / done by the writer
        # readers > 1: every request is handled (and answered) under _fs_lock; only
        # the reads of the device run in parallel (_clone_reader)
        if readers <= 0:  # auto (-o readers unset): a clone reader wherever it can serve
            readers = 1 if (uring or persist is not None) else DEFAULT_READERS
        self.readers = readers
        self._readers_serving = 1
        self._fs_lock: threading.Lock | None = None
        # where the reply of the request being handled goes, and (clone reader) a reply
        # kept back until queued notifications are written; plain attributes, set
        # under _fs_lock (a threading.local read cost ~1 us per request)
        self._reply_fd = fd
        self._deferred: bytes | None = None
        # readers >= 2, fairness (_serve_locked): readers waiting for _fs_lock with a small
        # request, whom a large WRITE lets in between its chunks; _turn guards the count
        self._waiting = 0
        self._turn: threading.Condition | None = None
        self._busy = threading.Event()  # the first reader is in a large request
        # a quiet mount (fairness.py, _serve_first): the first reader keeps _fs_lock
        # across requests while every clone reader is parked (in _parked)
        self._owned = False
        self._parked: set[int] = set()
        self._clones = 0
        self._spinning = 0  # the clone reader spinning on its fd (CLONE_SPIN_NS), or 0
        # where a chunk's reply goes when its handler writes to _reply_fd itself
        self._chunk_pipe: tuple[int, int] | None = None
        self.chunk_bytes = CHUNK_BYTES
        self._last_small = -(1 << 62)  # when the traffic was last seen mixed (fairness.py)
        self._big_pid = 0  # the sender of the last large request, and when it came
        self._big_ns = -(1 << 62)
        # NOTIFY_STORE messages queued and not yet written: (ino, page) -> generation.
        # Read by fsimpl (store_queued) to route write-backs; the reader cancels an
        # entry when it answers a READ or a write(2) of the page first.
        self._stores: dict[tuple[int, int], int] = {}
        self._store_gen = 0
        self.fs.store_queued = self._store_queued
        # -o uring (mount/server/uring_fuse.py): requests from io_uring entries; the
        # ring's loop replaces _blocking_loop and sets these hooks. _sink is the ring
        # while one of its requests is handled (its reply goes there: reply, defer, flush)
        self.uring = uring
        self._sink: Any = None
        self._on_written: Callable[[], None] | None = None  # after each notifier batch
        self.uring_statistics: Callable[[], dict[str, object]] | None = None
        # the C fast path of window REMAPs (mount/server/winfast.py), made at the first
        # IOCTL; False: not available, or not allowed: --debug (every request is
        # logged), uring (replies go to ring entries, the engine writes /dev/fuse) and
        # restartable (every REMAP is journalled before its reply, which the engine's
        # writer thread would send first) -- everything goes the Python way
        self._winfast: Any = False if (debug or uring or persist is not None) else None
        # the C hot path of READ/WRITE/GETATTR/LOOKUP (mount/server/hotpath.py); None:
        # not available, or not allowed: --debug (every request is logged), uring
        # (replies go to ring entries) and restartable (each request is journalled
        # before its reply leaves) -- docs/decisions.md, "The regular-file hot path in C"
        self._hotpath: Any = None if (debug or uring or persist is not None) else (
            hotpath.engine(self.fs, ops.config.attr_timeout, ops.config.entry_timeout,
                           ops.generation, ops.config.negative_timeout, ops._errors,
                           ops.config.keep_cache))
        self._winfast_writes = winfast.writes_enabled()  # window WRITEs in C too
        self._clone_cloop = CLONE_CLOOP  # the clone readers' loop in C (tests set it)
        self._clone_cspin = CLONE_CSPIN  # ... and the clone spin inside it (tests set it)
        # the C loop offered the request being returned to the window engine, which
        # declined it (nothing changed): _handle does not offer it again
        self._offered = False
        # hook: the STATS ioctl (mount/winapi/abi.py) reports the session's counters too
        ops.session_statistics = self.statistics  # type: ignore[attr-defined]
        # -o restartable (mount/server/restart.py): the journal hooks around every request,
        # the recovered state of a restarted server, the refusal of a kernel without resend
        self.restart = None if persist is None else RestartHooks(self, persist, recovered,
                                                                 refuse)
        self.refused = False
        # SHMFS_REQTRACE=FILE: a timeline of every request (mount/server/reqtrace.py)
        self._trace = None if uring else reqtrace.RequestTrace.from_env()
        if self._trace is not None:
            self._handle = self._trace.wrap(self._handle)  # type: ignore[method-assign]

    async def serve(self) -> None:
        """Run until the filesystem is unmounted; handle SIGINT/SIGTERM by unmounting."""
        self._start_populate_ahead()
        # what exists now (modules, numpy, the root) is never garbage: keep it out
        # of every full collection; then collect young objects less often
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD0, *gc.get_threshold()[1:])
        self._start_clone_reader()
        writer = threading.Thread(target=self._notifier, name="shmfs-notify", daemon=True)
        writer.start()
        if self.restart is not None:
            self.restart.resume()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._signal_watcher, nursery.cancel_scope)
                try:
                    await trio.to_thread.run_sync(self._request_loop, abandon_on_cancel=True)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._notify_q.put(None)
            await trio.to_thread.run_sync(writer.join, 5.0)
            if self._winfast:
                await trio.to_thread.run_sync(self._winfast.close)
            if self._trace is not None:
                self._trace.close()
            for pfd in self._chunk_pipe or ():
                os.close(pfd)
        log.info("session for %s ended; %s", self.mountpoint, self.statistics())

    def _request_loop(self) -> None:
        """The /dev/fuse loop, or with ``uring`` the ring's (which runs INIT first
        and reports ready once the ring serves)."""
        if not self.uring:
            self._blocking_loop()
            return
        from mount.server import uring_fuse

        ready, self.on_ready = self.on_ready, None
        uring_fuse.serve(self, ready)

    def _start_populate_ahead(self) -> None:
        """Let the arena populate fresh memory ahead of large writes and keep a
        reserve of frames for appends (when the fs has one)."""
        arena = getattr(getattr(self.fs, "_backing", None), "arena", None)
        start = getattr(arena, "start_populate_ahead", None)
        if start is not None and self.populate_ahead > 0:
            start(self.populate_ahead)
        # alloc1 takes frames in batches, which the C WRITE pops (docs/performance.md
        # change 30; SHMFS_RESERVE=0 in the environment: off, for A/B runs)
        reserve = getattr(arena, "set_reserve", None)
        if reserve is not None:
            reserve()

    def _blocking_loop(self) -> None:
        """The request loop in a worker thread, blocking in read(2) on the device.

        Requests of one client arrive strictly one after another (LOOKUP, then
        CREATE, then RELEASE ...), so the daemon goes idle between nearly every
        pair. Parking in trio's epoll costs three extra syscalls and a pass of
        the scheduler each time; a blocking read costs none (docs/performance.md).
        """
        fd, buf, view = self.fd, self._buf, self._view
        spin_ns = self.spin_ns
        if spin_ns <= 0:
            self._sleeping_loop()
            return
        # Evictions FORGET left for later (fsimpl reap): one at a time whenever the
        # device is empty, i.e. in the gaps while clients work on our replies.
        pending = getattr(self.fs, "evict_later", None)
        if pending is not None and (self.restart is None or self.restart.can_reap):
            self.fs.defer_evictions = True
        else:
            pending = None
        # Spin, then sleep: the device is non-blocking, EAGAIN within spin_ns of
        # the last request retries at once, later it waits in poll(2). The CPU
        # latency request is engaged by the first request of a burst and released
        # after RELEASE_AFTER_S without one.
        os.set_blocking(fd, False)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poll = poller.poll
        clock = time.perf_counter_ns
        hold = self.cpu_latency
        release_ms = RELEASE_AFTER_S * 1000
        lock = self._fs_lock
        idle_ms = None if lock is None else release_ms
        trace = self._trace
        # the loop in C (_cloop_ok says when it may run; it stands in for the read, the
        # spin and _handle of the hot path's requests, and returns everything else)
        cloop = (self._hotpath.serve if CLOOP and self._hotpath is not None and trace is None
                 else None)
        requests = self.stats.requests
        spin = self._spin_fn(poll, clock)
        last = clock()
        try:
            while not self._done:
                if trace is not None:
                    trace.read_start()
                try:
                    if cloop is not None and self._cloop_ok(pending, last):
                        # the window engine, once made (_native), takes its requests in C
                        win = ((self._winfast or None, self._winfast_writes, self.stats)
                               if CLOOP_IOCTL else ())
                        try:
                            n, last, *extra = cloop(fd, buf, last, spin_ns, pending,
                                                    requests, *win)
                        except ConnectionAbortedError:  # the C loop's read: as above
                            n, extra = devabort.aborted(fd, self.mountpoint), []
                        if n == 0:  # nothing read, and Python has something to do
                            raise BlockingIOError
                        if extra:
                            if n == -2:  # an engine failed: (exc, which path)
                                self._cloop_failed(view, *extra)
                                last = clock()
                                continue
                            if n == -3:  # a window READ/WRITE's reply was not written
                                self._write_failed(OSError(extra[0], os.strerror(extra[0])))
                                continue
                            self._offered = True  # declined by the window engine already
                    else:
                        n = _read_request(fd, buf)
                except BlockingIOError:
                    if pending:  # nothing queued right now: one eviction, then look again
                        if lock is None or self._owned:
                            self._reap(1)
                        else:
                            with lock:
                                self._reap(1)
                        continue
                    # a clone spinning already (mixed traffic, CLONE_SPIN_NS): sleep
                    # now rather than keep the other CPU of two spinning too
                    if clock() - last >= spin_ns or self._spinning:
                        if hold.engaged and not poller.poll(release_ms):
                            # the other readers are idle: parked, or not in a request
                            if lock is None or self._owned or not lock.locked():
                                hold.release()
                        # with a second reader, which engages the hold but has no
                        # timer, wake up every release_ms to release it when quiet
                        if not hold.engaged and not poller.poll(idle_ms):
                            continue  # timed out: look at the hold again, no spin
                        last = clock()
                        continue
                    # spin on poll(0) until a request is there: ~0.5 us a turn, where a
                    # failed readv costs ~1.8 (a BlockingIOError and its strerror), and
                    # a request arriving mid-turn waits out the rest of the turn; in C
                    # with the GIL released where the engine exists (the clone readers
                    # of mixed traffic need the GIL meanwhile: _spin_fn)
                    spin(fd, last + spin_ns - clock())
                    continue
                if n is None:
                    continue
                if n < 0:
                    return
                if trace is not None:
                    trace.read_done()
                if not hold.engaged:
                    hold.engage()
                if lock is None:
                    self._handle(view[:n])
                elif self._owned and n <= BIG_REQUEST:
                    # a quiet mount: the lock is ours already, no bookkeeping but
                    # _note's within RECENT_NS of a large request (``last`` is
                    # at most now, so this errs towards calling it)
                    if last - self._big_ns < RECENT_NS:
                        self._note(view, n)
                    self._handle(view[:n])
                else:
                    self._serve_first(view, n)
                last = clock()
        finally:
            self._disown()
            self._busy.set()  # the other readers see ENODEV (or _done) and leave
            hold.close()

    def _cloop_ok(self, pending: Any, last: int) -> bool:
        """Whether the C loop (Engine.serve) may read the next requests: only where the
        Python loop would hand each hot request straight to ``_handle`` and ``_handle``
        straight to the engine with ``ordered`` true -- no notification or NOTIFY_STORE
        queued (only this thread queues them), the fs lock not needed per request (one
        reader, or kept while every clone is parked) and no ``_note`` due (no large
        request within RECENT_NS), the CPU latency hold engaged (or unavailable), no
        window batch pending in the winfast engine unless the loop takes window
        requests too (CLOOP_IOCTL: it applies _hot's rule per request)
        (docs/decisions.md, "The first reader's loop in C", "Window IOCTLs, READs and
        WRITEs in the C loop"). Evictions waiting in ``pending`` do not keep it out:
        it reaps one on each empty read as this loop does, in C when Engine.reap takes
        it, else it returns (0, last) and this loop reaps ("An unlink's eviction
        reaped in the C loop")."""
        del pending  # see above: the C loop's own business
        return (not self._pending and not self._stores
                and (self._fs_lock is None
                     or (self._owned and last - self._big_ns >= RECENT_NS))
                and (self.cpu_latency.engaged or not self.cpu_latency.available)
                # with CLOOP_IOCTL the loop applies _hot's eng.pending() rule itself
                and (CLOOP_IOCTL or not self._native_pending()))

    def _cloop_failed(self, view: memoryview, exc: BaseException,
                      what: str = "regular-file hot path") -> None:
        """An engine failed in the C loop after it began changing state: logged and
        answered EIO, as _native_answer and _native do."""
        log.error("%s failed", what, exc_info=exc)
        self._write([reply_error(int.from_bytes(view[8:16], "little"), errno.EIO)])

    def _reap(self, limit: int | None) -> None:
        """Run evictions left for later; their notifications (if any) go out as
        every other handler's do. Restartable: journalled first (persist.reap)."""
        reap = self.fs.reap if self.restart is None else self.restart.persist.reap
        if reap(limit):
            events = self.fs.drain_events()
            if events:
                self.stats.notifications += len(events)
                self._queue_notify([self._encode(ev) for ev in events])

    def _sleeping_loop(self) -> None:
        """The request loop without spinning: a blocking read(2) on the device."""
        fd, buf, view = self.fd, self._buf, self._view
        os.set_blocking(fd, True)
        try:
            while not self._done:
                n = _read_request(fd, buf)
                if n is None:
                    continue
                if n < 0:
                    return
                if self._fs_lock is None:
                    self._handle(view[:n])
                else:
                    self._serve_first(view, n)
        finally:
            self._disown()
            self._busy.set()  # the other readers see ENODEV (or _done) and leave

    def _handle(self, msg: memoryview) -> None:
        t0 = time.perf_counter_ns()
        if self._offered:  # the C loop's window engine declined it: not offered again
            self._offered = False
        elif (len(msg) > 40 and self._winfast is not False and (
                ((msg[4] == OPCODE_IOCTL or (msg[4] == OPCODE_FSYNC and self._winfast
                                              and self._reply_fd == self.fd))
                 and self._native(msg, t0))
                or (msg[4] in _NATIVE_IO and self._winfast and self._winfast_writes
                    and self._native_io(msg, t0)))):
            return
        hp = self._hotpath
        if hp is not None and not self._stores and self._hot(hp, msg, t0):
            return
        restart = self.restart
        if restart is not None:
            if restart.before(msg):  # answered from the journal (a resent request)
                return
        # GETATTR / LOOKUP / FORGET / UNLINK / RELEASE / CREATE / READ / WRITE are
        # answered straight from the bytes (the same replies, ops.handle_fast);
        # --debug logs every request, and a READ or WRITE must cancel queued
        # NOTIFY_STOREs, the session's or the C engine's (_cancel_stores): those take
        # the generic path
        fast = (None if self.debug or self._stores or self._native_pending()
                else self.ops.handle_fast(msg))
        if fast is not None:
            opcode, out = fast
            if restart is not None:  # the journal record, before any reply leaves
                out = restart.after(opcode, out)
            events = self.fs.drain_events()
            if not events and (out is None or opcode in _UNORDERED or not self._pending):
                # the common case, inline: no notifications to order, the reply goes
                # now (what the general code below does for it, with fewer branches);
                # through _write, the one place a reply leaves (other transports hook it)
                if out is not None:
                    self._write(out)
                entry = self.stats.requests.get(opcode)
                if entry is None:
                    entry = self.stats.requests[opcode] = [0, 0]
                entry[0] += 1
                entry[1] += time.perf_counter_ns() - t0
                return
            # only WRITE's own-inode ordering below needs the nodeid
            nodeid = int.from_bytes(msg[16:24], "little") if opcode == OPCODE_WRITE else 0
        else:
            try:
                req = parse_request(msg)
            except CodecError as e:
                self.stats.codec_errors += 1
                if e.errno == errno.ENOSYS:  # an opcode we do not implement: routine
                    log.debug("unsupported request (unique=%s): %s", e.unique, e)
                else:
                    log.warning("malformed request (unique=%s): %s", e.unique, e)
                err: list | None = [reply_error(e.unique, e.errno)] if e.unique else None
                if restart is not None:
                    err = restart.after(0, err)
                if err:
                    self._write(err)
                return
            if self.debug:
                log.debug("<- %r", req)
            if (self._stores or self._winfast) and req.opcode in (OPCODE_READ, OPCODE_WRITE):
                self._cancel_stores(req)
            out = self.ops.handle(req)
            opcode = req.opcode
            nodeid = req.nodeid
            if restart is not None:
                out = restart.after(opcode, out)
            events = self.fs.drain_events()
        if events and opcode == OPCODE_READ:
            events = self._attrs_inline(events)
        if events:
            after: list = []
            if opcode == OPCODE_WRITE:
                # The kernel holds this WRITE's pages locked until our reply: an
                # invalidation of them (e.g. bytes of a refused write still in its
                # cache) can only follow the reply.
                after = [ev for ev in events if getattr(ev, "ino", None) == nodeid]
                events = [ev for ev in events if getattr(ev, "ino", None) != nodeid]
            msgs: list = [self._encode(ev) for ev in events]
            if out is not None and opcode == OPCODE_WRITE:
                self._write(out)  # reply first: no WRITE reply ever waits for a notification
            elif out is not None:
                # the reply may reference the request buffer or arena views: copy it
                self._reply_behind(msgs, b"".join(out))
            msgs.extend([encode_notify(ev)] for ev in after)
            self.stats.notifications += len(events) + len(after)
            self._queue_notify(msgs)
        elif out is not None:
            if opcode not in (OPCODE_READ, OPCODE_WRITE) and (
                    self._pending or self._native_pending()):
                # order behind notifications still queued: fsync/ioctl/... return only
                # after every earlier invalidation reached the kernel
                msgs = []
                self._reply_behind(msgs, b"".join(out))
                if msgs:
                    self._queue_notify(msgs)
            else:
                self._write(out)
        if opcode == OPCODE_INIT and self.on_ready is not None:
            ready, self.on_ready = self.on_ready, None
            ready()
        elif opcode == OPCODE_DESTROY:
            self._done = True
        entry = self.stats.requests.get(opcode)
        if entry is None:
            entry = self.stats.requests[opcode] = [0, 0]
        entry[0] += 1
        entry[1] += time.perf_counter_ns() - t0

    def _native(self, msg: memoryview, t0: int) -> bool:
        """A window REMAP answered by the C engine (native/winfast.c): its notifications
        and reply go out through the engine's writer thread, the notifications to the
        main fd and the reply to the fd the request was read from (``_reply_fd``: a
        clone reader's own, ``Engine.remap_to``). Only with no Python notification
        still queued (the engine's batch would overtake it) and no reply sink (a ring
        entry, a chunk's capture: the engine writes the device itself); the engine
        declines anything but the common case, untouched (docs/decisions.md, "Clone
        readers hand window requests to the engine")."""
        eng = self._winfast
        if eng is None:
            eng = self._winfast = winfast.engine(self.fd, self.fs, self._stores) or False
            if eng is False:
                return False
        if self._pending or self._sink is not None:
            return False
        fd = self._reply_fd
        try:
            n = eng.remap(msg) if fd == self.fd else eng.remap_to(msg, fd)
        except Exception:  # only an allocation failure after the engine began changing
            # state can get here: answer, as ops.handle answers an unexpected error
            log.exception("window REMAP fast path failed")
            self._write([reply_error(int.from_bytes(msg[8:16], "little"), errno.EIO)])
            return True
        if n is None:
            return False
        self.stats.notifications += n
        if fd != self.fd:
            cw = self.stats.clone_window
            cw[OPCODE_IOCTL] = cw.get(OPCODE_IOCTL, 0) + 1
        entry = self.stats.requests.get(msg[4])  # IOCTL, or FSYNC (winfsync.c)
        if entry is None:
            entry = self.stats.requests[msg[4]] = [0, 0]
        entry[0] += 1
        entry[1] += time.perf_counter_ns() - t0
        return True

    def _hot(self, hp: Any, msg: memoryview, t0: int) -> bool:
        """A READ, WRITE, GETATTR or LOOKUP answered by the C hot path (native/hotpath.c): the
        reply written to this request's fd, its service time counted in
        stats.requests. Not while NOTIFY_STOREs are queued (a READ or write(2) must
        cancel them: _cancel_stores); a GETATTR or LOOKUP only when no notification
        is queued that its reply would have to follow."""
        eng = self._winfast
        if eng and eng.pending():
            return False
        return self._native_answer("regular-file hot path", hp.handle, msg, self._reply_fd,
                                   not self._pending, t0, self.stats.requests)

    def _native_io(self, msg: memoryview, t0: int) -> bool:
        """A WRITE or READ of a window answered by the C engine (native/winlaunder.c:
        the launder a remap's invalidation waits for; native/winwrite.c: write(2) and
        write-backs through the page table; native/winread.c: READ), reply included,
        written here by the reader: the writer thread may be blocked in the
        invalidation it answers."""
        opcode = msg[4]
        eng = self._winfast
        fd = self._reply_fd  # a clone reader's own fd while it holds the fs lock
        if not self._native_answer("window READ/WRITE fast path",
                                   eng.write if opcode == OPCODE_WRITE else eng.read,
                                   msg, fd):
            return False
        if fd != self.fd and self._sink is None:  # not a chunk's pipe: a clone's fd
            cw = self.stats.clone_window
            cw[opcode] = cw.get(opcode, 0) + 1
        entry = self.stats.requests.get(opcode)
        if entry is None:
            entry = self.stats.requests[opcode] = [0, 0]
        entry[0] += 1
        entry[1] += time.perf_counter_ns() - t0
        return True

    def _native_answer(self, what: str, call: Any, msg: memoryview, *args: Any) -> bool:
        """Whether a C engine answered msg (``call(msg, *args)``: None declined, 0
        answered, an errno answered but its reply could not be written). An
        exception means the engine failed after it began changing state: logged,
        and the request answered EIO."""
        try:
            err = call(msg, *args)
        except Exception:
            log.exception("%s failed", what)
            self._write([reply_error(int.from_bytes(msg[8:16], "little"), errno.EIO)])
            return True
        if err is None:
            return False
        if err:
            self._write_failed(OSError(err, os.strerror(err)))
        return True

    def _attrs_inline(self, events: list) -> list:
        """A READ's attribute-only INVAL_INODEs (a window READ's fault allocated a hole of
        the object: its st_blocks) written here, before the reply, and the other
        events returned.  Such an INVAL locks no page (fuse_reverse_inval_inode with
        a negative offset), so the reader may write it; queued, it would put the
        READ's reply behind notifications that may wait for the pages this READ
        holds (docs/windows.md "Coherence")."""
        rest = []
        for ev in events:
            if getattr(ev, "off", 0) < 0:  # InvalInode(ino, -1, 0): attributes only
                self.stats.notifications += 1
                try:
                    os.writev(self.fd, [encode_notify(ev)])
                except OSError as e:  # ENOENT: the kernel forgot the inode
                    self._write_failed(e)
            else:
                rest.append(ev)
        return rest

    def _native_pending(self) -> bool:
        eng = self._winfast
        return bool(eng) and eng.pending() > 0

    def _store_queued(self, ino: int, page: int) -> bool:
        """fsimpl's question: is a NOTIFY_STORE of (ino, page) still queued (here or in
        the C engine)?"""
        if (ino, page) in self._stores:
            return True
        eng = self._winfast
        return bool(eng) and eng.store_queued(ino, page)

    def _encode(self, ev: object) -> list | _Store:
        """A queued event's message: NOTIFY_STOREs carry their (page, generation)."""
        if getattr(ev, "data", None) is None:
            return [encode_notify(ev)]
        key = (ev.ino, ev.off >> 12)  # type: ignore[attr-defined]
        self._store_gen += 1
        self._stores[key] = self._store_gen
        return _Store(key, self._store_gen, encode_notify(ev))

    def _cancel_stores(self, req: object) -> None:
        """A READ, or a write(2) (not a write-back: that is the launder of the page a
        remap replaced, which the store follows), of pages with a store still queued:
        the kernel gets the current data from this request, the store would be older."""
        a = req.args  # type: ignore[attr-defined]
        if req.opcode == OPCODE_WRITE and a.write_flags & 1:  # type: ignore[attr-defined]
            return
        size = getattr(a, "size", 0) or 1
        ino = req.nodeid  # type: ignore[attr-defined]
        first, last = a.offset >> 12, (a.offset + size - 1) >> 12
        if self._winfast:
            self._winfast.cancel(ino, first, last)
        if self._stores:
            for page in range(first, last + 1):
                self._stores.pop((ino, page), None)

    def _write(self, buffers: Sequence[bytes | memoryview], fd: int | None = None) -> None:
        """The one place a reply leaves: to the sink of the request being handled (a
        ring entry, a chunk's capture), else to ``fd`` or the request's reply fd. An
        explicit ``fd`` always means that device: a clone reader's deferred reply is
        written outside the fs lock, while another reader's request may have set
        ``_sink`` (a chunk of a large WRITE), which must not swallow it."""
        if fd is not None:
            try:
                os.writev(fd, buffers)
            except OSError as e:
                self._write_failed(e)
            return
        if self._sink is not None:  # a request from a ring entry: the reply goes there
            self._sink.reply(buffers)
            return
        try:
            os.writev(self._reply_fd, buffers)
        except OSError as e:
            self._write_failed(e)

    def _write_failed(self, e: OSError) -> None:
        # ENOENT: the request was interrupted and the kernel no longer waits for it.
        self.stats.write_errors += 1
        if e.errno not in (errno.ENOENT, errno.ENODEV):
            log.error("writing reply failed: %s", e)

    def _queue_notify(self, msgs: list[Sequence[bytes | memoryview]]) -> None:
        """Hand notifications (and possibly the reply that must follow them) to the
        writer thread. Never blocks: the reader must stay free to answer the READs
        and WRITEs an invalidation may wait for (and it must not depend on trio's
        loop, which sleeps in epoll while the reader thread works). Ring commits a
        handler staged are submitted first, so a WRITE reply still precedes them."""
        if self._sink is not None:
            self._sink.flush()
        with self._pending_lock:
            self._pending += 1
            self._queued_seq += 1
        self._notify_q.put(msgs)

    def _notifier(self) -> None:
        """The writer thread: notifications (and replies queued behind them) in order."""
        while (msgs := self._notify_q.get()) is not None:
            try:
                if self._winfast:  # the engine's batches were queued first: they go first
                    self._winfast.wait_idle()
                self._write_batch1(msgs)
            finally:
                with self._pending_lock:
                    self._pending -= 1
                    self._written_seq += 1
                    self._pending_lock.notify_all()
                if self._on_written is not None:
                    self._on_written()

    def _write_batch1(self, msgs: list[Sequence[bytes | memoryview]]) -> None:
        for msg in msgs:
            if isinstance(msg, _Store):
                if self._stores.get(msg.key) != msg.gen:
                    self.stats.stores_skipped += 1
                    continue
                # no longer queued from here on: a write-back after this is of the
                # stored copy (the launder of the replaced one came before)
                self._stores.pop(msg.key, None)
                msg = [msg.msg]
            try:
                os.writev(self.fd, msg)
            except OSError as e:
                # ENOENT: inode unknown to the kernel (nothing cached) or request gone
                if e.errno not in (errno.ENOENT, errno.ENODEV):
                    log.warning("notification failed: %s", e)

    # --- the other readers (readers >= 2) --------------------------------------------------

    def _reply_behind(self, msgs: list[Sequence[bytes | memoryview]], reply: bytes) -> None:
        """Order ``reply`` behind the notifications queued so far. The writer thread
        writes to the main fd; a request read from the clone fd must be answered on
        the clone fd, so its reply is kept for _clone_reader to write once the
        writer got that far."""
        if self._sink is not None:
            self._sink.defer(reply)  # the ring commits it once the writer got that far
        elif self._reply_fd == self.fd:
            msgs.append([reply])
        else:
            self._deferred = reply

    def _start_clone_reader(self) -> None:
        """readers >= 2: a thread on a clone of the device fd for each reader past
        the first. Falls back to one reader where the fd is not /dev/fuse (tests
        over a socket) or the kernel refuses the clone."""
        if self.readers < 2 or self.debug:
            return
        fds = []
        for _ in range(self.readers - 1):
            try:
                fd2 = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
            except OSError as e:
                log.info("no second reader: %s", e)
                break
            try:
                fcntl.ioctl(fd2, FUSE_DEV_IOC_CLONE, struct.pack("I", self.fd))
            except OSError as e:
                os.close(fd2)
                log.info("no second reader (FUSE_DEV_IOC_CLONE: %s)", e)
                break
            fds.append(fd2)
        if not fds:
            return
        self._readers_serving = 1 + len(fds)
        if SWITCH_INTERVAL_S > 0:
            # a reader woken with a small request waits for the GIL while another runs
            # Python (a WRITE's handler): at most this long, not the default 5 ms
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._fs_lock = threading.Lock()
        self._turn = threading.Condition(threading.Lock())
        self._clones = len(fds)
        for i, fd2 in enumerate(fds):
            threading.Thread(target=self._clone_reader, args=(fd2,),
                             name=f"shmfs-reader{i + 2}", daemon=True).start()

    def _spin_fn(self, poll: Callable[[int], list], clock: Callable[[], int]
                 ) -> Callable[[int, int], bool]:
        """A reader's spin (the first reader's spin_ns, a clone's CLONE_SPIN_NS):
        ``spin(fd, ns)`` looks at the fd without sleeping for ``ns`` and says whether
        a request is there -- the C engine's, with the GIL released, where it exists
        (a Python spin holds the GIL between its turns, keeping a reader that needs
        it -- one copying a WRITE in, between its copies -- waiting meanwhile)."""
        engine_spin = getattr(self._hotpath, "spin", None)
        if engine_spin is not None and not PY_SPIN:
            return engine_spin

        def spin(fd: int, ns: int) -> bool:
            deadline = clock() + ns
            while not poll(0):
                if clock() >= deadline:
                    return False
            return True
        return spin

    def _clone_reader(self, fd: int) -> None:
        """Read and answer requests from the clone fd: the same _handle under the
        same lock, replies written to this fd. A reply that must follow queued
        notifications is written after the lock is released, once the writer
        thread has written them (waiting under the lock could deadlock: an
        invalidation may wait for a READ that the other reader must answer)."""
        buf = bytearray(BUFFER_SIZE)
        view = memoryview(buf)
        hold = self.cpu_latency
        # without the first reader's spin loop nobody would release the hold (this
        # was a local ``spin`` that the spin function below overwrote: always true)
        engage = self.spin_ns > 0
        lock = self._fs_lock
        assert lock is not None
        trace = self._trace
        busy = self._busy
        parked = self._parked
        os.set_blocking(fd, False)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poll = poller.poll
        clock = time.perf_counter_ns
        spin_ns = CLONE_SPIN_NS
        spin = self._spin_fn(poll, clock)
        last = 0  # when this reader last answered a request (0: spun since)
        # the loop in C (native/hotclone.c): poll, read, _note, _acquire and the hot
        # path's requests, until Python has something to look at
        cserve = (self._hotpath.serve_clone
                  if self._clone_cloop and self._hotpath is not None and trace is None
                  and hasattr(self._hotpath, "serve_clone") else None)
        # the spin in C too (CC_CSPIN, 8) where the loop runs; else Python's (CC_SPIN, 2:
        # the loop returns after each request for it)
        cspin = bool(spin_ns) and cserve is not None and self._clone_cspin
        cflags = ((1 if CLONES_STAY else 0) | (4 if engage else 0)
                  | ((8 if cspin else 2) if spin_ns else 0))
        window = -1 if MIXED_WINDOW_NS is None else MIXED_WINDOW_NS
        requests = self.stats.requests
        try:
            while not self._done:
                # park until the first reader is in a large request; then take what
                # the device has while it stays there
                if not busy.is_set():
                    # parked: the first reader may keep the lock meanwhile (_try_own);
                    # only it sets busy, and it lets go of the lock after that request
                    parked.add(fd)
                    busy.wait()
                    parked.discard(fd)
                    continue
                if spin_ns and not self._spinning and clock() - last < spin_ns:
                    # just answered one: look again without sleeping for a while
                    self._spinning = fd
                    self.stats.clone_spins += 1
                    try:
                        if spin(fd, last + spin_ns - clock()):
                            self.stats.clone_spin_hits += 1
                    finally:
                        self._spinning = 0
                    last = 0  # once per request answered
                    continue
                locked = False  # the C loop returned the request with the lock taken
                if cserve is not None:
                    try:
                        n, clast, *extra = cserve(fd, buf, self, lock, busy, hold, requests,
                                                  CLONE_POLL_MS, window, cflags, spin_ns)
                    except ConnectionAbortedError:  # as _read_request
                        n, extra = devabort.aborted(fd), []
                    if n == -4 or n == -2:  # answered some: look at the spell, busy
                        last = 0 if cspin else clast  # (cspin: the loop spun already)
                        if n == -2:  # an engine failed; the lock is released
                            log.error("regular-file hot path failed", exc_info=extra[0])
                            self._write([reply_error(int.from_bytes(view[8:16], "little"),
                                                     errno.EIO)], fd)
                        if CLONES_STAY and not self._mixed():
                            busy.clear()
                        continue
                    if n == 0:  # poll timed out: as below
                        if CLONES_STAY and not self._mixed():
                            busy.clear()
                        continue
                    if n < 0:
                        return
                    locked = bool(extra)
                else:
                    if not poller.poll(CLONE_POLL_MS):
                        if CLONES_STAY and not self._mixed():  # the first reader may be
                            busy.clear()  # asleep: nobody else would end the spell (_rest)
                        continue
                    if trace is not None:
                        trace.read_start()
                    try:
                        n = _read_request(fd, buf)
                    except BlockingIOError:  # another reader took it
                        continue
                    if n is None:
                        continue
                    if n < 0:
                        return
                    if trace is not None:
                        trace.read_done()
                if not locked:
                    self._note(view, n)
                    self._acquire(view)
                try:
                    if not locked:  # (the C loop did these under the lock already)
                        if engage and not hold.engaged:
                            hold.engage()  # released by the first reader's timer
                        self.stats.second_reader += 1
                    self._deferred = None
                    self._reply_fd = fd
                    try:
                        self._dispatch(view, n)
                    finally:
                        self._reply_fd = self.fd
                    deferred = self._deferred
                    seq = self._queued_seq
                    # ... and behind the window engine's batches queued so far
                    eng = self._winfast
                    eseq = eng.queued_seq() if deferred is not None and eng else 0
                finally:
                    lock.release()
                if deferred is not None:
                    with self._pending_lock:
                        self._pending_lock.wait_for(lambda s=seq: self._written_seq >= s)
                    if eseq:
                        eng.wait_written(eseq)
                    self._write([deferred], fd)
                last = clock()
                if CLONES_STAY and not self._mixed():
                    # the mixed spell is over: park (and let the first reader keep the
                    # lock again) even while requests keep this reader from timing out
                    busy.clear()
        except Exception:
            log.exception("second reader failed; the first one keeps serving")
        finally:
            # the engine's writer may still hold replies for this fd (remap_to): they
            # go out (or fail: unmounted) before the fd number can be reused
            eng = self._winfast
            if eng:
                eng.wait_written(eng.queued_seq())
            os.close(fd)

    def _hotpath_statistics(self) -> dict[str, object]:
        """The engine's counters, with the clone readers' loop's (hotclone.c)."""
        st = self._hotpath.statistics()
        extra = getattr(self._hotpath, "clone_statistics", None)
        if extra is not None:
            st.update(extra())
        return st

    async def _signal_watcher(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as sigs:
            async for signum in sigs:
                self._signals += 1
                log.info("signal %d: unmounting %s", signum, self.mountpoint)
                if self._signals > 1:
                    # Second signal: the lazy unmount is still waiting for open files.
                    self._done = True
                    scope.cancel()
                    return
                await trio.to_thread.run_sync(self._unmount)

    def _unmount(self) -> None:
        try:
            mounting.unmount(self.mountpoint)
        except mounting.MountError as e:
            log.warning("%s; detaching lazily (open files keep being served)", e)
            try:
                mounting.unmount(self.mountpoint, lazy=True)
            except mounting.MountError as e2:
                log.error("%s", e2)

    def statistics(self) -> dict[str, object]:
        """Requests by opcode (count, mean µs, and the exact total in ns: the
        difference of two snapshots' totals gives a phase's mean without the
        rounding error that made differences of rounded means negative,
        docs/performance.md change 11), notifications, errors."""
        per_op = {
            op: {"count": c, "mean_us": (ns / c / 1000) if c else 0.0, "total_ns": ns}
            for op, (c, ns) in sorted(self.stats.requests.items())
        }
        wf = self._winfast.statistics() if self._winfast else None
        return {
            "requests": per_op,
            # and those the engine's window WRITEs and READs sent (its remaps' are counted
            # as they are answered, Session._native)
            "notifications": self.stats.notifications + (
                wf["wstore_invals"] + wf["read"]["attr_invals"] if wf else 0),
            "stores_skipped": self.stats.stores_skipped,
            "codec_errors": self.stats.codec_errors,
            "write_errors": self.stats.write_errors,
            "readers": self._readers_serving,
            "second_reader_requests": self.stats.second_reader,
            "write_chunks": self.stats.write_chunks,
            "write_yields": self.stats.yields,
            "lock_kept": self.stats.lock_kept,  # a quiet mount's first reader (fairness.py)
            "clone_spins": self.stats.clone_spins,  # SHMFS_CLONE_SPIN_US
            "clone_spin_hits": self.stats.clone_spin_hits,
            # window requests read by a clone reader and answered by the C engine
            "clone_window": {name: self.stats.clone_window.get(op, 0) for name, op in (
                ("ioctl", OPCODE_IOCTL), ("read", OPCODE_READ), ("write", OPCODE_WRITE))},
            "lock_owned": self._owned,
            "uring": (self.uring_statistics() if self.uring_statistics is not None
                      else {"active": False}),
            "restart": None if self.restart is None else self.restart.statistics(),
            "hotpath": self._hotpath_statistics() if self._hotpath is not None else {
                "available": hotpath.available(), "engaged": False},
            "winfast": wf if wf else {
                "available": winfast.available(), "engaged": False},
            "cpu_latency": {
                "available": self.cpu_latency.available,
                "latency_us": self.cpu_latency.latency_us,
                "engaged": self.cpu_latency.engaged,
                "engagements": self.cpu_latency.engagements,
            },
        }
