"""A minimal io_uring in pure Python: raw syscalls through ctypes, rings mmapped.

Only what FUSE over io_uring needs (mount/server/uring_fuse.py): 128-byte SQEs
(``IORING_SETUP_SQE128``, the FUSE command lives in the SQE's 80-byte cmd area),
``IORING_OP_URING_CMD`` and multishot ``IORING_OP_POLL_ADD``, and one
``io_uring_enter`` that submits everything staged and waits for completions,
with an optional timeout (``IORING_ENTER_EXT_ARG``).

No Python binding offers URING_CMD with SQE128 and liburing's helpers are
static inline, so this speaks the ABI (include/uapi/linux/io_uring.h) itself,
as the codec speaks /dev/fuse's. The ring is used by one thread only
(``IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN``: completions are
produced when that thread enters the kernel, never by interrupting it), so
there is no locking. Memory ordering: the head/tail stores and loads are
aligned 32-bit moves, which x86-64 orders as the ring protocol requires
(release/acquire); the module refuses other architectures.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import platform
import struct
from collections.abc import Iterator

SYS_io_uring_setup = 425
SYS_io_uring_enter = 426

IORING_SETUP_CQSIZE = 1 << 3
IORING_SETUP_SQE128 = 1 << 10
IORING_SETUP_SINGLE_ISSUER = 1 << 12
IORING_SETUP_DEFER_TASKRUN = 1 << 13
IORING_FEAT_SINGLE_MMAP = 1 << 0
IORING_FEAT_EXT_ARG = 1 << 8
IORING_ENTER_GETEVENTS = 1 << 0
IORING_ENTER_EXT_ARG = 1 << 3
IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
IORING_OP_POLL_ADD = 6
IORING_OP_URING_CMD = 46
IORING_POLL_ADD_MULTI = 1 << 0
IORING_CQE_F_MORE = 1 << 1

SQE_SIZE = 128  # with IORING_SETUP_SQE128
CQE = struct.Struct("<QiI")  # user_data, res, flags
# struct io_uring_params: sq_entries cq_entries flags sq_thread_cpu sq_thread_idle
# features wq_fd resv[3], then io_sqring_offsets (head tail ring_mask ring_entries
# flags dropped array resv1 user_addr) and io_cqring_offsets (head tail ring_mask
# ring_entries overflow cqes flags resv1 user_addr): 120 bytes
PARAMS = struct.Struct("<7I12x" + "8IQ" + "8IQ")
# the SQE's first 48 bytes: opcode flags ioprio fd | off (cmd_op, pad) | addr | len |
# op flags (poll32_events, uring_cmd_flags) | user_data | buf_index personality file_index
SQE_HEAD = struct.Struct("<BBHiIIQIIQHHi")
# the command area at offset 48 (struct fuse_uring_cmd_req: flags commit_id qid)
SQE_CMD_OFFSET = 48
GETEVENTS_ARG = struct.Struct("<QIIQ")  # sigmask sigmask_sz min_wait_usec ts
TIMESPEC = struct.Struct("<qq")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class UringError(OSError):
    """io_uring could not be set up (not built in, disabled by sysctl, too old)."""


def address_of(buf: object) -> int:
    """The address of a writable buffer (mmap, bytearray): a pointer for the kernel.
    The caller keeps ``buf`` alive (and unresized) as long as the kernel may use it."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))  # type: ignore[arg-type]


class Ring:
    """One io_uring instance with 128-byte SQEs, owned by one thread.

    ``sqe()`` returns the offset of a free SQE slot in ``sqes``: the caller
    writes its 48-byte head (``SQE_HEAD``) and the command area after it (every
    caller writes both, so nothing of an earlier SQE survives; bytes past the
    FUSE command are never written and stay zero). ``enter()`` submits the
    staged ones and waits; ``completions()`` yields the CQEs that arrived.
    """

    def __init__(self, entries: int = 64) -> None:
        if platform.machine() not in ("x86_64", "AMD64"):
            raise UringError(errno.ENOSYS, "io_uring ring access is written for x86-64 only")
        params = bytearray(PARAMS.size)
        flags = (IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER
                 | IORING_SETUP_DEFER_TASKRUN)
        struct.pack_into("<III", params, 0, entries, entries * 4, flags)
        pbuf = (ctypes.c_char * len(params)).from_buffer(params)
        ret = _syscall(ctypes.c_long(SYS_io_uring_setup), ctypes.c_long(entries), pbuf)
        if ret < 0:
            e = ctypes.get_errno()
            raise UringError(e, f"io_uring_setup: {os.strerror(e)}")
        self.fd = ret
        try:
            self._map(PARAMS.unpack(params))
        except BaseException:
            os.close(self.fd)
            raise
        self._pending = 0  # SQEs staged, not yet submitted
        self._ts = bytearray(TIMESPEC.size)
        self._ext = bytearray(GETEVENTS_ARG.size)
        GETEVENTS_ARG.pack_into(self._ext, 0, 0, 0, 0, address_of(self._ts))
        self._ext_ptr = address_of(self._ext)
        self.enters = 0

    def _map(self, p: tuple[int, ...]) -> None:
        (sq_entries, cq_entries, _fl, _cpu, _idle, features, _wq,
         sq_head, sq_tail, sq_mask, _sq_n, _sq_flags, _dropped, sq_array, _r1, _ua1,
         cq_head, cq_tail, cq_mask, _cq_n, _overflow, cqes, _cq_flags, _r2, _ua2) = p
        if not features & IORING_FEAT_SINGLE_MMAP or not features & IORING_FEAT_EXT_ARG:
            raise UringError(errno.ENOSYS, "io_uring without SINGLE_MMAP/EXT_ARG (kernel < 5.11)")
        size = max(sq_array + sq_entries * 4, cqes + cq_entries * CQE.size)
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        self._ring = mmap.mmap(self.fd, size, mmap.MAP_SHARED | mmap.MAP_POPULATE, prot,
                               offset=IORING_OFF_SQ_RING)
        self.sqes = mmap.mmap(self.fd, sq_entries * SQE_SIZE,
                              mmap.MAP_SHARED | mmap.MAP_POPULATE, prot, offset=IORING_OFF_SQES)
        self._u32 = memoryview(self._ring).cast("I")
        self._sq_tail_i = sq_tail // 4
        self._sq_head_i = sq_head // 4
        # the offsets structures give where each value lives in the ring, not the value
        self._sq_mask = self._u32[sq_mask // 4]
        self._sq_entries = sq_entries
        self._cq_head_i = cq_head // 4
        self._cq_tail_i = cq_tail // 4
        self._cq_mask = self._u32[cq_mask // 4]
        self._cqes = cqes
        self._tail = self._u32[self._sq_tail_i]
        for i in range(sq_entries):  # the SQ index array maps slot i to SQE i, once
            self._u32[sq_array // 4 + i] = i

    def sqe(self) -> int:
        """Stage one SQE: the byte offset of its slot in ``self.sqes``."""
        if self._pending >= self._sq_entries:
            self.enter(0)  # the SQ is full: submit what is staged first
        off = (self._tail & self._sq_mask) * SQE_SIZE
        self._tail = (self._tail + 1) & 0xFFFFFFFF
        self._pending += 1
        return off

    def publish(self) -> None:
        """Make the staged SQEs visible to the kernel (store the SQ tail)."""
        self._u32[self._sq_tail_i] = self._tail

    @property
    def pending(self) -> int:
        return self._pending

    def enter(self, min_complete: int, timeout_ms: int | None = None) -> bool:
        """Submit every staged SQE and, if ``min_complete``, wait for that many
        completions (at most ``timeout_ms``). False when the wait timed out or was
        interrupted by a signal (the caller looks at the CQ again either way)."""
        self._u32[self._sq_tail_i] = self._tail
        to_submit = self._pending
        self.enters += 1
        if min_complete and timeout_ms is not None:
            TIMESPEC.pack_into(self._ts, 0, timeout_ms // 1000, (timeout_ms % 1000) * 1_000_000)
            L = ctypes.c_long  # (about to sleep: the slower full-width call is fine)
            ret = _syscall(L(SYS_io_uring_enter), L(self.fd), L(to_submit), L(min_complete),
                           L(IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG),
                           ctypes.c_void_p(self._ext_ptr), L(GETEVENTS_ARG.size))
        else:
            # small non-negative ints only: ctypes passes them as C ints, 4x cheaper
            # than building c_long objects (1.6 against 7 µs a call here)
            ret = _syscall(SYS_io_uring_enter, self.fd, to_submit, min_complete,
                           IORING_ENTER_GETEVENTS, None, 0)
        if ret < 0:
            e = ctypes.get_errno()
            if e in (errno.ETIME, errno.EINTR, errno.EAGAIN, errno.EBUSY):
                # EBUSY/EAGAIN: the CQ is full or memory is short; the caller reaps first
                self._pending = (self._tail - self._u32[self._sq_head_i]) & 0xFFFFFFFF
                return False
            raise OSError(e, f"io_uring_enter: {os.strerror(e)}")
        self._pending -= min(ret, to_submit)
        return True

    def completions(self) -> Iterator[tuple[int, int, int]]:
        """(user_data, res, flags) of every CQE that arrived; each is consumed
        (the CQ head moves) before the next one is yielded."""
        u32 = self._u32
        head = u32[self._cq_head_i]
        while head != u32[self._cq_tail_i]:
            cqe = CQE.unpack_from(self._ring, self._cqes + (head & self._cq_mask) * CQE.size)
            head = (head + 1) & 0xFFFFFFFF
            u32[self._cq_head_i] = head
            yield cqe

    def close(self) -> None:
        """Unmap the rings and close the instance (the kernel cancels what is in flight)."""
        for m in (self._u32,):
            m.release()
        self._ring.close()
        self.sqes.close()
        os.close(self.fd)


def probe() -> str | None:
    """Why io_uring cannot be used here, or None when a ring can be created."""
    try:
        Ring(4).close()
    except OSError as e:
        return str(e)
    return None


__all__ = [
    "CQE",
    "IORING_CQE_F_MORE",
    "IORING_OP_POLL_ADD",
    "IORING_OP_URING_CMD",
    "IORING_POLL_ADD_MULTI",
    "SQE_CMD_OFFSET",
    "SQE_HEAD",
    "SQE_SIZE",
    "Ring",
    "UringError",
    "address_of",
    "probe",
]
