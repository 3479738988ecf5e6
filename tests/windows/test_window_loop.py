"""Window IOCTLs and window READ/WRITEs answered by the first reader's loop in C
(native/hotloop.c hands them to the window engine's C entry points, native/winfast_api.h)
on a live mount: the loop takes them (its ``cloop_window`` counter); an IOCTL the engine
declines between them (a foreign command) is answered ENOTTY once -- by the loop itself,
``cloop_enotty`` -- and counted once in the engine's declines and in ops' errors; every
page shows what the page table says -- the same results and the same counts as with
``SHMFS_CLOOP_IOCTL=0`` (every window request back to Python, the A/B switch).
Malformed and declined IOCTLs over a socket against the same oracle:
tests/server/test_window_loop.py."""

from __future__ import annotations

import errno
import fcntl
import random
from pathlib import Path

import pytest

from mount.server import hotpath, winfast
from mount.winapi.client import Window, mount_stats
from tests.support.mounts import shmfs_mount
from tests.windows.helpers import MapChild, P, make_object

pytestmark = [pytest.mark.mount,
              pytest.mark.skipif(not (winfast.available() and hotpath.available()),
                                 reason="the C extensions are not built (scripts/bootstrap.sh)")]

N = 300
NPAGES, NOBJ = 16, 64
TCGETS = 0x5401


def _delta(a: dict, b: dict) -> dict:
    """The counters this test checks, after minus before."""
    ra, rb = a["requests"], b["requests"]
    return {
        "ioctls": rb["IOCTL"]["count"] - ra.get("IOCTL", {"count": 0})["count"],
        "remaps": b["winfast"]["remaps"] - a["winfast"]["remaps"],
        "declined": b["winfast"]["declined"] - a["winfast"]["declined"],
        "reads": b["winfast"]["read"]["reads"] - a["winfast"]["read"]["reads"],
        "wstores": b["winfast"]["wstores"] - a["winfast"]["wstores"],
        "cloop_window": b["hotpath"]["cloop_window"] - a["hotpath"]["cloop_window"],
        "cloop_enotty": b["hotpath"]["cloop_enotty"] - a["hotpath"]["cloop_enotty"],
    }


def _stream(mnt: Path) -> tuple[dict, list[bytes], bytes]:
    """N rounds of: a populating REMAP of a window page onto another object page (the
    engine's), a TCGETS on the window (declined: Python's ENOTTY); every 4th round
    also a plain REMAP, a pread of that page (a window READ) and a 100-byte pwrite
    into another (a window WRITE through the page table). Returns the counter deltas,
    what a child mapping and pread saw of each page at the end, and the object."""
    obj = mnt / "obj"
    make_object(obj, NOBJ)
    model = bytearray(obj.read_bytes())  # the object as the writes leave it
    rng = random.Random(11)
    with Window.create(mnt / "win", obj, NPAGES) as w, \
            MapChild(mnt / "win", NPAGES * P) as child:
        w.remap(0, 1, 40, populate=True)  # the first remap makes it nonlinear: Python's
        shown = [q.pgoff for q in w.query(0, NPAGES)]
        stats = mount_stats(mnt)
        before, enotty = stats["session"], stats["ops"]["errors"].get("ENOTTY", 0)
        for k in range(N):
            i = rng.randrange(NPAGES)
            pg = rng.choice([p for p in range(NOBJ) if p != shown[i]])
            w.remap(i, 1, pg, populate=True)
            shown[i] = pg
            assert child.read(i * P, 16) == model[pg * P:pg * P + 16]
            with pytest.raises(OSError) as e:
                fcntl.ioctl(w.fd, TCGETS, bytearray(60))
            assert e.value.errno == errno.ENOTTY
            if k % 4 == 0:
                j = (i + 1) % NPAGES
                pg = rng.choice([p for p in range(NOBJ) if p != shown[j]])
                w.remap(j, 1, pg)
                shown[j] = pg
                assert w.pread(j * P, P) == model[pg * P:(pg + 1) * P]
                m = (i + 2) % NPAGES
                data = bytes([k & 0xFF]) * 100
                assert w.pwrite(m * P + 512, data) == 100
                model[shown[m] * P + 512:shown[m] * P + 612] = data
        stats = mount_stats(mnt)
        after, enotty = stats["session"], stats["ops"]["errors"]["ENOTTY"] - enotty
        assert [q.pgoff for q in w.query(0, NPAGES)] == shown
        w.sync()
        seen = [child.read(i * P, P) for i in range(NPAGES)]
        assert seen == [w.pread(i * P, P) for i in range(NPAGES)]
    assert obj.read_bytes() == model
    return {**_delta(before, after), "enotty": enotty}, seen, bytes(model)


@pytest.mark.parametrize("mode", ["1", "0"])
def test_window_requests_in_the_c_loop_and_declined_ioctls_between(
        mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHMFS_CLOOP_IOCTL", mode)  # the daemon inherits it
    with shmfs_mount("size=64m") as mnt:
        d, seen, obj = _stream(mnt)
    rounds4 = (N + 3) // 4
    # each IOCTL answered and counted once: N + N/4 REMAPs, N TCGETS, the first
    # mount_stats's STATS (the second counts itself after its document is made)
    assert d["ioctls"] == 2 * N + rounds4 + 1
    # each IOCTL offered to the engine at most once (Python does not offer it while
    # its own notifications are queued): answered there (remaps) or declined once --
    # each TCGETS, and the second STATS (declined before its document is made) unless
    # it finds Python notifications still queued (an eviction's, reaped in a gap: then
    # Python does not offer it at all) -- and not offered again by Python after the C
    # loop's offer
    assert d["remaps"] + d["declined"] <= d["ioctls"]
    assert d["declined"] >= N
    assert d["remaps"] >= N  # the populating remaps onto other pages
    assert d["reads"] >= rounds4 // 2 and d["wstores"] >= rounds4 // 2
    assert d["enotty"] == N  # each TCGETS counted once in ops' errors, C or Python
    if mode == "1":
        # the loop in C answered most window requests itself, and most TCGETS (the
        # engine declined them, the loop answered ENOTTY as Operations._ioctl does)
        assert d["cloop_window"] >= N // 2
        assert d["cloop_enotty"] >= N // 2
    else:
        assert d["cloop_window"] == 0 and d["cloop_enotty"] == 0
    # every window page as the page table says (the tag in its first bytes)
    for i, page in enumerate(seen):
        pg = int.from_bytes(page[:8], "little")
        assert page == obj[pg * P:(pg + 1) * P], i
