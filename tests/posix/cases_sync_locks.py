"""fsync/fdatasync/syncfs and file locks: flock, POSIX record locks across
processes (F_SETLK/F_GETLK), open file description locks, and leases."""

from __future__ import annotations

import fcntl
import os
import struct

from .framework import Ctx, Recorder, case

A = "sync"
L = "locks"

F_OFD_GETLK, F_OFD_SETLK = 36, 37


def _touch(name: str, data: bytes = b"") -> None:
    fd = os.open(name, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, data)
    os.close(fd)


def _flock_struct(ltype: int, start: int = 0, length: int = 0, whence: int = 0) -> bytes:
    # struct flock on x86_64: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t
    return struct.pack("hhqqi4x", ltype, whence, start, length, 0)


def _unpack(buf: bytes) -> tuple[int, int, int, int, int]:
    return struct.unpack("hhqqi4x", buf)


@case(A)
def case_fsync_variants(ctx: Ctx) -> None:
    _touch("f", b"data")
    os.mkdir("d")
    os.mkfifo("p")
    r = ctx.rec
    fd = os.open("f", os.O_RDWR)
    r.call("fsync rw", os.fsync, fd)
    r.call("fdatasync rw", os.fdatasync, fd)
    ro = os.open("f", os.O_RDONLY)
    r.call("fsync O_RDONLY", os.fsync, ro)
    dfd = os.open("d", os.O_RDONLY)
    r.call("fsync dir", os.fsync, dfd)
    r.call("fdatasync dir", os.fdatasync, dfd)
    pfd = os.open("p", os.O_RDWR)
    r.call("fsync fifo", os.fsync, pfd)
    path = os.open("f", os.O_PATH)
    r.call("fsync O_PATH", os.fsync, path)
    r.call("syncfs", os.sync)


@case(A)
def case_sync_flags_and_data(ctx: Ctx) -> None:
    r = ctx.rec
    fd = r.open("f", os.O_CREAT | os.O_RDWR | os.O_SYNC, 0o644)
    if fd is not None:
        r.call("O_SYNC write", os.write, fd, b"sync")
    fd2 = r.open("g", os.O_CREAT | os.O_RDWR | os.O_DSYNC, 0o644)
    if fd2 is not None:
        r.call("O_DSYNC write", os.write, fd2, b"dsync")
        r.call("sync_file_range", lambda: os.posix_fadvise(fd2, 0, 0, os.POSIX_FADV_DONTNEED))
        r.call("read after fadvise DONTNEED", os.pread, fd2, 10, 0)


@case(L)
def case_flock_same_process(ctx: Ctx) -> None:
    """flock locks belong to open file descriptions: two opens conflict."""
    _touch("f")
    a = os.open("f", os.O_RDONLY)
    b = os.open("f", os.O_RDONLY)
    r = ctx.rec
    r.call("a LOCK_EX", fcntl.flock, a, fcntl.LOCK_EX)
    r.call("b LOCK_EX|NB", fcntl.flock, b, fcntl.LOCK_EX | fcntl.LOCK_NB)
    r.call("b LOCK_SH|NB", fcntl.flock, b, fcntl.LOCK_SH | fcntl.LOCK_NB)
    r.call("a downgrade to SH", fcntl.flock, a, fcntl.LOCK_SH)
    r.call("b LOCK_SH|NB", fcntl.flock, b, fcntl.LOCK_SH | fcntl.LOCK_NB)
    r.call("a upgrade EX|NB", fcntl.flock, a, fcntl.LOCK_EX | fcntl.LOCK_NB)
    r.call("b unlock", fcntl.flock, b, fcntl.LOCK_UN)
    r.call("a upgrade EX|NB", fcntl.flock, a, fcntl.LOCK_EX | fcntl.LOCK_NB)
    d = os.dup(a)
    r.call("dup shares the lock", fcntl.flock, d, fcntl.LOCK_EX | fcntl.LOCK_NB)
    r.call("bad op", fcntl.flock, a, 0)


@case(L)
def case_flock_across_processes(ctx: Ctx) -> None:
    _touch("f")
    fd = os.open("f", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)

    def child(rec: Recorder) -> None:
        c = os.open("f", os.O_RDONLY)
        rec.call("child LOCK_EX|NB", fcntl.flock, c, fcntl.LOCK_EX | fcntl.LOCK_NB)
        rec.call("inherited fd LOCK_EX|NB", fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    ctx.in_child(child)
    fcntl.flock(fd, fcntl.LOCK_UN)
    ctx.in_child(lambda rec: rec.call("after unlock", fcntl.flock,
                                      os.open("f", os.O_RDONLY),
                                      fcntl.LOCK_EX | fcntl.LOCK_NB))


@case(L)
def case_posix_lock_conflict(ctx: Ctx) -> None:
    _touch("f", b"x" * 100)
    fd = os.open("f", os.O_RDWR)
    fcntl.fcntl(fd, fcntl.F_SETLK, _flock_struct(fcntl.F_WRLCK, 10, 20))
    parent = os.getpid()

    def child(rec: Recorder) -> None:
        c = os.open("f", os.O_RDWR)
        rec.call("overlapping F_WRLCK", fcntl.fcntl, c, fcntl.F_SETLK,
                 _flock_struct(fcntl.F_WRLCK, 25, 10))
        rec.call("overlapping F_RDLCK", fcntl.fcntl, c, fcntl.F_SETLK,
                 _flock_struct(fcntl.F_RDLCK, 0, 11))
        rec.call("adjacent F_WRLCK", fcntl.fcntl, c, fcntl.F_SETLK,
                 _flock_struct(fcntl.F_WRLCK, 30, 5))
        got = _unpack(fcntl.fcntl(c, fcntl.F_GETLK, _flock_struct(fcntl.F_WRLCK, 0, 0)))
        rec.note("F_GETLK type/whence/start/len", got[:4])
        rec.note("F_GETLK pid is the holder", got[4] == parent)
        free = _unpack(fcntl.fcntl(c, fcntl.F_GETLK, _flock_struct(fcntl.F_WRLCK, 50, 10)))
        rec.note("F_GETLK free range type", free[0] == fcntl.F_UNLCK)

    ctx.in_child(child)


@case(L)
def case_posix_read_locks_shared(ctx: Ctx) -> None:
    _touch("f", b"x" * 10)
    fd = os.open("f", os.O_RDWR)
    fcntl.fcntl(fd, fcntl.F_SETLK, _flock_struct(fcntl.F_RDLCK))

    def child(rec: Recorder) -> None:
        c = os.open("f", os.O_RDWR)
        rec.call("second read lock", fcntl.fcntl, c, fcntl.F_SETLK,
                 _flock_struct(fcntl.F_RDLCK))
        rec.call("write lock", fcntl.fcntl, c, fcntl.F_SETLK, _flock_struct(fcntl.F_WRLCK))

    ctx.in_child(child)


@case(L)
def case_posix_lock_released_by_any_close(ctx: Ctx) -> None:
    """Closing any fd of the file drops the process's POSIX locks on it."""
    _touch("f")
    fd = os.open("f", os.O_RDWR)
    other = os.open("f", os.O_RDONLY)
    fcntl.fcntl(fd, fcntl.F_SETLK, _flock_struct(fcntl.F_WRLCK))

    def probe(rec: Recorder) -> None:
        c = os.open("f", os.O_RDWR)
        rec.call("try lock", fcntl.fcntl, c, fcntl.F_SETLK, _flock_struct(fcntl.F_WRLCK))

    ctx.in_child(probe, "[held] ")
    os.close(other)
    ctx.in_child(probe, "[after closing another fd] ")


@case(L)
def case_posix_lock_mode_checks(ctx: Ctx) -> None:
    _touch("f")
    r = ctx.rec
    ro = os.open("f", os.O_RDONLY)
    wo = os.open("f", os.O_WRONLY)
    r.call("F_WRLCK on O_RDONLY", fcntl.fcntl, ro, fcntl.F_SETLK, _flock_struct(fcntl.F_WRLCK))
    r.call("F_RDLCK on O_WRONLY", fcntl.fcntl, wo, fcntl.F_SETLK, _flock_struct(fcntl.F_RDLCK))
    r.call("negative start", fcntl.fcntl, wo, fcntl.F_SETLK,
           _flock_struct(fcntl.F_WRLCK, -5, 1))
    r.call("negative len", fcntl.fcntl, wo, fcntl.F_SETLK,
           _flock_struct(fcntl.F_WRLCK, 10, -5))
    r.call("far beyond EOF", fcntl.fcntl, wo, fcntl.F_SETLK,
           _flock_struct(fcntl.F_WRLCK, 1 << 40, 10))
    r.call("bad type", fcntl.fcntl, wo, fcntl.F_SETLK, _flock_struct(7))


@case(L)
def case_ofd_locks(ctx: Ctx) -> None:
    _touch("f", b"z" * 64)
    a = os.open("f", os.O_RDWR)
    b = os.open("f", os.O_RDWR)
    r = ctx.rec
    r.call("a OFD write lock", fcntl.fcntl, a, F_OFD_SETLK, _flock_struct(fcntl.F_WRLCK, 0, 10))
    r.call("b OFD write lock overlapping", fcntl.fcntl, b, F_OFD_SETLK,
           _flock_struct(fcntl.F_WRLCK, 5, 10))
    r.call("b OFD write lock disjoint", fcntl.fcntl, b, F_OFD_SETLK,
           _flock_struct(fcntl.F_WRLCK, 10, 10))
    got = _unpack(fcntl.fcntl(b, F_OFD_GETLK, _flock_struct(fcntl.F_RDLCK, 0, 5)))
    r.note("OFD GETLK type/start/len/pid", (got[0], got[2], got[3], got[4]))
    os.close(a)
    r.call("after closing a", fcntl.fcntl, b, F_OFD_SETLK, _flock_struct(fcntl.F_WRLCK, 0, 10))


@case(L)
def case_posix_lock_split_and_merge(ctx: Ctx) -> None:
    _touch("f", b"z" * 64)
    fd = os.open("f", os.O_RDWR)
    fcntl.fcntl(fd, fcntl.F_SETLK, _flock_struct(fcntl.F_WRLCK, 0, 30))
    fcntl.fcntl(fd, fcntl.F_SETLK, _flock_struct(fcntl.F_UNLCK, 10, 10))

    def child(rec: Recorder) -> None:
        c = os.open("f", os.O_RDWR)
        for start in (0, 9, 10, 15, 19, 20, 29, 30):
            got = _unpack(fcntl.fcntl(c, fcntl.F_GETLK,
                                      _flock_struct(fcntl.F_WRLCK, start, 1)))
            rec.note(f"GETLK byte {start}", got[:4])

    ctx.in_child(child)


@case(L)
def case_lease(ctx: Ctx) -> None:
    _touch("f")
    r = ctx.rec
    ro = os.open("f", os.O_RDONLY)
    r.call("F_SETLEASE read", fcntl.fcntl, ro, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    r.call("F_GETLEASE", fcntl.fcntl, ro, fcntl.F_GETLEASE)
    r.call("F_SETLEASE unlock", fcntl.fcntl, ro, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    rw = os.open("f", os.O_RDWR)
    r.call("F_SETLEASE write with another open", fcntl.fcntl, rw, fcntl.F_SETLEASE,
           fcntl.F_WRLCK)
