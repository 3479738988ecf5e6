"""statx(2) birth time (issue 13 item 7): tmpfs reports STATX_BTIME, the
creation time (i_crtime = the first mtime); nothing afterwards changes it."""

from __future__ import annotations

import ctypes
import os
import struct
import time

from .framework import Ctx, case
from .libc import utimensat

A = "statx"
STATX_BASIC_STATS, STATX_BTIME = 0x7FF, 0x800
_libc = ctypes.CDLL(None, use_errno=True)
CLOCK_REALTIME_COARSE = 5  # linux/time.h; the time module does not export it


def statx(path: str, mask: int = STATX_BASIC_STATS | STATX_BTIME, flags: int = 0) -> dict:
    """mask, and the four times in ns (only those the mask reports)."""
    buf = ctypes.create_string_buffer(256)
    if _libc.statx(-100, os.fsencode(path), flags, mask, buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    raw = buf.raw
    out = {"mask": struct.unpack_from("<I", raw, 0)[0]}
    for name, off in (("atime", 64), ("btime", 80), ("ctime", 96), ("mtime", 112)):
        sec, nsec = struct.unpack_from("<qI", raw, off)
        out[name] = sec * 10**9 + nsec
    return out


def _tick(ns: int) -> None:
    """Wait until the coarse clock has moved past ``ns`` (no timing assertion)."""
    while time.clock_gettime_ns(CLOCK_REALTIME_COARSE) <= ns:
        time.sleep(0.002)


@case(A)
def case_btime(ctx: Ctx) -> None:
    """btime is reported, equals the first mtime, and stays through write,
    chmod, utimensat and rename; a later file is born later."""
    r = ctx.rec
    os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o644))
    s0 = statx("f")
    r.note("mask has BTIME", bool(s0["mask"] & STATX_BTIME))
    r.note("btime == mtime at birth", s0["btime"] == s0["mtime"])
    r.note("btime nonzero", s0["btime"] > 0)
    _tick(s0["mtime"])
    with open("f", "ab") as f:
        f.write(b"y")
    os.chmod("f", 0o600)
    utimensat("f", (1, 0), (2, 0))
    os.rename("f", "g")
    s1 = statx("g")
    r.note("btime unchanged", s1["btime"] == s0["btime"])
    r.note("ctime moved on", s1["ctime"] > s0["btime"])
    r.note("mtime set to 2 s", s1["mtime"] == 2 * 10**9)
    os.mkdir("d")
    r.note("later dir born later", statx("d")["btime"] > s0["btime"])
    os.symlink("g", "l")
    r.note("symlink has btime", bool(statx("l", flags=0x100)["mask"] & STATX_BTIME))


@case(A)
def case_btime_basic_mask(ctx: Ctx) -> None:
    """Asking for basic stats only still works (btime may come along)."""
    with open("f", "wb") as f:
        f.write(b"x")
    s = statx("f", STATX_BASIC_STATS)
    ctx.rec.note("basic stats", s["mask"] & STATX_BASIC_STATS == STATX_BASIC_STATS)
    ctx.rec.call("stat", os.stat, "f")
