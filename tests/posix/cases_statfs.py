"""statfs on mounts with explicit size=/nr_inodes= limits: the totals, and how free
blocks and inodes move with creates, writes, links, deletes and open-unlinked files.

Excluded fields, with reasons: f_type and f_fsid identify the filesystem (FUSE's
magic by construction), f_flag carries the mounter's flags (FUSE mounts add
nosuid/nodev).  Statfs of a default mount is not compared absolutely: the
defaults derive from RAM and differ by construction."""

from __future__ import annotations

import os

from .framework import Ctx, case, errname
from .libc import fallocate

A = "statfs"
LIMITS = "size=4m,nr_inodes=64"


def _sv(path: str = ".") -> dict[str, int]:
    s = os.statvfs(path)
    return {"bsize": s.f_bsize, "frsize": s.f_frsize, "blocks": s.f_blocks,
            "bfree": s.f_bfree, "bavail": s.f_bavail, "files": s.f_files,
            "ffree": s.f_ffree, "favail": s.f_favail, "namemax": s.f_namemax}


def _delta(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: b[k] - a[k] for k in ("bfree", "bavail", "ffree", "favail")}


def _write(name: str, n: int) -> None:
    fd = os.open(name, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"w" * n)
    os.close(fd)


@case(A, mount=LIMITS)
def case_totals(ctx: Ctx) -> None:
    ctx.rec.note("statvfs", _sv())
    fd = os.open(".", os.O_RDONLY)
    s = os.fstatvfs(fd)
    ctx.rec.note("fstatvfs blocks/files", (s.f_blocks, s.f_files))


@case(A, mount=LIMITS)
def case_creates_and_deletes(ctx: Ctx) -> None:
    r = ctx.rec
    base = _sv()
    for i in range(10):
        _write(f"f{i}", 0)
    r.note("10 empty files", _delta(base, _sv()))
    os.mkdir("d")
    r.note("+ dir", _delta(base, _sv()))
    os.symlink("short", "s")
    r.note("+ short symlink", _delta(base, _sv()))
    os.symlink("L" * 3000, "long")
    r.note("+ long symlink", _delta(base, _sv()))
    os.link("f0", "hard")
    r.note("+ hard link", _delta(base, _sv()))
    for n in [f"f{i}" for i in range(10)] + ["s", "long", "hard"]:
        os.unlink(n)
    os.rmdir("d")
    r.note("all removed", _delta(base, _sv()))


@case(A, mount=LIMITS)
def case_writes_and_truncate(ctx: Ctx) -> None:
    r = ctx.rec
    base = _sv()
    _write("f", 10 * 4096)
    r.note("10 pages written", _delta(base, _sv()))
    _write("g", 1)
    r.note("+ 1 byte file", _delta(base, _sv()))
    os.truncate("f", 4096 + 1)
    r.note("f truncated to 4097", _delta(base, _sv()))
    os.truncate("f", 1 << 20)
    r.note("f extended sparse to 1MiB", _delta(base, _sv()))
    os.unlink("f")
    os.unlink("g")
    r.note("removed", _delta(base, _sv()))


@case(A, mount=LIMITS)
def case_unlinked_open_file_keeps_space(ctx: Ctx) -> None:
    r = ctx.rec
    base = _sv()
    _write("f", 8 * 4096)
    fd = os.open("f", os.O_RDONLY)
    os.unlink("f")
    r.note("unlinked but open", _delta(base, _sv()))
    os.close(fd)
    r.note("closed", _delta(base, _sv()))


@case(A, mount=LIMITS)
def case_tmpfile_and_fallocate(ctx: Ctx) -> None:
    r = ctx.rec
    base = _sv()
    fd = r.open(".", os.O_TMPFILE | os.O_RDWR, 0o600)
    r.note("O_TMPFILE open", _delta(base, _sv()))
    if fd is not None:
        r.call("fallocate 5 pages", fallocate, fd, 0, 0, 5 * 4096)
        r.note("after fallocate", _delta(base, _sv()))
        r.call("punch 2 pages", fallocate, fd, 3, 4096, 2 * 4096)
        r.note("after punch", _delta(base, _sv()))
        os.close(fd)
    r.note("closed", _delta(base, _sv()))


@case(A, mount="size=64k,nr_inodes=64")
def case_fill_blocks_enospc(ctx: Ctx) -> None:
    r = ctx.rec
    fd = os.open("f", os.O_CREAT | os.O_WRONLY, 0o644)
    r.call("write 100 KiB into 64 KiB fs", os.write, fd, b"a" * (100 << 10))
    r.call("write more", os.write, fd, b"b")
    r.fstat(fd)
    r.note("statvfs full", _sv())
    g = os.open("g", os.O_CREAT | os.O_RDWR, 0o644)
    r.call("fallocate when full", fallocate, g, 0, 0, 4096)
    r.call("sparse truncate when full", os.ftruncate, g, 1 << 30)
    r.call("write into hole of a full fs", os.pwrite, g, b"x", 1 << 20)
    r.call("create empty file when full", os.mkfifo, "p")
    os.ftruncate(fd, 8192)
    r.call("write after freeing", os.pwrite, g, b"x", 0)
    r.note("statvfs after", _sv())


@case(A, mount="size=1m,nr_inodes=8")
def case_fill_inodes_enospc(ctx: Ctx) -> None:
    r = ctx.rec
    made = 0
    err = None
    for i in range(50):
        try:
            os.close(os.open(f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644))
            made += 1
        except OSError as e:
            err = e.errno
            break
    r.note("files made", made)
    r.note("errno", errname(err) if err else None)
    r.call("mkdir when out of inodes", os.mkdir, "d")
    r.call("symlink when out of inodes", os.symlink, "x", "s")
    r.call("hard link when out of inodes", os.link, "f0", "h")
    r.call("O_TMPFILE when out of inodes", os.open, ".", os.O_TMPFILE | os.O_RDWR, 0o600)
    r.note("statvfs", _sv())
    os.unlink("f0")
    r.call("create after freeing one", os.mkfifo, "p")


@case(A, mount="size=0,nr_inodes=0")
def case_unlimited(ctx: Ctx) -> None:
    """size=0 and nr_inodes=0 mean unlimited; statfs reports 0 for those fields."""
    for i in range(5):
        _write(f"f{i}", 5000)
    s = _sv()
    ctx.rec.note("blocks/bfree/bavail/files/ffree",
                 (s["blocks"], s["bfree"], s["bavail"], s["files"], s["ffree"]))
    ctx.rec.note("bsize/namemax", (s["bsize"], s["namemax"]))


@case(A, mount="size=10000,nr_inodes=3")
def case_rounding(ctx: Ctx) -> None:
    """size= is rounded up to whole pages."""
    ctx.rec.note("statvfs", _sv())


@case(A, mount="mode=0700,uid=1000,gid=1500")
def case_root_mode_uid_gid(ctx: Ctx) -> None:
    """mode=, uid=, gid= set the root directory's attributes."""
    ctx.rec.stat("..", label="stat mount root")
