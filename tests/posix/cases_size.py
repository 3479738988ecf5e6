"""truncate/ftruncate/fallocate/lseek edge cases: negative, huge and unaligned
offsets, EFBIG, ENXIO, SEEK_DATA/SEEK_HOLE (fallocated pages count as holes on
tmpfs), hole punching, and files at the maximum size."""

from __future__ import annotations

import os

from .framework import Ctx, case
from .libc import (
    FALLOC_FL_COLLAPSE_RANGE,
    FALLOC_FL_INSERT_RANGE,
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_ZERO_RANGE,
    fallocate,
)

A = "size"
P = 4096
MAX = (1 << 63) - 1
KEEP, PUNCH = FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE


def _file(name: str = "f", data: bytes = b"") -> int:
    fd = os.open(name, os.O_CREAT | os.O_RDWR, 0o644)
    if data:
        os.write(fd, data)
    return fd


def _seeks(r, fd: int, offsets: list[int], tag: str = "") -> None:
    for off in offsets:
        r.call(f"{tag}SEEK_DATA {off}", os.lseek, fd, off, os.SEEK_DATA)
        r.call(f"{tag}SEEK_HOLE {off}", os.lseek, fd, off, os.SEEK_HOLE)


@case(A)
def case_truncate_extend_sparse(ctx: Ctx) -> None:
    fd = _file(data=b"abc")
    r = ctx.rec
    r.call("ftruncate 10000", os.ftruncate, fd, 10000)
    r.fstat(fd)
    blob = os.pread(fd, 20000, 0)
    r.note("content", (len(blob), blob[:3], blob[3:].count(0)))


@case(A)
def case_truncate_shrink_then_extend_zeroes(ctx: Ctx) -> None:
    fd = _file(data=b"x" * (3 * P))
    r = ctx.rec
    r.call("shrink to 5000", os.ftruncate, fd, 5000)
    r.call("extend to 3P", os.ftruncate, fd, 3 * P)
    blob = os.pread(fd, 4 * P, 0)
    r.note("x count, tail zero", (blob.count(b"x"), blob[5000:] == bytes(len(blob) - 5000)))
    r.fstat(fd)


@case(A)
def case_truncate_errors(ctx: Ctx) -> None:
    fd = _file()
    os.mkdir("d")
    r = ctx.rec
    r.call("ftruncate -1", os.ftruncate, fd, -1)
    r.call("truncate -1", os.truncate, "f", -1)
    r.call("truncate dir", os.truncate, "d", 0)
    r.call("truncate missing", os.truncate, "missing", 0)
    ro = os.open("f", os.O_RDONLY)
    r.call("ftruncate O_RDONLY", os.ftruncate, ro, 1)
    pfd = os.open("f", os.O_PATH)
    r.call("ftruncate O_PATH", os.ftruncate, pfd, 1)
    dfd = os.open("d", os.O_RDONLY)
    r.call("ftruncate dir fd", os.ftruncate, dfd, 0)
    ap = os.open("f", os.O_WRONLY | os.O_APPEND)
    r.call("ftruncate O_APPEND fd", os.ftruncate, ap, 7)
    r.fstat(fd)


@case(A)
def case_truncate_max_size(ctx: Ctx) -> None:
    fd = _file()
    r = ctx.rec
    r.call("ftruncate MAX", os.ftruncate, fd, MAX)
    r.fstat(fd)
    r.call("SEEK_END", os.lseek, fd, 0, os.SEEK_END)
    r.call("SEEK_END +1", os.lseek, fd, 1, os.SEEK_END)
    r.call("SEEK_DATA 0 (all hole)", os.lseek, fd, 0, os.SEEK_DATA)
    r.call("SEEK_HOLE 0", os.lseek, fd, 0, os.SEEK_HOLE)
    r.call("read at MAX-10", os.pread, fd, 100, MAX - 10)
    r.call("ftruncate MAX-4095", os.ftruncate, fd, MAX - 4095)
    r.fstat(fd)
    r.call("ftruncate 1<<62", os.ftruncate, fd, 1 << 62)
    r.fstat(fd)


@case(A)
def case_write_at_max(ctx: Ctx) -> None:
    fd = _file()
    r = ctx.rec
    r.call("pwrite 1 at MAX-1", os.pwrite, fd, b"a", MAX - 1)
    r.fstat(fd)
    r.call("pwrite 2 at MAX-1", os.pwrite, fd, b"bc", MAX - 1)
    r.call("pwrite at MAX", os.pwrite, fd, b"a", MAX)
    r.call("pwrite 10 at MAX-5000", os.pwrite, fd, b"q" * 10, MAX - 5000)
    r.call("read last bytes", os.pread, fd, 10, MAX - 3)
    r.call("pwrite 0 bytes at MAX", os.pwrite, fd, b"", MAX)
    g = _file("g")
    r.call("lseek MAX then write", lambda: (os.lseek(g, MAX, os.SEEK_SET), os.write(g, b"x")))


@case(A)
def case_write_page_below_max(ctx: Ctx) -> None:
    """Writes in the last page below 2^63 (tmpfs allows bytes up to 2^63-2)."""
    fd = _file()
    r = ctx.rec
    for off in (MAX - P - 1, MAX - P + 1, MAX - 100):
        r.call(f"pwrite 3 at MAX-{MAX - off}", os.pwrite, fd, b"xyz", off)
    r.fstat(fd)


@case(A)
def case_lseek_basic(ctx: Ctx) -> None:
    fd = _file(data=b"0123456789")
    r = ctx.rec
    r.call("SEEK_SET 3", os.lseek, fd, 3, os.SEEK_SET)
    r.call("SEEK_CUR 2", os.lseek, fd, 2, os.SEEK_CUR)
    r.call("SEEK_CUR -100", os.lseek, fd, -100, os.SEEK_CUR)
    r.call("SEEK_SET -1", os.lseek, fd, -1, os.SEEK_SET)
    r.call("SEEK_END -3", os.lseek, fd, -3, os.SEEK_END)
    r.call("SEEK_END -11", os.lseek, fd, -11, os.SEEK_END)
    r.call("SEEK_END +100", os.lseek, fd, 100, os.SEEK_END)
    r.call("SEEK_SET huge", os.lseek, fd, 1 << 62, os.SEEK_SET)
    r.call("SEEK_CUR overflow", os.lseek, fd, 1 << 62, os.SEEK_CUR)
    r.call("bad whence", os.lseek, fd, 0, 17)
    os.lseek(fd, 0, os.SEEK_SET)
    r.call("write past 1<<40 then read", lambda: (os.lseek(fd, 1 << 40, 0),
                                                   os.write(fd, b"far")))
    r.fstat(fd)


@case(A)
def case_seek_data_hole(ctx: Ctx) -> None:
    fd = _file()
    os.pwrite(fd, b"A" * 10, 0)
    os.pwrite(fd, b"B" * 10, 3 * P + 100)
    os.ftruncate(fd, 6 * P + 7)
    _seeks(ctx.rec, fd, [0, 5, P, 2 * P + 1, 3 * P, 3 * P + 200, 4 * P, 6 * P + 6,
                         6 * P + 7, 7 * P, -1])


@case(A)
def case_seek_fallocated_is_hole(ctx: Ctx) -> None:
    """tmpfs: pages preallocated by fallocate but never written count as holes."""
    fd = _file()
    r = ctx.rec
    r.call("fallocate 4 pages", fallocate, fd, 0, 0, 4 * P)
    os.pwrite(fd, b"w", 2 * P)
    _seeks(r, fd, [0, P, 2 * P, 3 * P])
    r.fstat(fd)
    r.call("read fallocated", lambda: os.pread(fd, 8, 0))


@case(A)
def case_seek_empty_and_on_fifo(ctx: Ctx) -> None:
    fd = _file()
    r = ctx.rec
    _seeks(r, fd, [0, 1], "empty ")
    os.mkfifo("p")
    pfd = os.open("p", os.O_RDWR)
    r.call("SEEK_DATA fifo", os.lseek, pfd, 0, os.SEEK_DATA)
    # SEEK_DATA/SEEK_HOLE on a directory are not compared: FUSE directories use
    # generic_file_llseek in the kernel (FUSE by construction; see readdir.lseek_on_dir).


@case(A)
def case_fallocate_modes(ctx: Ctx) -> None:
    fd = _file(data=b"x" * (2 * P))
    r = ctx.rec
    r.call("mode 0 extend", fallocate, fd, 0, P, 3 * P)
    r.fstat(fd)
    r.call("KEEP_SIZE beyond EOF", fallocate, fd, KEEP, 0, 10 * P)
    r.fstat(fd)
    r.call("PUNCH without KEEP_SIZE", fallocate, fd, PUNCH, 0, P)
    r.call("ZERO_RANGE", fallocate, fd, FALLOC_FL_ZERO_RANGE, 0, P)
    r.call("COLLAPSE_RANGE", fallocate, fd, FALLOC_FL_COLLAPSE_RANGE, 0, P)
    r.call("INSERT_RANGE", fallocate, fd, FALLOC_FL_INSERT_RANGE, 0, P)
    r.call("unknown mode", fallocate, fd, 0x1000, 0, P)
    r.fstat(fd)


@case(A)
def case_fallocate_errors(ctx: Ctx) -> None:
    fd = _file()
    r = ctx.rec
    r.call("len 0", fallocate, fd, 0, 0, 0)
    r.call("len -1", fallocate, fd, 0, 0, -1)
    r.call("offset -1", fallocate, fd, 0, -1, 10)
    r.call("offset+len past MAX", fallocate, fd, 0, MAX - 10, 100)
    ro = os.open("f", os.O_RDONLY)
    r.call("O_RDONLY fd", fallocate, ro, 0, 0, 10)
    ap = os.open("f", os.O_WRONLY | os.O_APPEND)
    r.call("O_APPEND fd", fallocate, ap, 0, 0, 10)
    r.call("O_APPEND fd PUNCH", fallocate, ap, KEEP | PUNCH, 0, 10)
    os.mkdir("d")
    dfd = os.open("d", os.O_RDONLY)
    r.call("dir fd", fallocate, dfd, 0, 0, 10)
    os.mkfifo("p")
    pfd = os.open("p", os.O_RDWR)
    r.call("fifo fd", fallocate, pfd, 0, 0, 10)
    r.fstat(fd)


@case(A)
def case_punch_hole_unaligned(ctx: Ctx) -> None:
    fd = _file(data=bytes(range(256)) * 64)  # 16 KiB
    r = ctx.rec
    r.call("punch 100..9000", fallocate, fd, KEEP | PUNCH, 100, 8900)
    blob = os.pread(fd, 1 << 16, 0)
    r.note("zeroed exactly", (blob[99], blob[100:9000] == bytes(8900), blob[9000]))
    r.fstat(fd)
    _seeks(r, fd, [0, P, 2 * P, 3 * P])
    r.call("punch past EOF", fallocate, fd, KEEP | PUNCH, 1 << 20, P)
    r.call("punch everything", fallocate, fd, KEEP | PUNCH, 0, 1 << 30)
    r.fstat(fd)
    r.call("data after punching all", lambda: os.pread(fd, 16, 0))


@case(A)
def case_blocks_accounting(ctx: Ctx) -> None:
    r = ctx.rec
    fd = _file()
    for off in (0, 1, P - 1, P, 5 * P + 3, 100 * P):
        os.pwrite(fd, b"z", off)
        r.note(f"blocks after byte at {off}", os.fstat(fd).st_blocks)
    os.ftruncate(fd, 2 * P)
    r.note("blocks after truncate 2P", os.fstat(fd).st_blocks)


@case(A)
def case_read_write_offsets(ctx: Ctx) -> None:
    fd = _file(data=b"hello")
    r = ctx.rec
    r.call("pread negative", os.pread, fd, 10, -1)
    r.call("pwrite negative", os.pwrite, fd, b"x", -1)
    r.call("pread huge offset", os.pread, fd, 10, 1 << 62)
    r.call("pread 0 bytes", os.pread, fd, 0, 0)
    r.call("readv", os.readv, fd, [bytearray(2), bytearray(10)])
    os.lseek(fd, 0, 0)
    r.call("writev", os.writev, fd, [b"ab", b"", b"cde", b"f"])
    r.call("content", os.pread, fd, 100, 0)


@case(A)
def case_copy_and_sendfile(ctx: Ctx) -> None:
    src = _file("src", b"0123456789" * 1000)
    dst = _file("dst")
    r = ctx.rec
    r.call("copy_file_range", os.copy_file_range, src, dst, 5000, 10, 100)
    r.call("sendfile", os.sendfile, dst, src, 0, 3)
    r.fstat(dst)
    r.call("dst", os.pread, dst, 20, 0)
    r.call("dst tail", os.pread, dst, 20, 5100)


@case(A)
def case_mmap_and_truncate(ctx: Ctx) -> None:
    import mmap

    fd = _file(data=b"m" * (2 * P))
    r = ctx.rec
    mm = mmap.mmap(fd, 2 * P)
    mm[P:P + 3] = b"MAP"
    r.call("read sees mmap store", os.pread, fd, 3, P)
    os.pwrite(fd, b"WR", 0)
    r.note("mmap sees write", mm[0:2])
    os.ftruncate(fd, P + 1)
    r.note("after truncate, first page intact", mm[0:2])
    os.ftruncate(fd, 2 * P)
    r.note("re-extended page reads zero beyond old EOF", mm[P + 1:P + 3])
    r.note("byte within kept range", mm[P:P + 1])
    mm.close()


@case(A)
def case_rlimit_fsize_efbig(ctx: Ctx) -> None:
    """Past RLIMIT_FSIZE (SIGXFSZ ignored) writes are short, then EFBIG."""
    import resource
    import signal

    fd = _file()
    os.ftruncate(fd, 0)

    def body(rec) -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (10000, 10000))
        rec.call("write crossing the limit", os.pwrite, fd, b"x" * 200, 9900)
        rec.call("write at the limit", os.pwrite, fd, b"x", 10000)
        rec.call("ftruncate beyond limit", os.ftruncate, fd, 20000)
        rec.call("fallocate beyond limit", fallocate, fd, 0, 0, 20000)
        rec.call("ftruncate within limit", os.ftruncate, fd, 5000)

    ctx.in_child(body)
    ctx.rec.fstat(fd)


@case(A, mount="size=4m")
def case_fallocate_beyond_size_limit(ctx: Ctx) -> None:
    """fallocate larger than the size= limit fails with ENOSPC and leaves nothing
    allocated (all or nothing)."""
    fd = _file()
    r = ctx.rec
    r.call("fallocate 1 TiB at 2^50", fallocate, fd, KEEP, 1 << 50, 1 << 40)
    r.call("fallocate 5 MiB", fallocate, fd, 0, 0, 5 << 20)
    r.fstat(fd)
    r.call("fallocate 1 MiB", fallocate, fd, 0, 0, 1 << 20)
    r.fstat(fd)
    s = os.statvfs(".")
    r.note("bfree", s.f_bfree)
