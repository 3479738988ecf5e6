"""atime mount options (issue 13 item 4): noatime, relatime (the default),
strictatime, nodiratime, lazytime, and ``mount -o remount`` changing them.

FUSE leaves atime to the daemon (fuse_init_inode sets S_NOATIME), so shmfs
applies fs/inode.c's atime_needs_update/relatime_need_update itself with the
flags the kernel holds for the mount (fsimpl/atime.py,
mount/server/mountflags.py). Each case runs the same accesses on a kernel
tmpfs mounted with the same options and compares which ones moved atime.
The remount case calls mount(2) MS_REMOUNT directly on both sides, as
``mount -o remount,noatime`` does for tmpfs."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

from .cases_times import CLOCK_REALTIME_COARSE, OLD_A, OLD_M, changes
from .framework import Ctx, case

A = "times"
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME = 0x20, 0x400, 0x800
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
DAY = 24 * 3600 * 10**9

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _past(*paths: str) -> None:
    """Wait until the coarse clock is past every timestamp of paths, so that an
    update is "later" whatever the clock granularity (cases_times)."""
    newest = max(t for p in paths for t in _stamps(p))
    while time.clock_gettime_ns(CLOCK_REALTIME_COARSE) <= newest:
        pass


def _stamps(p: str) -> tuple[int, int, int]:
    st = os.lstat(p)
    return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns


def _read(name: str) -> None:
    fd = os.open(name, os.O_RDONLY)
    try:
        os.read(fd, 100)
    finally:
        os.close(fd)


def _accesses(ctx: Ctx, tag: str = "", readlink: bool = True) -> None:
    """Reads, directory listings and readlink, with atime old, fresh, and a day
    old but newer than mtime: where relatime, strictatime and noatime differ."""
    rec = ctx.rec
    if not os.path.exists("f"):
        with open("f", "wb") as f:
            f.write(b"abc")
        os.mkdir("d")
        os.mknod("d/x")
        os.symlink("f", "s")
    ops = [("read", "f", lambda: _read("f")), ("listdir", "d", lambda: os.listdir("d"))]
    if readlink:
        ops.append(("readlink", "s", lambda: os.readlink("s")))
    for what, path, op in ops:
        follow = path != "s"
        changes(rec, f"{tag}{what} (atime before mtime)", [path], op, follow=follow,
                fields=("atime",))
        _past(path)
        changes(rec, f"{tag}{what} again", [path], op, age=False, follow=follow,
                fields=("atime",))
        now = time.clock_gettime_ns(time.CLOCK_REALTIME)
        os.utime(path, ns=(now - 2 * DAY, now - 3 * DAY), follow_symlinks=follow)
        _past(path)
        changes(rec, f"{tag}{what} (atime a day old, after mtime)", [path], op, age=False,
                follow=follow, fields=("atime",))


@case(A, mount="noatime")
def case_atime_noatime(ctx: Ctx) -> None:
    _accesses(ctx)


@case(A, mount="strictatime")
def case_atime_strictatime(ctx: Ctx) -> None:
    _accesses(ctx)


@case(A, mount="relatime")
def case_atime_relatime(ctx: Ctx) -> None:
    _accesses(ctx)


@case(A, mount="nodiratime")
def case_atime_nodiratime(ctx: Ctx) -> None:
    _accesses(ctx)


@case(A, mount="nodiratime,strictatime")
def case_atime_nodiratime_strictatime(ctx: Ctx) -> None:
    _accesses(ctx)


@case(A, mount="lazytime")
def case_atime_lazytime(ctx: Ctx) -> None:
    """lazytime defers writing timestamps to disk; on a memory filesystem the
    atime rules are relatime's."""
    _accesses(ctx)


def _mountpoint() -> str:
    d = os.getcwd()
    while not os.path.ismount(d):
        d = os.path.dirname(d)
    return d


@case(A, mount="size=1m")
def case_atime_remount(ctx: Ctx) -> None:
    """mount(2) MS_REMOUNT changes the atime mode of a mounted filesystem.
    Not compared: readlink twice in a row after a remount to strictatime (the
    kernel answers the second from its symlink cache: docs/divergences.md)."""
    mnt = _mountpoint().encode()
    for tag, flags in (("noatime: ", MS_NOATIME), ("strictatime: ", MS_STRICTATIME),
                       ("nodiratime: ", MS_NODIRATIME | MS_STRICTATIME),
                       ("relatime: ", MS_RELATIME)):
        rc = _libc.mount(None, mnt, None, MS_REMOUNT | flags, None)
        ctx.rec.note(f"{tag}remount", rc == 0 or os.strerror(ctypes.get_errno()))
        _accesses(ctx, tag, readlink=not flags & MS_STRICTATIME)
    os.utime("f", ns=(OLD_A, OLD_M))
