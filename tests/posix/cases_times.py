"""Timestamps: which calls change atime, mtime and ctime (recorded as relations,
never absolute clock values), utimensat with UTIME_NOW/UTIME_OMIT, and exact
nanosecond round-trips of times the case sets itself.

``OLD`` times are set first so that an update is visible whatever the clock
granularity, and relatime (the default on both sides) updates atime."""

from __future__ import annotations

import fcntl
import mmap
import os
import time
from collections.abc import Callable

from .framework import Ctx, Recorder, case
from .libc import AT_SYMLINK_NOFOLLOW, UTIME_NOW, UTIME_OMIT, fallocate, utimensat

A = "times"
CLOCK_REALTIME_COARSE = 5  # linux/time.h; the time module does not export it
OLD_A = 1_000_000_000 * 10**9 + 111
OLD_M = 1_000_000_100 * 10**9 + 222


def _snap(path: str, follow: bool = True) -> tuple[int, int, int]:
    st = os.stat(path, follow_symlinks=follow)
    return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns


def _rel(before: int, after: int) -> str:
    return "same" if after == before else ("later" if after > before else "earlier")


def _after_coarse_tick(stamps: list[tuple[int, int, int]]) -> None:
    """Wait until the coarse clock has passed every timestamp in ``stamps``.

    A kernel may stamp an update with the coarse clock, which can equal the old
    value when no tick has passed since; then "did this call update ctime?"
    would depend on timing.  Past this point any update is strictly later.
    This orders timestamps, not processes (it waits a few ms at most)."""
    newest = max(t for st in stamps for t in st[1:])
    while time.clock_gettime_ns(CLOCK_REALTIME_COARSE) <= newest:
        pass


def changes(rec: Recorder, label: str, paths: list[str], op: Callable[[], object], *,
            age: bool = True, follow: bool = True,
            fields: tuple[str, ...] = ("atime", "mtime", "ctime")) -> None:
    """Run ``op`` and record, per path, how the ``fields`` timestamps moved."""
    if age:
        for p in paths:
            os.utime(p, ns=(OLD_A, OLD_M), follow_symlinks=follow)
    before = [_snap(p, follow) for p in paths]
    _after_coarse_tick(before)
    try:
        op()
        rec.note(f"{label}: call", "ok")
    except OSError as e:
        rec.note(f"{label}: call", e.errno)
    for p, b in zip(paths, before, strict=True):
        try:
            a = _snap(p, follow)
        except FileNotFoundError:
            rec.note(f"{label}: {p}", "gone")
            continue
        rel = {"atime": _rel(b[0], a[0]), "mtime": _rel(b[1], a[1]),
               "ctime": _rel(b[2], a[2])}
        rec.note(f"{label}: {p}", {k: v for k, v in rel.items() if k in fields})


def _touch(name: str, data: bytes = b"") -> None:
    fd = os.open(name, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, data)
    os.close(fd)


def _write(name: str, data: bytes, flags: int = 0) -> None:
    fd = os.open(name, os.O_WRONLY | flags)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _read(name: str) -> None:
    fd = os.open(name, os.O_RDONLY)
    try:
        os.read(fd, 100)
    finally:
        os.close(fd)


@case(A)
def case_new_file_times_equal(ctx: Ctx) -> None:
    _touch("f")
    a, m, c = _snap("f")
    ctx.rec.note("atime == mtime == ctime", a == m == c)
    os.mkdir("d")
    a, m, c = _snap("d")
    ctx.rec.note("dir atime == mtime == ctime", a == m == c)
    os.symlink("f", "s")
    a, m, c = _snap("s", follow=False)
    ctx.rec.note("symlink atime == mtime == ctime", a == m == c)


@case(A)
def case_write(ctx: Ctx) -> None:
    _touch("f", b"abc")
    changes(ctx.rec, "write", ["f", "."], lambda: _write("f", b"xyz"))
    changes(ctx.rec, "write 0 bytes", ["f"], lambda: _write("f", b""))
    changes(ctx.rec, "append", ["f"], lambda: _write("f", b"more", os.O_APPEND))


@case(A)
def case_read(ctx: Ctx) -> None:
    _touch("f", b"abc")
    changes(ctx.rec, "read (old atime)", ["f"], lambda: _read("f"))
    changes(ctx.rec, "read again (relatime)", ["f"], lambda: _read("f"), age=False)
    changes(ctx.rec, "read O_NOATIME", ["f"],
            lambda: os.close(os.open("f", os.O_RDONLY | os.O_NOATIME)))


@case(A)
def case_read_after_write_relatime(ctx: Ctx) -> None:
    """relatime: atime is updated when it is not newer than mtime."""
    _touch("f", b"abc")
    os.utime("f", ns=(OLD_A, OLD_M))
    _write("f", b"new")
    changes(ctx.rec, "read after write", ["f"], lambda: _read("f"), age=False)


@case(A)
def case_read_zero_and_eof(ctx: Ctx) -> None:
    _touch("f", b"abc")

    def read_eof() -> None:
        fd = os.open("f", os.O_RDONLY)
        os.pread(fd, 10, 100)
        os.close(fd)

    # atime excluded here: over FUSE a read at EOF is answered by the kernel from
    # its cached i_size and never reaches the filesystem (FUSE by construction).
    changes(ctx.rec, "read at EOF", ["f"], read_eof, fields=("mtime", "ctime"))
    changes(ctx.rec, "open+close only", ["f"], lambda: os.close(os.open("f", os.O_RDONLY)))


@case(A)
def case_truncate(ctx: Ctx) -> None:
    _touch("f", b"abcdef")
    changes(ctx.rec, "truncate shrink", ["f"], lambda: os.truncate("f", 2))
    changes(ctx.rec, "truncate same size", ["f"], lambda: os.truncate("f", 2))
    changes(ctx.rec, "truncate grow", ["f"], lambda: os.truncate("f", 9000))
    fd = os.open("f", os.O_RDWR)
    changes(ctx.rec, "ftruncate same size", ["f"], lambda: os.ftruncate(fd, 9000))
    changes(ctx.rec, "ftruncate shrink", ["f"], lambda: os.ftruncate(fd, 1))


@case(A)
def case_open_trunc(ctx: Ctx) -> None:
    _touch("f", b"abcdef")
    _touch("e")
    changes(ctx.rec, "O_TRUNC non-empty", ["f"],
            lambda: os.close(os.open("f", os.O_WRONLY | os.O_TRUNC)))
    changes(ctx.rec, "O_TRUNC empty", ["e"],
            lambda: os.close(os.open("e", os.O_WRONLY | os.O_TRUNC)))
    changes(ctx.rec, "O_CREAT existing", ["e", "."],
            lambda: os.close(os.open("e", os.O_WRONLY | os.O_CREAT)))


@case(A)
def case_chmod_chown(ctx: Ctx) -> None:
    _touch("f")
    changes(ctx.rec, "chmod", ["f"], lambda: os.chmod("f", 0o600))
    changes(ctx.rec, "chmod same mode", ["f"], lambda: os.chmod("f", 0o600))
    changes(ctx.rec, "chown", ["f"], lambda: os.chown("f", 5, 5))
    changes(ctx.rec, "chown -1 -1", ["f"], lambda: os.chown("f", -1, -1))
    os.mkdir("d")
    changes(ctx.rec, "chmod dir", ["d", "."], lambda: os.chmod("d", 0o700))


@case(A)
def case_create_and_remove_in_dir(ctx: Ctx) -> None:
    os.mkdir("d")
    changes(ctx.rec, "create", ["d"], lambda: _touch("d/f"))
    changes(ctx.rec, "mkdir", ["d"], lambda: os.mkdir("d/s"))
    changes(ctx.rec, "symlink", ["d"], lambda: os.symlink("x", "d/l"))
    changes(ctx.rec, "mkfifo", ["d"], lambda: os.mkfifo("d/p"))
    changes(ctx.rec, "unlink", ["d"], lambda: os.unlink("d/f"))
    changes(ctx.rec, "rmdir", ["d"], lambda: os.rmdir("d/s"))
    changes(ctx.rec, "failed create (EEXIST)", ["d"], lambda: os.mkdir("d/p"))
    changes(ctx.rec, "lookup miss", ["d"], lambda: os.path.exists("d/none"))


@case(A)
def case_link_unlink_inode(ctx: Ctx) -> None:
    _touch("f")
    changes(ctx.rec, "link", ["f", "."], lambda: os.link("f", "g"))
    changes(ctx.rec, "unlink one link", ["g", "."], lambda: os.unlink("f"))


@case(A)
def case_rename(ctx: Ctx) -> None:
    os.mkdir("a")
    os.mkdir("b")
    _touch("a/f")
    _touch("b/victim")
    changes(ctx.rec, "rename in dir", ["a/f", "a"], lambda: os.rename("a/f", "a/g"))
    changes(ctx.rec, "rename across", ["a/g", "a", "b"], lambda: os.rename("a/g", "b/g"))
    fd = os.open("b/victim", os.O_RDONLY)
    os.utime("b/victim", ns=(OLD_A, OLD_M))
    before = os.fstat(fd)
    changes(ctx.rec, "rename over", ["b/g", "b"], lambda: os.rename("b/g", "b/victim"))
    after = os.fstat(fd)
    ctx.rec.note("replaced inode ctime", _rel(before.st_ctime_ns, after.st_ctime_ns))
    os.mkdir("a/dir")
    changes(ctx.rec, "rename dir across", ["a/dir", "a", "b"],
            lambda: os.rename("a/dir", "b/dir"))


@case(A)
def case_readdir_atime(ctx: Ctx) -> None:
    os.mkdir("d")
    _touch("d/f")
    changes(ctx.rec, "listdir", ["d"], lambda: os.listdir("d"))
    changes(ctx.rec, "stat entry", ["d"], lambda: os.stat("d/f"), age=True)


@case(A)
def case_readlink_atime(ctx: Ctx) -> None:
    os.symlink("target", "s")
    changes(ctx.rec, "readlink", ["s"], lambda: os.readlink("s"), follow=False)


@case(A)
def case_utime_exact_ns(ctx: Ctx) -> None:
    """Times set explicitly come back to the nanosecond."""
    _touch("f")
    r = ctx.rec
    for at, mt in ((1, 2), (1_234_567_890_123_456_789, 987_654_321_000_000_001),
                   (0, 999_999_999), (-1_500_000_000, -1), (2**40 * 10**9 + 5, 7)):
        r.call(f"utime ns={at},{mt}", os.utime, "f", ns=(at, mt))
        st = os.stat("f")
        r.note("read back", (st.st_atime_ns, st.st_mtime_ns))


@case(A)
def case_utimensat_now_omit(ctx: Ctx) -> None:
    _touch("f")
    r = ctx.rec
    changes(r, "UTIME_NOW both", ["f"],
            lambda: utimensat("f", (0, UTIME_NOW), (0, UTIME_NOW)))
    changes(r, "NULL times", ["f"], lambda: utimensat("f", None, None))
    changes(r, "OMIT atime, NOW mtime", ["f"],
            lambda: utimensat("f", (0, UTIME_OMIT), (0, UTIME_NOW)))
    changes(r, "NOW atime, OMIT mtime", ["f"],
            lambda: utimensat("f", (0, UTIME_NOW), (0, UTIME_OMIT)))
    changes(r, "OMIT both", ["f"], lambda: utimensat("f", (0, UTIME_OMIT), (0, UTIME_OMIT)))
    changes(r, "explicit atime, OMIT mtime", ["f"],
            lambda: utimensat("f", (5, 6), (0, UTIME_OMIT)))
    r.note("atime after explicit", _snap("f")[0])


@case(A)
def case_utimensat_invalid(ctx: Ctx) -> None:
    _touch("f")
    r = ctx.rec
    r.call("nsec 1e9", utimensat, "f", (0, 1_000_000_000), (0, 0))
    r.call("nsec -1", utimensat, "f", (0, -1), (0, 0))
    r.call("bad flags", utimensat, "f", None, None, 0x4000)
    r.call("missing file", utimensat, "nofile", None, None)


@case(A)
def case_utimensat_symlink_nofollow(ctx: Ctx) -> None:
    _touch("t")
    os.symlink("t", "s")
    r = ctx.rec
    os.utime("t", ns=(OLD_A, OLD_M))
    r.call("utimensat NOFOLLOW", utimensat, "s", (7, 8), (9, 10), AT_SYMLINK_NOFOLLOW)
    st = os.lstat("s")
    r.note("symlink times", (st.st_atime_ns, st.st_mtime_ns))
    r.note("target untouched", _snap("t")[:2] == (OLD_A, OLD_M))


@case(A)
def case_futimens_fd(ctx: Ctx) -> None:
    _touch("f")
    fd = os.open("f", os.O_RDONLY)
    ctx.rec.call("futimens via fd", os.utime, fd, ns=(11, 12))
    ctx.rec.note("times", _snap("f")[:2])


@case(A)
def case_fallocate_and_punch(ctx: Ctx) -> None:
    _touch("f", b"x" * 10000)
    fd = os.open("f", os.O_RDWR)
    changes(ctx.rec, "fallocate extend", ["f"], lambda: fallocate(fd, 0, 0, 20000))
    changes(ctx.rec, "fallocate KEEP_SIZE", ["f"], lambda: fallocate(fd, 1, 0, 40000))
    changes(ctx.rec, "punch hole", ["f"], lambda: fallocate(fd, 3, 0, 4096))


@case(A)
def case_setxattr_changes_ctime(ctx: Ctx) -> None:
    _touch("f")
    changes(ctx.rec, "setxattr", ["f"], lambda: os.setxattr("f", "user.k", b"v"))
    changes(ctx.rec, "getxattr", ["f"], lambda: os.getxattr("f", "user.k"))
    changes(ctx.rec, "removexattr", ["f"], lambda: os.removexattr("f", "user.k"))


@case(A)
def case_mmap_write(ctx: Ctx) -> None:
    _touch("f", b"\0" * 8192)
    fd = os.open("f", os.O_RDWR)

    def op() -> None:
        m = mmap.mmap(fd, 8192)
        m[0:5] = b"hello"
        m.flush()
        m.close()

    # atime excluded: mmap(2) itself bumps atime in the kernel (file_accessed), and
    # over FUSE neither that nor a fault on a cached page reaches the filesystem
    # (FUSE by construction).
    changes(ctx.rec, "mmap store + msync", ["f"], op, fields=("mtime", "ctime"))
    ctx.rec.call("read back", os.pread, fd, 5, 0)


@case(A)
def case_fsync_and_locks_no_change(ctx: Ctx) -> None:
    _touch("f", b"data")
    fd = os.open("f", os.O_RDWR)
    changes(ctx.rec, "fsync", ["f"], lambda: os.fsync(fd))
    changes(ctx.rec, "flock", ["f"], lambda: fcntl.flock(fd, fcntl.LOCK_EX))
    changes(ctx.rec, "lseek", ["f"], lambda: os.lseek(fd, 100, os.SEEK_SET))
