"""Page arena: page frames in anonymous-memory segments, viewed through numpy.

Frame numbers are global ints: frame ``f`` lives in segment ``f // fps`` at
byte ``(f % fps) * PAGE_SIZE`` of that segment's mapping.  Frame 0 is the
shared zero page: it is never written and only ever handed out read-only.

Why private anonymous memory (not the memfd of ARCHITECTURE.md decision 3;
docs/decisions.md, 7): freeing a frame still returns its memory to the host at
once (``madvise(MADV_DONTNEED)``; the frame reads as zero afterwards), replies
are still memoryviews of the frames, and the host kernel allocates and zeroes
anonymous 4 KiB pages 40% faster than shmem pages (3.9 vs 2.8 GiB/s with
MADV_POPULATE_WRITE on this machine) -- the largest cost of a large write.
Segments are ``MADV_NOHUGEPAGE`` (memory stays proportional to the pages
stored, and a 4 KiB free really frees) and ``MADV_DONTFORK`` (a child process
neither shares nor copies the data).  Why segments: the arena grows by
``segment_bytes`` at a time without remapping (existing memoryviews into
older segments stay valid).

Restartable mounts (``memfd=``, docs/restart-design.md): the segments are
consecutive ranges of one memfd mapped MAP_SHARED, which a supervisor process
holds across the server's death, so the data outlives the process; frees punch
the shared memory (MADV_REMOVE) instead of MADV_DONTNEED (which would only drop
this process's view of it).  ``allocator_state``/``restore_allocator_state``
carry the allocator between processes (in a snapshot) and ``replaying`` turns
every data-touching method into a no-op while the journal is replayed: the
memfd already holds the final bytes, only the bookkeeping is rebuilt.

Allocation prefers contiguous runs because READ replies are built from merged
memoryviews (one iovec per run): freed runs are kept whole on a free list and
reused first (their contents are zero because they were discarded), then fresh
segment space is handed out by a bump pointer.  ``alloc`` never fails: limits
are the Budget's job.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import mmap
import os
import threading
from collections.abc import Sequence

import numpy as np

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

# Read-only anonymous mapping that backs merged views of runs of the zero frame
# (reads of holes).  Untouched anonymous memory maps the host's zero page, so it
# costs address space but no RSS.
_ZERO_VIEW_BYTES = 16 << 20
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux 5.14+
_MADV_DONTFORK = getattr(mmap, "MADV_DONTFORK", 10)
_MADV_NOHUGEPAGE = getattr(mmap, "MADV_NOHUGEPAGE", 15)
_MADV_REMOVE = getattr(mmap, "MADV_REMOVE", 9)
# replay: the data-touching methods write into (and read from) this scratch mapping
_SINK_BYTES = 2 << 20
# SHMFS_REUSE_AHEAD=0 (A/B runs): the populate-ahead thread's free-list window as
# before change 29 of docs/performance.md
# free() of one unshared frame with scalar checks, no np.unique (a one-page punch);
# ``SHMFS_PUNCH1=0`` keeps the general path (same results, same errors).
PUNCH1 = os.environ.get("SHMFS_PUNCH1", "1") != "0"
REUSE_AHEAD = os.environ.get("SHMFS_REUSE_AHEAD", "1") != "0"
# Frames alloc1 takes from the allocator in one batch (set_reserve, enabled by the
# session; docs/performance.md change 30); SHMFS_RESERVE=0 turns it off (A/B runs)
RESERVE_FRAMES = max(int(os.environ.get("SHMFS_RESERVE", "64")), 0)

# mmap.madvise holds the GIL for the whole syscall (measured: a 512 MiB
# MADV_POPULATE_WRITE stops every other thread for 0.2 s); the populate-ahead
# thread calls libc's madvise through ctypes, which releases it.
_libc = ctypes.CDLL(None, use_errno=True)
_madvise = _libc.madvise
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_madvise.restype = ctypes.c_int
_mincore = _libc.mincore
_mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_mincore.restype = ctypes.c_int


# process_madvise(2) on ourselves for frees of many scattered runs (Arena._discard_batch)
_SYS_PROCESS_MADVISE, _SYS_PIDFD_OPEN = 440, 434  # x86-64 and the generic table alike
_IOV_MAX = 1024
_BATCH_DISCARD_MIN = 16  # fewer runs: plain madvise per run
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_PIDFD = -1  # -1 not opened yet, -2 unsupported
_PIDFD_PID = 0


def _open_pidfd() -> None:
    global _PIDFD, _PIDFD_PID
    fd = _libc.syscall(_SYS_PIDFD_OPEN, os.getpid(), 0)
    _PIDFD = int(fd) if fd >= 0 else -2
    _PIDFD_PID = os.getpid()


class Arena:
    """Page frames in anonymous-memory segments; frame 0 is the shared zero page."""

    ZERO_FRAME = 0

    def __init__(
        self, segment_bytes: int = 256 << 20, name: str = "shmfs", *, populate: bool = True,
        memfd: int | None = None,
    ) -> None:
        if segment_bytes < 2 * PAGE_SIZE or segment_bytes % PAGE_SIZE:
            raise ValueError("segment_bytes must be a multiple of PAGE_SIZE, >= 2 pages")
        self.segment_bytes = segment_bytes
        self.fps = segment_bytes >> PAGE_SHIFT  # frames per segment
        self.name = name
        self.memfd = memfd  # segments are MAP_SHARED ranges of this memfd (restartable)
        self.replaying = False  # set_replaying(): bookkeeping only, no data touched
        # frames whose bytes may be stale though they are free (mark_free_stale): punched
        # when next allocated; None when there are none
        self._stale: np.ndarray | None = None
        self._nstale = 0
        self._sink: mmap.mmap | None = None
        self._mmaps: list[mmap.mmap] = []
        self._bufs: list[np.ndarray] = []  # flat uint8 view of each segment
        self._mvs: list[memoryview] = []  # memoryview of each segment
        self._in_use = np.zeros(0, dtype=np.bool_)
        # copy-on-write sharing (vmcore/cow.py): extra page-cache references of
        # each frame (0 = one owner); nshared is their sum, so the write path
        # skips every share check while nothing is shared
        self._refs = np.zeros(0, dtype=np.int32)
        self.nshared = 0
        self.frames_shared = 0  # cumulative: references added by share()
        self.cow_breaks = 0  # cumulative: shared frames copied for a writer
        self._limit = 0  # frames covered by segments
        self._bump = 1  # next never-used frame (frame 0 is the zero page)
        self._free_runs: list[tuple[int, int]] = []  # (first frame, length)
        self._nfree = 0
        self._zero_map = mmap.mmap(-1, _ZERO_VIEW_BYTES, prot=mmap.PROT_READ)
        self._zero_mv = memoryview(self._zero_map)
        self.frames_allocated = 0  # cumulative
        self.frames_freed = 0  # cumulative
        self.frames_returned = 0  # cumulative: punched back to the host
        self.punch_calls = 0
        self._populate = populate  # MADV_POPULATE_WRITE allocated frames
        self._addrs: list[int] = []  # address of each segment's mapping (for ctypes madvise)
        # populate-ahead (start_populate_ahead): frames [bump, _ready) are populated
        self._cond = threading.Condition(threading.Lock())
        self._ahead = 0  # frames to keep populated past the bump pointer; 0 = off
        self._ahead_chunk = 0
        self._ready = 1
        self._busy: tuple[int, int] | None = None  # range the thread is populating now
        self._thread: threading.Thread | None = None
        self._closing = False
        self.frames_populated_ahead = 0  # cumulative
        # free frames the thread populated (reused runs come back punched): a flag
        # per frame, meaningful only while the frame is free, and their count
        self._pop = np.zeros(0, dtype=np.bool_)
        self._free_ready = 0
        # the reserve (set_reserve): frames taken from the allocator in one batch,
        # in use for the allocator but not yet handed out; the next one is last
        self._reserve = 0
        self._res: list[int] = []
        self._res_lo = self._res_hi = 0  # bounds of the batch (free's check)
        self._grow()
        self._in_use[0] = True  # the zero page is permanently "allocated"

    # -- segments ------------------------------------------------------------------

    def _grow(self) -> None:
        if self.memfd is None:
            mm = mmap.mmap(-1, self.segment_bytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                           prot=mmap.PROT_READ | mmap.PROT_WRITE)
        else:
            end = (len(self._mmaps) + 1) * self.segment_bytes
            if os.fstat(self.memfd).st_size < end:  # a restarted server maps what exists
                os.ftruncate(self.memfd, end)
            mm = mmap.mmap(self.memfd, self.segment_bytes, flags=mmap.MAP_SHARED,
                           prot=mmap.PROT_READ | mmap.PROT_WRITE,
                           offset=end - self.segment_bytes)
        for advice in (_MADV_NOHUGEPAGE, _MADV_DONTFORK):
            try:
                mm.madvise(advice)
            except OSError:  # an older or stricter kernel: correct without them
                pass
        self._mmaps.append(mm)
        buf = np.frombuffer(mm, dtype=np.uint8)
        self._bufs.append(buf)
        self._mvs.append(memoryview(mm))
        self._addrs.append(buf.ctypes.data)
        self._limit += self.fps  # last: the populate thread reads it without the main thread
        self._in_use = np.concatenate([self._in_use, np.zeros(self.fps, dtype=np.bool_)])
        self._refs = np.concatenate([self._refs, np.zeros(self.fps, dtype=np.int32)])
        with self._cond:
            self._pop = np.concatenate([self._pop, np.zeros(self.fps, dtype=np.bool_)])

    # -- allocation ----------------------------------------------------------------

    def alloc(self, n: int = 1) -> np.ndarray:
        """Return n zero-filled frames (int64), contiguous where possible."""
        if n <= 0:
            return np.empty(0, dtype=np.int64)
        frames = self._take(n)
        self.frames_allocated += n
        return frames

    def _take(self, n: int) -> np.ndarray:
        """alloc(n) without counting the frames as allocated (the reserve's batch)."""
        pieces: list[tuple[int, int]] = []
        need = n
        runs = self._free_runs
        while need and runs:
            start, length = runs[-1]
            if length <= need:
                runs.pop()
                pieces.append((start, length))
                need -= length
            else:
                runs[-1] = (start + need, length - need)
                pieces.append((start, need))
                need = 0
        self._nfree -= n - need
        fresh = len(pieces)  # pieces[fresh:] come from the bump pointer
        while need:
            if self._bump >= self._limit:
                self._grow()
            take = min(need, self._limit - self._bump)
            pieces.append((self._bump, take))
            self._bump += take
            need -= take
        if self._stale is not None and not self.replaying:
            for s, k in pieces:
                self._scrub(s, k)
        if self._populate and not self.replaying:
            ready = self._ahead_ready() if self._ahead else 0
            for i, (s, k) in enumerate(pieces):
                if i < fresh and self._ahead:
                    self._prefault_reused(s, k)
                    continue
                if i >= fresh and s < ready:  # populated ahead: only the rest is faulted
                    k -= min(k, ready - s)
                    s = ready
                if k:
                    self._prefault(s, k)
        if len(pieces) == 1:
            s, k = pieces[0]
            frames = np.arange(s, s + k, dtype=np.int64)
        else:
            frames = np.concatenate([np.arange(s, s + k, dtype=np.int64) for s, k in pieces])
        self._in_use[frames] = True
        return frames

    def alloc1(self) -> int:
        """One zero-filled frame as a plain int: ``alloc(1)`` without numpy.

        Why: an appending 4 KiB write allocates one page per request, and the
        general ``alloc`` (numpy arange, run bookkeeping, a MADV_POPULATE_WRITE
        syscall for the single page) was most of its extra cost over an
        overwrite (docs/performance.md, change 10). One page is not prefaulted:
        the copy that follows faults it in at the same cost as the madvise.

        With a reserve (``set_reserve``) the frame is the reserve's next one, and an
        empty reserve is refilled by one ``alloc``-like batch first."""
        res = self._res
        if res:  # native/hotpath.c's WRITE pops the same list the same way
            self.frames_allocated += 1
            return res.pop()
        if self._reserve and not self.replaying:
            return self._refill()
        runs = self._free_runs
        if runs:
            s, k = runs[-1]
            if k == 1:
                runs.pop()
            else:
                runs[-1] = (s + 1, k - 1)
            self._nfree -= 1
            if self._ahead and not self.replaying:  # the thread may have populated it: uncount
                with self._cond:
                    # in use from here on, under the thread's lock: a populate that ends
                    # after this no longer counts it (``newly``), one that ended before
                    # left _pop set, uncounted here -- either order counts it once
                    self._in_use[s] = True
                    if self._pop[s]:
                        self._pop[s] = False
                        self._free_ready -= 1
                    if self._free_ready < self._ahead >> 1 and runs:
                        self._cond.notify()
        else:
            if self._bump >= self._limit:
                self._grow()
            s = self._bump
            self._bump = s + 1
            if self._ahead and not self.replaying:
                self._ahead_ready()  # grows early and wakes the thread as alloc does
        if self._stale is not None and not self.replaying:
            self._scrub(s, 1)
        self._in_use[s] = True
        self.frames_allocated += 1
        return s

    # -- the reserve ---------------------------------------------------------------------

    def set_reserve(self, frames: int = RESERVE_FRAMES) -> None:
        """Let ``alloc1`` take ``frames`` frames at a time from the allocator and hand
        them out one by one (0: off, and the reserve is given back).

        Why (docs/performance.md change 30): with populate-ahead on, every ``alloc1``
        took the thread's lock (and woke it) and numpy-indexed its flags: 1.6-2.0 us
        of the appending thread's CPU a frame against 0.4-0.6 without the thread.
        A batch pays that once, and its frames are populated (by the thread or one
        MADV_POPULATE_WRITE) instead of faulted one by one by the copy; the C hot
        path's WRITE (native/hotpath.c) pops the reserve itself without calling
        Python.  The arena owns the reserved frames: they are in use for the
        allocator (never handed out twice, never populated or punched by the
        thread) but not counted in ``frames_allocated`` until handed out, so
        ``frames_in_use`` counts only frames that hold data; ``statistics()``
        shows them as ``frames_reserved``.  The budget (``size=``, statfs) charges
        pages, not frames, so it never sees them.  They are given back (punched, to
        the free list) when the arena has no frame in use any more (the last file
        freed), by ``set_reserve(0)`` and by ``close``; at most ``frames`` frames of
        memory hold no data.  Not on restartable mounts (``memfd``): their journal
        checks the allocator's state per record and a replay must hand out exactly
        the frames of the first run."""
        self._reserve = max(int(frames), 0) if self.memfd is None else 0
        if not self._reserve:
            self.release_reserve()

    def _refill(self) -> int:
        """(reserve on, empty) Take the next batch; hand out its first frame."""
        # ascending as handed out (pieces of free runs and fresh space come in the
        # allocator's order): a file's pages stay in runs for READs' merged iovecs
        frames = np.sort(self._take(self._reserve))[::-1].tolist()
        self._res_lo, self._res_hi = frames[-1], frames[0]  # the batch's bounds
        s = frames.pop()
        self._res = frames
        self.frames_allocated += 1
        return s

    def release_reserve(self) -> None:
        """Give the reserved frames back: punched, to the free list, as ``free``."""
        if not self._res:
            return
        f = np.array(sorted(self._res), dtype=np.int64)
        self._res = []
        self._put_back(f)

    def _prefault(self, start: int, n: int) -> None:
        """MADV_POPULATE_WRITE the frames' memory in one syscall per run: the
        store that follows then takes no page fault per 4 KiB (about 25% faster
        for fresh pages).  Silently disabled where the kernel lacks it (< 5.14)."""
        while n:
            seg, idx = divmod(start, self.fps)
            k = min(n, self.fps - idx)
            try:
                self._mmaps[seg].madvise(_MADV_POPULATE_WRITE, idx << PAGE_SHIFT, k << PAGE_SHIFT)
            except OSError:
                self._populate = False
                return
            start += k
            n -= k

    # -- populate ahead ----------------------------------------------------------------

    def start_populate_ahead(self, nbytes: int = 8 << 20, chunk_bytes: int = 2 << 20) -> None:
        """Keep up to ``nbytes`` of fresh segment space past the bump pointer
        populated by a background thread, so that a large write finds its
        frames already allocated and zeroed by the host kernel.

        Why: populating fresh pages (allocation + zeroing) was a third of
        a 1 MiB WRITE's service time; the thread does it on the other core
        while the session thread copies data (docs/performance.md).

        Two kinds of frames are populated ahead, each up to ``nbytes``: fresh
        segment space past the bump pointer, and the free runs that ``alloc``
        will reuse next (they come back punched, so rewriting after a delete
        or truncate costs the same faults).  The cost is at most
        ``2 * nbytes`` of resident memory that holds no data, counted in the
        daemon's RSS and never punched by the thread: it is the next data's
        memory.  ``free`` waits while the thread is inside a range it punches.
        """
        if not self._populate or nbytes <= 0 or self._thread is not None:
            return
        with self._cond:
            self._ahead = max(nbytes >> PAGE_SHIFT, 1)
            self._ahead_chunk = max(chunk_bytes >> PAGE_SHIFT, 1)
            self._ready = self._bump
        t = threading.Thread(target=self._populate_loop, name="shmfs-populate", daemon=True)
        self._thread = t
        t.start()

    def _ahead_ready(self) -> int:
        """End of the populated-ahead space; wakes the thread when it fell behind.
        Segments are grown early so that the thread always has room ahead."""
        if self._limit - self._bump < self._ahead + self._ahead_chunk:
            self._grow()
        ready = self._ready  # an int read is atomic; the lock is only taken to wake
        if ready - self._bump < self._ahead >> 1:  # the thread, once half is used up
            with self._cond:
                self._cond.notify()
        return ready

    def _prefault_reused(self, s: int, k: int) -> None:
        """Prefault a run taken from the free list, except the frames the thread
        already populated; wake the thread when its free-list headroom runs low."""
        with self._cond:
            self._in_use[s : s + k] = True  # as in alloc1: counted once whichever ends first
            pop = self._pop[s : s + k]
            done = int(np.count_nonzero(pop))
            if done:
                self._free_ready -= done
                missing = np.flatnonzero(~pop)
                pop[:] = False
            if self._free_ready < self._ahead >> 1 and self._free_runs:
                self._cond.notify()
        if not done:
            self._prefault(s, k)
        elif missing.size:
            for a, n in self._runs_sorted(missing + s):
                self._prefault(a, n)

    def _next_free_range(self) -> tuple[int, int] | None:
        """(lock held) The next free frames not yet populated that alloc will
        take soon (free runs are reused from the end of the list), or None."""
        if self._free_ready >= self._ahead:
            return None
        # the window is the next ``_ahead`` frames alloc will hand out (populated or
        # not), so the thread tops it up in whole chunks; a window of only the
        # unpopulated count (before change 29) ended inside the populated head and
        # left one or two frames a wake-up (docs/performance.md, change 29)
        window = self._ahead if REUSE_AHEAD else self._ahead - self._free_ready
        # a snapshot: alloc and free change the list without this lock (the slice
        # is taken under the GIL in one step; a stale entry costs a redundant populate)
        for s, k in reversed(self._free_runs[-64:]):
            w = min(k, window)  # alloc takes a run from its start
            todo = np.flatnonzero(~self._pop[s : s + w])
            if todo.size:
                a = s + int(todo[0])
                gaps = np.flatnonzero(np.diff(todo) != 1)
                b = s + int(todo[gaps[0]] if gaps.size else todo[-1]) + 1
                return a, min(b, a + self._ahead_chunk, (a // self.fps + 1) * self.fps)
            window -= w
            if window <= 0:
                return None
        return None

    def _populate_loop(self) -> None:
        fps = self.fps
        while True:
            with self._cond:
                while True:
                    if self._closing:
                        return
                    free = self._next_free_range() if self._free_runs else None
                    if free is not None:
                        start, end = free
                        break
                    start = max(self._ready, self._bump)
                    if self._ready - self._bump < self._ahead and start < self._limit:
                        seg = start // fps
                        end = min(start + self._ahead_chunk, self._bump + self._ahead,
                                  (seg + 1) * fps, self._limit)
                        break
                    self._cond.wait()
                seg = start // fps
                addr = self._addrs[seg] + ((start - seg * fps) << PAGE_SHIFT)
                self._busy = (start, end)
            rc = _madvise(addr, (end - start) << PAGE_SHIFT, _MADV_POPULATE_WRITE)  # no GIL
            with self._cond:
                self._busy = None
                self._cond.notify_all()  # free() may wait for this range
                if rc != 0:
                    self._ahead = 0  # no MADV_POPULATE_WRITE: allocation faults as before
                    return
                if free is not None:
                    # only frames still free count (alloc may have taken some meanwhile)
                    newly = ~self._in_use[start:end] & ~self._pop[start:end]
                    self._pop[start:end] |= newly
                    self._free_ready += int(np.count_nonzero(newly))
                else:
                    self._ready = max(self._ready, end)
                self.frames_populated_ahead += end - start

    def _wait_not_busy(self, lo: int, hi: int) -> None:
        """free(): never punch frames the populate thread is faulting in right now
        (it could fault them back in after the punch, leaking their memory)."""
        with self._cond:
            while self._busy is not None and self._busy[0] <= hi and lo < self._busy[1]:
                self._cond.wait()

    def free(self, frames: np.ndarray | Sequence[int]) -> None:
        """Give frames back: discard their memory (it returns to the
        host; they read as zero afterwards) and put them on the free list."""
        if PUNCH1 and not self.nshared and len(frames) == 1:
            fr = int(frames[0])
            if fr <= 0 or fr >= self._limit or not self._in_use[fr]:
                raise ValueError("free of a frame that is not allocated (or the zero frame)")
            if self._res and self._res_lo <= fr <= self._res_hi and fr in self._res:
                raise ValueError("free of a reserved frame (never handed out)")
            self.frames_freed += 1
            self._put_back(np.array((fr,), dtype=np.int64))
            if self._res and self.frames_allocated == self.frames_freed:
                self.release_reserve()  # nothing stored any more: no memory without data
            return
        if self.nshared:
            f, cnt = np.unique(np.asarray(frames, dtype=np.int64), return_counts=True)
        else:
            f = np.unique(np.asarray(frames, dtype=np.int64))  # sorted, no duplicates
        if f.size == 0:
            return
        lo, hi = int(f[0]), int(f[-1])
        if lo <= 0 or hi >= self._limit or not self._in_use[f].all():
            raise ValueError("free of a frame that is not allocated (or the zero frame)")
        # (the batch's bounds spare most frees the isin: f is sorted)
        if self._res and lo <= self._res_hi and hi >= self._res_lo and np.isin(
                f, self._res).any():
            raise ValueError("free of a reserved frame (never handed out)")
        if self.nshared:
            # a shared frame loses one reference per entry; only the last one frees it
            dec = np.minimum(self._refs[f], cnt).astype(np.int32)
            if dec.any():
                self._refs[f] -= dec
                self.nshared -= int(dec.sum())
            rest = cnt - dec
            if (rest > 1).any():
                raise ValueError("free of a frame more times than it is referenced")
            f = f[rest == 1]
            if f.size == 0:
                return
        self.frames_freed += int(f.size)
        self._put_back(f)
        if self._res and self.frames_allocated == self.frames_freed:
            self.release_reserve()  # nothing stored any more: no memory without data

    def _put_back(self, f: np.ndarray) -> None:
        """Frames (sorted, distinct, in use, unshared) back to the free list, punched."""
        self._in_use[f] = False
        if self.replaying:  # the frames' bytes are the memfd's business (set_replaying)
            runs = self._runs_sorted(f)
            self._free_runs.extend(runs)
            self._nfree += int(f.size)
            self.frames_returned += int(f.size)  # the first run punched them
            return
        if self._thread is not None:
            self._wait_not_busy(int(f[0]), int(f[-1]))
            with self._cond:
                # punched below: not populated any more (a frame alloc took while the
                # thread was populating it may still be counted: uncount it here)
                self._free_ready -= int(np.count_nonzero(self._pop[f]))
                self._pop[f] = False
        runs = self._runs_sorted(f)
        if self.memfd is not None:  # shared memory: DONTNEED would keep the pages
            for start, length in runs:
                seg, idx = divmod(start, self.fps)
                self._mmaps[seg].madvise(_MADV_REMOVE, idx << PAGE_SHIFT, length << PAGE_SHIFT)
                self.punch_calls += 1
        elif len(runs) < _BATCH_DISCARD_MIN or not self._discard_batch(runs):
            for start, length in runs:
                seg, idx = divmod(start, self.fps)
                self._mmaps[seg].madvise(mmap.MADV_DONTNEED, idx << PAGE_SHIFT,
                                        length << PAGE_SHIFT)
                self.punch_calls += 1
        self._free_runs.extend(runs)
        self._nfree += int(f.size)
        self.frames_returned += int(f.size)

    # -- copy-on-write sharing (vmcore/cow.py) -----------------------------------------

    def share(self, frames: np.ndarray) -> None:
        """Add one reference to each entry of ``frames`` (allocated, not the zero
        frame; a frame may repeat): another page-cache slot now holds it.
        ``free`` then drops references before it frees anything."""
        f = np.asarray(frames, dtype=np.int64)
        if f.size == 0:
            return
        if int(f.min()) <= 0 or int(f.max()) >= self._limit or not self._in_use[f].all():
            raise ValueError("share of a frame that is not allocated (or the zero frame)")
        np.add.at(self._refs, f, 1)
        self.nshared += int(f.size)
        self.frames_shared += int(f.size)

    def shared_mask(self, frames: np.ndarray) -> np.ndarray:
        """Which entries of ``frames`` (-1 = hole) are held by more than one slot."""
        out = np.zeros(frames.size, dtype=np.bool_)
        if self.nshared:
            sel = frames > 0
            out[sel] = self._refs[frames[sel]] > 0
        return out

    def is_shared(self, frame: int) -> bool:
        """True when more than one page-cache slot holds ``frame`` (a write must copy)."""
        return bool(self.nshared) and frame > 0 and bool(self._refs[frame])

    def refcount(self, frame: int) -> int:
        """Page-cache slots holding ``frame`` (1 for a private frame, 0 if free)."""
        return int(self._refs[frame]) + 1 if self._in_use[frame] and frame > 0 else 0

    def copy_frames(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Copy the contents of frames ``src[i]`` into ``dst[i]`` (do_wp_page's copy)."""
        n = src.size
        if n == 0 or self.replaying:
            return
        fps = self.fps
        # one numpy copy per run contiguous on both sides (alloc hands out runs)
        brk = np.flatnonzero((np.diff(src) != 1) | (np.diff(dst) != 1)
                             | (src[1:] % fps == 0) | (dst[1:] % fps == 0)) + 1
        starts = [0, *brk.tolist()]
        ends = [*brk.tolist(), n]
        sl, dl = src.tolist(), dst.tolist()
        for a, b in zip(starts, ends, strict=True):
            ss, si = divmod(sl[a], fps)
            ds, di = divmod(dl[a], fps)
            k = (b - a) << PAGE_SHIFT
            self._bufs[ds][di << PAGE_SHIFT : (di << PAGE_SHIFT) + k] = (
                self._bufs[ss][si << PAGE_SHIFT : (si << PAGE_SHIFT) + k])

    def _discard_batch(self, runs: list[tuple[int, int]]) -> bool:
        """MADV_DONTNEED of many scattered runs with process_madvise(2) on ourselves,
        up to IOV_MAX runs a call: the host kernel flushes the TLB once per call rather
        than once per run (6.16+), 4096 scattered frames 28 -> 11 ms here
        (docs/performance.md).  False if the kernel refuses (older than 6.13): the
        caller falls back to one madvise per run."""
        global _PIDFD
        if _PIDFD == -2:
            return False
        if _PIDFD == -1 or _PIDFD_PID != os.getpid():
            _open_pidfd()
            if _PIDFD < 0:
                return False
        a = np.array(runs, dtype=np.int64)
        seg, idx = np.divmod(a[:, 0], self.fps)
        iov = np.empty((len(a), 2), dtype=np.uint64)
        iov[:, 0] = np.asarray(self._addrs, dtype=np.uint64)[seg] + (
            idx.astype(np.uint64) << np.uint64(PAGE_SHIFT))
        iov[:, 1] = a[:, 1].astype(np.uint64) << np.uint64(PAGE_SHIFT)
        done = 0
        while done < len(iov):
            part = iov[done : done + _IOV_MAX]
            want = int(part[:, 1].sum())
            r = _libc.syscall(_SYS_PROCESS_MADVISE, _PIDFD, ctypes.c_void_p(part.ctypes.data),
                              len(part), mmap.MADV_DONTNEED, 0)
            if r != want:
                if done == 0 and r < 0:  # nothing done: unsupported, fall back for good
                    _PIDFD = -2
                    return False
                for start, length in runs[done:]:  # partial: finish run by run
                    seg1, idx1 = divmod(start, self.fps)
                    self._mmaps[seg1].madvise(mmap.MADV_DONTNEED, idx1 << PAGE_SHIFT,
                                              length << PAGE_SHIFT)
                return True
            done += len(part)
            self.punch_calls += 1
        return True

    def _runs_sorted(self, f: np.ndarray) -> list[tuple[int, int]]:
        """Contiguous runs (first, length) of a sorted frame array, split at segments."""
        if f.size == 1:
            return [(int(f[0]), 1)]
        brk = np.flatnonzero((np.diff(f) != 1) | (f[1:] % self.fps == 0)) + 1
        starts = np.concatenate(([0], brk))
        ends = np.concatenate((brk, [f.size]))
        return list(zip(f[starts].tolist(), (ends - starts).tolist(), strict=True))

    # -- access ----------------------------------------------------------------------

    def page(self, frame: int) -> np.ndarray:
        """uint8[4096] view of a frame (writable, except the zero frame)."""
        if self.replaying:
            return np.frombuffer(self._sink_mv()[:PAGE_SIZE], dtype=np.uint8)
        seg, idx = divmod(int(frame), self.fps)
        arr = self._bufs[seg][idx << PAGE_SHIFT : (idx + 1) << PAGE_SHIFT]
        if frame == self.ZERO_FRAME:
            arr = arr.view()
            arr.flags.writeable = False
        return arr

    def view(self, frame: int) -> memoryview:
        """4096-byte memoryview of a frame (read-only for the zero frame)."""
        if self.replaying:
            return self._sink_mv()[:PAGE_SIZE]
        seg, idx = divmod(int(frame), self.fps)
        mv = self._mvs[seg][idx << PAGE_SHIFT : (idx + 1) << PAGE_SHIFT]
        return mv.toreadonly() if frame == self.ZERO_FRAME else mv

    def _runs(self, frames: np.ndarray) -> tuple[list[int], list[int]]:
        """Split a frame list into runs: consecutive frames in one segment, or
        consecutive zero frames.  Returns (run start indexes, run lengths)."""
        n = frames.size
        if n == 1:
            return [0], [1]
        first = int(frames[0])
        last = int(frames[-1])
        # fast paths: one contiguous block in one segment / all zero frames
        if last - first == n - 1 and first != 0 and first // self.fps == last // self.fps:
            if (np.diff(frames) == 1).all():
                return [0], [n]
        elif first == 0 and last == 0 and not frames.any():
            return [0], [n]
        prev = frames[:-1]
        cur = frames[1:]
        joined = ((cur == prev + 1) & (prev != 0) & (cur % self.fps != 0)) | (
            (cur == 0) & (prev == 0)
        )
        brk = np.flatnonzero(~joined) + 1
        if brk.size == 0:
            return [0], [n]
        starts = [0, *brk.tolist()]
        lens = np.diff([*starts, n]).tolist()
        return starts, lens

    def view1(self, frame: int, first_off: int, length: int) -> memoryview:
        """Bytes [first_off, first_off+length) of one frame (inside one page), no
        copy; the zero frame's from the read-only zero mapping."""
        if frame == 0:
            return self._zero_mv[first_off : first_off + length]
        seg, idx = divmod(frame, self.fps)
        base = (idx << PAGE_SHIFT) + first_off
        return self._mvs[seg][base : base + length]

    def views(self, frames: np.ndarray, first_off: int, length: int) -> list[memoryview]:
        """iovec for bytes [first_off, first_off+length) of the concatenation of
        `frames`: one memoryview per contiguous run, no copies.  Runs of the zero
        frame are served from a read-only zero mapping."""
        if length <= 0:
            return []
        if self.replaying:
            sink = self._sink_mv()
            return [sink[: min(_SINK_BYTES, length - a)] for a in range(0, length, _SINK_BYTES)]
        if frames.size == 1:  # one page (4 KiB reads): no run analysis
            return [self.view1(int(frames[0]), first_off, length)]
        starts, lens = self._runs(frames)
        out: list[memoryview] = []
        end_off = first_off + length
        fl = frames.tolist() if len(starts) > 1 else [int(frames[0])]
        fps = self.fps
        for s, k in zip(starts, lens, strict=True):
            lo = s << PAGE_SHIFT
            hi = (s + k) << PAGE_SHIFT
            if hi <= first_off or lo >= end_off:
                continue
            a = max(lo, first_off) - lo  # byte offset inside the run
            b = min(hi, end_off) - lo
            f0 = fl[s]
            if f0 == 0:
                while a < b:
                    step = min(b - a, _ZERO_VIEW_BYTES)
                    out.append(self._zero_mv[:step])
                    a += step
                continue
            seg, idx = divmod(f0, fps)
            base = idx << PAGE_SHIFT
            out.append(self._mvs[seg][base + a : base + b])
        return out

    def store1(self, frame: int, first_off: int, data: memoryview) -> None:
        """Store ``data`` (bytes, within one page) at ``first_off`` of one frame:
        one memcpy (a memoryview slice assignment)."""
        if frame <= 0:
            raise ValueError("store to the zero frame")
        if self.replaying:  # the frame's bytes are the memfd's business (set_replaying)
            return
        n = data.nbytes
        if first_off + n > PAGE_SIZE:
            raise ValueError("store past the end of the frame")
        seg, idx = divmod(frame, self.fps)
        base = (idx << PAGE_SHIFT) + first_off
        self._mvs[seg][base : base + n] = data

    def copy_in(self, frames: np.ndarray, first_off: int, data: memoryview) -> None:
        """Store `data` starting at byte first_off of frames[0], one numpy copy
        per contiguous run of frames."""
        if self.replaying:
            return
        if frames.size == 1 and isinstance(data, memoryview) and data.format == "B":
            # one page (4 KiB writes): a memoryview slice assignment is one memcpy
            f0 = int(frames[0])
            if f0 == 0:
                raise ValueError("copy_in to the zero frame")
            n = data.nbytes
            if first_off + n > PAGE_SIZE:
                raise ValueError("copy_in past the end of the frames")
            seg, idx = divmod(f0, self.fps)
            base = (idx << PAGE_SHIFT) + first_off
            self._mvs[seg][base : base + n] = data
            return
        src = np.frombuffer(data, dtype=np.uint8)
        total = src.size
        if total == 0:
            return
        starts, lens = self._runs(frames)
        fl = frames.tolist() if len(starts) > 1 else [int(frames[0])]
        fps = self.fps
        end_off = first_off + total
        for s, k in zip(starts, lens, strict=True):
            lo = s << PAGE_SHIFT
            hi = (s + k) << PAGE_SHIFT
            if hi <= first_off or lo >= end_off:
                continue
            f0 = fl[s]
            if f0 == 0:
                raise ValueError("copy_in to the zero frame")
            a = max(lo, first_off)
            b = min(hi, end_off)
            seg, idx = divmod(f0, fps)
            base = (idx << PAGE_SHIFT) - lo
            self._bufs[seg][base + a : base + b] = src[a - first_off : b - first_off]

    def zero_range(self, frame: int, start: int, end: int) -> None:
        """Zero bytes [start, end) of one frame (partial-page truncate/punch)."""
        if self.replaying:
            return
        if frame == self.ZERO_FRAME or not 0 <= start <= end <= PAGE_SIZE:
            if frame == self.ZERO_FRAME:
                return
            raise ValueError(f"bad zero_range({start}, {end})")
        seg, idx = divmod(int(frame), self.fps)
        base = idx << PAGE_SHIFT
        self._bufs[seg][base + start : base + end] = 0

    # -- restartable mounts (docs/restart-design.md) ------------------------------------

    def set_replaying(self, on: bool) -> None:
        """While on: alloc/free keep their bookkeeping exactly (the same frames as the
        first time) but no byte of a frame is read, written, zeroed or punched: the
        memfd already holds what the replayed requests left there.  Reads and writes
        through page()/view()/views() go to a scratch mapping instead."""
        self.replaying = on
        if not on and self._sink is not None:
            try:
                self._sink.close()
            except BufferError:
                # a view of the scratch page can still be held by a reference cycle
                # left by a replayed request (seen with window writes after a
                # truncate): collect it and close; should anything still hold a view,
                # it keeps only this scratch mapping alive -- never a frame of the arena
                gc.collect()
                with contextlib.suppress(BufferError):
                    self._sink.close()
            self._sink = None

    def mark_free_stale(self) -> int:
        """After a restart: every frame free now (free runs and the space past the
        bump pointer) may hold bytes a killed request wrote before its record, and
        alloc() promises zeroed frames, so each is punched when next handed out
        (once; the request the kernel resends first gets its old frames back zeroed,
        then rewrites them). Returns how many frames are marked."""
        b = self._bump
        while b < self._limit:  # past the bump pointer: punched now, one call a segment
            seg, idx = divmod(b, self.fps)
            k = self.fps - idx
            self._mmaps[seg].madvise(_MADV_REMOVE if self.memfd is not None
                                     else mmap.MADV_DONTNEED, idx << PAGE_SHIFT, k << PAGE_SHIFT)
            b += k
        stale = ~self._in_use[: self._bump]  # the free runs: punched as they are reused
        n = int(np.count_nonzero(stale))
        self._stale, self._nstale = (stale, n) if n else (None, 0)
        return n + self._limit - self._bump

    def _scrub(self, start: int, n: int) -> None:
        """Punch the stale frames among [start, start+n) before they are handed out."""
        st = self._stale
        if st is None:  # the last stale frame went with an earlier piece of this alloc
            return
        sel = st[start : start + n]
        if not sel.any():
            return
        for a, k in self._runs_sorted(np.flatnonzero(sel) + start):
            seg, idx = divmod(a, self.fps)
            self._mmaps[seg].madvise(_MADV_REMOVE if self.memfd is not None
                                     else mmap.MADV_DONTNEED, idx << PAGE_SHIFT, k << PAGE_SHIFT)
        self._nstale -= int(np.count_nonzero(sel))
        sel[:] = False
        if self._nstale <= 0:
            self._stale = None

    def _sink_mv(self) -> memoryview:
        if self._sink is None:
            self._sink = mmap.mmap(-1, _SINK_BYTES)
        return memoryview(self._sink)

    def allocator_state(self) -> dict[str, object]:
        """What decides which frames ``alloc`` hands out next, and the reference
        counts: enough for another process over the same memfd to continue exactly.
        Arrays are cut at the bump pointer (nothing beyond it was ever used)."""
        b = self._bump
        return {
            "segment_bytes": self.segment_bytes, "bump": b, "limit": self._limit,
            "in_use": self._in_use[:b].copy(), "refs": self._refs[:b].copy(),
            "free_runs": list(self._free_runs), "nfree": self._nfree, "nshared": self.nshared,
            "counters": (self.frames_allocated, self.frames_freed, self.frames_returned,
                         self.frames_shared, self.cow_breaks),
        }

    def restore_allocator_state(self, st: dict[str, object]) -> None:
        """Continue from ``allocator_state()`` of a process that used the same memfd."""
        if st["segment_bytes"] != self.segment_bytes:
            raise ValueError("snapshot of an arena with another segment size")
        while self._limit < st["limit"]:  # type: ignore[operator]
            self._grow()
        b = int(st["bump"])  # type: ignore[call-overload]
        self._bump = b
        self._ready = max(self._ready, b)
        self._in_use[:] = False
        self._in_use[:b] = st["in_use"]
        self._refs[:] = 0
        self._refs[:b] = st["refs"]
        self._free_runs = list(st["free_runs"])  # type: ignore[call-overload]
        self._nfree = int(st["nfree"])  # type: ignore[call-overload]
        self.nshared = int(st["nshared"])  # type: ignore[call-overload]
        (self.frames_allocated, self.frames_freed, self.frames_returned, self.frames_shared,
         self.cow_breaks) = st["counters"]  # type: ignore[misc]

    # -- introspection -------------------------------------------------------------

    def resident_bytes(self) -> int:
        """Bytes of the segments backed by memory right now (mincore(2)): the
        frames in use plus what is populated ahead, never more than that."""
        total = 0
        for mm, addr in zip(self._mmaps, self._addrs, strict=True):
            vec = (ctypes.c_ubyte * (len(mm) >> PAGE_SHIFT))()
            if _mincore(addr, len(mm), vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
            total += int(np.count_nonzero(np.frombuffer(vec, dtype=np.uint8) & 1))
        return total << PAGE_SHIFT

    def statistics(self) -> dict[str, int]:
        """Frame counters; frames_in_use excludes the zero page."""
        return {
            "frames_in_use": self.frames_allocated - self.frames_freed,
            "frames_allocated": self.frames_allocated,
            "frames_freed": self.frames_freed,
            "frames_free": self._nfree,
            "frames_reserved": len(self._res),
            "free_runs": len(self._free_runs),
            "frames_returned": self.frames_returned,
            "punch_calls": self.punch_calls,
            "segments": len(self._mmaps),
            "bytes_mapped": len(self._mmaps) * self.segment_bytes,
            "bytes_resident": self.resident_bytes(),
            "frames_populated_ahead": self.frames_populated_ahead,
            "frames_shared_now": self.nshared,
            "frames_shared": self.frames_shared,
            "cow_breaks": self.cow_breaks,
            "frames_ready_ahead": (max(self._ready - self._bump, 0) + self._free_ready
                                   if self._ahead else 0),
        }

    def close(self) -> None:
        """Drop the mappings (views still exported keep theirs alive)."""
        self._res = []  # the memory goes with the mappings
        if self._thread is not None:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join()
            self._thread = None
        self._bufs.clear()
        for mv in self._mvs:
            try:
                mv.release()
            except BufferError:
                pass
        self._mvs.clear()
        for mm in self._mmaps:
            try:
                mm.close()
            except BufferError:  # a caller still holds a view; the GC will unmap it
                pass
        self._mmaps.clear()
