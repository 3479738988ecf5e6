"""One-page punches of a window's object racing window faults in another process, on a
live mount (the punch's C window filter and C zap under concurrency).

A reader process maps two windows that show scattered object pages and reads random
window pages through its mappings as fast as it can (read faults: the daemon's READ
path), while this process punches object pages one at a time with FALLOCATE(PUNCH_HOLE)
-- pages the windows show, so every punch zaps PTEs the reader is faulting in again.
Every 16 bytes the reader sees must be the page's original contents or zeros (never
another page's bytes, never a torn page); once both are done, every view reads exactly
the model (zeros where punched), and st_blocks counts exactly the pages left.
"""

from __future__ import annotations

import json
import mmap
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from mount.winapi.client import Window
from tests.live.helpers import fallocate
from tests.windows.helpers import P, make_object, page_of

pytestmark = pytest.mark.mount

PUNCH = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
OBJ_PAGES, WIN_PAGES = 512, 1536

READER = r"""
import json, mmap, os, random, sys
paths, shown, reads = sys.argv[1:3], json.loads(sys.argv[3]), int(sys.argv[4])
P = 4096
maps = []
for p in paths:
    fd = os.open(p, os.O_RDONLY)
    maps.append(mmap.mmap(fd, len(shown[0]) * P, mmap.MAP_SHARED, mmap.PROT_READ))
    os.close(fd)
sys.stdout.write("ready\n"); sys.stdout.flush()
r = random.Random(5)
bad = []
for n in range(reads):
    k = r.randrange(len(maps)); i = r.randrange(len(shown[k])); pg = shown[k][i]
    page = maps[k][i * P:(i + 1) * P]
    want = (pg.to_bytes(8, "little") + (1).to_bytes(8, "little")) * (P // 16)
    if page != want and page != bytes(P):
        bad.append((k, i, pg, page[:16].hex()))
print(json.dumps({"reads": reads, "bad": bad[:5], "nbad": len(bad)}))
"""


def test_punches_racing_window_read_faults(wdir: Path) -> None:
    obj = wdir / "obj"
    make_object(obj, OBJ_PAGES)
    r = random.Random(3)
    shown, wins = [], []
    for k in range(2):
        w = Window.create(wdir / f"w{k}", obj, WIN_PAGES)
        show = [r.randrange(OBJ_PAGES) for _ in range(WIN_PAGES)]
        w.remapv([(i, 1, pg) for i, pg in enumerate(show)])
        shown.append(show)
        wins.append(w)
    fd = os.open(obj, os.O_RDWR)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(wdir / "w0"), str(wdir / "w1"), json.dumps(shown),
         "20000"], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline() == "ready\n"
        punched: set[int] = set()
        order = list(range(OBJ_PAGES))
        r.shuffle(order)
        for pg in order[: OBJ_PAGES // 2]:  # half the object, a page at a time
            fallocate(fd, PUNCH, pg * P, P)
            punched.add(pg)
        out, _ = reader.communicate(timeout=300)
        assert reader.returncode == 0
        got = json.loads(out)
        assert got["nbad"] == 0, got
        # afterwards every view reads the model exactly, and st_blocks counts what is left
        for k, w in enumerate(wins):
            with mmap.mmap(w.fd, WIN_PAGES * P, mmap.MAP_SHARED, mmap.PROT_READ) as m:
                for i in range(0, WIN_PAGES, 7):
                    pg = shown[k][i]
                    want = bytes(P) if pg in punched else page_of(pg)
                    assert m[i * P : (i + 1) * P] == want, (k, i, pg)
        for pg in range(0, OBJ_PAGES, 5):
            want = bytes(P) if pg in punched else page_of(pg)
            assert os.pread(fd, P, pg * P) == want, pg
        # the reads above faulted punched pages back in as zero pages (a read fault of a
        # hole allocates it, as shmem_fault does); punch them again: the count is exact
        for pg in punched:
            fallocate(fd, PUNCH, pg * P, P)
        assert os.fstat(fd).st_blocks * 512 == (OBJ_PAGES - len(punched)) * P
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        os.close(fd)
        for w in wins:
            w.close()
