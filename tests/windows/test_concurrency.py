"""One process remaps, punches and writes while another reads through an mmap.

The writer changes what window pages show (REMAP, MADV_REMOVE, fallocate punch of
the object, write(2) to the object, pwrite through the window) and publishes the
expected state of every page in shared memory under a sequence counter (odd while
a change is in flight, even once its syscall has returned).  The reader, holding
a MAP_SHARED mapping of the window made before the first change, reads random
pages; whenever the counter did not move across the read, the page must be
exactly what the writer's last completed change says.  So nothing stale may ever
be read after the syscall that changed it returned (for write(2): after the
fsync(2) that follows it, docs/windows.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mount.winapi.client import Window
from tests.windows.helpers import ROOT, make_object

pytestmark = pytest.mark.mount

WPAGES, NPAGES, SECONDS = 16, 48, 4.0

COMMON = textwrap.dedent("""
    import json, mmap, os, random, sys, time
    P = 4096
    W, N = int(sys.argv[3]), int(sys.argv[4])
    sfd = os.open(sys.argv[2], os.O_RDWR)
    smap = mmap.mmap(sfd, 8 * (3 + W + N))
    S = memoryview(smap).cast("q")   # [seq, stop, ops, shown[W], gen[N]]
    SHOWN, GEN = 3, 3 + W

    def page_of(tag, gen):
        return (tag.to_bytes(8, "little") + gen.to_bytes(8, "little")) * (P // 16)

    def expected(i):
        p = S[SHOWN + i]
        g = S[GEN + p]
        return page_of(p, g) if g else bytes(P)
""")

WRITER = COMMON + textwrap.dedent("""
    sys.path.insert(0, sys.argv[7])
    from mount.syscalls import fallocate
    from mount.winapi.client import Window, MADV_REMOVE
    rng = random.Random(int(sys.argv[6]))
    w = Window.open(sys.argv[1])
    ofd = os.open(sys.argv[8], os.O_RDWR)
    end = time.monotonic() + float(sys.argv[5])
    ops = {"remap": 0, "madv_remove": 0, "punch": 0, "obj_write": 0, "win_write": 0}
    bad = []
    while time.monotonic() < end:
        op = rng.choice(list(ops))
        i, p = rng.randrange(W), rng.randrange(N)
        S[0] += 1                      # odd: a change is in flight
        if op == "remap":
            # never two window pages on one pgoff: the invalidation of an alias in the
            # written window follows the WRITE's reply (test_table.py covers aliases)
            shown = {S[SHOWN + k] for k in range(W) if k != i}
            p = rng.choice([q for q in range(N) if q not in shown])
            w.remap(i, 1, p)
            S[SHOWN + i] = p
        elif op == "madv_remove":
            w.madvise(i, 1, MADV_REMOVE)
            S[GEN + S[SHOWN + i]] = 0
        elif op == "punch":
            fallocate(ofd, 3, p * P, P)  # PUNCH_HOLE | KEEP_SIZE
            S[GEN + p] = 0
        elif op == "obj_write":
            g = S[GEN + p] + 1
            os.pwrite(ofd, page_of(p, g), p * P)
            os.fsync(ofd)              # the point where other inodes are coherent
            S[GEN + p] = g
        else:
            p = S[SHOWN + i]
            g = S[GEN + p] + 1
            assert w.pwrite(i * P, page_of(p, g)) == P
            w.sync()
            S[GEN + p] = g
        S[0] += 1                      # even: the syscall returned
        ops[op] += 1
        j = rng.randrange(W)
        got = w.pread(j * P, P)
        if got != expected(j):
            bad.append([op, i, p, j, S[SHOWN + j], got[:16].hex(), expected(j)[:16].hex()])
    S[1] = 1
    print(json.dumps({"ops": ops, "bad": bad[:10], "nbad": len(bad)}))
""")

READER = COMMON + textwrap.dedent("""
    fd = os.open(sys.argv[1], os.O_RDONLY)
    m = mmap.mmap(fd, W * P, mmap.MAP_SHARED, mmap.PROT_READ)
    rng = random.Random(int(sys.argv[6]) + 1)
    m[:]                               # map every page before the first change
    print("ready", flush=True)
    verified = skipped = 0
    bad = []
    while not S[1]:
        s1 = S[0]
        if s1 & 1:
            skipped += 1
            continue
        i = rng.randrange(W)
        want = expected(i)
        got = m[i * P:(i + 1) * P]
        if S[0] != s1:
            skipped += 1
            continue
        verified += 1
        if got != want:
            bad.append([i, S[SHOWN + i], got[:16].hex(), want[:16].hex()])
    print(json.dumps({"verified": verified, "skipped": skipped, "bad": bad[:10],
                      "nbad": len(bad)}))
""")


def test_remap_and_punch_while_another_process_reads(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, NPAGES)
    Window.create(wdir / "win", obj, WPAGES).close()
    state = Path("/dev/shm") / f"shmfs-wincc-{os.getpid()}"
    state.write_bytes(bytes(8 * (3 + WPAGES + NPAGES)))
    try:
        s = memoryview(bytearray(state.read_bytes())).cast("q")
        for i in range(WPAGES):
            s[3 + i] = i  # linear window: page i shows pgoff i
        for p in range(NPAGES):
            s[3 + WPAGES + p] = 1  # make_object's generation
        state.write_bytes(s.cast("B").tobytes())
        common = [str(wdir / "win"), str(state), str(WPAGES), str(NPAGES), str(SECONDS), "7"]
        reader = subprocess.Popen([sys.executable, "-c", READER, *common],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert reader.stdout is not None
            assert reader.stdout.readline().strip() == "ready"
            writer = subprocess.run(
                [sys.executable, "-c", WRITER, *common, str(ROOT), str(obj)],
                capture_output=True, text=True, timeout=120, check=False)
            assert writer.returncode == 0, writer.stderr
            out_r, _ = reader.communicate(timeout=60)
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait()
        w = json.loads(writer.stdout)
        r = json.loads(out_r)
    finally:
        state.unlink()
    assert w["nbad"] == 0, w
    assert r["nbad"] == 0, r
    assert all(n > 20 for n in w["ops"].values()), w
    assert r["verified"] > 500, r
