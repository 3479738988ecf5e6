"""Window IOCTLs beside streaming writers: answered, and by the C window engine.

Clone readers stay up through mixed traffic (SHMFS_CLONES_STAY=1, the default;
docs/decisions.md 36), windowed mounts included: a clone reader hands the window
requests it reads to the C engine too, whose writer sends the reply on the clone's
fd ("Clone readers hand window requests to the engine"). Here two processes stream
1 MiB WRITEs (mixed traffic: clone readers may read requests) while this process remaps
window pages one at a time and checks each through a mapping: every remap answered
(a reply on the wrong fd would hang it: run under a timeout), the engine's remaps
counted whichever reader read them, every view right, and the streamed records
exact. It hung before decision 38 (a clone's deferred reply swallowed by a chunk)."""

from __future__ import annotations

import mmap

from mount.winapi.client import Window, mount_stats
from tests.support.mounts import shmfs_mount
from tests.support.streams import check_records, running, start_writers
from tests.windows.helpers import P, make_object, page_of


def test_window_remaps_beside_streams_stay_in_the_engine() -> None:
    rounds = 32
    with shmfs_mount("size=256m") as mnt:
        obj = mnt / "obj"
        make_object(obj, 64)
        with Window.create(mnt / "win", obj, 8) as w:
            for i in range(3):  # engages the engine (a window's first remap is Python's)
                w.remap(i, 1, 1 + i, populate=True)
            engine = mount_stats(mnt)["session"]["winfast"]
            assert engine["remaps"] >= 1, engine
            before = engine["remaps"]
            big = mnt / "big"
            done = 0
            with running(start_writers(big, rounds)) as ps, open(mnt / "win", "r+b") as f:
                m = mmap.mmap(f.fileno(), 8 * P, mmap.MAP_SHARED)
                try:
                    while any(p.poll() is None for p in ps) or done < 200:
                        pg = 2 + done % 62
                        w.remap(done % 8, 1, pg, populate=True)
                        off = (done % 8) * P
                        assert m[off:off + 16] == page_of(pg)[:16], (done, pg)
                        done += 1
                finally:
                    m.close()
            s = mount_stats(mnt)["session"]
            assert 0 < s["winfast"]["remaps"] - before <= done, (done, s["winfast"])
            # whether the clone readers read any of these requests depends on timing
            # (the mixed-traffic window); test_winclones.py makes them, deterministically
        check_records(big.read_bytes(), rounds)
