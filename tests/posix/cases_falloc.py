"""fallocate(2) beyond the basic modes in cases_size.py: every mode bit and
combination (tmpfs supports only 0, KEEP_SIZE and PUNCH_HOLE|KEEP_SIZE), ranges
past EOF, offsets near 2^63, ENOSPC that leaves nothing allocated when part of
the range already was, and truncation at page edges (the classic fsx failure)."""

from __future__ import annotations

import os

from .framework import Ctx, case
from .libc import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocate

A = "fallocate"
P = 4096
MAX = (1 << 63) - 1
KEEP, PUNCH = FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE


def _file(name: str = "f", data: bytes = b"") -> int:
    fd = os.open(name, os.O_CREAT | os.O_RDWR, 0o644)
    if data:
        os.pwrite(fd, data, 0)
    return fd


@case(A)
def case_every_mode(ctx: Ctx) -> None:
    """Each mode value 0..0x1ff on a 2-page file: the answer, then size and
    blocks (ZERO_RANGE, COLLAPSE, INSERT, UNSHARE, NO_HIDE_STALE, WRITE_ZEROES
    and their combinations)."""
    r = ctx.rec
    for mode in range(0x200):
        fd = _file(f"f{mode}", b"m" * (2 * P))
        r.call(f"mode {mode:#x}", fallocate, fd, mode, P, P)
        st = os.fstat(fd)
        r.note(f"mode {mode:#x} size/blocks", (st.st_size, st.st_blocks))
        os.close(fd)
        os.unlink(f"f{mode}")


@case(A)
def case_ranges_past_eof(ctx: Ctx) -> None:
    """Preallocation and punching wholly past EOF, with and without KEEP_SIZE;
    unaligned ends; SEEK_HOLE and reads over the preallocated range."""
    fd = _file(data=b"d" * 100)
    r = ctx.rec
    r.call("KEEP_SIZE 3P at 5P+1", fallocate, fd, KEEP, 5 * P + 1, 3 * P)
    r.fstat(fd)
    r.call("mode 0 at 10P+7 len 5", fallocate, fd, 0, 10 * P + 7, 5)
    r.fstat(fd)
    r.call("SEEK_HOLE 0", os.lseek, fd, 0, os.SEEK_HOLE)
    r.call("SEEK_DATA 100", os.lseek, fd, 100, os.SEEK_DATA)
    r.call("read prealloc", os.pread, fd, 8, 6 * P)
    r.call("punch past EOF", fallocate, fd, KEEP | PUNCH, 20 * P, P)
    r.call("punch across EOF", fallocate, fd, KEEP | PUNCH, 10 * P, 4 * P)
    r.fstat(fd)
    r.call("shrink below prealloc", os.ftruncate, fd, 50)
    r.fstat(fd)


@case(A)
def case_offsets_near_max(ctx: Ctx) -> None:
    """Ranges ending at, just past and wrapping around 2^63."""
    fd = _file()
    r = ctx.rec
    for label, mode, off, ln in (
        ("KEEP last page", KEEP, MAX - P + 1, P - 1),
        ("KEEP to MAX+1", KEEP, MAX - P + 1, P),
        ("KEEP 1 at MAX-1", KEEP, MAX - 1, 1),
        ("KEEP 1 at MAX", KEEP, MAX, 1),
        ("punch last page", KEEP | PUNCH, MAX - P + 1, P - 1),
        ("punch to 2^63", KEEP | PUNCH, MAX - P + 1, P),
        ("punch wraps", KEEP | PUNCH, MAX - 10, MAX),
        ("mode 0 wraps", 0, 1 << 62, 1 << 62),
        ("mode 0 len MAX", 0, 1, MAX),
        ("punch off 0 len MAX", KEEP | PUNCH, 0, MAX),
    ):
        r.call(label, fallocate, fd, mode, off, ln)
        r.fstat(fd)


@case(A, mount="size=1m")
def case_huge_ranges_below_max_are_enospc(ctx: Ctx) -> None:
    """Ranges of more pages than the filesystem holds that still end below 2^63:
    shmem_fallocate says ENOSPC before allocating anything (the cfuzz session found
    shmfs answering EIO here: it sized a page-cache lookup by the range)."""
    fd = _file(data=b"k" * 100)
    r = ctx.rec
    for label, mode, off, ln in (
        ("mode 0 to MAX-P", 0, P, MAX - 2 * P),
        ("KEEP to MAX-P", KEEP, P, MAX - 2 * P),
        ("mode 0 2^62", 0, 0, 1 << 62),
        ("KEEP 2^40 at 2^62", KEEP, 1 << 62, 1 << 40),
        ("one page more than fits", 0, 0, (1 << 20) + P),
    ):
        r.call(label, fallocate, fd, mode, off, ln)
        r.fstat(fd)
    r.call("all that fits", fallocate, fd, 0, 0, 1 << 20)
    r.fstat(fd)


@case(A, mount="size=1m")
def case_enospc_keeps_partial_nothing(ctx: Ctx) -> None:
    """A preallocation that does not fit fails with ENOSPC and frees the pages
    it had added, keeping the ones that were there before (shmem_fallocate's
    undo); statfs returns to where it was."""
    fd = _file()
    os.pwrite(fd, b"w" * (64 * 1024), 128 * 1024)
    r = ctx.rec
    before = os.statvfs(".").f_bfree
    r.fstat(fd)
    r.call("fallocate 2 MiB over data", fallocate, fd, 0, 0, 2 << 20)
    r.fstat(fd)
    r.note("bfree unchanged", os.statvfs(".").f_bfree == before)
    r.call("data intact", lambda: os.pread(fd, 64 * 1024, 128 * 1024) == b"w" * 65536)
    r.call("fallocate KEEP 2 MiB", fallocate, fd, KEEP, 0, 2 << 20)
    r.fstat(fd)
    r.call("fallocate what fits", fallocate, fd, 0, 0, 512 * 1024)
    r.fstat(fd)
    g = _file("g")
    r.call("write into the rest", os.pwrite, g, b"x" * (1 << 20), 0)


@case(A)
def case_truncate_partial_pages(ctx: Ctx) -> None:
    """fsx's classic: truncate down into the middle of a page, write past the new
    EOF further on, truncate up, punch at edges: every byte read must match a
    simple model (zeros wherever nothing was written since)."""
    r = ctx.rec
    fd = _file(data=bytes((i * 7) & 0xFF or 1 for i in range(5 * P)))
    model = bytearray(os.pread(fd, 5 * P, 0))

    def check(label: str) -> None:
        got = os.pread(fd, len(model) + P, 0)
        r.note(label, (len(got), got == bytes(model)))

    for new in (3 * P + 1, 3 * P - 1, 2 * P + 2047, P + 1):
        os.ftruncate(fd, new)
        del model[new:]
        check(f"down to {new}")
    os.pwrite(fd, b"W" * 10, 3 * P + 5)
    model.extend(bytes(3 * P + 5 - len(model)))
    model.extend(b"W" * 10)
    check("write leaving a gap")
    os.ftruncate(fd, 6 * P + 3)
    model.extend(bytes(6 * P + 3 - len(model)))
    check("up to 6P+3")
    fallocate(fd, KEEP | PUNCH, P - 3, 2 * P + 10)
    model[P - 3:3 * P + 7] = bytes(2 * P + 10)
    check("punch unaligned")
    os.ftruncate(fd, P - 1)
    del model[P - 1:]
    os.ftruncate(fd, 2 * P)
    model.extend(bytes(2 * P - len(model)))
    check("down to P-1 and up")
    r.fstat(fd)


@case("size")
def case_seek_page_granularity(ctx: Ctx) -> None:
    """SEEK_DATA/SEEK_HOLE at every page edge (and one byte either side) of a
    layout of written, one-byte, fallocated, punched and hole pages, with an
    unaligned EOF inside a data page and after a hole."""
    fd = _file()
    os.pwrite(fd, b"a" * P, 0)                # page 0 data
    os.pwrite(fd, b"b", 2 * P + 4095)         # page 2: last byte only
    os.pwrite(fd, b"c" * 10, 4 * P - 5)       # straddles pages 3 and 4
    fallocate(fd, KEEP, 6 * P, 2 * P)         # pages 6, 7 fallocated, unwritten
    os.pwrite(fd, b"d" * (3 * P), 9 * P)      # pages 9..11 data
    fallocate(fd, KEEP | PUNCH, 10 * P, P)    # page 10 punched
    os.ftruncate(fd, 11 * P + 100)            # EOF inside page 11
    r = ctx.rec
    offs = sorted({max(0, p * P + d) for p in range(13) for d in (-1, 0, 1)})
    res = []
    for off in offs:
        out = []
        for whence in (os.SEEK_DATA, os.SEEK_HOLE):
            try:
                out.append(os.lseek(fd, off, whence))
            except OSError as e:
                out.append(e.errno)
        res.append((off, *out))
    r.note("seeks", res)
    os.ftruncate(fd, 14 * P)                  # EOF after a hole
    r.note("after growing", [(o, os.lseek(fd, o, os.SEEK_HOLE)) for o in (11 * P, 11 * P + 99,
                                                                           11 * P + 100)])
    r.call("SEEK_DATA in trailing hole", os.lseek, fd, 12 * P, os.SEEK_DATA)
    r.fstat(fd)
