"""Persist: the state of a restartable mount kept outside the serving process.

Three memfds, created once per mount and held by the supervisor across the
server's deaths (docs/restart-design.md):

* ``arena``: the file data (vmcore.arena.Arena over the memfd, MAP_SHARED);
* ``journal``: a redo journal of every request that changes state, and the
  header naming the current snapshot (journal.py);
* ``snap``: snapshots of the metadata (snapshot.py).

The serving process calls ``begin(msg)`` before each request and, when it
returned True, ``commit(unique, reply)`` after handling it and before the reply
is written.  A request with a reply is journalled by ``commit`` in one record
(its bytes without WRITE data, its clock value, the inputs it read from outside,
its reply), so a server killed before that record is complete leaves no
metadata effect: after recovery the kernel resends the request and it runs
again from the same state (done or not done, never half).  A request without a
reply (FORGET, BATCH_FORGET) is never resent, so ``begin`` journals it before
it runs and recovery runs it again if it was the last record.

Recovery (``recover``) builds a fresh filesystem over the memfd arena, loads
the snapshot into it, and replays the journal with the arena in replay mode:
the memfd already holds the data, only the metadata is rebuilt; frame
allocation is deterministic, so every request gets the same frames again.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import struct
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mount.server.persist import journal as J
from mount.server.persist import snapshot as S
from mount.server.persist.inputs import Inputs
from mount.winapi.abi import SHMFS_IOC_STATS

log = logging.getLogger("shmfs.persist")

# Requests that change nothing (not even atime, a lookup count or a window's
# cached-page set): served again after a restart, never journalled.
PURE_OPCODES = frozenset({
    3,  # GETATTR
    17,  # STATFS
    22,  # GETXATTR
    23,  # LISTXATTR
    31,  # GETLK
    34,  # ACCESS
    36,  # INTERRUPT
    37,  # BMAP
    40,  # POLL
    41,  # NOTIFY_REPLY
    46,  # LSEEK
    52,  # STATX
})
NOREPLY_OPCODES = frozenset({2, 42})  # FORGET, BATCH_FORGET
OP_IOCTL = 39
IOCTL_CMD_OFF = 40 + 12  # fuse_ioctl_in: fh, flags, cmd
# SHMFS_IOC_STATS changes nothing, and its reply (counters, timings) differs on replay
PURE_IOCTLS = frozenset({SHMFS_IOC_STATS})
OP_READ, OP_WRITE, OP_INIT = 15, 16, 26
IN_HEADER_LEN = 40
WRITE_IN_END = IN_HEADER_LEN + 40  # header + fuse_write_in: WRITE data is not journalled
UNIQUE_RESEND = 1 << 63
KEEP_REPLIES = 512  # replies of the last committed requests kept in a snapshot
SNAPSHOT_RECORDS = 5_000  # journal records after which maybe_snapshot takes one
SNAPSHOT_BYTES = 8 << 20
ARENA_SEGMENT = 256 << 20
_PAGE = 4096

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

Keep = Callable[[dict[str, int]], None]


@dataclass(slots=True)
class RecoveryInfo:
    """What a new server learns from the state its predecessors left."""

    replies: dict[int, bytes] = field(default_factory=dict)  # unique (bit 63 clear) -> reply
    reply_ops: dict[int, int] = field(default_factory=dict)  # unique -> the request's opcode
    initialized: bool = False  # INIT was answered on this connection
    cached_inodes: list[int] = field(default_factory=list)  # nlookup > 0: the kernel may cache
    records: int = 0  # journal records replayed
    snapshot_bytes: int = 0
    seconds: float = 0.0
    fresh: bool = True  # no state yet: a new mount
    diverged: int | None = None  # a record after which the replay allocated differently
    stale_frames: int = 0  # free frames punched before their next use
    snapshot_taken: float | None = None  # seconds of a snapshot taken before serving

    def reply_for(self, unique: int) -> bytes | None:
        """The recorded reply of a resent request, its unique patched to ``unique``,
        and the validity of every entry and attribute it carries set to zero: they
        are as of the request's commit, and anything may have changed since (the
        kernel applying them with a day's validity would keep, e.g., a window's
        size from before its ATTACH); zero makes the kernel ask again."""
        plain = unique & ~UNIQUE_RESEND
        r = self.replies.get(plain)
        if r is None:
            return None
        out = bytearray(r)
        out[8:16] = unique.to_bytes(8, "little")
        if len(out) > 16 and out[4:8] == b"\0\0\0\0":
            _expire(self.reply_ops.get(plain, 0), out)
        return bytes(out)


# replies that carry a fuse_entry_out at offset 16: LOOKUP SYMLINK MKNOD MKDIR LINK CREATE TMPFILE
_ENTRY_REPLIES = frozenset({1, 6, 8, 9, 13, 35, 51})
_SETATTR, _READDIRPLUS = 4, 44
_ENTRY_OUT = 40 + 88  # fuse_entry_out: nodeid, generation, 2 x valid, 2 x nsec, fuse_attr
_DIRENT = 24  # fuse_dirent without its name


def _expire(opcode: int, out: bytearray) -> None:
    """Zero the entry and attribute validity in a recorded reply (RecoveryInfo.reply_for)."""
    if opcode in _ENTRY_REPLIES and len(out) >= 16 + _ENTRY_OUT:
        out[32:56] = bytes(24)  # entry_valid, attr_valid, entry_valid_nsec, attr_valid_nsec
    elif opcode == _SETATTR and len(out) >= 32:
        out[16:28] = bytes(12)  # fuse_attr_out.attr_valid, attr_valid_nsec
    elif opcode == _READDIRPLUS:
        off = 16
        while off + _ENTRY_OUT + _DIRENT <= len(out):
            out[off + 16 : off + 40] = bytes(24)
            namelen = int.from_bytes(out[off + _ENTRY_OUT + 16 : off + _ENTRY_OUT + 20], "little")
            off += (_ENTRY_OUT + _DIRENT + namelen + 7) & ~7


def make_memfds() -> dict[str, int]:
    """The three memfds of a new restartable mount (inheritable, so they can be passed on)."""
    fds = {}
    for name in ("arena", "journal", "snap"):
        fd = os.memfd_create(f"shmfs-{name}", 0)
        os.set_inheritable(fd, True)
        fds[name] = fd
    return fds


class Persist:
    """Journal, snapshots and the memfd arena of one restartable mount."""

    def __init__(self, fds: dict[str, int], keep: Keep | None = None,
                 segment_bytes: int = ARENA_SEGMENT) -> None:
        self.fds = dict(fds)
        self.keep = keep
        self.segment_bytes = segment_bytes
        self.inputs = Inputs()
        self.now: Callable[[], int] = time.time_ns  # the clock begin() reads (tests set it)
        self.ops: Any = None
        self.arena: Any = None
        self.header = J.Header()
        self.writer: J.JournalWriter | None = None
        self.replies: deque[tuple[int, int, bytes]] = deque(maxlen=KEEP_REPLIES)
        self.snapshot_every = SNAPSHOT_RECORDS
        self.snapshot_bytes = SNAPSHOT_BYTES
        self.snapshots = 0  # completed since this server started
        self._records_since = 0  # records appended since the last snapshot was started
        self._child: tuple[int, int, int, int] | None = None  # pid, slot, pos, seq
        self._defer = False  # fs.defer_evictions as the journal last said
        self._store_hook: Any = self.inputs.store_queued
        self._pending_msg: bytes | memoryview | None = None
        self._pending_op = 0
        self._read_atime: int | None = None  # the READ being handled: its inode's atime before

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def create(cls, keep: Keep | None = None, **kw: Any) -> Persist:
        """A new mount's memfds (generation 0); ``keep`` gets them by name."""
        fds = make_memfds()
        if keep is not None:
            keep(dict(fds))
        return cls(fds, keep, **kw)

    @classmethod
    def attach(cls, fds: dict[str, int], keep: Keep | None = None, **kw: Any) -> Persist:
        """A restarted server over the memfds its predecessor left."""
        missing = {"arena", "journal", "snap"} - set(fds)
        if missing:
            raise ValueError(f"persist: missing memfds {sorted(missing)}")
        return cls(fds, keep, **kw)

    # -- recovery --------------------------------------------------------------------------

    def recover(self, build: Callable[[dict[str, Any]], Any]) -> tuple[Any, RecoveryInfo]:
        """The filesystem as the last committed request left it, and what the
        session needs to answer resent requests; the journal is then ready for
        appends."""
        from fsimpl.backing import Backing
        from vmcore.arena import Arena

        t0 = time.perf_counter()
        info = RecoveryInfo()
        jfd = self.fds["journal"]
        header = J.read_header(jfd)
        self.arena = Arena(self.segment_bytes, memfd=self.fds["arena"])
        self.inputs = Inputs()
        self.inputs.now = self.now()  # a new mount's root inode is born now
        self.inputs.install()
        ops = build({"backing": Backing(0, self.arena), "clock": self.inputs.clock})
        self.ops = ops
        self._store_hook = self.inputs.store_queued
        # the atime options become a recorded input too (Inputs.atime_mode)
        self.inputs.atime_source = ops.fs.atime_mode
        ops.fs.atime_mode = self.inputs.atime_mode
        if header is None or header.snap_off < 0:
            # a new mount: its first snapshot, so that the random generation and the
            # options are fixed before any request (written synchronously: it is tiny)
            self.header = J.Header()
            self._defer = bool(ops.fs.defer_evictions)
            ops.fs.store_queued = self._store_hook
            self.inputs.atime_last = self.inputs.atime_source()
            self._write_snapshot_now()
            self.writer = J.JournalWriter(jfd, self.header.start, self.header.seq)
            info.seconds = time.perf_counter() - t0
            return ops, info
        info.fresh = False
        self.header = header
        data = S.read_slot(self.fds["snap"], header.snap_off)
        info.snapshot_bytes = len(data)
        blob = S.load(data, ops, self.arena)
        self.inputs.atime_last = blob.get("atime")
        self._defer = bool(ops.fs.defer_evictions)
        ops.fs.store_queued = self._store_hook  # replayed answers; the session's come later
        for unique, op, reply in blob["replies"]:
            info.replies[unique] = reply
            info.reply_ops[unique] = op
            self.replies.append((unique, op, reply))
        pos, seq = header.start, header.seq
        records = list(J.scan(jfd, pos, seq))
        self.arena.set_replaying(True)
        try:
            for i, rec in enumerate(records):
                last = i == len(records) - 1
                if last and rec.kind != J.KIND_REQUEST:
                    # a FORGET or reap may have died half done: run it with its data
                    # effects (its frees punch), nothing after it can have reused them
                    self.arena.set_replaying(False)
                self._replay(rec, info)
                pos, seq = rec.end, rec.seq + 1
        finally:
            self.arena.set_replaying(False)
            self.inputs.end_replay()
        info.records = len(records)
        # the request being handled when the server died may have written into frames
        # that are free now: zero them before anyone gets them (Arena.mark_free_stale)
        info.stale_frames = self.arena.mark_free_stale()
        # whatever follows the last valid record (a torn one) is cleared before appending
        size = os.fstat(jfd).st_size
        if size > pos:
            J.punch(jfd, pos, size - pos)
        self.writer = J.JournalWriter(jfd, pos, seq)
        self._records_since = len(records)
        if len(records) >= self.snapshot_every:
            # The servers before this one died before their snapshot child finished
            # (a fast kill loop): take one now, before serving, or the journal to
            # replay grows with every restart.
            t1 = time.perf_counter()
            self._write_snapshot_now()
            self._records_since = 0
            info.snapshot_taken = time.perf_counter() - t1
        fs = ops.fs
        info.initialized = bool(ops.proto_minor)
        info.cached_inodes = sorted(ino for ino, inode in fs._inodes.items() if inode.nlookup > 0)
        info.seconds = time.perf_counter() - t0
        return ops, info

    def _replay(self, rec: J.Record, info: RecoveryInfo) -> None:
        ops = self.ops
        msg = rec.msg
        opcode = int.from_bytes(msg[4:8], "little")
        if opcode == OP_WRITE and len(msg) >= WRITE_IN_END:
            # the data is not in the journal (it is in the arena): any bytes of the
            # right length do, the arena ignores them while replaying
            size = int.from_bytes(msg[WRITE_IN_END - 24 : WRITE_IN_END - 20], "little")
            full = bytearray(WRITE_IN_END + size)
            full[:WRITE_IN_END] = msg[:WRITE_IN_END]
            msg = full
        self.inputs.start_replay(rec.now, bytes(rec.side))
        if rec.kind == J.KIND_DEFER:
            ops.fs.defer_evictions = self._defer = bool(msg[0])
            return
        out = None
        if rec.kind == J.KIND_REAP:
            ops.fs.reap(int.from_bytes(msg[:8], "little") or None)
        else:
            out = _handle(ops, memoryview(msg))
        ops.fs.drain_events()  # nothing reaches the kernel from a replay
        if rec.kind == J.KIND_REQUEST:
            a = self.arena
            reply = bytes(rec.reply)
            why = None
            if rec.check != J.NO_CHECK and rec.check != (a._bump & 0xFFFFFFFF,
                                                         a._nfree & 0xFFFFFFFF):
                why = f"arena (bump, free) {(a._bump, a._nfree)}, recorded {rec.check}"
            elif reply and opcode != OP_READ:
                # the same request on the same state must answer the same bytes
                got = b"".join(bytes(b) for b in out) if out else b""
                if got[:8] != reply[:8] or got[16:] != reply[16:]:  # (the unique may differ)
                    at = next((i for i, (x, y) in enumerate(zip(got, reply, strict=False))
                               if x != y), min(len(got), len(reply)))
                    why = (f"reply differs from the recorded one at byte {at} "
                           f"({len(got)} vs {len(reply)} bytes; error {got[4:8].hex()} vs "
                           f"{reply[4:8].hex()})")
            if why is not None:
                if info.diverged is None:
                    log.error("replay diverged at record %d (opcode %d, unique %d, nodeid %d): "
                              "%s", rec.seq, opcode,
                              int.from_bytes(msg[8:16], "little") & ~UNIQUE_RESEND,
                              int.from_bytes(msg[16:24], "little"), why)
                info.diverged = rec.seq
            unique = int.from_bytes(msg[8:16], "little") & ~UNIQUE_RESEND
            if reply:
                info.replies[unique] = reply
                info.reply_ops[unique] = opcode
                self.replies.append((unique, opcode, reply))

    # -- the session's hooks ---------------------------------------------------------------

    def begin(self, msg: memoryview) -> bool:
        """Before request ``msg`` is handled: True when it changes state (then
        ``commit`` must follow). Sets the request's clock value."""
        opcode = _U32.unpack_from(msg, 4)[0]
        inputs = self.inputs
        inputs.now = self.now()
        if inputs.consumed:
            inputs.consumed.clear()
        if opcode in PURE_OPCODES or (
                opcode == OP_IOCTL and len(msg) >= IOCTL_CMD_OFF + 4
                and _U32.unpack_from(msg, IOCTL_CMD_OFF)[0] in PURE_IOCTLS):
            return False
        fs = self.ops.fs
        if (fs.defer_evictions != self._defer
                or fs.__dict__.get("store_queued") is not self._store_hook):
            self._track_session(fs)
        if opcode in NOREPLY_OPCODES:
            w = self.writer
            assert w is not None
            w.append(J.KIND_NOREPLY, inputs.now, msg)
            self._records_since += 1
            self._pending_msg = None
            return True
        self._pending_msg = msg
        self._pending_op = opcode
        if opcode == OP_READ:  # see commit: a READ that changed nothing leaves no record
            inode = fs._inodes.get(_U64.unpack_from(msg, 16)[0])
            self._read_atime = None if inode is None else inode.atime_ns
        return True

    def _track_session(self, fs: Any) -> None:
        """The session set fs.defer_evictions or fs.store_queued (after recovery):
        journal the first, route the second through the recorded inputs."""
        if getattr(fs, "store_queued", None) is not self._store_hook:
            self.inputs.store_source = getattr(fs, "store_queued", None)
            fs.store_queued = self._store_hook
        if fs.defer_evictions != self._defer:
            w = self.writer
            assert w is not None
            self._defer = bool(fs.defer_evictions)
            fs.defer_evictions = self._defer
            w.append(J.KIND_DEFER, self.inputs.now, bytes([self._defer]))
            self._records_since += 1

    def commit(self, unique: int, reply: bytes | Sequence[Any] | None) -> None:
        """After handling, before the reply is written: the request's record.
        ``reply``: the reply's bytes, or its buffers as the handler returned them
        (a READ's data is not copied: it is not kept), None for no reply."""
        msg = self._pending_msg
        if msg is None:  # no-reply request: journalled by begin
            return
        self._pending_msg = None
        opcode = self._pending_op
        if opcode == OP_READ:
            # A READ changes atime (when the mount's atime rules say so) and, when the fs
            # has windows, their cached-page sets; nothing else. Most READs change
            # neither: no record then (the journal's cost on a read-mostly load).
            fs = self.ops.fs
            if fs._windows is None and self._read_atime is not None:
                inode = fs._inodes.get(_U64.unpack_from(msg, 16)[0])
                if inode is not None and inode.atime_ns == self._read_atime:
                    return
        # READ replies are data, and a READ run twice changes nothing more than once
        if reply is None or opcode == OP_READ:
            keep = b""
        elif isinstance(reply, bytes):
            keep = reply
        else:
            keep = b"".join(reply)
        if opcode == OP_WRITE:
            msg = msg[:WRITE_IN_END]  # the data is in the arena already
        inputs = self.inputs
        a = self.arena
        self.writer.append(J.KIND_REQUEST, inputs.now, msg, keep,  # type: ignore[union-attr]
                           inputs.side_bytes() if inputs.consumed else b"",
                           (a._bump, a._nfree))
        if keep:
            self.replies.append((unique & ~UNIQUE_RESEND, opcode, keep))
        self._records_since += 1

    def reap(self, limit: int | None) -> int:
        """fs.reap(limit) for the session's idle time, journalled before it runs."""
        fs = self.ops.fs
        if not fs.evict_later:
            return 0
        w = self.writer
        assert w is not None
        self.inputs.start_live(self.now())
        w.append(J.KIND_REAP, self.inputs.now, (limit or 0).to_bytes(8, "little"))
        self._records_since += 1
        return fs.reap(limit)

    # -- snapshots -------------------------------------------------------------------------

    def maybe_snapshot(self, ops: Any = None, *, force: bool = False) -> bool:
        """Between requests: finish a snapshot whose child is done, or start one
        when the journal grew enough. True when a snapshot completed."""
        done = self._poll_child()
        if self._child is None and (force or self._records_since >= self.snapshot_every
                                    or self._journal_bytes() >= self.snapshot_bytes):
            self._start_child()
        return done

    def _journal_bytes(self) -> int:
        w = self.writer
        return 0 if w is None else w.pos - self.header.start

    def _other_slot(self) -> int:
        return S.SLOTS[1] if self.header.snap_off == S.SLOTS[0] else S.SLOTS[0]

    def _write_snapshot_now(self) -> None:
        """Take a snapshot in this process (a new mount, and tests)."""
        w = self.writer
        pos, seq = (w.pos, w.seq) if w is not None else (self.header.start, self.header.seq)
        slot = self._other_slot()
        S.write_slot(self.fds["snap"], slot, self._dump(pos, seq))
        self._publish(slot, pos, seq)

    def _dump(self, pos: int, seq: int) -> bytes:
        return S.dump(self.ops, self.arena, list(self.replies), pos, seq,
                      atime=self.inputs.atime_last)

    def _start_child(self) -> None:
        """fork(): the child pickles the state as of now into the free slot and
        exits; the parent goes on serving (the arena is MADV_DONTFORK: the child
        copies only the Python heap's page tables)."""
        w = self.writer
        assert w is not None
        pos, seq, slot = w.pos, w.seq, self._other_slot()
        parent = os.getpid()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # threads: see below
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's result is checked by the parent
            # Only this thread exists here; the state is not being changed by anyone
            # (snapshots start between requests), and pickling takes no lock of ours.
            # No logging here (another thread may have held its lock at fork). A child
            # whose server died stops at once: the next server owns the snap memfd.
            status = 1
            try:
                gc.disable()  # a collection would touch (copy) every page of the heap
                _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() != parent:
                    os._exit(1)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                S.write_slot(self.fds["snap"], slot, self._dump(pos, seq))
                status = 0
            except BaseException:
                os.write(2, traceback.format_exc().encode())  # no logging lock: see above
            finally:
                os._exit(status)
        self._child = (pid, slot, pos, seq)
        self._records_since = 0

    def _poll_child(self, block: bool = False) -> bool:
        if self._child is None:
            return False
        pid, slot, pos, seq = self._child
        got, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        if got == 0:
            return False
        self._child = None
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            log.error("snapshot child %d failed (status %#x); the journal keeps growing",
                      pid, status)
            return False
        self._publish(slot, pos, seq)
        return True

    def _publish(self, slot: int, pos: int, seq: int) -> None:
        """Make the snapshot in ``slot`` (covering the journal up to ``pos``) current,
        then give the journal's memory before ``pos`` back."""
        self.header = J.Header(self.header.counter + 1, slot, pos, seq)
        J.write_header(self.fds["journal"], self.header)
        J.punch(self.fds["journal"], J.FIRST_RECORD, pos - J.FIRST_RECORD)
        self.snapshots += 1

    def close(self) -> None:
        """Wait for a snapshot child, unmap the journal (the memfds stay open: they
        belong to whoever passed them)."""
        if self._child is not None:
            self._poll_child(block=True)
        if self.writer is not None:
            self.writer.close()
        Inputs.uninstall()


def _handle(ops: Any, msg: memoryview) -> Any:
    """Handle one request as the session does (fast path first)."""
    from mount.wire.codec import CodecError, parse_request, reply_error

    fast = ops.handle_fast(msg)
    if fast is not None:
        return fast[1]
    try:
        req = parse_request(msg)
    except CodecError as e:  # the session answers these with the errno
        return [reply_error(e.unique, e.errno)] if e.unique else None
    return ops.handle(req)
