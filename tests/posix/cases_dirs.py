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


@case(A)
def case_rename_over_open_victims(ctx: Ctx) -> None:
    """xfstests generic/035: the file or empty directory a rename replaces,
    held open, reports nlink 0 and stays usable (the file's data, an empty
    listing); creates in the replaced directory fail."""
    os.mkdir("d1")
    os.mkdir("d2")
    with open("f1", "wb") as f:
        f.write(b"one")
    with open("f2", "wb") as f:
        f.write(b"two")
    ffd = os.open("f2", os.O_RDWR)
    dfd = os.open("d2", os.O_RDONLY | os.O_DIRECTORY)
    r = ctx.rec
    r.call("rename f1 over open f2", os.rename, "f1", "f2")
    r.call("victim nlink", lambda: os.fstat(ffd).st_nlink)
    r.call("victim data", os.pread, ffd, 10, 0)
    r.call("write to victim", os.pwrite, ffd, b"X", 0)
    r.call("new f2", lambda: open("f2", "rb").read())
    r.call("rename d1 over open d2", os.rename, "d1", "d2")
    r.call("dir victim nlink", lambda: os.fstat(dfd).st_nlink)
    r.call("dir victim listing", os.listdir, dfd)
    r.call("create in dir victim", lambda: os.open("n", os.O_CREAT | os.O_WRONLY, 0o644,
                                                   dir_fd=dfd))
    r.stat(".")
    r.stat("d2")


@case("open")
def case_tmpfile_modes_and_umask(ctx: Ctx) -> None:
    """O_TMPFILE creation modes under several umasks, as root and as another
    user in a setgid directory; the mode survives linkat."""
    os.mkdir("sg", 0o2777)
    os.chmod("sg", 0o2777)
    os.chown("sg", 0, 1500)
    r = ctx.rec

    def make(rec, tag: str, d: str) -> None:
        for um in (0o022, 0o077, 0):
            old = os.umask(um)
            for mode in (0o7777, 0o644, 0o2755):
                fd = rec.call(f"{tag} umask {um:o} mode {mode:o}",
                              os.open, d, os.O_TMPFILE | os.O_RDWR, mode)
                if fd is None:
                    continue
                st = os.fstat(fd)
                rec.note(f"{tag} mode/gid", (oct(st.st_mode & 0o7777), st.st_gid, st.st_nlink))
                name = f"{d}/t_{tag}_{um:o}_{mode:o}"
                rec.call(f"{tag} link", linkat, -100, f"/proc/self/fd/{fd}", -100, name,
                         0x400)  # AT_SYMLINK_FOLLOW
                rec.call(f"{tag} linked mode", lambda n=name: oct(os.stat(n).st_mode & 0o7777))
                os.close(fd)
            os.umask(old)

    make(r, "root", ".")
    ctx.as_user(lambda rec: make(rec, "user", "sg"), 1000, 1000, [])
    r.call("O_TMPFILE without write access", os.open, ".", os.O_TMPFILE | os.O_RDONLY, 0o600)
    r.call("O_TMPFILE|O_EXCL", lambda: os.fstat(os.open("sg", os.O_TMPFILE | os.O_WRONLY
                                                        | os.O_EXCL, 0o600)).st_nlink)


def _mountpoint() -> str:
    d = os.getcwd()
    while not os.path.ismount(d):
        d = os.path.dirname(d)
    return d


@case("ro", mount="size=1m")
def case_remount_read_only(ctx: Ctx) -> None:
    """xfstests generic/294-style: after mount(2) MS_REMOUNT|MS_RDONLY every
    call that changes the filesystem is EROFS, reads and existing read-only
    descriptors work; a remount to ro with a file open for writing is EBUSY;
    back to rw, writes work again."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    mnt = _mountpoint().encode()
    MS_REMOUNT, MS_RDONLY = 0x20, 0x1

    def remount(flags: int) -> None:
        if libc.mount(None, mnt, None, MS_REMOUNT | flags, None) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))

    with open("f", "wb") as f:
        f.write(b"data")
    os.mkdir("d")
    os.symlink("f", "l")
    r = ctx.rec
    wfd = os.open("f", os.O_WRONLY)
    r.call("remount ro with a writer", remount, MS_RDONLY)
    os.close(wfd)
    rfd = os.open("f", os.O_RDONLY)
    r.call("remount ro", remount, MS_RDONLY)
    try:
        for label, fn in (
            ("creat", lambda: os.open("g", os.O_CREAT | os.O_WRONLY, 0o644)),
            ("open for write", lambda: os.open("f", os.O_WRONLY)),
            ("O_TRUNC", lambda: os.open("f", os.O_RDONLY | os.O_TRUNC)),
            ("O_TMPFILE", lambda: os.open(".", os.O_TMPFILE | os.O_RDWR, 0o600)),
            ("mkdir", lambda: os.mkdir("e")),
            ("mkfifo", lambda: os.mkfifo("p")),
            ("symlink", lambda: os.symlink("f", "m")),
            ("link", lambda: os.link("f", "h")),
            ("rename", lambda: os.rename("f", "g")),
            ("unlink", lambda: os.unlink("f")),
            ("rmdir", lambda: os.rmdir("d")),
            ("chmod", lambda: os.chmod("f", 0o600)),
            ("chown", lambda: os.chown("f", 1, 1)),
            ("utime", lambda: os.utime("f", (1, 1))),
            ("truncate", lambda: os.truncate("f", 0)),
            ("setxattr", lambda: os.setxattr("f", "user.a", b"1")),
            ("removexattr", lambda: os.removexattr("f", "user.a")),
            ("read", lambda: os.pread(rfd, 10, 0)),
            ("stat", lambda: os.stat("f").st_size),
            ("readlink", lambda: os.readlink("l")),
            ("listdir", lambda: sorted(os.listdir("."))),
            ("access W_OK", lambda: os.access("f", os.W_OK)),
            ("statvfs flag ro", lambda: bool(os.statvfs(".").f_flag & 1)),
        ):
            r.call(f"ro: {label}", fn)
    finally:
        remount(0)
    r.call("rw: write", lambda: os.pwrite(os.open("f", os.O_WRONLY), b"X", 0))
    r.call("rw: content", lambda: open("f", "rb").read())
