"""Inode flags (issue 13 item 5): FS_IOC_GETFLAGS/SETFLAGS, FS_IOC_FSGETXATTR/
FSSETXATTR and chattr/lsattr; the flags tmpfs keeps (append-only, immutable,
nodump, noatime) and how it enforces them; CAP_LINUX_IMMUTABLE."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess

from .framework import OTHER_GID, OTHER_UID, Ctx, Recorder, case
from .libc import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocate, utimensat

A = "fsflags"
FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602
FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR = 0x801C581F, 0x401C5820
IMMUTABLE, APPEND, NODUMP, NOATIME, SYNC = 0x10, 0x20, 0x40, 0x80, 0x8
FSX = struct.Struct("<IIIII8x")


def getflags(path: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return struct.unpack("<i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(4)))[0]
    finally:
        os.close(fd)


def setflags(path: str, flags: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("<i", flags))
    finally:
        os.close(fd)


def fsgetxattr(path: str) -> tuple[int, ...]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return FSX.unpack(fcntl.ioctl(fd, FS_IOC_FSGETXATTR, bytes(FSX.size)))
    finally:
        os.close(fd)


def fssetxattr(path: str, xflags: int, projid: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, FS_IOC_FSSETXATTR, FSX.pack(xflags, 0, 0, projid, 0))
    finally:
        os.close(fd)


def _file(name: str, data: bytes = b"data") -> None:
    with open(name, "wb") as f:
        f.write(data)


def _fd_op(rec: Recorder, label: str, fd: int, fn) -> None:  # type: ignore[no-untyped-def]
    rec.call(label, fn, fd)


@case(A)
def case_get_set_flags(ctx: Ctx) -> None:
    """The four flags round-trip on files and directories; others are EOPNOTSUPP."""
    _file("f")
    os.mkdir("d")
    r = ctx.rec
    for p in ("f", "d"):
        r.call(f"getflags({p})", getflags, p)
        for fl in (NODUMP, NOATIME, APPEND, IMMUTABLE, NODUMP | NOATIME | APPEND | IMMUTABLE):
            r.call(f"setflags({p}, {fl:#x})", setflags, p, fl)
            r.call(f"getflags({p}) after {fl:#x}", getflags, p)
        r.call(f"setflags({p}, 0)", setflags, p, 0)
        r.call(f"setflags({p}, SYNC)", setflags, p, SYNC)
        r.call(f"setflags({p}, 0x4000)", setflags, p, 0x4000)
        r.call(f"getflags({p}) at the end", getflags, p)


@case(A)
def case_fsxattr(ctx: Ctx) -> None:
    """FS_IOC_FSGETXATTR/FSSETXATTR: the same flags as xflags; others refused."""
    _file("f")
    r = ctx.rec
    r.call("fsgetxattr", fsgetxattr, "f")
    r.call("fssetxattr(IMMUTABLE|NODUMP)", fssetxattr, "f", 0x8 | 0x80)
    r.call("getflags", getflags, "f")
    r.call("fsgetxattr again", fsgetxattr, "f")
    r.call("fssetxattr(SYNC xflag)", fssetxattr, "f", 0x20)
    r.call("fssetxattr(projid 5)", fssetxattr, "f", 0, 5)
    r.call("fssetxattr(0)", fssetxattr, "f", 0)
    r.call("getflags at the end", getflags, "f")


def _attempts(rec: Recorder, f: str) -> None:
    """Every way to change ``f``, its name and its metadata."""
    rec.call("open(O_RDONLY)", lambda: os.close(os.open(f, os.O_RDONLY)))
    rec.call("open(O_WRONLY)", lambda: os.close(os.open(f, os.O_WRONLY)))
    rec.call("open(O_WRONLY|O_APPEND)", lambda: os.close(os.open(f, os.O_WRONLY | os.O_APPEND)))
    rec.call("open(O_RDONLY|O_TRUNC)", lambda: os.close(os.open(f, os.O_RDONLY | os.O_TRUNC)))

    def append() -> int:
        fd = os.open(f, os.O_WRONLY | os.O_APPEND)
        try:
            return os.write(fd, b"+")
        finally:
            os.close(fd)
    rec.call("append write", append)
    rec.call("truncate", os.truncate, f, 1)
    rec.call("chmod", os.chmod, f, 0o600)
    rec.call("chown", os.chown, f, OTHER_UID, -1)
    rec.call("chown(-1, -1)", os.chown, f, -1, -1)
    rec.call("utime explicit", utimensat, f, (1, 0), (2, 0))
    rec.call("utime now", utimensat, f, None, None)
    rec.call("setxattr", os.setxattr, f, "user.x", b"1")
    rec.call("removexattr", os.removexattr, f, "user.y")
    rec.call("link", os.link, f, f + ".link")
    rec.call("rename away", os.rename, f, f + ".moved")
    _file("other")
    rec.call("rename over it", os.rename, "other", f)
    rec.call("unlink", os.unlink, f)
    rec.call("read", lambda: (lambda b: (len(b), b[:8]))(open(f, "rb").read()))
    rec.stat(f)


def _old_fd_attempts(rec: Recorder, fd: int) -> None:
    """Through a descriptor opened for writing before the flag was set."""
    _fd_op(rec, "write old fd", fd, lambda fd: os.pwrite(fd, b"W", 0))
    _fd_op(rec, "ftruncate old fd", fd, lambda fd: os.ftruncate(fd, 2))
    _fd_op(rec, "fallocate old fd", fd, lambda fd: fallocate(fd, 0, 0, 8192))
    _fd_op(rec, "fallocate keep old fd", fd,
           lambda fd: fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 16384))
    _fd_op(rec, "punch old fd", fd,
           lambda fd: fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1))


@case(A)
def case_immutable_file(ctx: Ctx) -> None:
    """chattr +i: no write, truncate, chmod, chown, times, xattr change, link,
    rename or unlink (EPERM); reading still works."""
    _file("f")
    os.setxattr("f", "user.y", b"1")
    fd = os.open("f", os.O_RDWR)
    setflags("f", IMMUTABLE)
    try:
        _old_fd_attempts(ctx.rec, fd)
        _attempts(ctx.rec, "f")
    finally:
        os.close(fd)
        setflags("f", 0)
    ctx.rec.call("unlink after chattr -i", os.unlink, "f")


@case(A)
def case_append_only_file(ctx: Ctx) -> None:
    """chattr +a: writes only with O_APPEND; no truncate, punch, chmod, link,
    rename or unlink."""
    _file("f")
    os.setxattr("f", "user.y", b"1")
    fd = os.open("f", os.O_RDWR)
    setflags("f", APPEND)
    try:
        _old_fd_attempts(ctx.rec, fd)
        _attempts(ctx.rec, "f")
        ctx.rec.call("content", lambda: (lambda b: (len(b), b[:8], b[-2:]))(
            open("f", "rb").read()))
    finally:
        os.close(fd)
        setflags("f", 0)


@case(A)
def case_immutable_directory(ctx: Ctx) -> None:
    """An immutable directory: no entry in or out; its files stay writable."""
    os.mkdir("d")
    _file("d/f")
    _file("x")
    setflags("d", IMMUTABLE)
    r = ctx.rec
    try:
        r.call("create", lambda: os.close(os.open("d/new", os.O_CREAT | os.O_WRONLY)))
        r.call("mkdir", os.mkdir, "d/sub")
        r.call("symlink", os.symlink, "f", "d/sl")
        r.call("link in", os.link, "x", "d/x")
        r.call("rename in", os.rename, "x", "d/x")
        r.call("rename out", os.rename, "d/f", "f")
        r.call("rename within", os.rename, "d/f", "d/g")
        r.call("unlink", os.unlink, "d/f")
        r.call("write child", lambda: open("d/f", "ab").write(b"more"))
        r.call("rmdir", os.rmdir, "d")
        r.call("listdir", lambda: sorted(os.listdir("d")))
        r.call("chmod dir", os.chmod, "d", 0o700)
    finally:
        setflags("d", 0)


@case(A)
def case_append_only_directory(ctx: Ctx) -> None:
    """An append-only directory: entries come in, none leave."""
    os.mkdir("d")
    _file("d/f")
    _file("x")
    setflags("d", APPEND)
    r = ctx.rec
    try:
        r.call("create", lambda: os.close(os.open("d/new", os.O_CREAT | os.O_WRONLY)))
        r.call("mkdir", os.mkdir, "d/sub")
        r.call("rename in", os.rename, "x", "d/x")
        r.call("rename out", os.rename, "d/f", "f")
        r.call("rename within", os.rename, "d/f", "d/g")
        r.call("unlink", os.unlink, "d/f")
        r.call("rmdir child", os.rmdir, "d/sub")
        r.call("listdir", lambda: sorted(os.listdir("d")))
    finally:
        setflags("d", 0)


@case(A)
def case_capabilities(ctx: Ctx) -> None:
    """The owner may set nodump/noatime but not append/immutable
    (CAP_LINUX_IMMUTABLE); others may set nothing; anyone who can open reads."""
    _file("f")
    os.chown("f", OTHER_UID, OTHER_GID)
    _file("g")
    os.chmod("g", 0o644)
    setflags("g", APPEND)

    def body(rec: Recorder) -> None:
        rec.call("owner nodump", setflags, "f", NODUMP)
        rec.call("owner noatime+nodump", setflags, "f", NODUMP | NOATIME)
        rec.call("owner immutable", setflags, "f", IMMUTABLE)
        rec.call("owner append", setflags, "f", APPEND)
        rec.call("owner getflags", getflags, "f")
        rec.call("other nodump", setflags, "g", APPEND | NODUMP)
        rec.call("other clear append", setflags, "g", 0)
        rec.call("other getflags", getflags, "g")
    ctx.as_user(body)
    ctx.rec.call("root clears", setflags, "g", 0)


@case(A)
def case_noatime(ctx: Ctx) -> None:
    """FS_NOATIME_FL: reads leave atime alone (a control file without it moves)."""
    for n in ("a", "n"):
        _file(n, b"x" * 100)
        utimensat(n, (1000, 0), (2000, 0))  # atime older than mtime: relatime updates
    setflags("n", NOATIME)
    for n in ("a", "n"):
        with open(n, "rb") as f:
            f.read()
        ctx.rec.note(f"atime of {n} unchanged", os.stat(n).st_atime_ns == 1000 * 10**9)
    setflags("n", 0)


@case(A)
def case_chattr_lsattr(ctx: Ctx) -> None:
    """e2fsprogs' chattr and lsattr."""
    _file("f")
    os.mkdir("d")

    def run(*argv: str) -> tuple[int, str]:
        p = subprocess.run(argv, capture_output=True, text=True, check=False)
        return p.returncode, p.stdout.strip()

    r = ctx.rec
    r.note("lsattr f", run("lsattr", "f"))
    r.note("chattr +d +A f", run("chattr", "+d", "+A", "f"))
    r.note("lsattr f after", run("lsattr", "f"))
    r.note("chattr +i f", run("chattr", "+i", "f"))
    r.note("lsattr f immutable", run("lsattr", "f"))
    r.note("write refused", run("sh", "-c", "echo x >> f"))
    r.note("chattr -i f", run("chattr", "-i", "f"))
    r.note("chattr +a d", run("chattr", "+a", "d"))
    r.note("lsattr -d d", run("lsattr", "-d", "d"))
    r.note("chattr +s f (unsupported)", run("chattr", "+s", "f")[0] != 0)
    r.note("chattr -a d", run("chattr", "-a", "d"))


@case(A)
def case_mmap_store_through_append_descriptor(ctx: Ctx) -> None:
    """Found while checking append-only files: a shared mapping made from an
    O_APPEND descriptor stores in place (its writeback is not an append)."""
    import mmap

    _file("f", b"a" * 4096)
    fd = os.open("f", os.O_RDWR | os.O_APPEND)
    try:
        mm = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        mm[1:2] = b"M"
        mm.flush()
        mm.close()
        ctx.rec.call("append write", os.write, fd, b"Z")
    finally:
        os.close(fd)
    data = open("f", "rb").read()
    ctx.rec.note("size, head, tail", (len(data), data[:3], data[-2:]))
