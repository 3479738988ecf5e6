"""Page tables of one VMA, as sparse chunked numpy arrays.

A PTE is one slot in four parallel arrays (no Python object per page):

``bits``  uint8: PTE_PRESENT, PTE_FILE, PTE_WRITE, PTE_DIRTY, PTE_ANON, PTE_OWNPROT
``frame`` int64: the arena frame of a present PTE
``pgoff`` int64: the object page a present PTE shows (``page->index``) or the
          offset a file PTE keeps (``pte_to_pgoff``)
``prot``  uint8: the page's own PROT_* bits when PTE_OWNPROT is set (the
          per-page-protection extension); otherwise unused

The three kinds of entry are those of the 2.6.23 kernel: *none* (``bits == 0``:
the page shows its linear position and faults through ``do_linear_fault``),
*present* (frame, writable, dirty; ANON marks a private COW copy, i.e.
``page->mapping != mapping``) and *file* (not present, keeps a pgoff: faults
through ``do_nonlinear_fault``).

Slots are indexed by absolute virtual page number (vpn = address >> 12) and
grouped in 512-entry chunks aligned like the kernel's PMD-level tables.  A chunk
is allocated on the first entry written into it and freed when its last entry
is cleared, so a VMA costs memory in proportion to its populated entries, never
to its length: a 2^40-byte mostly-empty VMA holds an empty dict.  Remapping one
page is O(1) (a dict lookup and four array stores); zapping a range is
vectorised per chunk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
CHUNK_SHIFT = 9
CHUNK = 1 << CHUNK_SHIFT
_CMASK = CHUNK - 1

PTE_PRESENT = 0x01
PTE_FILE = 0x02
PTE_WRITE = 0x04
PTE_DIRTY = 0x08
PTE_ANON = 0x10
PTE_OWNPROT = 0x20

try:  # native/winscan.c: which chunks a pgoff-range scan must look at (C, optional)
    from vmcore._ptscan import hits as _chunk_hits
except ImportError:  # built without a C compiler: every chunk goes through numpy
    _chunk_hits = None
try:  # ... and the zap of one chunk of a nonlinear VMA over a pgoff range (C, optional)
    from vmcore._ptscan import zap_chunk as _zap_chunk
except ImportError:
    _zap_chunk = None
if os.environ.get("SHMFS_PTSCAN", "1") == "0":  # A/B measurements: numpy only
    _chunk_hits = None
# ``SHMFS_WINUNMAP=0`` (or setting this to False, as the twin tests do) keeps zap's
# numpy statements for a nonlinear VMA's pgoff range (docs/decisions.md, "A one-page
# punch of a window's object ..."); vmcore.rmap reads the same variable.  Same results.
ZAPC = os.environ.get("SHMFS_WINUNMAP", "1") != "0"
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
# The cheap paths of a small MADV_REMOVE (docs/decisions.md, "A one-page MADV_REMOVE
# without numpy"): zap walks only the candidate chunks, a zap that clears nothing
# returns a shared empty result, and vmcore.madvise / fsimpl.windows find the one page
# an MADV_REMOVE of one page shows with scalar lookups.  Same results either way;
# ``SHMFS_WINMADV=0`` (or setting this to False, as the twin test does) keeps the
# general paths for A/B measurements.
WINMADV = os.environ.get("SHMFS_WINMADV", "1") != "0"


def _candidates(chunks: dict[int, Any], first: int, last: int, need: int) -> set[int] | None:
    """The keys of the chunks that may hold an entry (``bits & need``) showing a pgoff
    in [first, last], or are empty; None: no filter (look at every chunk).  A scan of
    a big nonlinear table for one page is ~0.1 us a chunk in C instead of ~6 numpy
    calls a chunk (docs/performance.md, "Window WRITEs and READs in C")."""
    if _chunk_hits is None or len(chunks) < 4:
        return None
    return set(_chunk_hits(chunks, max(first, _I64_MIN), min(last, _I64_MAX), need))


class _Chunk:
    __slots__ = ("bits", "frame", "pgoff", "prot")

    def __init__(self) -> None:
        self.bits = np.zeros(CHUNK, np.uint8)
        self.frame = np.zeros(CHUNK, np.int64)
        self.pgoff = np.zeros(CHUNK, np.int64)
        self.prot = np.zeros(CHUNK, np.uint8)

    def copy(self) -> _Chunk:
        c = _Chunk.__new__(_Chunk)
        c.bits = self.bits.copy()
        c.frame = self.frame.copy()
        c.pgoff = self.pgoff.copy()
        c.prot = self.prot.copy()
        return c

    NBYTES = CHUNK * (1 + 8 + 8 + 1)


@dataclass(slots=True)
class Zapped:
    """What a zap removed: one row per cleared *present* PTE (absolute vpn)."""

    vpn: np.ndarray
    frame: np.ndarray
    pgoff: np.ndarray
    bits: np.ndarray

    @staticmethod
    def empty() -> Zapped:
        z = np.zeros(0, np.int64)
        return Zapped(z, z.copy(), z.copy(), np.zeros(0, np.uint8))

    def __len__(self) -> int:
        return len(self.vpn)

    @staticmethod
    def concat(parts: list[Zapped]) -> Zapped:
        if not parts:
            return _NOTHING_ZAPPED if WINMADV else Zapped.empty()
        if len(parts) == 1:
            return parts[0]
        return Zapped(
            np.concatenate([p.vpn for p in parts]),
            np.concatenate([p.frame for p in parts]),
            np.concatenate([p.pgoff for p in parts]),
            np.concatenate([p.bits for p in parts]),
        )


def _read_only_empty() -> Zapped:
    z = Zapped.empty()
    for a in (z.vpn, z.frame, z.pgoff, z.bits):
        a.setflags(write=False)
    return z


# what a zap that cleared nothing returns (shared, read-only): a one-page punch zaps
# every nonlinear VMA of the object twice and most find nothing (~2 us of numpy each)
_NOTHING_ZAPPED = _read_only_empty()


class PageTable:
    """Sparse PTE storage for vpns of one VMA (the caller keeps within its range).

    ``budget`` (optional) is charged for every chunk allocated and credited for every
    chunk freed: ``budget.charge(n)`` raises a VmError (ENOMEM) to refuse, as the
    kernel's page-table allocation fails (the mount's ``pt_size=``; fsimpl/ptbudget.py).
    """

    __slots__ = ("_chunks", "budget")

    def __init__(self, budget: Any = None) -> None:
        self._chunks: dict[int, _Chunk] = {}
        self.budget = budget

    def _charge(self, n: int) -> None:
        if self.budget is not None and n:
            self.budget.charge(n)

    def need(self, vpn: int) -> None:
        """Refuse (the budget's VmError) before a fault if writing ``vpn`` would need a
        new chunk the budget cannot take; changes nothing."""
        if self.budget is not None and (vpn >> CHUNK_SHIFT) not in self._chunks:
            self.budget.check(1)

    def _uncharge(self, n: int) -> None:
        if self.budget is not None and n:
            self.budget.uncharge(n)

    # ---------------------------------------------------------------- scalar
    def get(self, vpn: int) -> tuple[int, int, int, int]:
        """(bits, frame, pgoff, prot) of one PTE; bits 0 means none."""
        c = self._chunks.get(vpn >> CHUNK_SHIFT)
        if c is None:
            return 0, 0, 0, 0
        i = vpn & _CMASK
        return int(c.bits[i]), int(c.frame[i]), int(c.pgoff[i]), int(c.prot[i])

    def _chunk_for_write(self, vpn: int) -> _Chunk:
        ci = vpn >> CHUNK_SHIFT
        c = self._chunks.get(ci)
        if c is None:
            self._charge(1)
            c = self._chunks[ci] = _Chunk()
        return c

    def set_present(self, vpn: int, frame: int, pgoff: int, bits: int, prot: int = 0) -> None:
        """Install a present PTE (bits must include PTE_PRESENT)."""
        c = self._chunk_for_write(vpn)
        i = vpn & _CMASK
        c.bits[i] = bits
        c.frame[i] = frame
        c.pgoff[i] = pgoff
        c.prot[i] = prot

    def set_file(self, vpn: int, pgoff: int, prot: int | None = None) -> None:
        """Install a file PTE keeping ``pgoff`` (and an own protection if given)."""
        c = self._chunk_for_write(vpn)
        i = vpn & _CMASK
        if prot is None:
            c.bits[i] = PTE_FILE
            c.prot[i] = 0
        else:
            c.bits[i] = PTE_FILE | PTE_OWNPROT
            c.prot[i] = prot
        c.frame[i] = 0
        c.pgoff[i] = pgoff

    def set_file_range(self, lo: int, hi: int, pgoff: int, prot: int | None = None) -> None:
        """File PTEs for vpns [lo, hi) showing pgoff, pgoff+1, ... (populate_range).

        Overwrites whatever was there: the caller zaps present PTEs first."""
        ck = lo >> CHUNK_SHIFT
        while (ck << CHUNK_SHIFT) < hi:
            base = ck << CHUNK_SHIFT
            s, e = max(lo - base, 0), min(hi - base, CHUNK)
            c = self._chunk_for_write(base)
            first = pgoff + base + s - lo
            c.bits[s:e] = PTE_FILE if prot is None else PTE_FILE | PTE_OWNPROT
            c.prot[s:e] = 0 if prot is None else prot
            c.frame[s:e] = 0
            c.pgoff[s:e] = np.arange(first, first + e - s, dtype=np.int64)
            ck += 1

    def set_file_pages(self, vpns: np.ndarray, pgoffs: np.ndarray, own: np.ndarray,
                       prots: np.ndarray) -> Zapped:
        """File PTEs at scattered ``vpns`` (sorted, unique) keeping ``pgoffs``, with an own
        protection where ``own``: a vector of install_file_pte.  Returns the present
        PTEs it replaced (the caller releases them, as a zap)."""
        parts: list[Zapped] = []
        keys = vpns >> CHUNK_SHIFT
        brk = np.flatnonzero(np.diff(keys)) + 1
        starts = np.concatenate(([0], brk)).tolist()
        ends = np.concatenate((brk, [len(vpns)])).tolist()
        fbits = np.where(own, PTE_FILE | PTE_OWNPROT, PTE_FILE).astype(np.uint8)
        for a, b in zip(starts, ends, strict=True):
            base = int(keys[a]) << CHUNK_SHIFT
            c = self._chunk_for_write(base)
            slots = vpns[a:b] - base
            old = c.bits[slots]
            pres = np.flatnonzero(old & PTE_PRESENT)
            if len(pres):
                ps = slots[pres]
                parts.append(Zapped(ps + base, c.frame[ps].copy(), c.pgoff[ps].copy(),
                                    c.bits[ps].copy()))
            c.bits[slots] = fbits[a:b]
            c.prot[slots] = prots[a:b]
            c.frame[slots] = 0
            c.pgoff[slots] = pgoffs[a:b]
        return Zapped.concat(parts)

    def update_bits(self, vpn: int, set_: int = 0, clear: int = 0) -> None:
        c = self._chunks.get(vpn >> CHUNK_SHIFT)
        if c is None:
            return
        i = vpn & _CMASK
        c.bits[i] = (int(c.bits[i]) & ~clear) | set_

    # ------------------------------------------------------------ iteration
    def _slices(self, lo: int, hi: int) -> Iterator[tuple[int, _Chunk, int, int]]:
        """(chunk index, chunk, start slot, end slot) for populated chunks meeting [lo, hi)."""
        if hi <= lo:
            return
        c_lo, c_hi = lo >> CHUNK_SHIFT, (hi - 1) >> CHUNK_SHIFT
        if c_hi - c_lo + 1 <= len(self._chunks):
            keys = [k for k in range(c_lo, c_hi + 1) if k in self._chunks]
        else:
            keys = sorted(k for k in self._chunks if c_lo <= k <= c_hi)
        for k in keys:
            base = k << CHUNK_SHIFT
            s = max(lo - base, 0)
            e = min(hi - base, CHUNK)
            yield k, self._chunks[k], s, e

    def _slices_in(self, keys: set[int], lo: int, hi: int
                   ) -> list[tuple[int, _Chunk, int, int]]:
        """``_slices(lo, hi)`` restricted to the chunk keys ``keys`` (a ``_candidates``
        set), in the same order: a one-page scan of a big table then costs a few Python
        steps for the chunks that matter instead of one per populated chunk."""
        if hi <= lo or not keys:
            return []
        c_lo, c_hi = lo >> CHUNK_SHIFT, (hi - 1) >> CHUNK_SHIFT
        out = []
        # the smaller of the two: a one-page range of a table whose every chunk is a
        # candidate (a remap's zap, any pgoff) looks at one key, not at all of them
        ks = (k for k in range(c_lo, c_hi + 1) if k in keys) if c_hi - c_lo < len(keys) \
            else sorted(keys)
        for k in ks:
            if c_lo <= k <= c_hi and k in self._chunks:
                base = k << CHUNK_SHIFT
                out.append((k, self._chunks[k], max(lo - base, 0), min(hi - base, CHUNK)))
        return out

    def _maybe_free(self, k: int, c: _Chunk) -> None:
        if not c.bits.any():
            del self._chunks[k]
            self._uncharge(1)

    def lookup(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Dense copies (bits, frame, pgoff, prot) for vpns [lo, hi)."""
        n = hi - lo
        bits = np.zeros(n, np.uint8)
        frame = np.zeros(n, np.int64)
        pgoff = np.zeros(n, np.int64)
        prot = np.zeros(n, np.uint8)
        for k, c, s, e in self._slices(lo, hi):
            d = (k << CHUNK_SHIFT) + s - lo
            bits[d : d + e - s] = c.bits[s:e]
            frame[d : d + e - s] = c.frame[s:e]
            pgoff[d : d + e - s] = c.pgoff[s:e]
            prot[d : d + e - s] = c.prot[s:e]
        return bits, frame, pgoff, prot

    def populated(self, lo: int, hi: int) -> Iterator[tuple[int, int, int, int, int]]:
        """(vpn, bits, frame, pgoff, prot) of every non-none entry in [lo, hi)."""
        for k, c, s, e in self._slices(lo, hi):
            idx = np.flatnonzero(c.bits[s:e]) + s
            base = k << CHUNK_SHIFT
            for i in idx.tolist():
                yield base + i, int(c.bits[i]), int(c.frame[i]), int(c.pgoff[i]), int(c.prot[i])

    # ---------------------------------------------------------------- zaps
    def clear_range(self, lo: int, hi: int) -> Zapped:
        """Clear every entry (present and file) in [lo, hi): munmap's zap (details=NULL)."""
        return self.zap(lo, hi, clear_file=True)

    def zap(
        self,
        lo: int,
        hi: int,
        *,
        pg_first: int = 0,
        pg_last: int | None = None,
        skip_anon: bool = False,
        nonlinear_base: tuple[int, int] | None = None,
        clear_file: bool = False,
        pg_set: np.ndarray | None = None,
    ) -> Zapped:
        """zap_pte_range over [lo, hi), vectorised per chunk.

        Present PTEs are cleared unless ``skip_anon`` and they are private COW
        copies, or their pgoff lies outside ``[pg_first, pg_last]``.  With
        ``nonlinear_base = (vm_start_vpn, vm_pgoff)`` a cleared present PTE
        whose pgoff differs from its linear position (or that carries its own
        protection) is replaced by a file PTE keeping that pgoff.  File PTEs are
        left alone unless ``clear_file`` (munmap).  ``pg_set`` (sorted pgoffs)
        limits the zap to present PTEs showing one of them (a scattered punch).
        Returns what was cleared.
        """
        parts: list[Zapped] = []
        last = (1 << 62) if pg_last is None else pg_last
        cand = None
        if not clear_file:  # chunks without a present entry in range are left as they are
            f, t = (pg_first, last) if pg_first > 0 or pg_last is not None else (
                _I64_MIN, _I64_MAX)
            if pg_set is not None and len(pg_set):
                f, t = max(f, int(pg_set[0])), min(t, int(pg_set[-1]))
            cand = _candidates(self._chunks, f, t, PTE_PRESENT)
        if cand is not None and WINMADV:
            slices = self._slices_in(cand, lo, hi)
        else:
            slices = [sl for sl in self._slices(lo, hi) if cand is None or sl[0] in cand]
        # a nonlinear VMA's zap over a pgoff range (a punch) in C, chunk by chunk
        zc = (_zap_chunk if ZAPC and nonlinear_base is not None and pg_last is not None
              and pg_set is None and not clear_file else None)
        for k, c, s, e in slices:
            if zc is not None:
                rows = zc(c, s, e, pg_first, last, skip_anon, k << CHUNK_SHIFT,
                          nonlinear_base[0], nonlinear_base[1])
                if rows is not None:
                    if rows:
                        vpn, frame, pgoff, bits = zip(*rows, strict=True)
                        parts.append(Zapped(np.array(vpn, np.int64), np.array(frame, np.int64),
                                            np.array(pgoff, np.int64), np.array(bits, np.uint8)))
                    self._maybe_free(k, c)
                    continue
            b = c.bits[s:e]
            pg = c.pgoff[s:e]
            m = (b & PTE_PRESENT) != 0
            if pg_first > 0 or pg_last is not None:
                m &= (pg >= pg_first) & (pg <= last)
            if skip_anon:
                m &= (b & PTE_ANON) == 0
            if pg_set is not None and len(pg_set):
                at = np.minimum(np.searchsorted(pg_set, pg), len(pg_set) - 1)
                m &= pg_set[at] == pg  # membership in a sorted set (np.isin imports numpy.ma)
            idx = np.flatnonzero(m)
            base = k << CHUNK_SHIFT
            if len(idx):
                slots = idx + s
                parts.append(
                    Zapped(
                        slots.astype(np.int64) + base,
                        c.frame[slots].copy(),
                        c.pgoff[slots].copy(),
                        c.bits[slots].copy(),
                    )
                )
                if nonlinear_base is not None:
                    vstart, vpgoff = nonlinear_base
                    linear = slots.astype(np.int64) + base - vstart + vpgoff
                    keep = (c.pgoff[slots] != linear) | ((c.bits[slots] & PTE_OWNPROT) != 0)
                    own = c.bits[slots] & PTE_OWNPROT
                    c.bits[slots] = np.where(keep, PTE_FILE | own, 0).astype(np.uint8)
                    c.frame[slots] = 0
                else:
                    c.bits[slots] = 0
                    c.frame[slots] = 0
            if clear_file:
                c.bits[s:e] = 0
            self._maybe_free(k, c)
        return Zapped.concat(parts)

    def clear_bits(self, lo: int, hi: int, clear: int, where: int = PTE_PRESENT) -> int:
        """Clear ``clear`` bits on entries having any of ``where``; returns how many changed."""
        n = 0
        for _k, c, s, e in self._slices(lo, hi):
            b = c.bits[s:e]
            m = ((b & where) != 0) & ((b & clear) != 0)
            n += int(m.sum())
            b[m] &= np.uint8(~clear & 0xFF)
        return n

    def set_bits_where(self, lo: int, hi: int, set_: int, need: int, refuse: int = 0) -> None:
        """Set ``set_`` on entries having all ``need`` bits and none of ``refuse``."""
        for _k, c, s, e in self._slices(lo, hi):
            b = c.bits[s:e]
            m = ((b & need) == need) & ((b & refuse) == 0)
            b[m] |= np.uint8(set_)

    def reset_prot(self, lo: int, hi: int) -> None:
        """Drop own protections in [lo, hi) (entries fall back to the VMA's)."""
        for k, c, s, e in list(self._slices(lo, hi)):
            b = c.bits[s:e]
            b &= np.uint8(~PTE_OWNPROT & 0xFF)
            c.prot[s:e] = 0
            self._maybe_free(k, c)

    # -------------------------------------------------------------- queries
    def count(self, mask: int, lo: int | None = None, hi: int | None = None) -> int:
        """Entries with any bit of ``mask`` set."""
        n = 0
        if lo is None or hi is None:
            for c in self._chunks.values():
                n += int(np.count_nonzero(c.bits & mask))
            return n
        for _k, c, s, e in self._slices(lo, hi):
            n += int(np.count_nonzero(c.bits[s:e] & mask))
        return n

    def find_pgoffs(self, pg_first: int, pg_last: int) -> tuple[np.ndarray, np.ndarray]:
        """(vpns, pgoffs) of present or file entries whose pgoff is in [pg_first, pg_last]."""
        vs: list[np.ndarray] = []
        ps: list[np.ndarray] = []
        cand = _candidates(self._chunks, pg_first, pg_last, PTE_PRESENT | PTE_FILE)
        for k, c in self._chunks.items():
            if cand is not None and k not in cand:
                continue
            m = ((c.bits & (PTE_PRESENT | PTE_FILE)) != 0) & ((c.bits & PTE_ANON) == 0)
            m &= (c.pgoff >= pg_first) & (c.pgoff <= pg_last)
            idx = np.flatnonzero(m)
            if len(idx):
                vs.append(idx.astype(np.int64) + (k << CHUNK_SHIFT))
                ps.append(c.pgoff[idx].copy())
        if not vs:
            z = np.zeros(0, np.int64)
            return z, z.copy()
        order_v = np.concatenate(vs)
        order_p = np.concatenate(ps)
        o = np.argsort(order_v, kind="stable")
        return order_v[o], order_p[o]

    def spans(self, lo: int, hi: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first vpn, bits, pgoff) views of each populated chunk's part of [lo, hi), in
        order: what a caller needs to walk a table without visiting its empty parts."""
        for k, c, s, e in self._slices(lo, hi):
            yield (k << CHUNK_SHIFT) + s, c.bits[s:e], c.pgoff[s:e]

    @property
    def nbytes(self) -> int:
        """Bytes of PTE storage in use (chunks only)."""
        return len(self._chunks) * _Chunk.NBYTES

    @property
    def nchunks(self) -> int:
        return len(self._chunks)

    # ------------------------------------------------------- split / merge
    def split(self, vpn: int) -> PageTable:
        """Move every entry at or above ``vpn`` into a new table (split_vma)."""
        right = PageTable(self.budget)
        ck = vpn >> CHUNK_SHIFT
        off = vpn & _CMASK
        for k in [k for k in self._chunks if k >= ck]:
            c = self._chunks[k]
            if k > ck or off == 0:
                right._chunks[k] = self._chunks.pop(k)
                continue
            rc = c.copy()
            rc.bits[:off] = 0
            c.bits[off:] = 0
            if rc.bits.any():
                self._charge(1)
                right._chunks[k] = rc
            self._maybe_free(k, c)
        return right

    def absorb(self, other: PageTable) -> None:
        """Take over the entries of ``other`` (a disjoint range): vma_merge."""
        for k, oc in other._chunks.items():
            c = self._chunks.get(k)
            if c is None:
                self._chunks[k] = oc
                if other.budget is not self.budget:
                    other._uncharge(1)
                    self._charge(1)
                continue
            other._uncharge(1)
            m = oc.bits != 0
            c.bits[m] = oc.bits[m]
            c.frame[m] = oc.frame[m]
            c.pgoff[m] = oc.pgoff[m]
            c.prot[m] = oc.prot[m]
        other._chunks = {}

    def copy(self) -> PageTable:
        t = PageTable(self.budget)
        t._charge(len(self._chunks))
        t._chunks = {k: c.copy() for k, c in self._chunks.items()}
        return t

    def detach_budget(self) -> int:
        """Stop charging ``budget``; returns the chunks it was charged for (not credited)."""
        self.budget = None
        return len(self._chunks)
