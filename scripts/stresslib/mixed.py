"""The mixed stress of issue 15: does any worker starve while large writes stream?

    scripts/stress.py --mixed [--seconds 120] [--tmpfs | --dir DIR] [--json FILE]

Seven worker processes, each one role in a loop, each loop iteration a
"round" (counted, its longest duration kept):

- ``stream0``, ``stream1``: rewrite a 32 MiB file in 1 MiB write(2)s (a round:
  one whole file), and check its size;
- ``mmap``: map a 1 MiB file shared, store a pattern into 16 pages, msync,
  read it back through read(2);
- ``dentry``: create, stat and unlink 20 files in a directory of its own;
- ``rename``: rename a file back and forth across two directories 20 times;
- ``fallocate``: fallocate 1 MiB, punch a hole, check the size and the hole;
- ``xattr``: set, get, list and remove a user xattr 20 times.

Every check that fails is an error (the summary counts them). The run ends
``seconds`` after it began once every worker finished ``min_rounds`` rounds;
a worker still short of that at ``deadline`` seconds is *starved* -- the
failure this mode exists to catch (issue 15: the xattr worker once finished
zero rounds in 120 s). Timing is reported, never judged: what fails is no
progress at all within a generous deadline.
"""

from __future__ import annotations

import errno
import mmap
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STREAM_MIB = 32
ROLES = ("stream0", "stream1", "mmap", "dentry", "rename", "fallocate", "xattr")


def _stream(d: Path, state: dict[str, Any]) -> None:
    buf = state.setdefault("buf", b"s" * (1 << 20))
    path = d / "stream"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        for _ in range(STREAM_MIB):
            if os.write(fd, buf) != len(buf):
                raise AssertionError("short write")
    finally:
        os.close(fd)
    if os.stat(path).st_size != STREAM_MIB << 20:
        raise AssertionError(f"stream file is {os.stat(path).st_size} bytes")


def _mmap(d: Path, state: dict[str, Any]) -> None:
    n = state["n"] = state.get("n", 0) + 1
    path = d / "mapped"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, 1 << 20)
        with mmap.mmap(fd, 1 << 20) as m:
            for p in range(0, 256, 16):
                m[p << 12:(p << 12) + 8] = n.to_bytes(8, "little")
            m.flush()
        for p in range(0, 256, 16):
            if os.pread(fd, 8, p << 12) != n.to_bytes(8, "little"):
                raise AssertionError(f"page {p} lost round {n}'s store")
    finally:
        os.close(fd)


def _dentry(d: Path, state: dict[str, Any]) -> None:
    for i in range(20):
        p = d / f"e{i}"
        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        os.stat(p)
    for i in range(20):
        os.unlink(d / f"e{i}")


def _rename(d: Path, state: dict[str, Any]) -> None:
    a, b = d / "a", d / "b"
    if not state:
        a.mkdir()
        b.mkdir()
        (a / "f").write_bytes(b"r")
        state["at"] = a
    for _ in range(20):
        src = state["at"]
        dst = b if src == a else a
        os.rename(src / "f", dst / "f")
        state["at"] = dst
    if (state["at"] / "f").read_bytes() != b"r":
        raise AssertionError("renamed file changed")


def _fallocate(d: Path, state: dict[str, Any]) -> None:
    fd = os.open(d / "falloc", os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(fd, 0, 1 << 20)
        os.pwrite(fd, b"x" * 8192, 0)
        punch = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        _fallocate_raw(fd, punch, 0, 4096)
        if os.fstat(fd).st_size != 1 << 20 or os.pread(fd, 2, 4095) != b"\0x":
            raise AssertionError("punched range not a hole, or size changed")
    finally:
        os.close(fd)


def _fallocate_raw(fd: int, mode: int, off: int, length: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(length)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _xattr(d: Path, state: dict[str, Any]) -> None:
    p = d / "x"
    if not state:
        p.write_bytes(b"")
        state["ready"] = True
    for i in range(20):
        v = f"v{i}".encode()
        os.setxattr(p, "user.k", v)
        if os.getxattr(p, "user.k") != v or "user.k" not in os.listxattr(p):
            raise AssertionError("xattr not as set")
        os.removexattr(p, "user.k")
    try:
        os.getxattr(p, "user.k")
    except OSError as e:
        if e.errno != errno.ENODATA:
            raise
    else:
        raise AssertionError("removed xattr still there")


_ROUNDS: dict[str, Callable[[Path, dict[str, Any]], None]] = {
    "stream0": _stream, "stream1": _stream, "mmap": _mmap, "dentry": _dentry,
    "rename": _rename, "fallocate": _fallocate, "xattr": _xattr,
}


def _child(i: int, role: str, root: Path, stop: Any, rounds: Any, worst: Any,
           errors: Any) -> None:
    d = root / role
    d.mkdir(exist_ok=True)
    state: dict[str, Any] = {}
    fn = _ROUNDS[role]
    while not stop.is_set():
        t = time.perf_counter_ns()
        try:
            fn(d, state)
        except Exception as e:  # a failed check or errno: counted, reported, go on
            errors[i] += 1
            print(f"mixed: {role}: {e!r}", flush=True)
            if errors[i] > 10:
                return
            continue
        worst[i] = max(worst[i], time.perf_counter_ns() - t)
        rounds[i] += 1


def run_mixed(root: Path, seconds: float, *, min_rounds: int = 1, deadline: float = 0.0,
              roles: tuple[str, ...] = ROLES, out: Any = None) -> dict[str, Any]:
    """Run the roles on ``root``; return {"workers": {role: {...}}, "starved": [...], ...}.

    Ends at ``seconds`` once every worker has ``min_rounds`` rounds, else at
    ``deadline`` (default: max(120, 2 * seconds)); workers short of
    ``min_rounds`` then are listed as starved."""
    deadline = deadline or max(120.0, 2 * seconds)
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    n = len(roles)
    rounds, worst, errors = (ctx.Array("q", n, lock=False) for _ in range(3))
    procs = [ctx.Process(target=_child, args=(i, r, root, stop, rounds, worst, errors),
                         name=f"mixed-{r}") for i, r in enumerate(roles)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    try:
        next_print = t0 + 1
        while True:
            # progress, not timing: every worker alive must reach min_rounds
            done = all(rounds[i] >= min_rounds or not procs[i].is_alive() for i in range(n))
            now = time.monotonic()
            if (now - t0 >= seconds and done) or now - t0 >= deadline:
                break
            if out is not None and now >= next_print:
                next_print = now + 1
                print(f"  {now - t0:5.0f} s: " + " ".join(
                    f"{r}={rounds[i]}" for i, r in enumerate(roles)), file=out, flush=True)
            time.sleep(0.05)  # polling the shared counters; not synchronisation
    finally:
        stop.set()
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
                p.join()
    elapsed = time.monotonic() - t0
    workers = {r: {"rounds": rounds[i], "worst_round_ms": worst[i] / 1e6,
                   "errors": errors[i]} for i, r in enumerate(roles)}
    return {"seconds": elapsed, "workers": workers,
            "starved": [r for r in roles if workers[r]["rounds"] < min_rounds],
            "errors": sum(w["errors"] for w in workers.values()),
            "load": Path("/proc/loadavg").read_text().split()[0]}


def print_mixed(summary: dict[str, Any]) -> None:
    print(f"mixed: {summary['seconds']:.1f} s, load {summary['load']}")
    for role, w in summary["workers"].items():
        print(f"  {role:10} {w['rounds']:7} rounds, longest {w['worst_round_ms']:9.1f} ms, "
              f"{w['errors']} errors")
    if summary["starved"]:
        print(f"  STARVED: {', '.join(summary['starved'])}")
