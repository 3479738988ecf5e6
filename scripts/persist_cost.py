#!/usr/bin/env python3
"""What the journal of a restartable mount costs, in process (docs/restart-design.md).

    .venv/bin/python scripts/persist_cost.py [--files N]

Prints, with the load average:
* begin+commit of one journalled request (WRITE 4 KiB, LOOKUP) and of a pure one;
* a create/flush/release/unlink/forget/getattr cycle plain, journalled, and
  journalled with snapshots as the session takes them;
* replay speed (records/s) at recovery;
* a snapshot of N one-page files: size, the server's time in fork(), the
  child's total, and the time to load it at recovery.
No mount is involved: requests go to Operations as the kernel's bytes.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fsimpl import FsOptions, ShmFs
from mount.server.ops import Operations, OpsConfig
from mount.server.persist import Persist
from mount.server.persist.core import _handle
from mount.wire import protocol as P

Op = P.Opcode


def msg(op: int, body: bytes, nodeid: int, unique: int) -> bytes:
    return struct.pack("<IIQQIIIHH", 40 + len(body), op, unique, nodeid, 0, 0, 0, 0, 0) + body


INIT = P.INIT_IN_BASE.pack(7, 40, 1 << 20, 0xFFFFFFFF) + P.INIT_IN_FLAGS2.pack(0) + bytes(44)


def build(kw: dict[str, Any]) -> Operations:
    return Operations(ShmFs(FsOptions(size_bytes=8 << 30, nr_inodes=10**7), **kw), OpsConfig())


class Driver:
    """Requests through begin/handle/commit as the session sends them."""

    def __init__(self, persist: Persist | None, snapshots: bool) -> None:
        self.p = persist
        self.snapshots = snapshots
        if persist is None:
            self.ops = build({})
        else:
            self.ops, _ = persist.recover(build)
            if not snapshots:
                persist.snapshot_every = persist.snapshot_bytes = 1 << 62
        self.unique = 10
        self.run(Op.INIT, INIT, 0)

    def run(self, op: int, body: bytes, nodeid: int) -> bytes | None:
        self.unique += 2
        mv = memoryview(msg(op, body, nodeid, self.unique))
        p, journal = self.p, False
        if p is not None:
            if self.snapshots:
                p.maybe_snapshot(self.ops)
            journal = p.begin(mv)
        out = _handle(self.ops, mv)
        self.ops.fs.drain_events()
        if journal:
            p.commit(self.unique, out)  # type: ignore[union-attr]
        return b"".join(bytes(b) for b in out) if out else None

    def create(self, name: bytes) -> tuple[int, int]:
        r = self.run(Op.CREATE, P.CREATE_IN.pack(os.O_RDWR, 0o100644, 0, 0) + name + b"\0", 1)
        assert r is not None and len(r) > 16, "create failed"
        nodeid = struct.unpack_from("<Q", r, 16)[0]
        fh = struct.unpack_from("<Q", r, 16 + P.ENTRY_OUT_HEAD.size + P.ATTR.size)[0]
        return nodeid, fh

    def cycle(self, i: int) -> None:
        name = b"c%d" % i
        self.run(Op.LOOKUP, name + b"\0", 1)
        nodeid, fh = self.create(name)
        self.run(Op.FLUSH, P.FLUSH_IN.pack(fh, 0, 0, 0), nodeid)
        self.run(Op.RELEASE, P.RELEASE_IN.pack(fh, 0, 0, 0), nodeid)
        self.run(Op.UNLINK, name + b"\0", 1)
        self.run(Op.FORGET, P.FORGET_IN.pack(1), nodeid)
        self.run(Op.GETATTR, P.GETATTR_IN.pack(0, 0, 0), 1)

    def close(self) -> None:
        if self.p is not None:
            self.p.close()
            for fd in self.p.fds.values():
                os.close(fd)


def journal_per_request() -> None:
    d = Driver(Persist.create(), snapshots=False)
    p = d.p
    assert p is not None
    nodeid, fh = d.create(b"r")
    d.run(Op.WRITE, P.WRITE_IN.pack(fh, 0, 4096, 0, 0, 0, 0) + b"x" * 4096, nodeid)
    read = msg(Op.READ, P.READ_IN.pack(fh, 0, 4096, 0, 0, 0, 0), nodeid, 18)
    d.run(Op.READ, P.READ_IN.pack(fh, 0, 4096, 0, 0, 0, 0), nodeid)  # atime now after mtime
    w = msg(Op.WRITE, P.WRITE_IN.pack(1, 0, 4096, 0, 0, 0, 0) + b"x" * 4096, 2, 12)
    look = msg(Op.LOOKUP, b"somename\0", 1, 14)
    get = msg(Op.GETATTR, P.GETATTR_IN.pack(0, 0, 0), 2, 16)
    reply = [bytes(40)]
    for name, m in (("WRITE 4 KiB", w), ("LOOKUP", look), ("GETATTR (pure)", get),
                    ("READ 4 KiB that moves no atime (no record)", read)):
        mv = memoryview(m)
        best = float("inf")
        for _ in range(7):
            t = time.perf_counter()
            for _ in range(20_000):
                if p.begin(mv):
                    p.commit(12, reply)
            best = min(best, (time.perf_counter() - t) / 20_000)
        print(f"  begin+commit, {name}: {best * 1e6:.2f} us (best of 7 x 20,000)")
    d.close()


def cycles(n: int = 6000) -> None:
    res: dict[str, list[float]] = {}
    for _ in range(3):
        for mode in ("plain", "journal", "journal+snapshots"):
            d = Driver(None if mode == "plain" else Persist.create(), mode.endswith("snapshots"))
            for i in range(2000):  # a populated directory
                d.run(Op.MKNOD, P.MKNOD_IN.pack(0o100644, 0, 0, 0) + b"k%d\0" % i, 1)
            t = time.perf_counter()
            for i in range(n):
                d.cycle(i)
            res.setdefault(mode, []).append((time.perf_counter() - t) / n)
            d.close()
    for mode, v in res.items():
        print(f"  create/flush/release/unlink/forget/getattr cycle, {mode}: "
              f"best {min(v) * 1e6:.1f} us of 3")


def replay_speed(n: int = 7000) -> None:
    d = Driver(Persist.create(), snapshots=False)
    for i in range(n // 6):
        d.cycle(i)
    p = d.p
    assert p is not None
    fds = p.fds
    p.close()
    r = Persist.attach(fds)
    t = time.perf_counter()
    _ops, info = r.recover(build)
    dt = time.perf_counter() - t
    print(f"  recovery replaying {info.records} records: {dt * 1000:.0f} ms "
          f"({info.records / dt:.0f} records/s), diverged={info.diverged}")
    r.close()
    for fd in fds.values():
        os.close(fd)


def snapshot(files: int) -> None:
    d = Driver(Persist.create(), snapshots=False)
    p = d.p
    assert p is not None
    for i in range(files):
        nodeid, fh = d.create(b"f%d" % i)
        d.run(Op.WRITE, P.WRITE_IN.pack(fh, 0, 4096, 0, 0, 0, 0) + b"x" * 4096, nodeid)
        d.run(Op.RELEASE, P.RELEASE_IN.pack(fh, 0, 0, 0), nodeid)
    t = time.perf_counter()
    p.maybe_snapshot(d.ops, force=True)
    fork = time.perf_counter() - t
    ok = p._poll_child(block=True)
    child = time.perf_counter() - t
    size = os.pread(p.fds["snap"], 8, p.header.snap_off)
    fds = p.fds
    p.close()
    r = Persist.attach(fds)
    t = time.perf_counter()
    r.recover(build)
    load = time.perf_counter() - t
    print(f"  snapshot of {files} one-page files: {int.from_bytes(size, 'little') / 1e6:.1f} MB,"
          f" fork {fork * 1000:.1f} ms in the server, child done after {child * 1000:.0f} ms"
          f" (ok={ok}); recovery (load, no records) {load * 1000:.0f} ms")
    r.close()
    for fd in fds.values():
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=10_000, help="files in the snapshot test")
    args = ap.parse_args()
    print("load before", open("/proc/loadavg").read().split()[:3])
    journal_per_request()
    cycles()
    replay_speed()
    snapshot(args.files)
    print("load after", open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    main()
