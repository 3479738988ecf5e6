"""Hard links and link counts of files and directories; symlinks (loops, lengths,
trailing slashes, readlink); NAME_MAX and PATH_MAX."""

from __future__ import annotations

import os

from .framework import Ctx, case
from .libc import AT_FDCWD, AT_SYMLINK_FOLLOW, linkat

A = "links"
S = "symlink"
N = "names"


def _touch(name: str, data: bytes = b"") -> None:
    fd = os.open(name, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, data)
    os.close(fd)


@case(A)
def case_file_link_counts(ctx: Ctx) -> None:
    _touch("a")
    r = ctx.rec
    r.stat("a")
    for i in range(3):
        r.call(f"link a l{i}", os.link, "a", f"l{i}")
    r.stat("a")
    r.call("unlink l1", os.unlink, "l1")
    r.stat("l2")


@case(A)
def case_link_errors(ctx: Ctx) -> None:
    _touch("a")
    os.mkdir("d")
    r = ctx.rec
    r.call("link to existing name", os.link, "a", "a")
    r.call("link dir", os.link, "d", "d2")
    r.call("link missing", os.link, "missing", "x")
    r.call("link into missing dir", os.link, "a", "nodir/x")
    r.call("link a d/", os.link, "a", "d/")
    r.call("link a/ x", os.link, "a/", "x")


@case(A)
def case_link_symlink_follow(ctx: Ctx) -> None:
    """link(2) links the symlink itself; AT_SYMLINK_FOLLOW links its target."""
    _touch("t")
    os.symlink("t", "s")
    r = ctx.rec
    r.call("link s hs (no follow)", os.link, "s", "hs", follow_symlinks=False)
    r.stat("hs", follow=False)
    r.call("linkat s hf FOLLOW", linkat, AT_FDCWD, "s", AT_FDCWD, "hf", AT_SYMLINK_FOLLOW)
    r.stat("hf", follow=False)
    r.stat("t")
    r.stat("s", follow=False)


@case(A)
def case_dir_link_counts(ctx: Ctx) -> None:
    r = ctx.rec
    os.mkdir("d")
    r.stat("d")
    for i in range(3):
        os.mkdir(f"d/s{i}")
    _touch("d/file")
    r.stat("d")
    os.rmdir("d/s0")
    r.stat("d")
    r.stat("d/s1")
    r.stat(".")


@case(A)
def case_link_special_files(ctx: Ctx) -> None:
    os.mkfifo("p")
    os.mknod("c", 0o600 | 0o020000, os.makedev(1, 7))
    r = ctx.rec
    r.call("link fifo", os.link, "p", "p2")
    r.call("link chr", os.link, "c", "c2")
    r.stat("p")
    r.stat("c2")


@case(A)
def case_link_across_dirs(ctx: Ctx) -> None:
    os.mkdir("x")
    os.mkdir("y")
    _touch("x/f", b"z")
    r = ctx.rec
    r.call("link x/f y/g", os.link, "x/f", "y/g")
    r.stat("y/g")
    r.stat("x")
    r.stat("y")


@case(A)
def case_many_links(ctx: Ctx) -> None:
    _touch("a")
    for i in range(200):
        os.link("a", f"l{i}")
    r = ctx.rec
    r.stat("a")
    for i in range(0, 200, 2):
        os.unlink(f"l{i}")
    r.stat("a")


@case(A)
def case_nlink_after_unlink_with_fd(ctx: Ctx) -> None:
    _touch("a")
    os.link("a", "b")
    fd = os.open("a", os.O_RDONLY)
    os.unlink("a")
    os.unlink("b")
    ctx.rec.fstat(fd)


# -- symlinks ---------------------------------------------------------------

@case(S)
def case_basic(ctx: Ctx) -> None:
    r = ctx.rec
    r.call("symlink", os.symlink, "target/path", "s")
    r.stat("s", follow=False)
    r.call("readlink", os.readlink, "s")
    r.call("stat (dangling)", os.stat, "s")
    r.call("symlink existing", os.symlink, "x", "s")
    r.call("readlink file", os.readlink, ".")
    r.call("readlink missing", os.readlink, "missing")


@case(S)
def case_empty_target(ctx: Ctx) -> None:
    ctx.rec.call("symlink empty target", os.symlink, "", "s")


@case(S)
def case_lengths(ctx: Ctx) -> None:
    """Targets up to PATH_MAX-1 bytes work; st_size is the length; longer fail."""
    r = ctx.rec
    for n in (1, 59, 60, 127, 128, 255, 256, 1000, 4094, 4095, 4096, 5000):
        name = f"s{n}"
        r.call(f"symlink len {n}", os.symlink, "x" * n, name)
        st = r.stat(name, follow=False)
        if st is not None:
            r.note(f"readlink len {n}", len(os.readlink(name)))


@case(S)
def case_loop(ctx: Ctx) -> None:
    os.symlink("b", "a")
    os.symlink("a", "b")
    os.symlink("self", "self")
    r = ctx.rec
    r.call("stat a", os.stat, "a")
    r.call("open self", os.open, "self", os.O_RDONLY)
    r.call("open a O_CREAT", os.open, "a", os.O_CREAT | os.O_WRONLY, 0o644)
    r.call("lstat a", os.lstat, "a")
    r.call("stat a/x", os.stat, "a/x")


@case(S)
def case_chain_40_vs_41(ctx: Ctx) -> None:
    """Linux follows at most 40 nested symlinks (MAXSYMLINKS)."""
    _touch("t", b"end")
    prev = "t"
    for i in range(45):
        os.symlink(prev, f"c{i}")
        prev = f"c{i}"
    r = ctx.rec
    for i in (38, 39, 40, 41, 44):
        r.call(f"stat c{i} ({i + 1} links)", os.stat, f"c{i}")


@case(S)
def case_dir_symlink_paths(ctx: Ctx) -> None:
    os.makedirs("real/sub")
    _touch("real/sub/f")
    os.symlink("real", "r")
    os.symlink("../real/sub", "real/up")
    os.symlink("/proc/self/cwd", "abs")
    r = ctx.rec
    r.stat("r/sub/f")
    r.stat("r/up/f")
    r.stat("r/", follow=False)
    r.stat("abs/real", follow=True)
    r.call("listdir r", sorted, os.listdir("r"))
    _touch("file")
    os.symlink("file", "fl")
    r.call("stat fl/", os.stat, "fl/")


@case(S)
def case_lchown_lchmod(ctx: Ctx) -> None:
    _touch("t")
    os.symlink("t", "s")
    r = ctx.rec
    r.call("lchown", os.lchown, "s", 123, 456)
    r.stat("s", follow=False)
    r.stat("t")
    r.call("chmod through link", os.chmod, "s", 0o600)
    r.stat("t")
    r.stat("s", follow=False)


@case(S)
def case_symlink_in_middle_of_path(ctx: Ctx) -> None:
    os.mkdir("d")
    os.symlink("d", "l")
    r = ctx.rec
    r.call("mkdir l/new", os.mkdir, "l/new")
    r.call("mkdir l (exists)", os.mkdir, "l")
    r.call("create l/f", lambda: os.close(os.open("l/f", os.O_CREAT | os.O_WRONLY, 0o644)))
    r.note("d", sorted(os.listdir("d")))


@case(S)
def case_symlink_with_dotdot_escape(ctx: Ctx) -> None:
    os.mkdir("d")
    os.symlink("../../../../../../../..", "d/up")
    r = ctx.rec
    r.call("stat d/up is root", lambda: os.stat("d/up").st_ino == os.stat("/").st_ino)


# -- names ------------------------------------------------------------------

@case(N)
def case_name_max(ctx: Ctx) -> None:
    r = ctx.rec
    for n in (254, 255, 256, 300):
        name = "n" * n
        r.call(f"create name {n}", lambda nm=name: os.close(
            os.open(nm, os.O_CREAT | os.O_WRONLY, 0o644)))
        r.call(f"mkdir name {n}", os.mkdir, "d" * n)
        r.call(f"symlink name {n}", os.symlink, "t", "s" * n)
        r.call(f"stat name {n}", lambda nm=name: os.stat(nm).st_size)
    r.call("lookup 256 missing", os.stat, "z" * 256)
    r.call("rename to 256", os.rename, "n" * 255, "r" * 256)
    r.call("link to 256", os.link, "n" * 255, "k" * 256)


@case(N)
def case_path_max(ctx: Ctx) -> None:
    """Relative paths of 4095 bytes resolve; 4096 bytes (PATH_MAX with NUL) do not."""
    comp = "c" * 200
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    depth = 0
    for _ in range(21):  # 21 * 201 = 4221 bytes of path
        os.mkdir(comp, dir_fd=fd)
        nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
        depth += 1
    os.close(fd)
    base = "/".join([comp] * 20)  # 20*200 + 19 = 4019 bytes
    r = ctx.rec
    for total in (4094, 4095, 4096, 4200):
        # pad with "./" segments so the length is exact
        pad = total - len(base)
        prefix = "./" * (pad // 2) + ("/" if pad % 2 else "")
        path = prefix + base
        r.note(f"len {total}", len(path))
        r.call(f"stat path {total}", lambda p=path: os.stat(p).st_nlink)
    r.call("mkdir deep 4221", os.mkdir, "/".join([comp] * 21) + "/x")


@case(N)
def case_special_names(ctx: Ctx) -> None:
    r = ctx.rec
    for name in (" ", "-", "a b", "\n", "\x7f", "é", "\udcff", "..." , ".hidden", "a:b"):
        r.call(f"create {name!r}", lambda nm=name: os.close(
            os.open(nm, os.O_CREAT | os.O_WRONLY, 0o644)))
    r.note("listdir", sorted(os.listdir("."), key=os.fsencode))


@case(N)
def case_dot_names(ctx: Ctx) -> None:
    r = ctx.rec
    r.call("create .", os.open, ".", os.O_CREAT | os.O_WRONLY, 0o644)
    r.call("mkdir ..", os.mkdir, "..")
    r.call("symlink .", os.symlink, "x", ".")
    r.call("mknod ..", os.mkfifo, "..")
    r.call("link to .", os.link, "/proc/self/cwd", ".")


@case(N)
def case_case_sensitive(ctx: Ctx) -> None:
    _touch("Name", b"upper")
    _touch("name", b"lower")
    ctx.rec.note("listdir", sorted(os.listdir(".")))
    with open("NAME", "a"):
        pass
    ctx.rec.note("n", len(os.listdir(".")))
