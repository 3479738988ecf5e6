"""open(2)/creat flags: O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_NOFOLLOW, O_DIRECTORY,
O_TMPFILE with linkat, O_PATH, and the errors of path resolution."""

from __future__ import annotations

import fcntl
import os

from .framework import Ctx, case
from .libc import AT_FDCWD, AT_SYMLINK_FOLLOW, link_fd, linkat

A = "open"
O_TMPFILE = os.O_TMPFILE


def _mkfile(name: str, data: bytes = b"") -> None:
    fd = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.close(fd)


@case(A)
def case_creat_new(ctx: Ctx) -> None:
    """O_CREAT makes a regular file with mode & ~umask, owned by the caller."""
    r = ctx.rec
    fd = r.open("f", os.O_CREAT | os.O_WRONLY, 0o666)
    r.fstat(fd)
    r.stat("f")
    r.stat(".")


@case(A)
def case_creat_existing_keeps_data(ctx: Ctx) -> None:
    _mkfile("f", b"hello")
    fd = ctx.rec.open("f", os.O_CREAT | os.O_RDWR, 0o600)
    ctx.rec.call("read", os.read, fd, 100)
    ctx.rec.stat("f")


@case(A)
def case_excl_existing(ctx: Ctx) -> None:
    _mkfile("f")
    ctx.rec.open("f", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.mkdir("d")
    ctx.rec.open("d", os.O_CREAT | os.O_EXCL | os.O_RDONLY)


@case(A)
def case_excl_on_symlink(ctx: Ctx) -> None:
    """O_CREAT|O_EXCL never follows a symlink, even a dangling one."""
    os.symlink("nowhere", "dangling")
    _mkfile("t")
    os.symlink("t", "good")
    ctx.rec.open("dangling", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    ctx.rec.open("good", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    ctx.rec.call("exists(nowhere)", os.path.lexists, "nowhere")


@case(A)
def case_creat_through_dangling_symlink(ctx: Ctx) -> None:
    """O_CREAT without O_EXCL follows a dangling symlink and creates its target."""
    os.symlink("target", "link")
    fd = ctx.rec.open("link", os.O_CREAT | os.O_WRONLY)
    if fd is not None:
        os.write(fd, b"x")
        os.close(fd)
    ctx.rec.stat("target")
    ctx.rec.stat("link", follow=False)


@case(A)
def case_trunc(ctx: Ctx) -> None:
    _mkfile("f", b"x" * 10000)
    r = ctx.rec
    fd = r.open("f", os.O_WRONLY | os.O_TRUNC)
    r.fstat(fd)
    _mkfile("g", b"y" * 10)
    fd2 = r.open("g", os.O_RDONLY | os.O_TRUNC)
    r.fstat(fd2)


@case(A)
def case_trunc_on_fifo_and_dir(ctx: Ctx) -> None:
    os.mkfifo("p")
    ctx.rec.open("p", os.O_RDWR | os.O_TRUNC | os.O_NONBLOCK)
    os.mkdir("d")
    ctx.rec.open("d", os.O_RDONLY | os.O_TRUNC)
    ctx.rec.open("d", os.O_WRONLY | os.O_TRUNC)


@case(A)
def case_append(ctx: Ctx) -> None:
    """Writes through O_APPEND land at EOF whatever the file offset says."""
    _mkfile("f", b"abc")
    r = ctx.rec
    fd = r.open("f", os.O_WRONLY | os.O_APPEND)
    r.call("lseek(0)", os.lseek, fd, 0, os.SEEK_SET)
    r.call("write", os.write, fd, b"def")
    r.call("offset", os.lseek, fd, 0, os.SEEK_CUR)
    r.call("pwrite(0) on O_APPEND", os.pwrite, fd, b"XY", 0)
    with open("f", "rb") as f:
        r.note("content", f.read())


@case(A)
def case_append_two_fds(ctx: Ctx) -> None:
    _mkfile("f")
    a = os.open("f", os.O_WRONLY | os.O_APPEND)
    b = os.open("f", os.O_WRONLY | os.O_APPEND)
    for i in range(5):
        os.write(a, b"a%d" % i)
        os.write(b, b"b%d" % i)
    with open("f", "rb") as f:
        ctx.rec.note("content", f.read())


@case(A)
def case_nofollow(ctx: Ctx) -> None:
    _mkfile("t")
    os.symlink("t", "l")
    r = ctx.rec
    r.open("l", os.O_RDONLY | os.O_NOFOLLOW)
    r.open("l", os.O_RDONLY | os.O_NOFOLLOW | os.O_PATH)
    r.open("t", os.O_RDONLY | os.O_NOFOLLOW)
    os.mkdir("d")
    os.symlink("d", "dl")
    r.open("dl/x", os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW)


@case(A)
def case_directory_flag(ctx: Ctx) -> None:
    _mkfile("f")
    os.mkdir("d")
    os.symlink("d", "dl")
    r = ctx.rec
    r.open("f", os.O_RDONLY | os.O_DIRECTORY)
    r.open("d", os.O_RDONLY | os.O_DIRECTORY)
    r.open("dl", os.O_RDONLY | os.O_DIRECTORY)
    r.open("new", os.O_RDONLY | os.O_DIRECTORY | os.O_CREAT)
    r.call("exists(new)", os.path.lexists, "new")


@case(A)
def case_dir_write_modes(ctx: Ctx) -> None:
    os.mkdir("d")
    r = ctx.rec
    r.open("d", os.O_WRONLY)
    r.open("d", os.O_RDWR)
    r.open("d", os.O_RDONLY)
    r.open("d", os.O_CREAT | os.O_RDONLY)
    r.open("d/", os.O_CREAT | os.O_RDONLY)


@case(A)
def case_path_resolution_errors(ctx: Ctx) -> None:
    _mkfile("f")
    r = ctx.rec
    r.open("missing", os.O_RDONLY)
    r.open("f/x", os.O_RDONLY)
    r.open("f/", os.O_RDONLY)
    r.open("missing/x", os.O_CREAT | os.O_WRONLY)
    r.open("f/x", os.O_CREAT | os.O_WRONLY)
    r.open("", os.O_RDONLY)
    r.open("new/", os.O_CREAT | os.O_WRONLY)


@case(A)
def case_read_write_access_modes(ctx: Ctx) -> None:
    _mkfile("f", b"data")
    r = ctx.rec
    fd = os.open("f", os.O_RDONLY)
    r.call("write on O_RDONLY", os.write, fd, b"x")
    r.call("read on O_RDONLY", os.read, fd, 10)
    fd2 = os.open("f", os.O_WRONLY)
    r.call("read on O_WRONLY", os.read, fd2, 10)
    r.call("write on O_WRONLY", os.write, fd2, b"D")
    fd3 = os.open("f", os.O_PATH)
    r.call("read on O_PATH", os.read, fd3, 10)
    r.call("fstat on O_PATH", os.fstat, fd3)
    with open("f", "rb") as f:
        r.note("content", f.read())


@case(A)
def case_tmpfile_basic(ctx: Ctx) -> None:
    """O_TMPFILE gives an unnamed regular file with nlink 0 that works like any file."""
    r = ctx.rec
    fd = r.open(".", O_TMPFILE | os.O_RDWR, 0o640)
    if fd is None:
        return
    r.fstat(fd)
    r.call("write", os.write, fd, b"tmpdata")
    r.call("pread", os.pread, fd, 100, 0)
    r.fstat(fd)
    r.note("listdir", sorted(os.listdir(".")))


@case(A)
def case_tmpfile_linkat(ctx: Ctx) -> None:
    """linkat(AT_EMPTY_PATH) gives an O_TMPFILE file a name; nlink becomes 1."""
    r = ctx.rec
    fd = r.open(".", O_TMPFILE | os.O_RDWR, 0o600)
    if fd is None:
        return
    os.write(fd, b"abc")
    r.call("linkat(fd, named)", link_fd, fd, "named")
    r.fstat(fd)
    r.stat("named")
    r.call("linkat again", link_fd, fd, "second")
    r.stat("named")
    with open("named", "rb") as f:
        r.note("content", f.read())


@case(A)
def case_tmpfile_proc_link(ctx: Ctx) -> None:
    """The classic /proc/self/fd + AT_SYMLINK_FOLLOW way to link an O_TMPFILE."""
    r = ctx.rec
    fd = r.open(".", O_TMPFILE | os.O_WRONLY, 0o644)
    if fd is None:
        return
    os.write(fd, b"p")
    r.call("linkat(/proc/self/fd)", linkat, AT_FDCWD, f"/proc/self/fd/{fd}", AT_FDCWD,
           "viaproc", AT_SYMLINK_FOLLOW)
    r.stat("viaproc")


@case(A)
def case_tmpfile_excl_cannot_link(ctx: Ctx) -> None:
    r = ctx.rec
    fd = r.open(".", O_TMPFILE | os.O_EXCL | os.O_RDWR, 0o600)
    if fd is None:
        return
    r.call("linkat O_EXCL tmpfile", link_fd, fd, "named")
    r.call("exists", os.path.lexists, "named")


@case(A)
def case_tmpfile_errors(ctx: Ctx) -> None:
    r = ctx.rec
    _mkfile("f")
    r.open(".", O_TMPFILE | os.O_RDONLY, 0o600)
    r.open("f", O_TMPFILE | os.O_RDWR, 0o600)
    r.open("missing", O_TMPFILE | os.O_RDWR, 0o600)


@case(A)
def case_tmpfile_unlinked_then_link(ctx: Ctx) -> None:
    """An ordinary file that was unlinked (nlink 0, not O_TMPFILE) cannot be relinked."""
    r = ctx.rec
    fd = os.open("f", os.O_CREAT | os.O_RDWR, 0o644)
    os.unlink("f")
    r.fstat(fd)
    r.call("linkat unlinked", link_fd, fd, "back")


@case(A)
def case_creat_mode_bits(ctx: Ctx) -> None:
    """Creation mode is filtered by the umask; special bits are kept for root."""
    r = ctx.rec
    for mode, um in ((0o777, 0o022), (0o7777, 0o022), (0o666, 0o077), (0o4755, 0),
                     (0o2755, 0o002), (0o1644, 0)):
        os.umask(um)
        name = f"f{mode:o}_{um:o}"
        fd = r.open(name, os.O_CREAT | os.O_WRONLY, mode)
        if fd is not None:
            os.close(fd)
        r.stat(name)
    os.umask(0o022)


@case(A)
def case_mkdir_modes(ctx: Ctx) -> None:
    r = ctx.rec
    for mode in (0o777, 0o700, 0o1777, 0o2755, 0o4755, 0o000):
        r.call(f"mkdir {mode:o}", os.mkdir, f"d{mode:o}", mode)
        r.stat(f"d{mode:o}")
    r.call("mkdir existing", os.mkdir, "d777")
    os.symlink("nowhere", "sl")
    r.call("mkdir over dangling symlink", os.mkdir, "sl")
    r.call("mkdir trailing slash", os.mkdir, "ts/")
    r.stat("ts")


@case(A)
def case_open_noatime_and_flags(ctx: Ctx) -> None:
    _mkfile("f", b"z")
    r = ctx.rec
    fd = r.open("f", os.O_RDONLY | os.O_NOATIME)
    if fd is not None:
        r.call("fcntl GETFL has O_NOATIME",
               lambda: bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NOATIME))
    fd = os.open("f", os.O_RDWR | os.O_APPEND | os.O_NONBLOCK)
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    r.note("GETFL", oct(fl & (os.O_ACCMODE | os.O_APPEND | os.O_NONBLOCK)))
    r.call("F_SETFL clear O_APPEND", fcntl.fcntl, fd, fcntl.F_SETFL, 0)
    r.note("GETFL after", oct(fcntl.fcntl(fd, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_APPEND)))


@case(A)
def case_write_read_roundtrip(ctx: Ctx) -> None:
    """Unaligned writes across page boundaries read back byte-exact."""
    r = ctx.rec
    fd = os.open("f", os.O_CREAT | os.O_RDWR, 0o644)
    chunks = [(0, b"a" * 5000), (4090, b"B" * 20), (12287, b"C" * 2), (65536 * 3 + 1, b"E")]
    for off, data in chunks:
        r.call(f"pwrite({off},{len(data)})", os.pwrite, fd, data, off)
    r.fstat(fd)
    blob = os.pread(fd, 1 << 20, 0)
    r.note("len", len(blob))
    r.note("sum", sum(blob))
    r.note("slices", [blob[4088:4112], blob[12285:12290], blob[-3:]])
    r.call("read at EOF", os.pread, fd, 10, len(blob))
    r.call("read past EOF", os.pread, fd, 10, len(blob) + 100000)


@case(A)
def case_creat_in_removed_dir(ctx: Ctx) -> None:
    os.mkdir("d")
    fd = os.open("d", os.O_RDONLY | os.O_DIRECTORY)
    os.rmdir("d")
    r = ctx.rec
    r.call("openat(removed dir, O_CREAT)", os.open, "x", os.O_CREAT | os.O_WRONLY, 0o644,
           dir_fd=fd)
    r.call("mkdirat(removed dir)", os.mkdir, "y", dir_fd=fd)
    r.call("fstat removed dir", os.fstat, fd)
