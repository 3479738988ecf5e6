"""copy_file_range(2), sendfile(2) and splice(2) into and out of files: overlapping
ranges in one file, ranges past EOF and over holes, the size, blocks and times
of the destination, and every refusal (EBADF, EINVAL, EISDIR, EXDEV ...)."""

from __future__ import annotations

import ctypes
import os

from .framework import Ctx, case
from .libc import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocate, utimensat

A = "copy"
P = 4096
MAX = (1 << 63) - 1


def _file(name: str, data: bytes = b"", flags: int = os.O_RDWR) -> int:
    fd = os.open(name, os.O_CREAT | flags, 0o644)
    if data:
        os.pwrite(fd, data, 0)
    return fd


_libc = ctypes.CDLL(None, use_errno=True)
_libc.copy_file_range.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                                  ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint]
_libc.copy_file_range.restype = ctypes.c_ssize_t


def _cfr(src: int, dst: int, n: int, off_src: int | None, off_dst: int | None,
         flags: int = 0) -> int:
    """copy_file_range(2) with flags (the os module's version has none)."""
    a = None if off_src is None else ctypes.c_int64(off_src)
    b = None if off_dst is None else ctypes.c_int64(off_dst)
    ret = _libc.copy_file_range(src, None if a is None else ctypes.byref(a), dst,
                                None if b is None else ctypes.byref(b), n, flags)
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


@case(A)
def case_cfr_same_file(ctx: Ctx) -> None:
    """One file as source and destination: overlapping ranges are EINVAL,
    disjoint ones copy."""
    data = bytes(range(256)) * 48  # 12 KiB
    fd = _file("f", data)
    r = ctx.rec
    r.call("overlap forward", _cfr, fd, fd, 2 * P, 0, P)
    r.call("overlap backward", _cfr, fd, fd, 2 * P, P, 0)
    r.call("same range", _cfr, fd, fd, 100, 0, 0)
    r.call("adjacent", _cfr, fd, fd, P, 0, P)
    r.call("disjoint unaligned", _cfr, fd, fd, 1000, 10, 9000)
    r.call("disjoint past EOF", _cfr, fd, fd, 100, 0, 20000)
    r.fstat(fd)
    blob = os.pread(fd, 1 << 16, 0)
    r.note("content digest", (blob[:16], blob[P:P + 16], blob[9000:9016],
                              blob[12288:12300], blob[20000:20010], len(blob)))
    dup = os.open("f", os.O_RDWR)
    r.call("two fds of one file overlapping", _cfr, fd, dup, 100, 0, 50)


@case(A)
def case_cfr_past_eof(ctx: Ctx) -> None:
    """Source offset at or past EOF copies 0 bytes; a range crossing EOF is
    short; a destination offset past EOF leaves a hole."""
    src = _file("s", b"0123456789" * 500)  # 5000 bytes
    dst = _file("d")
    r = ctx.rec
    r.call("src at EOF", _cfr, src, dst, 10, 5000, 0)
    r.call("src past EOF", _cfr, src, dst, 10, 9000, 0)
    r.fstat(dst)
    r.call("crossing EOF", _cfr, src, dst, 10000, 4990, 0)
    r.fstat(dst)
    r.call("dst far past EOF", _cfr, src, dst, 100, 0, 10 * P + 5)
    r.fstat(dst)
    r.call("SEEK_DATA 0", os.lseek, dst, 0, os.SEEK_DATA)
    r.call("SEEK_HOLE 0", os.lseek, dst, 0, os.SEEK_HOLE)
    r.call("SEEK_DATA P", os.lseek, dst, P, os.SEEK_DATA)
    r.call("read back", os.pread, dst, 20, 10 * P)
    r.call("len 0", _cfr, src, dst, 0, 0, 0)
    r.call("dst offset near MAX", _cfr, src, dst, 100, 0, MAX - 10)
    r.call("src offset near MAX", _cfr, src, dst, 100, MAX - 10, 0)
    r.call("len huge", _cfr, src, dst, 1 << 62, 0, 0)
    r.fstat(dst)


@case(A)
def case_cfr_file_positions(ctx: Ctx) -> None:
    """With NULL offsets the file positions are used and advanced."""
    src = _file("s", b"abcdefghij" * 10)
    dst = _file("d", b"ZZ")
    os.lseek(src, 5, os.SEEK_SET)
    os.lseek(dst, 1, os.SEEK_SET)
    r = ctx.rec
    r.call("copy 7 via positions", _cfr, src, dst, 7, None, None)
    r.call("src pos", os.lseek, src, 0, os.SEEK_CUR)
    r.call("dst pos", os.lseek, dst, 0, os.SEEK_CUR)
    r.call("content", os.pread, dst, 20, 0)
    r.call("explicit offsets leave positions", _cfr, src, dst, 3, 0, 50)
    r.call("src pos after", os.lseek, src, 0, os.SEEK_CUR)
    r.call("dst pos after", os.lseek, dst, 0, os.SEEK_CUR)


@case(A)
def case_cfr_holes(ctx: Ctx) -> None:
    """Copying a sparse range: sizes and contents.  Not compared: st_blocks and
    SEEK_DATA of the copy, since tmpfs writes source holes as zero pages and
    shmfs keeps them holes (docs/decisions.md 10, docs/divergences.md)."""
    src = _file("s")
    os.pwrite(src, b"A" * 100, 0)
    os.pwrite(src, b"B" * 100, 5 * P)
    os.ftruncate(src, 8 * P)
    dst = _file("d")
    r = ctx.rec
    r.call("copy sparse 8 pages", _cfr, src, dst, 8 * P, 0, 0)
    st = os.fstat(dst)
    r.note("dst size", st.st_size)
    blob = os.pread(dst, 9 * P, 0)
    r.note("content", (blob[:100] == b"A" * 100, blob[5 * P:5 * P + 100] == b"B" * 100,
                       blob.count(0)))
    r.call("copy a pure hole onto data", _cfr, src, dst, 2 * P, 2 * P, 0)
    r.call("data after copying a hole", os.pread, dst, 4, 0)
    r.note("size", os.fstat(dst).st_size)
    r.call("punch src then copy", lambda: (
        fallocate(src, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 5 * P, P),
        _cfr(src, dst, P, 5 * P, 5 * P))[1])
    r.call("punched range reads zero", lambda: os.pread(dst, P, 5 * P) == bytes(P))


@case(A)
def case_cfr_errors(ctx: Ctx) -> None:
    src = _file("s", b"x" * 100)
    dst = _file("d")
    r = ctx.rec
    ro = os.open("d", os.O_RDONLY)
    wo = os.open("s", os.O_WRONLY)
    ap = os.open("d", os.O_WRONLY | os.O_APPEND)
    os.mkdir("dir")
    dfd = os.open("dir", os.O_RDONLY)
    os.mkfifo("p")
    pfd = os.open("p", os.O_RDWR)
    path = os.open("s", os.O_PATH)
    r.call("flags 1", _cfr, src, dst, 10, 0, 0, 1)
    r.call("dst O_RDONLY", _cfr, src, ro, 10, 0, 0)
    r.call("src O_WRONLY", _cfr, wo, dst, 10, 0, 0)
    r.call("dst O_APPEND", _cfr, src, ap, 10, 0, 0)
    r.call("src dir", _cfr, dfd, dst, 10, 0, 0)
    r.call("dst dir", _cfr, src, dfd, 10, 0, 0)
    r.call("src fifo", _cfr, pfd, dst, 10, None, 0)
    r.call("dst fifo", _cfr, src, pfd, 10, 0, None)
    r.call("src O_PATH", _cfr, path, dst, 10, 0, 0)
    r.call("negative src offset", _cfr, src, dst, 10, -1, 0)
    r.call("negative dst offset", _cfr, src, dst, 10, 0, -1)
    r.fstat(dst)


@case(A)
def case_cfr_across_mounts(ctx: Ctx) -> None:
    """Between this filesystem and a private kernel tmpfs, both directions."""
    os.mkdir("m")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"none", b"m", b"tmpfs", 0, b"size=1m") != 0:
        ctx.rec.note("mount", ("err", ctypes.get_errno()))
        return
    try:
        here = _file("h", b"here" * 10)
        there = _file("m/t", b"there" * 10)
        r = ctx.rec
        r.call("here -> tmpfs", _cfr, here, there, 8, 0, 0)
        r.call("tmpfs -> here", _cfr, there, here, 8, 0, 0)
        r.call("here content", os.pread, here, 12, 0)
        r.call("sendfile tmpfs -> here", os.sendfile, here, there, 0, 5)
        r.call("sendfile here -> tmpfs", os.sendfile, there, here, 0, 5)
        r.call("tmpfs content", os.pread, there, 12, 0)
        os.close(there)
    finally:
        libc.umount2(b"m", 2)


@case(A)
def case_cfr_times_and_suid(ctx: Ctx) -> None:
    """The destination's mtime and ctime move and its set-id bits go; the
    source is untouched."""
    src = _file("s", b"s" * 100)
    dst = _file("d", b"d" * 10)
    os.chmod("d", 0o6755)
    utimensat("s", (1, 0), (1, 0))
    utimensat("d", (1, 0), (1, 0))
    r = ctx.rec
    before_c = os.fstat(dst).st_ctime_ns

    def body(rec) -> None:
        rec.call("copy as uid 1000", _cfr, src, dst, 50, 0, 0)

    os.chmod("s", 0o644)
    os.chown("d", 1000, 1000)
    ctx.as_user(body, 1000, 1000, [])
    sd, ss = os.fstat(dst), os.fstat(src)
    r.note("dst mtime moved", sd.st_mtime_ns != 10**9)
    r.note("dst ctime not earlier", sd.st_ctime_ns >= before_c)
    r.note("dst mode", oct(sd.st_mode & 0o7777))
    r.note("src times", (ss.st_mtime_ns, ss.st_atime_ns == 10**9))
    r.note("dst size", sd.st_size)


@case(A)
def case_sendfile_into_file(ctx: Ctx) -> None:
    """sendfile from a file into a file and into a pipe; offsets and positions."""
    src = _file("s", b"0123456789" * 1000)
    dst = _file("d", b"head")
    r = ctx.rec
    os.lseek(dst, 2, os.SEEK_SET)
    r.call("sendfile with offset", os.sendfile, dst, src, 9995, 100)
    r.call("dst pos", os.lseek, dst, 0, os.SEEK_CUR)
    r.call("src pos untouched", os.lseek, src, 0, os.SEEK_CUR)
    r.call("content", os.pread, dst, 20, 0)
    os.lseek(src, 20, os.SEEK_SET)
    r.call("sendfile NULL offset", os.sendfile, dst, src, None, 4)
    r.call("src pos advanced", os.lseek, src, 0, os.SEEK_CUR)
    r.call("sendfile past EOF", os.sendfile, dst, src, 20000, 10)
    r.call("sendfile negative", os.sendfile, dst, src, -1, 10)
    ap = os.open("d", os.O_WRONLY | os.O_APPEND)
    r.call("sendfile into O_APPEND", os.sendfile, ap, src, 0, 3)
    ro = os.open("d", os.O_RDONLY)
    r.call("sendfile into O_RDONLY", os.sendfile, ro, src, 0, 3)
    rp, wp = os.pipe()
    r.call("sendfile into pipe", os.sendfile, wp, src, 100, 10)
    r.call("pipe got", os.read, rp, 20)
    r.fstat(dst)
    r.call("final", os.pread, dst, 40, 0)


@case(A)
def case_splice_file_pipe(ctx: Ctx) -> None:
    """splice file -> pipe -> file with offsets; holes read as zeros; a pipe
    into a file past EOF extends it."""
    src = _file("s")
    os.pwrite(src, b"S" * 10, 0)
    os.pwrite(src, b"T" * 10, 3 * P)
    dst = _file("d")
    r = ctx.rec
    rp, wp = os.pipe()
    r.call("splice file->pipe over a hole", os.splice, src, wp, 3 * P + 10, offset_src=0)
    r.call("splice pipe->file at 2P+7", os.splice, rp, dst, 3 * P + 10, offset_dst=2 * P + 7)
    r.fstat(dst)
    blob = os.pread(dst, 8 * P, 0)
    r.note("layout", (blob[2 * P + 7:2 * P + 17], blob[5 * P + 7:5 * P + 17], blob.count(0)))
    r.call("splice at EOF", os.splice, src, wp, 10, offset_src=3 * P + 10)
    r.call("splice past EOF", os.splice, src, wp, 10, offset_src=10 * P)
    os.write(wp, b"tail")
    ap = os.open("d", os.O_WRONLY | os.O_APPEND)
    r.call("splice pipe->O_APPEND with offset", os.splice, rp, ap, 4, offset_dst=0)
    r.call("splice pipe->O_APPEND", os.splice, rp, ap, 4)
    r.fstat(dst)
    r.call("tail", os.pread, dst, 8, os.fstat(dst).st_size - 8)
    r.call("file->file", os.splice, src, dst, 4, offset_src=0, offset_dst=0)


@case(A)
def case_rlimit_fsize(ctx: Ctx) -> None:
    """xfstests generic/564: copy_file_range, sendfile and splice past
    RLIMIT_FSIZE (SIGXFSZ ignored) are short, then EFBIG; nothing is written
    beyond the limit."""
    import resource
    import signal

    src = _file("s", b"r" * 20000)
    dst = _file("d")

    def body(rec) -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (10000, 10000))
        rec.call("cfr crossing the limit", _cfr, src, dst, 500, 0, 9800)
        rec.call("cfr at the limit", _cfr, src, dst, 10, 0, 10000)
        rec.call("cfr past the limit", _cfr, src, dst, 10, 0, 20000)
        os.lseek(dst, 9900, os.SEEK_SET)
        rec.call("sendfile crossing the limit", os.sendfile, dst, src, 0, 500)
        rp, wp = os.pipe()
        os.write(wp, b"p" * 300)
        rec.call("splice crossing the limit", os.splice, rp, dst, 300, offset_dst=9950)

    ctx.in_child(body)
    ctx.rec.fstat(dst)
