"""mknod(2) of fifos, sockets, character and block devices, and plain files;
fifo open semantics.  Device nodes are only stat'ed, never opened: a FUSE mount
may carry ``nodev`` by the mounter's choice, which says nothing about the fs."""

from __future__ import annotations

import os
import socket
import stat

from .framework import OTHER_GID, OTHER_UID, Ctx, Recorder, case

A = "mknod"


@case(A)
def case_fifo(ctx: Ctx) -> None:
    r = ctx.rec
    r.call("mkfifo", os.mkfifo, "p", 0o640)
    r.stat("p")
    r.call("mkfifo again", os.mkfifo, "p")
    r.call("mknod S_IFIFO", os.mknod, "q", stat.S_IFIFO | 0o600)
    r.stat("q")


@case(A)
def case_fifo_open_semantics(ctx: Ctx) -> None:
    os.mkfifo("p")
    r = ctx.rec
    r.open("p", os.O_WRONLY | os.O_NONBLOCK)
    rfd = r.open("p", os.O_RDONLY | os.O_NONBLOCK)
    wfd = r.open("p", os.O_WRONLY | os.O_NONBLOCK)
    if rfd is not None and wfd is not None:
        r.call("write", os.write, wfd, b"through the fifo")
        r.call("read", os.read, rfd, 100)
        r.call("read empty", os.read, rfd, 100)
        r.call("lseek fifo", os.lseek, rfd, 0, os.SEEK_SET)
    r.stat("p")


@case(A)
def case_socket_node(ctx: Ctx) -> None:
    r = ctx.rec
    r.call("mknod S_IFSOCK", os.mknod, "s", stat.S_IFSOCK | 0o644)
    r.stat("s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    r.call("bind unix socket", sock.bind, "bound")
    r.stat("bound")
    r.call("listen", sock.listen, 1)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    r.call("connect", c.connect, "bound")
    r.call("connect to mknod'd socket",
           socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect, "s")
    r.call("bind existing", socket.socket(socket.AF_UNIX).bind, "bound")
    r.call("open socket node", os.open, "bound", os.O_RDONLY)


@case(A)
def case_char_device(ctx: Ctx) -> None:
    r = ctx.rec
    r.call("mknod chr 1:3", os.mknod, "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    r.stat("null")
    r.call("mknod chr 4095:1048575", os.mknod, "big", stat.S_IFCHR | 0o600,
           os.makedev(4095, 1048575))
    r.stat("big")


@case(A)
def case_block_device(ctx: Ctx) -> None:
    r = ctx.rec
    r.call("mknod blk 7:0", os.mknod, "loop", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    r.stat("loop")


@case(A)
def case_regular_and_bad_types(ctx: Ctx) -> None:
    r = ctx.rec
    r.call("mknod S_IFREG", os.mknod, "f", stat.S_IFREG | 0o644)
    r.stat("f")
    r.call("mknod type 0", os.mknod, "z", 0o644)
    r.stat("z")
    r.call("mknod S_IFDIR", os.mknod, "d", stat.S_IFDIR | 0o755)
    r.call("mknod S_IFLNK", os.mknod, "l", stat.S_IFLNK | 0o777)
    r.call("mknod bogus type", os.mknod, "b", 0o170000 | 0o644)
    r.call("mknod over existing", os.mknod, "f", stat.S_IFREG | 0o644)
    r.note("listdir", sorted(os.listdir(".")))


@case(A)
def case_mknod_umask_and_bits(ctx: Ctx) -> None:
    r = ctx.rec
    os.umask(0o077)
    r.call("mkfifo 0777 umask 077", os.mkfifo, "p", 0o777)
    r.stat("p")
    os.umask(0)
    r.call("mknod chr 04777", os.mknod, "c", stat.S_IFCHR | 0o4777, os.makedev(1, 5))
    r.stat("c")
    os.umask(0o022)


@case(A)
def case_mknod_as_user(ctx: Ctx) -> None:
    """Unprivileged users may make fifos, sockets and files but not devices."""
    os.chmod(".", 0o777)

    def body(rec: Recorder) -> None:
        rec.call("mkfifo", os.mkfifo, "p")
        rec.call("mknod sock", os.mknod, "s", stat.S_IFSOCK | 0o600)
        rec.call("mknod reg", os.mknod, "f", stat.S_IFREG | 0o600)
        rec.call("mknod chr", os.mknod, "c", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        rec.call("mknod blk", os.mknod, "b", stat.S_IFBLK | 0o600, os.makedev(7, 0))
        rec.stat("p")
        rec.stat("s")

    ctx.as_user(body, OTHER_UID, OTHER_GID)


@case(A)
def case_chmod_chown_special(ctx: Ctx) -> None:
    os.mkfifo("p")
    os.mknod("c", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    r = ctx.rec
    r.call("chmod fifo", os.chmod, "p", 0o4711)
    r.call("chown chr", os.chown, "c", 42, 43)
    r.stat("p")
    r.stat("c")


@case(A)
def case_truncate_special(ctx: Ctx) -> None:
    os.mkfifo("p")
    os.mknod("c", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.mknod("s", stat.S_IFSOCK | 0o600)
    r = ctx.rec
    r.call("truncate fifo", os.truncate, "p", 0)
    r.call("truncate chr", os.truncate, "c", 0)
    r.call("truncate sock", os.truncate, "s", 0)
    r.call("truncate dir", os.truncate, ".", 0)
