"""Copy-on-write frame sharing between Mappings: copy_file_range without copying.

Design
------
``copy_range(src, src_off, dst, dst_off, length)`` copies bytes between two
objects of one arena (or two ranges of one object).  Where the source and
destination offsets agree modulo the page size, every *whole* page of the range
is not copied at all: the destination's page-cache slot gets the source's frame
and the frame gains a reference (``Arena.share``; ``Arena.free`` drops one
reference per slot and frees the frame with the last).  Partial head and tail
pages, and every page of a misaligned copy, are copied through
``Mapping.read``/``Mapping.write``.  Holes and fallocated (!UPTODATE) source pages
become holes in the destination, so SEEK_DATA/SEEK_HOLE on the copy answer as on
the source.

A shared frame is never written.  Every store into a frame goes through
``fault()`` with WRITE or MKWRITE (write(2), window/VMA write faults, mmap
writeback arriving as WRITE requests), and there ``break_shares`` does what
do_wp_page does for a private mapping: allocate a frame, copy the page, put the
copy in the writer's page-cache slot, drop one reference of the old frame.  The
other side keeps the old frame and sees nothing.  Before the slot changes, the
writer's own PTEs showing that page are zapped (``unmap_mapping_range``, COW
copies kept): they still point at the old frame, and must refault the new one.
The same happens before a partial-page truncate or punch zeroes part of a
frame (``Mapping._zero_partial``).  PTEs never map a shared frame writable:
``memory._install_bits`` installs it read-only, so the first store through a
window or VMA is a write-protect fault that reaches ``fault(MKWRITE)``; and
``copy_range`` zaps the source range from every VMA of the source first (a PTE
installed writable before the share would otherwise write into the copy).

Accounting: the destination's Budget is charged for every page the copy puts in
its page cache, at copy time, exactly as tmpfs charges a copied page.  A shared
frame therefore counts once per file in ``statfs`` and ``st_blocks`` (twice in
all), like two tmpfs copies, and breaking a share never needs a page of the
size= limit: it cannot fail with ENOSPC.  Arena memory (the daemon's RSS) is
spent only when a share is broken.  A copy that cannot be charged stops short at
a page boundary (or raises NoSpace if nothing was copied), as a splice copy on
a full tmpfs does.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import numpy as np

from .arena import PAGE_SHIFT, PAGE_SIZE
from .errors import NoSpace, VmError
from .flags import PG_DIRTY, PG_UPTODATE

if TYPE_CHECKING:
    from .mapping import Mapping

__all__ = ["break_shares", "copy_range"]

_MASK = PAGE_SIZE - 1
_CHUNK = 512  # pages per sharing step: one page-cache chunk
_COPY_STEP = 1 << 20  # bytes per read/write step of a byte copy
# A misaligned copy moves every byte; one request copies at most this much and
# returns short (copy_file_range callers loop), so a huge copy cannot hold the
# session for seconds.  Shared pages cost ~0.3 us each and are not limited.
BYTE_COPY_MAX = 64 << 20


def break_shares(mapping: Mapping, pgoff: int, frames: np.ndarray,
                 overwrite: tuple[int, int] | None = None) -> int:
    """Give ``mapping`` a private copy of every shared frame among ``frames``
    (the frames of pages [pgoff, pgoff + len(frames)), -1 for holes), updating
    ``frames`` in place.  Pages in ``overwrite`` ([first, end) pgoffs the caller
    is about to overwrite entirely) get a fresh (zero) frame without the copy.
    Returns the number of shares broken."""
    arena = mapping.arena
    if not arena.nshared:
        return 0
    idx = np.flatnonzero(arena.shared_mask(frames))
    if not idx.size:
        return 0
    old = frames[idx].copy()
    new = arena.alloc(int(idx.size))
    if overwrite is not None:
        keep = (idx + pgoff < overwrite[0]) | (idx + pgoff >= overwrite[1])
        arena.copy_frames(old[keep], new[keep])
    else:
        arena.copy_frames(old, new)
    frames[idx] = new
    mapping.pages.replace(idx + pgoff, new)
    if mapping.rmap is not None:
        # this object's PTEs still show the old frame: refault the copy
        brk = np.flatnonzero(np.diff(idx) != 1) + 1
        for run in np.split(idx, brk):
            mapping.unmap_mapping_range(pgoff + int(run[0]), int(run.size), False)
    arena.free(old)  # one reference each; the other side keeps the frame
    arena.cow_breaks += int(idx.size)
    return int(idx.size)


def copy_range(src: Mapping, src_off: int, dst: Mapping, dst_off: int, length: int) -> int:
    """Copy ``length`` bytes from ``src`` at ``src_off`` to ``dst`` at ``dst_off``,
    clipped to the source's i_size; extends the destination's i_size.

    Returns the bytes copied (short at the size= limit; NoSpace if none).
    Overlapping ranges of one object are EINVAL (VmError), as for
    copy_file_range(2)."""
    if src_off < 0 or dst_off < 0 or length < 0:
        raise VmError(errno.EINVAL, "negative offset or length")
    if src_off >= src.size or length == 0:
        return 0
    end_in = min(src_off + length, src.size)
    length = end_in - src_off
    if src is dst and src_off < dst_off + length and dst_off < src_off + length:
        raise VmError(errno.EINVAL, "overlapping ranges of one file")
    if (src_off - dst_off) & _MASK or src.arena is not dst.arena:
        return _copy_bytes(src, src_off, dst, dst_off, min(length, BYTE_COPY_MAX))
    first = (src_off + _MASK) >> PAGE_SHIFT  # first whole source page
    last = end_in >> PAGE_SHIFT  # end of the whole pages
    if end_in & _MASK and end_in == src.size and dst_off + length >= dst.size and src is not dst:
        # the source's EOF page can be shared too: past EOF both read zeros. Not
        # within one file: the head copy below may land in that very page past
        # its EOF, and sharing it would then show those bytes past the new EOF
        last += 1
    if first >= last:
        return _copy_bytes(src, src_off, dst, dst_off, length)
    done = 0
    head = (first << PAGE_SHIFT) - src_off
    if head:
        done = _copy_bytes(src, src_off, dst, dst_off, head)
        if done < head:
            return done
    shared_end = min(last << PAGE_SHIFT, end_in)  # source byte where sharing ends
    old_size = dst.size
    dst.size = max(old_size, dst_off + shared_end - src_off)
    delta = (dst_off - src_off) >> PAGE_SHIFT
    n = last - first
    got = _share_pages(src, first, dst, first + delta, n)
    if got < n:
        end = (first + got) << PAGE_SHIFT
        dst.size = max(old_size, dst_off + end - src_off)
        done = end - src_off
        if done == 0:
            raise NoSpace()
        return done
    done = shared_end - src_off
    if done < length:
        try:
            done += _copy_bytes(src, src_off + done, dst, dst_off + done, length - done)
        except NoSpace:
            pass
    return done


def _share_pages(src: Mapping, sp: int, dst: Mapping, dp: int, n: int) -> int:
    """Make dst pages [dp, dp+n) hold the frames of src pages [sp, sp+n) (holes
    and !UPTODATE pages as holes).  Returns the pages done: n, or fewer where
    the destination's Budget ran out."""
    arena = src.arena
    spages, dpages = src.pages, dst.pages
    budget = dst.budget
    end = sp + n
    delta = dp - sp
    cur = sp
    while cur < end:
        # skip stretches that are holes on both sides (a sparse 1 TiB copy is cheap)
        a = spages.next_data(cur, uptodate_only=False)
        b = dpages.next_data(cur + delta, uptodate_only=False)
        nxt = min(end if a is None else a, end if b is None else b - delta)
        if nxt >= end:
            break
        w = min(((nxt >> 9) + 1) << 9, end) - nxt
        sf, sfl = spages.lookup(nxt, w)
        data = (sf >= 0) & ((sfl & PG_UPTODATE) != 0)
        dres = dpages.lookup(nxt + delta, w)[0] >= 0
        cum = np.cumsum(data.astype(np.int64) - dres)  # net pages charged per prefix
        take = w
        if int(cum[-1]) > 0:
            have = budget.charge(int(cum[-1]))
            budget.uncharge(have)
            if have < int(cum[-1]):  # ENOSPC: the longest prefix that fits
                fits = np.flatnonzero(cum <= have)
                take = int(fits[-1]) + 1 if fits.size else 0
        if take == 0:
            return nxt - sp
        net = int(cum[take - 1])
        if net > 0 and budget.charge(net) != net:  # cannot happen: checked above
            raise AssertionError("budget changed under copy_range")
        dpos = nxt + delta
        if dres[:take].any():  # the destination's old pages go, as under a punch
            dst.unmap_mapping_range(dpos, take, False)
            removed = dpages.remove_range(dpos, take)
            arena.free(removed)
            dst.frames_freed += int(removed.size)
        sel = data[:take]
        if sel.any():
            if src.rmap is not None:  # source PTEs may be writable: refault read-only
                src.unmap_mapping_range(nxt, take, False)
            fr = np.where(sel, sf[:take], -1)
            arena.share(fr[sel])
            dpages.insert_range(dpos, fr, PG_UPTODATE | PG_DIRTY)
        if net < 0:
            budget.uncharge(-net)
        if take < w:
            return nxt + take - sp
        cur = nxt + w
    return n


def _copy_bytes(src: Mapping, src_off: int, dst: Mapping, dst_off: int, length: int) -> int:
    """Byte copy through read/write; source holes become holes (punched) in the
    destination.  Returns bytes done (short at ENOSPC; NoSpace if none)."""
    done = 0
    end = src_off + length
    pos = src_off
    while pos < end:
        d = src.seek_data(pos)
        data_at = end if d < 0 or d >= end else d
        if data_at > pos:  # a hole in the source: zeros, and no pages, in the copy
            dst.punch_hole(dst_off + done, data_at - pos)
            done += data_at - pos
            pos = data_at
            if dst.size < dst_off + done:
                dst.size = dst_off + done
            continue
        h = src.seek_hole(pos)
        stop = min(end, h if h >= 0 else end)
        while pos < stop:
            k = min(_COPY_STEP, stop - pos)
            buf = src.read_bytes(pos, k)  # a copy: the write below may alias the views
            try:
                got = dst.write(dst_off + done, buf)
            except NoSpace:
                if done == 0:
                    raise
                return done
            done += got
            pos += got
            if got < k:
                return done
    return done
