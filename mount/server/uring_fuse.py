"""FUSE over io_uring (``-o uring``): requests arrive in ring entries, one
``io_uring_enter`` commits a reply and waits for the next request.

The kernel side is fs/fuse/dev_uring.c (FUSE 7.42). What it expects:

- INIT still travels over /dev/fuse. The daemon sets ``FUSE_OVER_IO_URING`` in
  its INIT reply (OpsConfig.uring, mount/server/ops.py); from then on the
  kernel holds every new request until the ring is ready.
- The ring is ready once **every** queue (one per possible CPU, qid 0..n-1) has
  an entry: ``IORING_OP_URING_CMD`` on the /dev/fuse fd, ``cmd_op`` REGISTER,
  two iovecs -- a 288-byte ``fuse_uring_req_header`` (in/out header, the
  opcode's own header, ``fuse_uring_ent_in_out``) and a payload buffer of at
  least max_write -- and ``fuse_uring_cmd_req`` (flags, commit_id, qid) in the
  SQE's command area.
- A request completes one entry of the queue of the CPU its client runs on; the
  daemon answers by writing the reply into the same buffers and submitting
  COMMIT_AND_FETCH with the request's unique, which also re-arms the entry.
- FORGET and INTERRUPT still go to /dev/fuse, as do notifications (written by
  the session's writer thread, unchanged) and requests queued before the ring
  was ready.

One thread serves all of it (``FuseRing.loop``): every queue's entries live in
one ring (the GIL would serialise per-queue threads anyway), and the /dev/fuse
fd and an eventfd are watched by multishot polls in the same ring, so there is
a single place that waits and no lock. Requests go through ``Session._handle``
exactly as those read from /dev/fuse, so semantics do not change: while a ring
request is handled, ``Session._sink`` is this object, and the reply goes into
the entry instead of writev(2). The ordering rules of docs/decisions.md 2 hold
as follows: READ/WRITE replies are committed at once; a reply that must follow
queued notifications is kept (``_kept``) and committed when the writer thread
has written them (it pokes the eventfd), while the loop goes on answering,
since an invalidation may wait for a READ only this thread can answer; commits
staged by a handler are submitted before its notifications are handed to the
writer (``flush``), so a WRITE's reply still precedes the invalidations of its
own inode.

The transport (ring setup, entry buffers, laying out a request, copying a
reply, the io_uring_enter) is ``mount.server._uring_native`` (native/uring.c)
where it is built, else ``_PyRing`` below over mount/server/uring.py: the same
interface, the same bytes; docs/performance.md change 14 compares them.
Memory: each entry's buffers are one anonymous mapping (4 KiB of headers, then
the payload), resident only as far as requests have touched them.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import select
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mount.server.cpulatency import RELEASE_AFTER_S
from mount.server.uring import (
    IORING_CQE_F_MORE,
    IORING_OP_POLL_ADD,
    IORING_OP_URING_CMD,
    IORING_POLL_ADD_MULTI,
    SQE_CMD_OFFSET,
    SQE_HEAD,
    Ring,
    address_of,
)
from mount.wire import protocol as P
from mount.wire.codec import reply_error

if TYPE_CHECKING:
    from mount.server.session import Session

log = logging.getLogger("shmfs.uring")

ENABLE_PARAM = Path("/sys/module/fuse/parameters/enable_uring")
DEPTH = 2  # entries per queue: a second request of one CPU does not wait for the first
# Entries a queue may grow to. A reply kept behind queued notifications holds its
# entry (only that entry can commit it), and the notification it waits for may wait
# for a WRITE that needs a free entry of the same queue: so a queue whose entries
# are all held gets another one (FuseRing._hold). Each held entry is a client
# waiting for a reply or a background request (at most max_background), so this
# bound is not reached in practice; virtual memory only, resident when used.
MAX_DEPTH = 16
# A kept reply that waits this long while the writer thread makes no progress is
# committed early (FuseRing._unstick): the notification the writer is blocked in may
# wait for a request the kernel queued behind entries that are all holding kept
# replies, and only a commit on that queue fetches it (docs/decisions.md).
STALL_NS = 50_000_000
# which transport: "native" (the C extension; the default where it is built) or
# "python"; for tests and measurements, not a mount option
BACKEND_ENV = "SHMFS_URING_BACKEND"

FUSE_IO_URING_CMD_REGISTER = 1
FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2
CMD_REQ = struct.Struct("<QQH6x")  # struct fuse_uring_cmd_req

# struct fuse_uring_req_header: in_out[128] op_in[128] fuse_uring_ent_in_out
HDR_SIZE = 288
OP_IN = 128
OP_IN_MAX = 128
ENT_IN_OUT = 256
ENT = struct.Struct("<QQII8x")  # flags commit_id payload_sz padding reserved
PAYLOAD_SZ = ENT_IN_OUT + 16
PAYLOAD_OFF = 4096  # the payload starts a page after the headers
IN_HEADER_SIZE = P.IN_HEADER.size
OUT_HEADER_SIZE = P.OUT_HEADER.size
_u32 = struct.Struct("<I")
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Python < 3.12 lacks the name

UD_DEV = 1 << 32  # CQE user_data of the /dev/fuse poll; entries use their index
UD_WAKE = UD_DEV + 1  # ... of the eventfd poll


class UringUnavailable(Exception):
    """``uring=on`` was asked for and cannot be had; the message says why."""


def kernel_enabled() -> bool | None:
    """The fuse module's ``enable_uring`` parameter: None where the kernel has none."""
    try:
        return ENABLE_PARAM.read_text().strip() in ("Y", "1")
    except OSError:
        return None


def possible_cpus() -> int:
    """num_possible_cpus(): the kernel makes one queue per possible CPU."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def resolve(mode: str, *, readers: int) -> bool:
    """Whether the session should try the ring, for ``uring=mode``. ``auto``
    falls back to /dev/fuse with one log line; ``on`` raises UringUnavailable
    with the reason. The daemon never changes the module parameter itself."""
    if mode == "off":
        return False
    why = None
    if readers > 1:
        why = "readers=2 reads a cloned /dev/fuse fd; with the ring one thread serves everything"
    else:
        enabled = kernel_enabled()
        if enabled is None:
            why = f"this kernel has no FUSE over io_uring ({ENABLE_PARAM} is missing)"
        elif not enabled:
            why = (f"FUSE over io_uring is disabled in this kernel ({ENABLE_PARAM} is N; "
                   f"an administrator may enable it with 'echo Y > {ENABLE_PARAM}')")
        else:
            from mount.server.uring import probe

            problem = probe()
            if problem:
                why = f"io_uring is not available: {problem}"
    if why is None:
        return True
    if mode == "on":
        raise UringUnavailable(f"uring=on: {why}")
    log.info("uring=auto: serving /dev/fuse: %s", why)
    return False


class _PyRing:
    """The transport in Python (struct over mmapped rings, ctypes for the two
    syscalls): what native/uring.c does, for where the extension is not built."""

    def __init__(self, dev_fd: int, queues: int, depth: int, payload: int) -> None:
        self.dev_fd = dev_fd
        self.queues = queues
        self.payload = payload
        self.entries = n = queues * depth
        self.ring = Ring(entries=64)
        self.stride = PAYLOAD_OFF + payload
        self.mem = mmap.mmap(-1, n * self.stride,
                             mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
        self.mv = memoryview(self.mem)
        self._iovs = bytearray(32 * n)
        mem_addr = address_of(self.mem)
        for i in range(n):
            base = i * self.stride
            struct.pack_into("<QQQQ", self._iovs, 32 * i, mem_addr + base, HDR_SIZE,
                             mem_addr + base + PAYLOAD_OFF, payload)
        self._iov_addr = address_of(self._iovs)
        self._uniques = [0] * n

    @property
    def pending(self) -> int:
        return self.ring.pending

    @property
    def enters(self) -> int:
        return self.ring.enters

    def _cmd(self, i: int, cmd_op: int) -> None:
        r = self.ring
        off = r.sqe()
        SQE_HEAD.pack_into(r.sqes, off, IORING_OP_URING_CMD, 0, 0, self.dev_fd, cmd_op, 0,
                           self._iov_addr + 32 * i, 2, 0, i, 0, 0, 0)
        unique = self._uniques[i] if cmd_op == FUSE_IO_URING_CMD_COMMIT_AND_FETCH else 0
        CMD_REQ.pack_into(r.sqes, off + SQE_CMD_OFFSET, 0, unique, i % self.queues)

    def register(self, i: int) -> None:
        self._cmd(i, FUSE_IO_URING_CMD_REGISTER)

    def poll(self, fd: int, ud: int) -> None:
        r = self.ring
        off = r.sqe()
        SQE_HEAD.pack_into(r.sqes, off, IORING_OP_POLL_ADD, 0, 0, fd, 0, 0, 0,
                           IORING_POLL_ADD_MULTI, select.POLLIN, ud, 0, 0, 0)
        CMD_REQ.pack_into(r.sqes, off + SQE_CMD_OFFSET, 0, 0, 0)

    def wait(self, min_complete: int = 0, timeout_ms: int = -1) -> list[tuple[int, int, int]]:
        r = self.ring
        r.enter(min_complete, None if timeout_ms < 0 else timeout_ms)
        return list(r.completions())

    def flush(self) -> None:
        if self.ring.pending:
            self.ring.enter(0)

    def request(self, i: int) -> memoryview | None:
        mv, base = self.mv, i * self.stride
        length = _u32.unpack_from(mv, base)[0]
        _f, unique, payload_sz = ENT.unpack_from(mv, base + ENT_IN_OUT)[:3]
        self._uniques[i] = unique
        op_sz = length - IN_HEADER_SIZE - payload_sz
        if not 0 <= op_sz <= OP_IN_MAX or payload_sz > self.payload:
            return None
        pay = base + PAYLOAD_OFF
        mv[pay - op_sz:pay] = mv[base + OP_IN:base + OP_IN + op_sz]
        mv[pay - op_sz - IN_HEADER_SIZE:pay - op_sz] = mv[base:base + IN_HEADER_SIZE]
        return mv[pay - op_sz - IN_HEADER_SIZE:pay + payload_sz]

    def unique(self, i: int) -> int:
        return self._uniques[i]

    def headers(self, i: int) -> memoryview:
        """Entry i's 288-byte header buffer (tests write requests there)."""
        return self.mv[i * self.stride:i * self.stride + HDR_SIZE]

    def payload_view(self, i: int) -> memoryview:
        base = i * self.stride + PAYLOAD_OFF
        return self.mv[base:base + self.payload]

    def commit(self, i: int, buffers: Sequence[Any]) -> None:
        mv, base = self.mv, i * self.stride
        data = b"".join(buffers) if len(buffers) > 1 else bytes(buffers[0])
        if len(data) < OUT_HEADER_SIZE:
            raise ValueError("reply shorter than fuse_out_header")
        n = len(data) - OUT_HEADER_SIZE
        if n > self.payload:
            raise OverflowError(f"reply larger than the entry's {self.payload} bytes")
        mv[base:base + OUT_HEADER_SIZE] = data[:OUT_HEADER_SIZE]
        mv[base + PAYLOAD_OFF:base + PAYLOAD_OFF + n] = data[OUT_HEADER_SIZE:]
        _u32.pack_into(mv, base + PAYLOAD_SZ, n)
        self._cmd(i, FUSE_IO_URING_CMD_COMMIT_AND_FETCH)

    def close(self) -> None:
        self.ring.close()  # the entry buffers go with the object (see FuseRing.close)


def _transport(dev_fd: int, queues: int, depth: int, payload: int) -> tuple[Any, str]:
    """The native transport where it is built (and not overridden), else _PyRing."""
    choice = os.environ.get(BACKEND_ENV, "native")
    if choice != "python":
        try:
            from mount.server import _uring_native  # type: ignore[attr-defined]
        except ImportError as e:
            log.info("uring: no native transport (%s); using the Python one", e)
        else:
            return _uring_native.Ring(dev_fd, queues, depth, payload), "native"
    return _PyRing(dev_fd, queues, depth, payload), "python"


class FuseRing:
    """The ring of one session: entries for every queue, the loop that serves them.
    While a ring request is handled it is also the session's ``_sink``."""

    def __init__(self, session: Session, *, depth: int = DEPTH, max_depth: int = MAX_DEPTH,
                 queues: int | None = None) -> None:
        self.s = session
        cfg = session.ops.config
        self.payload = max(8192, cfg.max_write, cfg.max_pages * mmap.PAGESIZE)
        self.queues = queues or possible_cpus()
        self.depth = depth
        self.max_depth = max(depth, max_depth)
        self.t, self.backend = _transport(session.fd, self.queues, self.max_depth, self.payload)
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        n = self.queues * self.max_depth  # entry i belongs to queue i % queues
        self._state = ["new"] * n  # new -> kernel <-> user; dead
        self._registered = [0] * self.queues  # entries registered, per queue
        self._held = [0] * self.queues  # entries holding a kept reply, per queue
        self.grown = 0
        self.early = 0  # kept replies committed early by _unstick
        self._stall_seq = -1
        self._stall_since = 0
        self._cur = -1  # the entry whose request is being handled
        self._kept: bytes | None = None  # its reply, kept behind queued notifications
        self._deferred: deque[tuple[int, int, bytes]] = deque()  # (seq, entry, reply)
        self._alive = 0
        self.requests = 0  # served from ring entries
        self.dev_requests = 0  # served from /dev/fuse meanwhile (FORGET, INTERRUPT, early ones)
        self.deferred_total = 0
        self.malformed = 0
        self.refused: str | None = None
        self.active = False

    # --- the session's sink (mount/server/session.py calls these) -------------------------

    def reply(self, buffers: Sequence[Any]) -> None:
        """The reply of the request being handled: into its entry, commit staged."""
        self._commit(self._cur, buffers)

    def defer(self, reply: bytes) -> None:
        """The reply must follow the notifications queued so far: kept until written."""
        self._kept = reply

    def flush(self) -> None:
        """Submit staged commits now (a handler is about to queue notifications)."""
        self.t.flush()

    def _commit(self, i: int, buffers: Sequence[Any]) -> None:
        try:
            self.t.commit(i, buffers)
        except (OverflowError, ValueError) as e:  # no reply the kernel asked for is this big
            log.error("reply to unique %d cannot be committed (%s); answering EIO",
                      self.t.unique(i), e)
            self.t.commit(i, [reply_error(self.t.unique(i), errno.EIO)])
        self._state[i] = "kernel"

    # --- requests -----------------------------------------------------------------------------

    def _serve_entry(self, i: int) -> None:
        s = self.s
        msg = self.t.request(i)
        self._state[i] = "user"
        if msg is None:
            self.malformed += 1
            s.stats.codec_errors += 1
            log.warning("malformed ring request (unique=%d); answering EIO", self.t.unique(i))
            self._commit(i, [reply_error(self.t.unique(i), errno.EIO)])
            return
        self.requests += 1
        self._cur = i
        self._kept = None
        s._sink = self
        try:
            s._handle(msg)
        except Exception:  # _handle answers every failure itself; this is a bug's net
            log.exception("request in ring entry %d (unique=%d) failed; answering EIO",
                          i, self.t.unique(i))
            if self._state[i] == "user" and self._kept is None:
                self._commit(i, [reply_error(self.t.unique(i), errno.EIO)])
        finally:
            s._sink = None
        if self._kept is not None:
            self.deferred_total += 1
            self._deferred.append((s._queued_seq, i, self._kept))
            self._kept = None
            self._hold(i % self.queues)
            self._commit_deferred()
        elif self._state[i] == "user":  # nothing answered (a no-reply opcode, undecodable)
            self._commit(i, [reply_error(self.t.unique(i), errno.ENOSYS)])

    def _commit_deferred(self) -> None:
        """Commit the kept replies whose notifications the writer has written (in order)."""
        q = self._deferred
        while q and q[0][0] <= self.s._written_seq:
            _seq, i, reply = q.popleft()
            self._held[i % self.queues] -= 1
            self._commit(i, [reply])

    def _unstick(self, now: int) -> None:
        """The writer thread is blocked and replies are kept: commit the oldest kept
        reply of each queue, so that each queue fetches what the kernel queued
        behind its entries (that may be the request the blocked notification
        waits for). Ordering against the notifications is given up for those
        replies only, and only after STALL_NS without progress."""
        seq = self.s._written_seq
        if seq != self._stall_seq or not self.s._pending:
            self._stall_seq, self._stall_since = seq, now
            return
        if now - self._stall_since < STALL_NS:
            return
        self._stall_since = now
        done: set[int] = set()
        keep: deque[tuple[int, int, bytes]] = deque()
        for item in self._deferred:
            q = item[1] % self.queues
            if q in done:
                keep.append(item)
                continue
            done.add(q)
            self._held[q] -= 1
            self._commit(item[1], [item[2]])
        self._deferred = keep
        if not self.early:
            log.warning("uring: the notification writer is blocked; replies kept behind it "
                        "are committed early so that the ring can fetch what it waits for")
        self.early += len(done)

    def _hold(self, q: int) -> None:
        """One more entry of queue ``q`` holds a kept reply: if none is left to fetch
        requests with, register another (see MAX_DEPTH)."""
        self._held[q] += 1
        if self._registered[q] - self._held[q] >= 1:
            return
        if self._registered[q] >= self.max_depth:
            log.warning("uring: all %d entries of queue %d hold replies kept behind "
                        "notifications", self.max_depth, q)
            return
        self._register(q)
        self.grown += 1

    def _register(self, q: int) -> None:
        i = q + self.queues * self._registered[q]
        self.t.register(i)
        self._registered[q] += 1
        self._state[i] = "kernel"
        self._alive += 1

    def _wake(self) -> None:
        """Called by the writer thread after each batch: poke the loop if it keeps replies.
        (The loop appends before it compares the sequence numbers, so a batch
        written in between is seen by one or the other.)"""
        if self._deferred:
            os.eventfd_write(self.efd, 1)

    def _drain_dev(self) -> bool:
        """Answer what waits on /dev/fuse; False once it says unmounted."""
        from mount.server.session import _read_request

        s = self.s
        fd, buf, view = s.fd, s._buf, s._view
        while True:
            try:
                n = _read_request(fd, buf)
            except BlockingIOError:
                return True
            except ConnectionAbortedError:  # aborted (fusectl, or the ring's teardown)
                return False
            if n is None:
                continue
            if n < 0:
                return False
            self.dev_requests += 1
            s._handle(view[:n])
            if s._done:
                return False

    # --- the loop ---------------------------------------------------------------------------

    def register(self) -> None:
        """REGISTER every entry and start watching /dev/fuse and the eventfd."""
        for _ in range(self.depth):
            for q in range(self.queues):
                self._register(q)
        self.t.poll(self.s.fd, UD_DEV)
        self.t.poll(self.efd, UD_WAKE)
        self.t.flush()
        self.active = True

    def _completion(self, ud: int, res: int, flags: int) -> bool:
        """One CQE; False when the connection is over."""
        if ud < UD_DEV:
            if res == 0:
                self._serve_entry(ud)
                return not self.s._done
            self._state[ud] = "dead"
            self._alive -= 1
            if res in (-errno.ENOTCONN, -errno.ECONNABORTED, -errno.ECANCELED):
                return self._alive > 0
            # REGISTER refused: the kernel then turns io_uring off for the connection
            # and routes requests to /dev/fuse, which this loop keeps serving
            if self.refused is None:
                log.warning("the kernel refused a ring entry (%s); serving /dev/fuse",
                            os.strerror(-res))
            self.refused = os.strerror(-res)
            return True
        if ud == UD_DEV:
            if not flags & IORING_CQE_F_MORE:
                self.t.poll(self.s.fd, UD_DEV)
            return res >= 0 and self._drain_dev()
        if ud == UD_WAKE:
            if not flags & IORING_CQE_F_MORE:
                self.t.poll(self.efd, UD_WAKE)
            try:
                os.eventfd_read(self.efd)
            except BlockingIOError:
                pass
            self._commit_deferred()
        return True

    def loop(self) -> None:
        """Serve until unmounted: handle every completion, then one io_uring_enter
        submits the commits and waits (spinning ``spin_ns`` first, as the /dev/fuse
        loop does, and releasing the CPU latency hold after a quiet spell)."""
        s = self.s
        wait = self.t.wait
        hold = s.cpu_latency
        spin_ns = s.spin_ns
        release_ms = max(1, int(RELEASE_AFTER_S * 1000))
        clock = time.perf_counter_ns
        reap = getattr(s.fs, "evict_later", None) is not None and spin_ns > 0
        if reap:
            s.fs.defer_evictions = True
        completion = self._completion
        cqes = wait(0)
        last = clock()
        try:
            while True:
                if cqes:
                    if not hold.engaged:
                        hold.engage()
                    for ud, res, flags in cqes:
                        if not completion(ud, res, flags):
                            return
                    last = clock()
                    cqes = wait(0)
                    continue
                if spin_ns > 0 and clock() - last < spin_ns:
                    cqes = wait(0)
                    continue
                if reap and s.fs.evict_later:
                    s._reap(1)
                    cqes = wait(0)
                    continue
                if self._deferred:  # look at the writer's progress now and then
                    cqes = wait(1, STALL_NS // 1_000_000)
                    if not cqes:
                        self._unstick(clock())
                    continue
                cqes = wait(1, release_ms if hold.engaged else -1)
                if not cqes and hold.engaged:
                    hold.release()
        finally:
            hold.close()

    def statistics(self) -> dict[str, object]:
        """For ``shmfs stat`` / the STATS ioctl: is the ring serving, and how much."""
        return {
            "active": self.active and self._alive > 0,
            "transport": self.backend,
            "queues": self.queues,
            "depth": self.depth,
            "entries_added": self.grown,  # beyond depth, for replies kept (MAX_DEPTH)
            "early_commits": self.early,  # kept replies committed early (STALL_NS)
            "entries_alive": self._alive,
            "ring_requests": self.requests,
            "dev_requests": self.dev_requests,
            "deferred_replies": self.deferred_total,
            "malformed": self.malformed,
            "enters": self.t.enters,
            "refused": self.refused,
        }

    def close(self) -> None:
        """Close the io_uring (the kernel cancels the registered entries) and the
        eventfd. The entry buffers are freed with the transport object, not here:
        unmapping them while the kernel may still be tearing entries down would
        only trade a copy for an EFAULT."""
        self.t.close()
        if self.efd is not None:
            os.close(self.efd)
            self.efd = None


def serve(session: Session, on_ready: Callable[[], None] | None) -> None:
    """The session's request loop with the ring: INIT over /dev/fuse (asking for
    FUSE_OVER_IO_URING), then the ring, or /dev/fuse alone when the kernel did
    not offer it. ``on_ready`` runs once requests are served (the ring
    registered, or the fallback chosen). The ring is created here, in the thread
    that will use it (IORING_SETUP_SINGLE_ISSUER), and before INIT is answered:
    once FUSE_OVER_IO_URING is granted the kernel holds requests until the ring
    is registered, so a ring that cannot be created must mean not asking."""
    from mount.server.session import _read_request

    s = session
    try:
        ring: FuseRing | None = FuseRing(s)
    except OSError as e:  # resolve() probed io_uring already: rare
        log.warning("cannot set up io_uring (%s); serving /dev/fuse", e)
        s.ops.config.uring = False
        s.on_ready = on_ready
        s._blocking_loop()
        return
    assert ring is not None
    s.ops.config.uring = True
    try:
        fd, buf, view = s.fd, s._buf, s._view
        os.set_blocking(fd, True)
        while s.ops.proto_minor == 0:  # until INIT is answered
            n = _read_request(fd, buf)
            if n is None:
                continue
            if n < 0:
                return
            s._handle(view[:n])
        if not s.ops.init_flags & P.FUSE_OVER_IO_URING:
            log.info("uring: the kernel did not offer FUSE_OVER_IO_URING; serving /dev/fuse")
            ring.close()
            ring = None
            if on_ready is not None:
                on_ready()
            s._blocking_loop()
            return
        os.set_blocking(fd, False)
        s._on_written = ring._wake
        s.uring_statistics = ring.statistics
        ring.register()
        log.info("uring: serving %d queues x %d entries (payload %d KiB, %s transport)",
                 ring.queues, ring.depth, ring.payload >> 10, ring.backend)
        if on_ready is not None:
            on_ready()
        ring.loop()
    finally:
        s._on_written = None
        if ring is not None:
            ring.close()
