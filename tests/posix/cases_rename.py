"""rename/renameat2: over files and directories, into its own subtree, hard links of
one inode, NOREPLACE, EXCHANGE, WHITEOUT, and the link counts afterwards."""

from __future__ import annotations

import os

from .framework import Ctx, case
from .libc import RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, renameat2

A = "rename"


def _touch(name: str, data: bytes = b"") -> None:
    fd = os.open(name, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, data)
    os.close(fd)


def _read(name: str) -> bytes:
    with open(name, "rb") as f:
        return f.read()


@case(A)
def case_file_to_new_name(ctx: Ctx) -> None:
    _touch("a", b"A")
    r = ctx.rec
    r.stat("a")
    r.call("rename a b", os.rename, "a", "b")
    r.stat("b")
    r.call("stat a", os.stat, "a")
    r.note("listdir", sorted(os.listdir(".")))


@case(A)
def case_file_over_file(ctx: Ctx) -> None:
    _touch("a", b"A")
    _touch("b", b"B")
    fd = os.open("b", os.O_RDONLY)
    r = ctx.rec
    r.call("rename a over b", os.rename, "a", "b")
    r.note("b content", _read("b"))
    r.fstat(fd)
    r.call("old b still readable", os.pread, fd, 10, 0)


@case(A)
def case_dir_over_empty_dir(ctx: Ctx) -> None:
    os.mkdir("a")
    _touch("a/in")
    os.mkdir("b")
    r = ctx.rec
    r.call("rename dir over empty dir", os.rename, "a", "b")
    r.note("listdir b", os.listdir("b"))
    r.stat(".")


@case(A)
def case_dir_over_nonempty_dir(ctx: Ctx) -> None:
    os.mkdir("a")
    os.mkdir("b")
    _touch("b/x")
    r = ctx.rec
    r.call("rename dir over non-empty dir", os.rename, "a", "b")
    r.call("NOREPLACE over non-empty dir", renameat2, "a", "b", RENAME_NOREPLACE)


@case(A)
def case_type_mismatch(ctx: Ctx) -> None:
    os.mkdir("d")
    _touch("f")
    r = ctx.rec
    r.call("rename dir over file", os.rename, "d", "f")
    r.call("rename file over dir", os.rename, "f", "d")
    r.call("rename file to f2/", os.rename, "f", "f2/")
    r.call("rename file/ to f2", os.rename, "f/", "f2")
    r.call("rename dir to d2/", os.rename, "d", "d2/")
    r.note("listdir", sorted(os.listdir(".")))


@case(A)
def case_into_own_subtree(ctx: Ctx) -> None:
    os.makedirs("a/b/c")
    r = ctx.rec
    r.call("rename a a/b/x", os.rename, "a", "a/b/x")
    r.call("rename a a/x", os.rename, "a", "a/x")
    r.call("rename a/b a/b/c/x", os.rename, "a/b", "a/b/c/x")
    r.call("rename a/b/c a (ancestor over)", os.rename, "a/b/c", "a")
    r.call("rename a/b/c a/b (parent over)", os.rename, "a/b/c", "a/b")


@case(A)
def case_dot_and_dotdot(ctx: Ctx) -> None:
    os.mkdir("d")
    r = ctx.rec
    r.call("rename d/. x", os.rename, "d/.", "x")
    r.call("rename d/.. x", os.rename, "d/..", "x")
    r.call("rename d d/.", os.rename, "x", "d/.")
    _touch("f")
    r.call("rename f d/.", os.rename, "f", "d/.")
    r.call("rename f .", os.rename, "f", ".")


@case(A)
def case_same_name(ctx: Ctx) -> None:
    _touch("f", b"x")
    os.mkdir("d")
    r = ctx.rec
    r.call("rename f f", os.rename, "f", "f")
    r.call("rename d d", os.rename, "d", "d")
    r.call("NOREPLACE f f", renameat2, "f", "f", RENAME_NOREPLACE)
    r.call("EXCHANGE f f", renameat2, "f", "f", RENAME_EXCHANGE)
    r.stat("f")


@case(A)
def case_hardlinks_same_inode(ctx: Ctx) -> None:
    """Renaming one hard link over another of the same inode does nothing at all."""
    _touch("a")
    os.link("a", "b")
    r = ctx.rec
    r.call("rename a b", os.rename, "a", "b")
    r.note("listdir", sorted(os.listdir(".")))
    r.stat("a")


@case(A)
def case_missing_source(ctx: Ctx) -> None:
    r = ctx.rec
    r.call("rename missing x", os.rename, "missing", "x")
    r.call("rename into missing dir", os.rename, ".", "nodir/x")
    _touch("f")
    r.call("rename f nodir/x", os.rename, "f", "nodir/x")
    r.call("rename f f/x", os.rename, "f", "f/x")


@case(A)
def case_dir_across_parents_nlink(ctx: Ctx) -> None:
    os.mkdir("p1")
    os.mkdir("p2")
    os.mkdir("p1/d")
    r = ctx.rec
    r.stat("p1")
    r.stat("p2")
    r.call("rename p1/d p2/d", os.rename, "p1/d", "p2/d")
    r.stat("p1")
    r.stat("p2")
    r.stat("p2/d/..", label="stat p2/d/..")
    os.mkdir("p1/e")
    r.call("rename p2/d over p1/e", os.rename, "p2/d", "p1/e")
    r.stat("p1")
    r.stat("p2")


@case(A)
def case_file_across_parents(ctx: Ctx) -> None:
    os.mkdir("p1")
    os.mkdir("p2")
    _touch("p1/f", b"data")
    r = ctx.rec
    r.call("rename p1/f p2/g", os.rename, "p1/f", "p2/g")
    r.stat("p1")
    r.stat("p2")
    r.note("listings", (os.listdir("p1"), os.listdir("p2")))


@case(A)
def case_symlink_rename(ctx: Ctx) -> None:
    """rename acts on the link itself, never its target."""
    _touch("t")
    os.symlink("t", "l")
    os.mkdir("d")
    os.symlink("d", "dl")
    r = ctx.rec
    r.call("rename l m", os.rename, "l", "m")
    r.call("readlink m", os.readlink, "m")
    r.call("rename dl over d", os.rename, "dl", "d")
    r.call("rename file over symlink-to-dir", os.rename, "t", "dl")
    r.stat("dl", follow=False)


@case(A)
def case_noreplace(ctx: Ctx) -> None:
    _touch("a", b"A")
    _touch("b", b"B")
    r = ctx.rec
    r.call("NOREPLACE over existing", renameat2, "a", "b", RENAME_NOREPLACE)
    r.call("NOREPLACE to new", renameat2, "a", "c", RENAME_NOREPLACE)
    os.symlink("nowhere", "dangling")
    r.call("NOREPLACE over dangling symlink", renameat2, "c", "dangling", RENAME_NOREPLACE)
    r.note("listdir", sorted(os.listdir(".")))
    r.note("b", _read("b"))


@case(A)
def case_exchange_files(ctx: Ctx) -> None:
    _touch("a", b"A")
    _touch("b", b"BB")
    r = ctx.rec
    r.stat("a")
    r.stat("b")
    r.call("EXCHANGE a b", renameat2, "a", "b", RENAME_EXCHANGE)
    r.stat("a")
    r.stat("b")
    r.note("contents", (_read("a"), _read("b")))


@case(A)
def case_exchange_file_and_dir(ctx: Ctx) -> None:
    os.mkdir("p")
    os.mkdir("p/d")
    _touch("f")
    r = ctx.rec
    r.stat("p")
    r.stat(".")
    r.call("EXCHANGE f p/d", renameat2, "f", "p/d", RENAME_EXCHANGE)
    r.stat("f")
    r.stat("p/d")
    r.stat("p")
    r.stat(".")


@case(A)
def case_exchange_errors(ctx: Ctx) -> None:
    _touch("a")
    os.makedirs("d/sub")
    r = ctx.rec
    r.call("EXCHANGE with missing", renameat2, "a", "missing", RENAME_EXCHANGE)
    r.call("EXCHANGE missing with a", renameat2, "missing", "a", RENAME_EXCHANGE)
    r.call("EXCHANGE|NOREPLACE", renameat2, "a", "d", RENAME_EXCHANGE | RENAME_NOREPLACE)
    r.call("EXCHANGE dir with own child", renameat2, "d", "d/sub", RENAME_EXCHANGE)
    r.call("EXCHANGE child with parent", renameat2, "d/sub", "d", RENAME_EXCHANGE)
    r.call("unknown flag", renameat2, "a", "b", 1 << 5)


@case(A)
def case_exchange_dirs_across_parents(ctx: Ctx) -> None:
    os.makedirs("p1/a/x")
    os.makedirs("p2/b")
    _touch("p2/b/y")
    r = ctx.rec
    r.call("EXCHANGE p1/a p2/b", renameat2, "p1/a", "p2/b", RENAME_EXCHANGE)
    r.note("p1/a", os.listdir("p1/a"))
    r.note("p2/b", os.listdir("p2/b"))
    r.stat("p1/a/..", label="p1/a/..")
    r.stat("p2/b/..", label="p2/b/..")
    r.stat("p1")
    r.stat("p2")


@case(A)
def case_whiteout(ctx: Ctx) -> None:
    """RENAME_WHITEOUT leaves a 0/0 character device where the source was."""
    _touch("a", b"A")
    r = ctx.rec
    r.call("WHITEOUT a b", renameat2, "a", "b", RENAME_WHITEOUT)
    r.stat("a", follow=False)
    r.stat("b")
    r.call("WHITEOUT|EXCHANGE", renameat2, "b", "a", RENAME_WHITEOUT | RENAME_EXCHANGE)
    _touch("c")
    r.call("WHITEOUT|NOREPLACE", renameat2, "c", "d", RENAME_WHITEOUT | RENAME_NOREPLACE)
    r.stat("c", follow=False)
    r.note("listdir", sorted(os.listdir(".")))


@case(A)
def case_whiteout_dir(ctx: Ctx) -> None:
    os.mkdir("d")
    r = ctx.rec
    r.call("WHITEOUT dir", renameat2, "d", "e", RENAME_WHITEOUT)
    r.stat("d", follow=False)
    r.stat("e")
    r.stat(".")


@case(A)
def case_rename_keeps_inode_and_open_fd(ctx: Ctx) -> None:
    _touch("a", b"payload")
    fd = os.open("a", os.O_RDWR)
    r = ctx.rec
    r.stat("a")
    os.rename("a", "b")
    r.stat("b")
    r.call("write via fd", os.pwrite, fd, b"P", 0)
    r.note("b", _read("b"))


@case(A)
def case_rename_dir_dotdot_updates(ctx: Ctx) -> None:
    os.makedirs("x/d")
    os.mkdir("y")
    fd = os.open("x/d", os.O_RDONLY | os.O_DIRECTORY)
    os.rename("x/d", "y/d")
    r = ctx.rec
    r.call("stat .. via moved fd", lambda: os.stat("..", dir_fd=fd))
    r.stat("y")
    r.call("create via moved fd", os.mkfifo, "p", dir_fd=fd)
    r.note("y/d", os.listdir("y/d"))


@case(A)
def case_rename_many_in_cycle(ctx: Ctx) -> None:
    """A ring of renames leaves every name with the right content."""
    for i in range(20):
        _touch(f"n{i}", b"%d" % i)
    os.rename("n0", "tmp")
    for i in range(1, 20):
        os.rename(f"n{i}", f"n{i - 1}")
    os.rename("tmp", "n19")
    ctx.rec.note("contents", [_read(f"n{i}") for i in range(20)])
    ctx.rec.note("listdir", sorted(os.listdir(".")))
