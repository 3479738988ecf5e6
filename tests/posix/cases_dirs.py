"""Names and directories: ENAMETOOLONG from every call that takes a name (a
256-byte component, as the last component and in the middle of a path), and
renaming or removing directories that are open or some process's cwd."""

from __future__ import annotations

import os

from .framework import Ctx, case
from .libc import RENAME_EXCHANGE, RENAME_NOREPLACE, linkat, renameat2, utimensat

A = "dirs"
LONG = "L" * 256


@case("names")
def case_enametoolong_everywhere(ctx: Ctx) -> None:
    """Each call with a 256-byte last component, and with one in the middle."""
    os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o644))
    os.mkdir("d")
    r = ctx.rec
    for tag, bad in (("last", LONG), ("middle", f"{LONG}/x"), ("in dir", f"d/{LONG}")):
        calls = [
            ("open", lambda p: os.open(p, os.O_RDONLY)),
            ("creat", lambda p: os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)),
            ("O_TMPFILE in it", lambda p: os.open(p, os.O_TMPFILE | os.O_RDWR, 0o600)),
            ("mkdir", lambda p: os.mkdir(p)),
            ("mknod fifo", lambda p: os.mkfifo(p)),
            ("symlink new", lambda p: os.symlink("f", p)),
            ("symlink target", lambda p, t=tag: os.symlink(p, "s_" + t.replace(" ", "_"))),
            ("link new", lambda p: os.link("f", p)),
            ("link old", lambda p: os.link(p, "k")),
            ("linkat follow", lambda p: linkat(-100, p, -100, "k2", 0x400)),
            ("rename from", lambda p: os.rename(p, "f2")),
            ("rename to", lambda p: os.rename("f", p)),
            ("renameat2 noreplace", lambda p: renameat2("f", p, RENAME_NOREPLACE)),
            ("renameat2 exchange", lambda p: renameat2("f", p, RENAME_EXCHANGE)),
            ("unlink", lambda p: os.unlink(p)),
            ("rmdir", lambda p: os.rmdir(p)),
            ("stat", lambda p: os.stat(p)),
            ("lstat", lambda p: os.lstat(p)),
            ("access", lambda p: os.access(p, os.F_OK)),
            ("chmod", lambda p: os.chmod(p, 0o600)),
            ("chown", lambda p: os.chown(p, 0, 0)),
            ("lchown", lambda p: os.lchown(p, 0, 0)),
            ("truncate", lambda p: os.truncate(p, 0)),
            ("utimensat", lambda p: utimensat(p, (1, 0), (1, 0))),
            ("readlink", lambda p: os.readlink(p)),
            ("chdir", lambda p: os.chdir(p)),
            ("listdir", lambda p: os.listdir(p)),
            ("getxattr", lambda p: os.getxattr(p, "user.x")),
            ("setxattr", lambda p: os.setxattr(p, "user.x", b"1")),
            ("listxattr", lambda p: os.listxattr(p)),
            ("removexattr", lambda p: os.removexattr(p, "user.x")),
            ("statvfs", lambda p: os.statvfs(p)),
            ("O_PATH", lambda p: os.open(p, os.O_PATH)),
        ]
        for label, fn in calls:
            r.call(f"{tag}: {label}", lambda fn=fn, p=bad: fn(p) and None)
    r.call("listing", lambda: sorted(os.listdir(".")))
    r.call("xattr name 256", os.setxattr, "f", "user." + "x" * 251, b"1")


@case(A)
def case_rename_open_dir(ctx: Ctx) -> None:
    """A directory renamed while open: its fd still lists it, creates through
    the fd land in the new place, '..' follows the move."""
    os.makedirs("a/sub")
    os.mkdir("b")
    os.close(os.open("a/sub/f", os.O_CREAT | os.O_WRONLY, 0o644))
    fd = os.open("a/sub", os.O_RDONLY | os.O_DIRECTORY)
    r = ctx.rec
    r.call("rename a/sub -> b/moved", os.rename, "a/sub", "b/moved")
    r.call("list through fd", lambda: sorted(os.listdir(fd)))
    r.call("create through fd", lambda: os.close(os.open("g", os.O_CREAT | os.O_WRONLY,
                                                           0o644, dir_fd=fd)))
    r.call("new place", lambda: sorted(os.listdir("b/moved")))
    r.call("stat .. through fd is b", lambda: os.stat("..", dir_fd=fd).st_ino
           == os.stat("b").st_ino)
    r.stat("a")
    r.stat("b")
    r.call("rmdir the open dir (not empty)", os.rmdir, "b/moved")
    os.unlink("b/moved/f")
    os.unlink("b/moved/g")
    r.call("rmdir the open dir", os.rmdir, "b/moved")
    r.call("list removed dir through fd", lambda: os.listdir(fd))
    r.call("create in removed dir", lambda: os.open("h", os.O_CREAT | os.O_WRONLY, 0o644,
                                                    dir_fd=fd))
    r.call("fstat removed dir", lambda: os.fstat(fd).st_nlink)
    r.call("fchmod removed dir", os.fchmod, fd, 0o700)


@case(A)
def case_rename_and_remove_cwd(ctx: Ctx) -> None:
    """A process whose cwd is renamed keeps working there and getcwd follows;
    after rmdir of its cwd, creates fail with ENOENT and getcwd reports it."""
    os.makedirs("p/c")
    base = os.getcwd()

    def inside(rec) -> None:
        os.chdir(os.path.join(base, "p/c"))
        os.rename(os.path.join(base, "p"), os.path.join(base, "q"))
        rec.call("getcwd after parent renamed", lambda: os.path.relpath(os.getcwd(), base))
        rec.call("create in cwd", lambda: os.close(os.open("x", os.O_CREAT | os.O_WRONLY,
                                                           0o644)))
        rec.call("stat ..", lambda: os.stat("..").st_nlink)
        rec.call("rename cwd itself", os.rename, os.path.join(base, "q/c"),
                 os.path.join(base, "c2"))
        rec.call("getcwd after rename", lambda: os.path.relpath(os.getcwd(), base))
        rec.call("ls .", lambda: sorted(os.listdir(".")))
        os.unlink("x")
        rec.call("rmdir cwd by path", os.rmdir, os.path.join(base, "c2"))
        rec.call("rmdir .", os.rmdir, ".")
        rec.call("getcwd removed", os.getcwd)
        rec.call("create in removed cwd", os.open, "y", os.O_CREAT | os.O_WRONLY, 0o644)
        rec.call("mkdir in removed cwd", os.mkdir, "z")
        rec.call("stat .", lambda: os.stat(".").st_nlink)
        rec.call("ls . removed", os.listdir, ".")
        rec.call("stat ..", lambda: os.stat("..").st_ino == os.stat(base).st_ino)

    ctx.in_child(inside)
    r = ctx.rec
    r.call("after", lambda: sorted(os.listdir(".")))
    r.stat(".")
    r.stat("q")


@case(A)
def case_dir_nlink_through_renames(ctx: Ctx) -> None:
    """Parents' link counts through mkdir, rename across parents, rename over
    an empty directory, RENAME_EXCHANGE of a file and a directory, rmdir."""
    os.makedirs("a/x/y")
    os.makedirs("b/z")
    os.close(os.open("b/f", os.O_CREAT | os.O_WRONLY, 0o644))
    r = ctx.rec

    def counts(label: str) -> None:
        r.note(label, {p: os.stat(p).st_nlink for p in (".", "a", "b")
                       if os.path.exists(p)})

    counts("start")
    os.rename("a/x", "b/x")
    counts("a/x -> b/x")
    os.rename("b/x", "b/z")
    counts("b/x over empty b/z")
    renameat2("b/f", "b/z", RENAME_EXCHANGE)
    counts("exchange file and dir in b")
    renameat2("b/f", "a/f", 0)
    counts("dir b/f -> a/f")
    renameat2("a/f", "b/z", RENAME_EXCHANGE)
    counts("exchange dir a/f with file b/z")
    r.stat("a/f")
    r.stat("b/z")
    os.rmdir("b/z/y")
    counts("rmdir b/z/y")
