"""unlink/rmdir: busy and non-empty directories, open-but-unlinked files, '.'/'..',
mount points, and what the parent directory looks like afterwards."""

from __future__ import annotations

import os
import subprocess

from .framework import Ctx, Recorder, case

A = "unlink"


def _touch(name: str, data: bytes = b"") -> None:
    fd = os.open(name, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, data)
    os.close(fd)


@case(A)
def case_unlink_file(ctx: Ctx) -> None:
    _touch("f")
    r = ctx.rec
    r.stat(".")
    r.call("unlink", os.unlink, "f")
    r.call("unlink again", os.unlink, "f")
    r.stat(".")
    r.note("listdir", os.listdir("."))


@case(A)
def case_unlink_wrong_types(ctx: Ctx) -> None:
    os.mkdir("d")
    _touch("f")
    r = ctx.rec
    r.call("unlink dir", os.unlink, "d")
    r.call("rmdir file", os.rmdir, "f")
    r.call("unlink file/", os.unlink, "f/")
    r.call("unlink missing/x", os.unlink, "missing/x")
    r.call("unlink f/x", os.unlink, "f/x")
    r.call("unlink d/", os.unlink, "d/")


@case(A)
def case_rmdir_nonempty(ctx: Ctx) -> None:
    os.mkdir("d")
    _touch("d/f")
    os.mkdir("e")
    os.mkdir("e/sub")
    r = ctx.rec
    r.call("rmdir d (file inside)", os.rmdir, "d")
    r.call("rmdir e (dir inside)", os.rmdir, "e")
    os.unlink("d/f")
    r.call("rmdir d emptied", os.rmdir, "d")
    r.stat(".")


@case(A)
def case_rmdir_dot_dotdot(ctx: Ctx) -> None:
    os.mkdir("d")
    r = ctx.rec
    r.call("rmdir d/.", os.rmdir, "d/.")
    r.call("rmdir d/..", os.rmdir, "d/..")
    r.call("rmdir .", os.rmdir, ".")
    r.call("rmdir d/", os.rmdir, "d/")
    r.call("rmdir d again", os.rmdir, "d")


@case(A)
def case_rmdir_symlink_to_dir(ctx: Ctx) -> None:
    os.mkdir("d")
    os.symlink("d", "l")
    r = ctx.rec
    r.call("rmdir symlink", os.rmdir, "l")
    r.call("rmdir symlink/", os.rmdir, "l/")
    r.call("unlink symlink", os.unlink, "l")
    r.stat("d")


@case(A)
def case_unlink_open_file(ctx: Ctx) -> None:
    """An unlinked file stays readable and writable through open fds; nlink 0."""
    _touch("f", b"before")
    fd = os.open("f", os.O_RDWR)
    r = ctx.rec
    r.call("unlink", os.unlink, "f")
    r.fstat(fd)
    r.call("write after unlink", os.pwrite, fd, b"AFTER", 6)
    r.call("read after unlink", os.pread, fd, 100, 0)
    r.call("ftruncate after unlink", os.ftruncate, fd, 3)
    r.fstat(fd)
    r.call("stat name", os.stat, "f")


@case(A)
def case_rmdir_cwd_of_process(ctx: Ctx) -> None:
    """rmdir of a directory that is some process's cwd succeeds; the process then
    sees an empty dead directory."""
    os.mkdir("d")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.chdir("d")
        os.write(ready_w, b"1")
        os.read(go_r, 1)
        os._exit(0)
    r = ctx.rec
    try:
        os.read(ready_r, 1)
        r.call("rmdir busy cwd", os.rmdir, "d")
    finally:
        os.write(go_w, b"2")
        os.waitpid(pid, 0)

    def in_dead(rec: Recorder) -> None:
        rec.ok("chdir", os.chdir, "d")
    ctx.in_child(in_dead)


@case(A)
def case_removed_dir_fd(ctx: Ctx) -> None:
    """A removed directory open as an fd: nlink 0, listing empty, creates refused."""
    os.mkdir("d")
    _touch("d/x")
    os.unlink("d/x")
    fd = os.open("d", os.O_RDONLY | os.O_DIRECTORY)
    r = ctx.rec
    r.call("rmdir", os.rmdir, "d")
    r.fstat(fd)
    r.call("listdir(fd)", os.listdir, fd)
    r.call("mkfifo at", os.mkfifo, "p", dir_fd=fd)
    r.call("symlink at", os.symlink, "t", "s", dir_fd=fd)


@case(A)
def case_rmdir_mountpoint_busy(ctx: Ctx) -> None:
    """A directory with a filesystem mounted on it is EBUSY for rmdir and rename."""
    os.mkdir("m")
    os.mkdir("other")
    rc = subprocess.run(["mount", "-t", "tmpfs", "posix-inner", "m"], capture_output=True)
    r = ctx.rec
    r.note("mount inner", rc.returncode)
    try:
        r.call("rmdir mountpoint", os.rmdir, "m")
        r.call("rename mountpoint", os.rename, "m", "m2")
        r.call("rename over mountpoint", os.rename, "other", "m")
        r.call("unlink mountpoint", os.unlink, "m")
    finally:
        if rc.returncode == 0:
            subprocess.run(["umount", "m"], check=True)
    r.call("rmdir after umount", os.rmdir, "m")


@case(A)
def case_unlink_then_recreate(ctx: Ctx) -> None:
    """A new file with a removed file's name is a different inode with fresh data."""
    _touch("f", b"old contents")
    r = ctx.rec
    r.stat("f")
    os.unlink("f")
    _touch("f")
    r.stat("f")
    with open("f", "rb") as fh:
        r.note("content", fh.read())


@case(A)
def case_many_then_empty(ctx: Ctx) -> None:
    """A directory emptied of many entries can be removed and its size shrinks back."""
    os.mkdir("d")
    for i in range(300):
        _touch(f"d/n{i}")
    r = ctx.rec
    r.stat("d")
    r.call("rmdir full", os.rmdir, "d")
    for i in range(300):
        os.unlink(f"d/n{i}")
    r.stat("d")
    r.call("rmdir emptied", os.rmdir, "d")


@case(A)
def case_unlink_hardlink_keeps_other(ctx: Ctx) -> None:
    _touch("a", b"shared")
    os.link("a", "b")
    r = ctx.rec
    r.call("unlink a", os.unlink, "a")
    r.stat("b")
    with open("b", "rb") as fh:
        r.note("content", fh.read())


@case(A)
def case_unlink_special_files(ctx: Ctx) -> None:
    os.mkfifo("p")
    os.symlink("p", "s")
    os.mknod("c", 0o644 | 0o020000, os.makedev(1, 3))
    r = ctx.rec
    for n in ("s", "p", "c"):
        r.call(f"unlink {n}", os.unlink, n)
    r.note("listdir", os.listdir("."))
