"""Where a request's time goes in the first reader's loop, and what the loop in C
(native/hotloop.c, SHMFS_CLOOP) saves (docs/performance.md, issue 15, change 28).

    .venv/bin/python scripts/loop_probe.py [--requests N] [--rounds R]

1. The Python loop's pieces, timed in process (no kernel FUSE, no client): a
   failed os.readv on an empty non-blocking fd (the BlockingIOError), a poll(0)
   turn of the spin, time.perf_counter_ns, Session._handle of a hot GETATTR up
   to and around Engine.handle, against Engine.handle alone.
2. Ping-pong over a SOCK_SEQPACKET socketpair with the real Session in its own
   process (tests/reliability/session_driver): N READs of 4 KiB (hot) one after
   another, SHMFS_CLOOP=1 and =0 alternating; the round trip and the daemon's
   CPU per request (/proc/PID/stat utime+stime). The socket stands in for
   /dev/fuse: the difference between the two modes is the loop's own cost.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import struct
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability import wire as W


def _per_call_ns(fn: object, number: int = 200_000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e9  # type: ignore


def pieces() -> None:
    """The Python loop's per-request pieces, in ns."""
    from fsimpl import FsOptions, ShmFs
    from mount.server.ops import Operations, OpsConfig
    from mount.server.session import Session

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setblocking(False)
    fd = a.fileno()
    buf = bytearray(1 << 20)

    def failed_read() -> None:
        try:
            os.readv(fd, [buf])
        except BlockingIOError:
            pass

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    print("python loop pieces (ns per call):")
    print(f"  os.readv -> BlockingIOError      {_per_call_ns(failed_read, 100_000):8.0f}")
    print(f"  poll(0) (one spin turn)          {_per_call_ns(lambda: poller.poll(0)):8.0f}")
    print(f"  time.perf_counter_ns             {_per_call_ns(time.perf_counter_ns):8.0f}")
    null = os.open("/dev/null", os.O_RDWR)
    fs = ShmFs(FsOptions(size_bytes=64 << 20, nr_inodes=10_000))
    ops = Operations(fs, OpsConfig())
    s = Session(null, ops, Path("/nonexistent-shmfs-probe"))
    hp = s._hotpath
    if hp is None:
        print("  (no hot path engine: nothing more to time)")
        return
    msg = memoryview(W.request(W.GETATTR, 7, 1, bytes(16)))
    req = s.stats.requests
    print(f"  Engine.handle (GETATTR, reply)   "
          f"{_per_call_ns(lambda: hp.handle(msg, null, True, 0, req), 100_000):8.0f}")
    handle_ns = _per_call_ns(lambda: s._handle(msg), 100_000)
    print(f"  Session._handle (the same)       {handle_ns:8.0f}")
    os.close(null)
    a.close()
    b.close()


def _cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 10**9 // os.sysconf("SC_CLK_TCK")


def ping_pong(mode: str, n: int) -> tuple[float, float, dict]:
    """Round trip and daemon CPU per 4 KiB READ, in µs, with SHMFS_CLOOP=mode."""
    os.environ["SHMFS_CLOOP"] = mode
    with W.served_session() as ch:
        c = ch.call(W.CREATE, 10, 1, struct.pack("<IIII", os.O_RDWR, 0o100644, 0, 0) + b"f\0")
        ino = struct.unpack_from("<Q", c.payload)[0]
        fh = struct.unpack_from("<Q", c.payload, 128)[0]
        body = struct.pack("<QQIIQII", fh, 0, 1 << 16, 0, 0, os.O_RDWR, 0)
        assert ch.call(W.WRITE, 11, ino, body + b"d" * (1 << 16)).error == 0
        sock = ch.sock
        msgs = [W.request(W.READ, 100 + i, ino,
                          struct.pack("<QQIIQII", fh, (i % 16) << 12, 4096, 0, 0, os.O_RDWR, 0))
                for i in range(n)]
        cpu0 = _cpu_ns(ch.proc.pid)
        t0 = time.perf_counter_ns()
        for m in msgs:
            sock.send(m)
            sock.recv(8192)
        t1 = time.perf_counter_ns()
        cpu1 = _cpu_ns(ch.proc.pid)
    return (t1 - t0) / n / 1000, (cpu1 - cpu0) / n / 1000, ch.final_stats["session"]["hotpath"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with open("/proc/loadavg") as f:
        print("load", f.read().strip())
    pieces()
    print(f"ping-pong, {args.requests} READs of 4 KiB over a socketpair (µs per request):")
    for r in range(args.rounds):
        for mode in ("1", "0"):
            rt, cpu, hot = ping_pong(mode, args.requests)
            print(f"  round {r + 1} SHMFS_CLOOP={mode}: round trip {rt:6.2f}  daemon cpu "
                  f"{cpu:6.2f}  (loop served {hot['cloop_served']})")
    with open("/proc/loadavg") as f:
        print("load", f.read().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
