"""In-process cost of one request of each regular-file kind (no kernel), through
the session's own ``Session._handle`` (fast path or parse + handle, drain_events,
stats bookkeeping, the reply's writev -- to /dev/null instead of /dev/fuse).

    .venv/bin/python scripts/request_probe.py [--n 20000] [--rounds 3] [--only OP,...]
                                              [--profile OP] [--mountflags] [--python]
    .venv/bin/python scripts/request_probe.py --reply-ab

``--engine`` times the C engine's ``Engine.handle`` alone (serve_raw, the reply's
writev to /dev/null, the request's count: what the C loop runs per request, less
its read(2)), where the default goes through ``Session._handle``.
``--reap-every N`` reaps the evictions FORGETs left for later every N requests,
untimed (without it, after 256 FORGETs each one also reaps one, in the timing).
Kinds: read (4 KiB of a resident page, random), read_hole, append4k, append512,
overwrite4k, getattr, lookup_hit, lookup_miss, create, release, open, unlink, forget,
mkdir, rmdir.
``--mountflags`` gives ShmFs a MountFlagsWatch of "/" (a poll of
/proc/self/mountinfo per atime check), as the daemon does. The session uses
the C hot path (native/hotpath.c) where it is built; ``--python`` measures the
Python path instead, ``--reply-ab`` the engine's reply written from C against
returned as bytes (docs/performance.md change 23).
``SHMFS_TREE=/path/to/checkout`` runs another tree's code (A/B; the old
layout with mount/session.py is understood too). Prints µs of this thread's CPU
time per request (robust to preemption by other load), the minimum of the
rounds; --profile prints cProfile's top entries instead.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import random
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

TREE = Path(os.environ.get("SHMFS_TREE") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(TREE))
from fsimpl import FsOptions, ShmFs  # noqa: E402
from fsimpl.types import Ctx  # noqa: E402

try:
    from mount.server import session as session_mod
    from mount.server.ops import Operations, OpsConfig
except ImportError:  # the layout before the mount/ subpackages
    from mount.ops import Operations, OpsConfig  # type: ignore[no-redef]

    from mount import session as session_mod  # type: ignore[no-redef]
Session = session_mod.Session

CTX = Ctx(0, 0, os.getpid(), 0o022)
HDR = struct.Struct("<IIQQIIIHH")
LOOKUP, FORGET, GETATTR, MKDIR, UNLINK, RMDIR, OPEN = 1, 2, 3, 9, 10, 11, 14
READ, WRITE, RELEASE, CREATE = 15, 16, 18, 35
KINDS = ("read", "read_hole", "append4k", "append512", "overwrite4k", "getattr",
         "lookup_hit", "lookup_miss", "create", "release", "open", "unlink", "forget",
         "mkdir", "rmdir")
FILE_PAGES = 16384  # 64 MiB resident file for the reads
WALL = False
ENGINE = False  # --engine: Engine.handle alone, as the C loop (Engine.serve) calls it
REAP_EVERY = 0  # --reap-every: evict_later reaped (untimed) every so many requests


def _msg(opcode: int, nodeid: int, body: bytes, unique: int = 7) -> memoryview:
    return memoryview(HDR.pack(40 + len(body), opcode, unique, nodeid, 0, 0, os.getpid(), 0, 0)
                      + body)


def _read_in(fh: int, off: int, size: int) -> bytes:
    return struct.pack("<QQIIQII", fh, off, size, 0, 0, os.O_RDONLY, 0)


def _write_in(fh: int, off: int, data: bytes) -> bytes:
    return struct.pack("<QQIIQII", fh, off, len(data), 0, 0, os.O_WRONLY, 0) + data


def _session(mountflags: bool) -> tuple[ShmFs, Session]:
    fs = ShmFs(FsOptions(size_bytes=8 << 30, nr_inodes=4_000_000, mode=0o1777, uid=0, gid=0))
    if mountflags:
        from mount.server.mountflags import MountFlagsWatch
        fs.atime_mode = MountFlagsWatch(Path("/"))
    if not os.environ.get("PROBE_NO_AHEAD"):
        fs._backing.arena.start_populate_ahead(8 << 20)  # as the session does
    set_reserve = getattr(fs._backing.arena, "set_reserve", None)
    if set_reserve is not None:  # as the session does (SHMFS_RESERVE=0: off)
        set_reserve()
    ops = Operations(fs, OpsConfig())
    out = os.open(os.devnull, os.O_WRONLY)
    s = Session(out, ops, Path("/nonexistent"))
    evict_later = getattr(fs, "evict_later", None)
    if evict_later is not None:
        fs.defer_evictions = True
    return fs, s


def build(kind: str, n: int, mountflags: bool) -> tuple[Session, list[memoryview]]:
    """A fresh session and ``n`` messages of ``kind``, with the state they need."""
    fs, s = _session(mountflags)
    rnd = random.Random(1)
    if kind in ("read", "read_hole", "overwrite4k"):
        attr, fh = fs.create(1, b"data", 0o100644, os.O_RDWR, CTX)
        ino = attr.ino
        if kind == "read_hole":
            fs.setattr(ino, CTX, size=FILE_PAGES * 4096)
        else:
            block = b"y" * (1 << 20)
            for off in range(0, FILE_PAGES * 4096, 1 << 20):
                fs.write(ino, fh, off, memoryview(block))
        if kind == "overwrite4k":
            data = b"x" * 4096
            return s, [_msg(WRITE, ino, _write_in(fh, rnd.randrange(FILE_PAGES) * 4096, data))
                       for _ in range(n)]
        return s, [_msg(READ, ino, _read_in(fh, rnd.randrange(FILE_PAGES) * 4096, 4096))
                   for _ in range(n)]
    if kind in ("append4k", "append512"):
        bs = 4096 if kind == "append4k" else 512
        attr, fh = fs.create(1, b"f", 0o100644, os.O_WRONLY, CTX)
        data = b"x" * bs
        return s, [_msg(WRITE, attr.ino, _write_in(fh, i * bs, data)) for i in range(n)]
    names = [b"n%07d" % i for i in range(n)]
    if kind == "create":
        body = struct.pack("<IIII", os.O_WRONLY | os.O_CREAT, 0o100644, 0o022, 0)
        return s, [_msg(CREATE, 1, body + nm + b"\0") for nm in names]
    if kind == "lookup_miss":
        return s, [_msg(LOOKUP, 1, nm + b"\0") for nm in names]
    if kind == "mkdir":
        return s, [_msg(MKDIR, 1, struct.pack("<II", 0o755, 0o022) + nm + b"\0") for nm in names]
    if kind == "rmdir":  # empty directories the kernel still holds (nlookup 1)
        for nm in names:
            fs.mkdir(1, nm, 0o755, CTX)
        return s, [_msg(RMDIR, 1, nm + b"\0") for nm in names]
    made = [fs.create(1, nm, 0o100644, os.O_WRONLY, CTX) for nm in names]
    if kind == "getattr":
        return s, [_msg(GETATTR, 1, struct.pack("<IIQ", 0, 0, 0)) for _ in range(n)]
    if kind == "lookup_hit":
        return s, [_msg(LOOKUP, 1, nm + b"\0") for nm in names]
    if kind == "release":
        return s, [_msg(RELEASE, a.ino, struct.pack("<QIIQ", fh, 0, 0, 0)) for a, fh in made]
    for a, fh in made:
        fs.release(a.ino, fh)
    if kind == "open":  # O_RDONLY of a closed regular file
        return s, [_msg(OPEN, a.ino, struct.pack("<II", os.O_RDONLY, 0)) for a, _ in made]
    if kind == "unlink":
        return s, [_msg(UNLINK, 1, nm + b"\0") for nm in names]
    if kind == "forget":  # unlinked, closed: the FORGET evicts (deferred, as in the daemon)
        for nm in names:
            fs.unlink(1, nm)
        return s, [_msg(FORGET, a.ino, struct.pack("<Q", 1)) for a, _ in made]
    raise SystemExit(f"unknown kind {kind}")


def run(kind: str, n: int, mountflags: bool, profile: bool = False) -> float:
    s, msgs = build(kind, n, mountflags)
    handle: Callable[[memoryview], None] = s._handle
    if ENGINE:  # serve_raw + the reply's writev + the request's count, no Session
        hp, fd, requests = s._hotpath, s.fd, s.stats.requests

        def handle(m: memoryview) -> None:
            if hp.handle(m, fd, True, 0, requests) is None:
                raise SystemExit(f"the engine declined a {kind} request")
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    # CPU time of this thread: other engineers' load preempts the loop, which
    # wall time would count (the populate-ahead thread's work is not included)
    clock = time.perf_counter if WALL else time.thread_time
    if REAP_EVERY:  # the daemon reaps in the gaps between requests, not in them
        reap = s.fs.reap
        dt = 0.0
        for i in range(0, len(msgs), REAP_EVERY):
            t = clock()
            for m in msgs[i:i + REAP_EVERY]:
                handle(m)
            dt += clock() - t
            reap()
    else:
        t = clock()
        for m in msgs:
            handle(m)
        dt = clock() - t
    if prof:
        prof.disable()
        top = int(os.environ.get("PROBE_TOP", "20"))  # PROBE_SORT=cumulative for callers
        pstats.Stats(prof).sort_stats(os.environ.get("PROBE_SORT", "tottime")).print_stats(top)
    return dt / n * 1e6


def reply_ab(n: int, rounds: int) -> int:
    """Engine.handle (C writes header + arena iovecs to the fd) against
    os.writev(fd, [Engine.answer(msg)]) (the reply copied into bytes, written by
    Python), for READs of 4 KiB, 128 KiB and 1 MiB and a GETATTR."""
    from mount.server import hotpath

    fs, _ = _session(False)
    eng = hotpath.engine(fs, 86400.0)
    if eng is None:
        print("the C hot path is not available")
        return 1
    a, fh = fs.create(1, b"r", 0o100644, os.O_RDWR, CTX)
    fs.write(a.ino, fh, 0, memoryview(b"x" * (300 << 12)))
    out = os.open(os.devnull, os.O_WRONLY)
    clock = time.thread_time_ns
    cases = [("read4k", _msg(READ, a.ino, _read_in(fh, 8192, 4096)), n),
             ("read128k", _msg(READ, a.ino, _read_in(fh, 0, 128 << 10)), max(1, n // 5)),
             ("read1m", _msg(READ, a.ino, _read_in(fh, 0, 1 << 20)), max(1, n // 30)),
             ("getattr", _msg(GETATTR, a.ino, struct.pack("<IIQ", 0, 0, 0)), n)]
    requests: dict = {}
    for name, m, k in cases:
        c_best = py_best = float("inf")
        for _ in range(rounds):
            t0 = clock()
            for _ in range(k):
                eng.handle(m, out, True, 0, requests)
            c_best = min(c_best, (clock() - t0) / k / 1000)
            t0 = clock()
            for _ in range(k):
                os.writev(out, [eng.answer(m, True)])
            py_best = min(py_best, (clock() - t0) / k / 1000)
        print(f"{name:9s} C writes {c_best:6.2f} us   bytes + os.writev {py_best:6.2f} us")
    print("load", open("/proc/loadavg").read().split()[0])
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default=",".join(KINDS))
    p.add_argument("--profile", metavar="KIND")
    p.add_argument("--mountflags", action="store_true")
    p.add_argument("--wall", action="store_true",
                   help="wall time instead of CPU time: includes waiting for the GIL "
                        "(the populate-ahead thread) and preemption")
    p.add_argument("--python", action="store_true",
                   help="without the C hot path (SHMFS_HOTPATH=0): the Python path's cost")
    p.add_argument("--engine", action="store_true",
                   help="time the C engine's Engine.handle alone (what the C loop runs per "
                        "request, less its read(2)), not Session._handle")
    p.add_argument("--reap-every", type=int, default=0, metavar="N",
                   help="reap the evictions FORGETs left for later every N requests, "
                        "outside the timing, as the daemon does between requests")
    p.add_argument("--reply-ab", action="store_true",
                   help="the C hot path writing its reply itself against returning the "
                        "bytes for os.writev (docs/performance.md change 23)")
    a = p.parse_args()
    if a.python:
        os.environ["SHMFS_HOTPATH"] = "0"
    if a.reply_ab:
        return reply_ab(a.n, a.rounds)
    global WALL, REAP_EVERY, ENGINE
    WALL = a.wall
    ENGINE = a.engine
    REAP_EVERY = a.reap_every
    threshold0 = getattr(session_mod, "GC_THRESHOLD0", None)
    if threshold0:  # what Session.serve does in the daemon
        gc.freeze()
        gc.set_threshold(threshold0, *gc.get_threshold()[1:])
    if a.profile:
        run(a.profile, a.n, a.mountflags, profile=True)
        return 0
    for kind in a.only.split(","):
        best = min(run(kind, a.n, a.mountflags) for _ in range(a.rounds))
        print(f"{kind:12s} {best:6.2f} us")
    print("tree", TREE, "load", open("/proc/loadavg").read().split()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
