"""Sparse page index of one Mapping (the radix tree of an address_space).

Two levels: ``pgoff >> 9`` selects a chunk; a chunk is an int64[512] of frame
numbers (-1 = hole) plus a uint8[512] of page flags (PG_UPTODATE, PG_DIRTY).
A chunk exists only while it holds at least one page, so memory is
proportional to resident pages and never to i_size: a 1 TiB sparse file with a
few pages costs a few chunks.  Chunk keys are also kept in a sorted list so
range operations (truncate to the end, SEEK_DATA) visit only chunks that exist.

All range operations are vectorised per chunk (a 1 MiB I/O touches at most two
chunks): no Python loop per page.  Flags of hole slots are always 0.
"""

from __future__ import annotations

import bisect
import os
import sys
from collections.abc import Iterator
from types import MappingProxyType

import numpy as np

from .flags import PG_UPTODATE

CHUNK_SHIFT = 9
CHUNK_PAGES = 1 << CHUNK_SHIFT
CHUNK_MASK = CHUNK_PAGES - 1
HOLE = -1
# A one-page remove_range without the chunk walk (a one-page punch: uml_physmem's guests
# free a frame at a time); ``SHMFS_PUNCH1=0`` keeps the general path (same results).
PUNCH1 = os.environ.get("SHMFS_PUNCH1", "1") != "0"
# An empty page cache shares these read-only stand-ins instead of owning three
# empty dicts and a list (~250 bytes for each of 100,000 empty files); the first
# chunk replaces them, and dropping the last chunk puts them back.
_NO_CHUNKS: MappingProxyType = MappingProxyType({})
_NO_KEYS: tuple[int, ...] = ()
_HOLES = np.full(CHUNK_PAGES, HOLE, dtype=np.int64)  # a fresh chunk's frames (copied)


class PageCache:
    """pgoff -> (frame, flags), sparse."""

    __slots__ = ("_count", "_flags", "_frames", "_keys", "gen", "nrpages")

    def __init__(self) -> None:
        self._frames: dict[int, np.ndarray] = _NO_CHUNKS  # type: ignore[assignment]
        self._flags: dict[int, np.ndarray] = _NO_CHUNKS  # type: ignore[assignment]
        self._count: dict[int, int] = _NO_CHUNKS  # type: ignore[assignment]
        self._keys: list[int] = _NO_KEYS  # type: ignore[assignment]  # sorted chunk keys
        self.nrpages = 0
        self.gen = 0  # bumped by every change of which pages are held or their flags

    # -- iteration helpers ------------------------------------------------------------

    def _existing(self, pgoff: int, end: int | None) -> Iterator[tuple[int, int, int]]:
        """(key, lo, hi) slot ranges of existing chunks overlapping [pgoff, end)."""
        keys = self._keys
        i = bisect.bisect_left(keys, pgoff >> CHUNK_SHIFT)
        if end is None:
            sel = keys[i:]
        else:
            j = bisect.bisect_left(keys, ((end - 1) >> CHUNK_SHIFT) + 1)
            sel = keys[i:j]
        for k in sel:
            base = k << CHUNK_SHIFT
            lo = max(pgoff - base, 0)
            hi = CHUNK_PAGES if end is None else min(end - base, CHUNK_PAGES)
            yield k, lo, hi

    def _chunk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        fr = self._frames.get(k)
        if fr is None:
            if not self._keys:  # the first chunk: real containers from now on
                self._frames, self._flags, self._count, self._keys = {}, {}, {}, []
            fr = np.full(CHUNK_PAGES, HOLE, dtype=np.int64)
            self._frames[k] = fr
            self._flags[k] = np.zeros(CHUNK_PAGES, dtype=np.uint8)
            self._count[k] = 0
            bisect.insort(self._keys, k)
        return fr, self._flags[k]

    def _drop_chunk(self, k: int) -> None:
        del self._frames[k], self._flags[k], self._count[k]
        self._keys.pop(bisect.bisect_left(self._keys, k))
        if not self._keys:
            self._frames = self._flags = self._count = _NO_CHUNKS  # type: ignore[assignment]
            self._keys = _NO_KEYS  # type: ignore[assignment]

    # -- pickling (a restartable mount's snapshot, docs/restart-design.md) ---------------

    def __getstate__(self) -> tuple:
        """Only the held slots of each chunk, as one bytes object (slot numbers,
        frames, flags): a one-page file pickles to ~60 bytes instead of its
        chunk's 4.6 KB, and loads with three frombuffer calls, not three arrays."""
        chunks = []
        for k in self._keys:
            fr = self._frames[k]
            idx = np.flatnonzero(fr != HOLE)
            blob = b"".join((idx.astype(np.int16).tobytes(), fr[idx].tobytes(),
                             self._flags[k][idx].tobytes()))
            chunks.append((k, int(idx.size), blob, self._count[k]))
        return (self.nrpages, self.gen, chunks)

    def __setstate__(self, state: tuple) -> None:
        self.nrpages, self.gen, chunks = state
        self._frames = self._flags = self._count = _NO_CHUNKS  # type: ignore[assignment]
        self._keys = _NO_KEYS  # type: ignore[assignment]
        if chunks:
            self._frames, self._flags, self._count, self._keys = {}, {}, {}, []
        for k, n, blob, count in chunks:
            idx = np.frombuffer(blob, np.int16, n)
            fr = _HOLES.copy()
            fr[idx] = np.frombuffer(blob, np.int64, n, 2 * n)
            fl = np.zeros(CHUNK_PAGES, dtype=np.uint8)
            fl[idx] = np.frombuffer(blob, np.uint8, n, 10 * n)
            self._frames[k], self._flags[k], self._count[k] = fr, fl, count
            self._keys.append(k)

    # -- lookups --------------------------------------------------------------------------

    def lookup(self, pgoff: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(frames, flags) for pages [pgoff, pgoff+n): fresh arrays, -1/0 for holes."""
        k = pgoff >> CHUNK_SHIFT
        lo = pgoff & CHUNK_MASK
        if lo + n <= CHUNK_PAGES:  # fast path: one chunk
            fr = self._frames.get(k)
            if fr is None:
                return np.full(n, HOLE, dtype=np.int64), np.zeros(n, dtype=np.uint8)
            return fr[lo : lo + n].copy(), self._flags[k][lo : lo + n].copy()
        frames = np.full(n, HOLE, dtype=np.int64)
        flags = np.zeros(n, dtype=np.uint8)
        for k, lo, hi in self._existing(pgoff, pgoff + n):
            o = (k << CHUNK_SHIFT) + lo - pgoff
            frames[o : o + hi - lo] = self._frames[k][lo:hi]
            flags[o : o + hi - lo] = self._flags[k][lo:hi]
        return frames, flags

    def lookup1(self, pgoff: int) -> tuple[int, int]:
        """(frame, flags) of one page as plain ints (-1/0 for a hole): the
        single-page fault path, without building arrays."""
        fr = self._frames.get(pgoff >> CHUNK_SHIFT)
        if fr is None:
            return HOLE, 0
        i = pgoff & CHUNK_MASK
        return int(fr[i]), int(self._flags[pgoff >> CHUNK_SHIFT][i])

    def lookup_range(self, pgoff: int, n: int) -> np.ndarray:
        """Frames of pages [pgoff, pgoff+n) (-1 = hole)."""
        return self.lookup(pgoff, n)[0]

    def present_mask(self, pgoffs: np.ndarray, uptodate_only: bool = True) -> np.ndarray:
        """For each pgoff in ``pgoffs`` (any order): does it hold a page (an UPTODATE one by
        default)?  Cost: sorting the array, plus one step per chunk of this cache it hits."""
        out = np.zeros(len(pgoffs), dtype=bool)
        if not self._keys or not len(pgoffs):
            return out
        keys = pgoffs >> CHUNK_SHIFT
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        uk, starts = np.unique(sk, return_index=True)
        ends = np.append(starts[1:], len(sk))
        held = np.isin(uk, np.asarray(self._keys))
        for i in np.flatnonzero(held).tolist():
            k = int(uk[i])
            sel = order[starts[i] : ends[i]]
            slots = pgoffs[sel] & CHUNK_MASK
            if uptodate_only:
                out[sel] = (self._flags[k][slots] & PG_UPTODATE) != 0
            else:
                out[sel] = self._frames[k][slots] >= 0
        return out

    def count_range(self, pgoff: int, n: int, uptodate_only: bool = True) -> int:
        """Pages held in [pgoff, pgoff+n) (UPTODATE ones by default); cost per chunk held."""
        total = 0
        for k, lo, hi in self._existing(max(pgoff, 0), pgoff + n):
            if uptodate_only:
                total += int(np.count_nonzero(self._flags[k][lo:hi] & PG_UPTODATE))
            else:
                total += int(np.count_nonzero(self._frames[k][lo:hi] >= 0))
        return total

    def next_data(self, pgoff: int, uptodate_only: bool = True) -> int | None:
        """First pgoff >= pgoff holding a page (an UPTODATE page by default: for
        SEEK_DATA, fallocated pages are holes), or None."""
        for k, lo, hi in self._existing(pgoff, None):
            if uptodate_only:
                hit = np.flatnonzero(self._flags[k][lo:hi] & PG_UPTODATE)
            else:
                hit = np.flatnonzero(self._frames[k][lo:hi] >= 0)
            if hit.size:
                return (k << CHUNK_SHIFT) + lo + int(hit[0])
        return None

    def next_hole(self, pgoff: int, uptodate_only: bool = True) -> int:
        """First pgoff >= pgoff that is a hole (or !UPTODATE by default)."""
        pos = pgoff
        for k, lo, hi in self._existing(pgoff, None):
            base = k << CHUNK_SHIFT
            if base + lo > pos:  # a missing chunk (or slot) before this one
                return pos
            if uptodate_only:
                miss = np.flatnonzero((self._flags[k][lo:hi] & PG_UPTODATE) == 0)
            else:
                miss = np.flatnonzero(self._frames[k][lo:hi] < 0)
            if miss.size:
                return base + lo + int(miss[0])
            pos = base + hi
        return pos

    # -- updates -----------------------------------------------------------------------

    def insert_range(self, pgoff: int, frames: np.ndarray, flags: int | np.ndarray) -> None:
        """Install frames at [pgoff, pgoff+len(frames)); entries < 0 are skipped.
        The target slots must be holes."""
        n = frames.size
        pos = 0
        self.gen += 1
        while pos < n:
            k = (pgoff + pos) >> CHUNK_SHIFT
            lo = (pgoff + pos) & CHUNK_MASK
            m = min(CHUNK_PAGES - lo, n - pos)
            src = frames[pos : pos + m]
            sel = src >= 0
            cnt = int(np.count_nonzero(sel))
            if cnt:
                fr, fl = self._chunk(k)
                dst = fr[lo : lo + m]
                if (dst[sel] >= 0).any():
                    raise ValueError("insert over a resident page")
                dst[sel] = src[sel]
                fsrc = flags if np.isscalar(flags) else flags[pos : pos + m][sel]
                fl[lo : lo + m][sel] = fsrc
                self._count[k] += cnt
                self.nrpages += cnt
            pos += m

    def insert1(self, pgoff: int, frame: int, flags: int) -> None:
        """Install one frame at a hole (``insert_range`` of one page, without
        building arrays: the single-page allocating fault)."""
        k = pgoff >> CHUNK_SHIFT
        i = pgoff & CHUNK_MASK
        fr, fl = self._chunk(k)
        if fr[i] >= 0:
            raise ValueError("insert over a resident page")
        fr[i] = frame
        fl[i] = flags
        self._count[k] += 1
        self.nrpages += 1
        self.gen += 1

    def set_flags(self, pgoff: int, n: int, bits: int) -> None:
        """OR `bits` into the flags of the resident pages in [pgoff, pgoff+n)."""
        self.gen += 1
        k = pgoff >> CHUNK_SHIFT
        lo = pgoff & CHUNK_MASK
        if lo + n <= CHUNK_PAGES:
            fl = self._flags.get(k)
            if fl is not None:
                self._or_flags(self._frames[k][lo : lo + n], fl[lo : lo + n], bits)
            return
        for k, lo, hi in self._existing(pgoff, pgoff + n):
            self._or_flags(self._frames[k][lo:hi], self._flags[k][lo:hi], bits)

    @staticmethod
    def _or_flags(fr: np.ndarray, fl: np.ndarray, bits: int) -> None:
        resident = fr >= 0
        if resident.all():
            fl |= bits
        else:
            fl[resident] |= bits

    def replace(self, pgoffs: np.ndarray, frames: np.ndarray) -> None:
        """Put ``frames[i]`` in the resident slot ``pgoffs[i]`` (flags kept): a
        copy-on-write break swaps a shared frame for the writer's copy."""
        keys = pgoffs >> CHUNK_SHIFT
        for k in np.unique(keys).tolist():
            sel = keys == k
            fr = self._frames[k]
            slots = pgoffs[sel] & CHUNK_MASK
            if (fr[slots] < 0).any():
                raise ValueError("replace of a hole")
            fr[slots] = frames[sel]

    def remove_range(self, pgoff: int, n: int | None) -> np.ndarray:
        """Drop pages [pgoff, pgoff+n) (n None = to the end); return their frames."""
        if n == 1 and PUNCH1:
            self.gen += 1
            k = pgoff >> CHUNK_SHIFT
            fr = self._frames.get(k)
            slot = pgoff & CHUNK_MASK
            if fr is None or fr[slot] < 0 or pgoff < 0:
                return np.empty(0, dtype=np.int64)
            got = fr[slot : slot + 1].copy()
            fr[slot] = HOLE
            self._flags[k][slot] = 0
            self._uncount(k, 1)
            return got
        out: list[np.ndarray] = []
        end = None if n is None else pgoff + n
        self.gen += 1
        for k, lo, hi in list(self._existing(pgoff, end)):
            fr, fl = self._frames[k], self._flags[k]
            seg = fr[lo:hi]
            got = seg[seg >= 0]
            if got.size:
                out.append(got)
                seg[:] = HOLE
                fl[lo:hi] = 0
                self._uncount(k, got.size)
        return _joined(out)

    def remove_pages(self, pgoffs: np.ndarray) -> np.ndarray:
        """Drop the pages at the given (sorted, unique) pgoffs; return their frames.
        One vectorised pass per chunk touched, for scattered page sets."""
        out: list[np.ndarray] = []
        if not len(pgoffs) or not self._keys:
            return np.empty(0, dtype=np.int64)
        self.gen += 1
        keys = pgoffs >> CHUNK_SHIFT
        brk = np.flatnonzero(np.diff(keys)) + 1
        starts = np.concatenate(([0], brk)).tolist()
        ends = np.concatenate((brk, [len(pgoffs)])).tolist()
        for a, b in zip(starts, ends, strict=True):
            k = int(keys[a])
            fr = self._frames.get(k)
            if fr is None:
                continue
            slots = pgoffs[a:b] & CHUNK_MASK
            got = fr[slots]
            got = got[got >= 0]
            if not got.size:
                continue
            out.append(got)
            fr[slots] = HOLE
            self._flags[k][slots] = 0
            self._uncount(k, got.size)
        return _joined(out)

    def _uncount(self, k: int, n: int) -> None:
        """``n`` pages of chunk ``k`` were dropped; the chunk goes with its last page."""
        self._count[k] -= n
        self.nrpages -= n
        if self._count[k] == 0:
            self._drop_chunk(k)

    # -- introspection -------------------------------------------------------------

    @property
    def nr_chunks(self) -> int:
        return len(self._keys)

    def index_bytes(self) -> int:
        """Approximate bytes used by the index (arrays, dicts, key list)."""
        per_chunk = CHUNK_PAGES * 9 + 2 * 112  # int64 + uint8 slots + two ndarray headers
        return (
            len(self._keys) * per_chunk
            + sys.getsizeof(self._frames)
            + sys.getsizeof(self._flags)
            + sys.getsizeof(self._count)
            + sys.getsizeof(self._keys)
        )

    def statistics(self) -> dict[str, int]:
        return {
            "nrpages": self.nrpages,
            "chunks": self.nr_chunks,
            "index_bytes": self.index_bytes(),
        }


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """The frames removed, as one array (no copy for a single part)."""
    if not parts:
        return np.empty(0, dtype=np.int64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
