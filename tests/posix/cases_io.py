"""I/O interfaces the other areas do not reach: O_DIRECT opens and transfers
(tmpfs accepts O_DIRECT since 6.6), FIONREAD on files, statx fields beyond the
basic stats (blksize, blocks, attributes_mask, STATX_DIOALIGN), and readdir of
a large directory through getdents64 with d_off seeks."""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct
import termios

from .framework import Ctx, case

A = "io"
P = 4096
_libc = ctypes.CDLL(None, use_errno=True)

STATX_BASIC_STATS = 0x7FF
STATX_DIOALIGN = 0x2000
STATX_MNT_ID = 0x1000
# STATX_ATTR_IMMUTABLE|APPEND|NODUMP: tmpfs sets them in attributes_mask; shmfs
# sends them but 6.18's fuse_do_statx drops attributes and attributes_mask
# (docs/divergences.md 13), so they are left out of the comparison
STATX_ATTR_CHATTR = 0x70


def _statx(path: str, mask: int, flags: int = 0) -> dict:
    buf = ctypes.create_string_buffer(256)
    if _libc.statx(-100, os.fsencode(path), flags, mask, buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    raw = buf.raw
    (m, blksize, attrs, nlink, _uid, _gid, mode) = struct.unpack_from("<IIQIIIH", raw, 0)
    size, blocks, amask = struct.unpack_from("<QQQ", raw, 40)
    dio_mem, dio_off = struct.unpack_from("<II", raw, 152)
    return {"mask_basic": m & STATX_BASIC_STATS, "dioalign": bool(m & STATX_DIOALIGN),
            "blksize": blksize, "attributes": attrs, "nlink": nlink, "mode": oct(mode),
            "size": size, "blocks": blocks, "attributes_mask": hex(amask & ~STATX_ATTR_CHATTR),
            "dio": (dio_mem, dio_off) if m & STATX_DIOALIGN else None}


def _aligned(n: int) -> mmap.mmap:
    """A page-aligned buffer (anonymous mapping) for O_DIRECT transfers."""
    return mmap.mmap(-1, n)


@case(A)
def case_o_direct(ctx: Ctx) -> None:
    """open(O_DIRECT) and aligned/unaligned reads and writes; the data path
    agrees with buffered I/O through another descriptor."""
    r = ctx.rec
    fd = r.call("open O_DIRECT|O_CREAT", os.open, "f", os.O_CREAT | os.O_RDWR | os.O_DIRECT,
                0o644)
    if fd is None:
        return
    buf = _aligned(2 * P)
    buf[:] = b"D" * (2 * P)
    r.call("aligned pwritev", os.pwritev, fd, [buf], 0)
    r.call("buffered read sees it", os.pread, os.open("f", os.O_RDONLY), 4, P)
    r.call("unaligned length write", os.pwritev, fd, [memoryview(buf)[:100]], 0)
    r.call("unaligned offset write", os.pwritev, fd, [buf], 7)
    rb = _aligned(2 * P)
    r.call("aligned preadv", os.preadv, fd, [rb], 0)
    r.note("got", bytes(rb[:4]))
    r.call("unaligned offset read", os.preadv, fd, [rb], 3)
    r.call("read at EOF", os.preadv, fd, [rb], 2 * P + P)
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    r.note("F_GETFL has O_DIRECT", bool(fl & os.O_DIRECT))
    b = os.open("f", os.O_RDWR)
    r.call("F_SETFL O_DIRECT on a buffered fd", fcntl.fcntl, b, fcntl.F_SETFL, os.O_DIRECT)
    r.note("now O_DIRECT", bool(fcntl.fcntl(b, fcntl.F_GETFL) & os.O_DIRECT))
    os.mkdir("d")
    r.call("O_DIRECT on a directory", lambda: os.close(os.open("d", os.O_RDONLY | os.O_DIRECT)))
    r.fstat(fd)


@case(A)
def case_fionread(ctx: Ctx) -> None:
    """FIONREAD on a regular file: the bytes between the position and EOF."""
    fd = os.open("f", os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"x" * 1000)
    r = ctx.rec

    def fionread(f: int) -> int:
        return struct.unpack("i", fcntl.ioctl(f, termios.FIONREAD, b"\0" * 4))[0]

    r.call("at EOF", fionread, fd)
    os.lseek(fd, 100, os.SEEK_SET)
    r.call("at 100", fionread, fd)
    os.lseek(fd, 5000, os.SEEK_SET)
    r.call("past EOF", fionread, fd)
    os.mkdir("d")
    r.call("directory", fionread, os.open("d", os.O_RDONLY))


@case(A)
def case_statx_fields(ctx: Ctx) -> None:
    """blksize, blocks, attributes/attributes_mask and STATX_DIOALIGN on a file,
    a directory and a symlink."""
    fd = os.open("f", os.O_CREAT | os.O_RDWR, 0o644)
    os.pwrite(fd, b"s" * 5000, 0)
    os.mkdir("d")
    os.symlink("f", "l")
    r = ctx.rec
    for p in ("f", "d"):
        r.call(f"statx {p} basic", _statx, p, STATX_BASIC_STATS)
        r.call(f"statx {p} +DIOALIGN", _statx, p, STATX_BASIC_STATS | STATX_DIOALIGN)
    r.call("statx l nofollow", _statx, "l", STATX_BASIC_STATS, 0x100)
    r.call("statx bad flags", _statx, "f", STATX_BASIC_STATS, 0x80000000)
    r.call("statx reserved mask bit", _statx, "f", 0x80000000)


@case(A)
def case_getdents_d_off(ctx: Ctx) -> None:
    """3000 entries through getdents64 in small buffers; lseek to every 97th
    d_off resumes with exactly the entries after it (d_off is stable)."""
    os.mkdir("d")
    for i in range(3000):
        os.close(os.open(f"d/e{i:05d}", os.O_CREAT | os.O_WRONLY, 0o644))
    fd = os.open("d", os.O_RDONLY | os.O_DIRECTORY)
    buf = ctypes.create_string_buffer(1024)

    def getdents() -> list[tuple[str, int]]:
        n = _libc.syscall(217, fd, buf, 1024)  # SYS_getdents64 on x86-64
        if n < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        out, pos = [], 0
        raw = buf.raw[:n]
        while pos < n:
            _ino, off, reclen = struct.unpack_from("<QqH", raw, pos)
            name = raw[pos + 19:pos + reclen].split(b"\0", 1)[0].decode()
            out.append((name, off))
            pos += reclen
        return out

    entries: list[tuple[str, int]] = []
    while batch := getdents():
        entries.extend(batch)
    r = ctx.rec
    names = [n for n, _ in entries]
    r.note("count and unique", (len(names), len(set(names))))
    bad = 0
    for i in range(0, len(entries), 97):
        os.lseek(fd, entries[i][1], os.SEEK_SET)
        rest: list[str] = []
        while batch := getdents():
            rest.extend(n for n, _ in batch)
        if rest != names[i + 1:]:
            bad += 1
    r.note("seeks that resumed wrongly", bad)
    os.lseek(fd, 0, os.SEEK_SET)
    r.note("rewind gives all", len([n for n, _ in getdents()]) > 0)


RWF_HIPRI, RWF_DSYNC, RWF_SYNC, RWF_NOWAIT, RWF_APPEND, RWF_NOAPPEND = 1, 2, 4, 8, 16, 32


@case(A)
def case_rwf_flags(ctx: Ctx) -> None:
    """preadv2/pwritev2 flags: RWF_APPEND, RWF_DSYNC/RWF_SYNC, RWF_HIPRI,
    unknown bits; pwrite on an O_APPEND descriptor appends whatever the offset.
    (RWF_NOAPPEND: case rwf_noappend.)"""
    fd = os.open("f", os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"0123456789")
    r = ctx.rec
    r.call("pwritev2 RWF_APPEND", os.pwritev, fd, [b"AP"], 0, RWF_APPEND)
    r.call("content", os.pread, fd, 20, 0)
    ap = os.open("f", os.O_WRONLY | os.O_APPEND)
    r.call("pwrite on O_APPEND at 0", os.pwrite, ap, b"pw", 0)
    r.call("content 2", os.pread, fd, 20, 0)
    for label, flag in (("DSYNC", RWF_DSYNC), ("SYNC", RWF_SYNC), ("HIPRI", RWF_HIPRI),
                        ("unknown 0x4000", 0x4000)):
        r.call(f"pwritev2 {label}", os.pwritev, fd, [b"s"], 3, flag)
        r.call(f"preadv2 {label}", os.preadv, fd, [bytearray(4)], 0, flag)
    r.fstat(fd)


@case(A)
def case_rwf_noappend(ctx: Ctx) -> None:
    """pwritev2(RWF_NOAPPEND) on an O_APPEND descriptor writes at the offset
    given (6.9+).  A strict xfail on shmfs (docs/divergences.md 20)."""
    fd = os.open("f", os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"0123456789")
    ap = os.open("f", os.O_WRONLY | os.O_APPEND)
    r = ctx.rec
    r.call("pwritev2 RWF_NOAPPEND on O_APPEND", os.pwritev, ap, [b"NA"], 1, RWF_NOAPPEND)
    r.call("content", os.pread, fd, 20, 0)
    r.call("RWF_APPEND|RWF_NOAPPEND", os.pwritev, ap, [b"x"], 0, RWF_APPEND | RWF_NOAPPEND)


@case(A)
def case_inotify_events(ctx: Ctx) -> None:
    """inotify events of common calls on a directory and a file in it."""
    import select

    libc = _libc
    ifd = libc.inotify_init1(os.O_NONBLOCK)
    os.mkdir("d")
    mask = 0xFFF  # IN_ALL_EVENTS
    libc.inotify_add_watch(ifd, b"d", mask)

    def drain() -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        while select.select([ifd], [], [], 0)[0]:
            try:
                buf = os.read(ifd, 65536)
            except BlockingIOError:
                break
            pos = 0
            while pos < len(buf):
                _wd, m, _cookie, ln = struct.unpack_from("iIII", buf, pos)
                name = buf[pos + 16:pos + 16 + ln].split(b"\0", 1)[0].decode()
                out.append((m & ~0x40000000, name))  # without IN_ISDIR
                pos += 16 + ln
        return out

    r = ctx.rec
    fd = os.open("d/f", os.O_CREAT | os.O_RDWR, 0o644)
    r.note("create", drain())
    os.write(fd, b"x")
    os.pread(fd, 1, 0)
    r.note("write, read", drain())
    os.fchmod(fd, 0o600)
    os.ftruncate(fd, 100)
    r.note("chmod, truncate", drain())
    os.close(fd)
    r.note("close", drain())
    os.rename("d/f", "d/g")
    os.link("d/g", "d/h")
    os.unlink("d/h")
    os.mkdir("d/sub")
    os.rmdir("d/sub")
    os.setxattr("d/g", "user.a", b"1")
    r.note("rename, link, unlink, mkdir, rmdir, setxattr", drain())
    os.close(ifd)
