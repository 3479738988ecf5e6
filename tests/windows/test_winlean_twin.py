"""The window engine's slot reads and cached array exports (winlean), in process.

With ``SHMFS_WINLEAN`` on (the default) the C engine reads and bumps ``__slots__``
attributes at their cached offsets and keeps the buffer exports of the numpy arrays it
reads (page-table chunks, page-cache chunks) across calls, keyed on the array object
and holding it.  These tests replace those arrays between two REMAPs (the object's
page-cache chunk freed by a punch and made anew by a write; the window destroyed and
another made at the same address, so new page-table chunks at the same virtual
addresses) and check that the engine follows: every message and every piece of state
(the counters the STATS ioctl and ``shmfs stat`` report included) as the Python path
makes them, with the cache off as well, and that the cache was used and missed.
"""

from __future__ import annotations

import os

import pytest

from fsimpl import Ctx
from mount.server import winfast
from tests.windows.test_winfast_twin import P4, POPULATE, WIN_PAGES, Twin, _apply

pytestmark = pytest.mark.skipif(not winfast.available(),
                                reason="the C extension is not built (scripts/bootstrap.sh)")

ROOT = Ctx(0, 0, 1)
STEP = [2, 3, 511, 512, 513, 5, 599]  # both page-table chunks of the window


def _remaps(a: Twin, b: Twin, base: int) -> int:
    """One populating one-page REMAP per STEP page on both twins: the same bytes and
    state after each; how many the engine answered."""
    native = 0
    for i, page in enumerate(STEP):
        op = ("remap", page, (base + i) % 41, POPULATE, P4, 0, 0, False)
        ra, rb = _apply(a, op), _apply(b, op)
        native += ra[0]
        assert ra[1] == rb[1], op
        assert a.state() == b.state(), op
    return native


def _first(a: Twin, b: Twin) -> None:
    """The first remap (Python: the VMA becomes nonlinear), then each STEP page once
    (the first into a page-table chunk not made yet is Python's too)."""
    for tw in (a, b):
        assert tw.ioctl(0, P4, 7, 0, POPULATE)[0] is False
    for page in STEP:
        op = ("remap", page, 40, POPULATE, P4, 0, 0, False)
        assert _apply(a, op)[1] == _apply(b, op)[1]
    assert a.state() == b.state()


def _punch_and_rewrite(tw: Twin) -> None:
    """Every object page punched (the page cache's chunk freed), then written again."""
    tw.fs.fallocate(tw.obj, tw.ofh, 3, 0, 41 * P4)
    tw.fs.drain_events()
    tw.fs.write(tw.obj, tw.ofh, 0, memoryview(bytes(range(256)) * 16 * 41))
    tw.fs.drain_events()


def _recreate(tw: Twin) -> None:
    """The window destroyed (its inode reclaimed) and another file made a window over
    the same object."""
    tw.t.release(tw.win)
    w, tw.wfh = tw.fs.create(1, b"win2", 0o600, os.O_RDWR, ROOT)
    tw.win = w.ino
    tw.rofh = tw.fs.open(tw.win, os.O_RDONLY)
    tw.t.attach(tw.win, tw.wfh, ROOT, tw.t.grant(tw.obj, tw.ofh, ROOT, 3), WIN_PAGES * P4, 0, 3)
    tw.fs.drain_events()


@pytest.mark.parametrize("lean", ["1", "0"])
def test_replaced_arrays_are_followed(monkeypatch: pytest.MonkeyPatch, lean: str) -> None:
    """REMAPs after the page cache's chunk and the window's page-table chunks were
    replaced: the engine's (all of them), byte for byte and counter for counter."""
    monkeypatch.setenv("SHMFS_WINLEAN", lean)
    a, b = Twin(native=True), Twin(native=False)
    try:
        _first(a, b)
        assert _remaps(a, b, 0) == len(STEP)
        s0 = a.engine.statistics()["lean"]
        assert s0["enabled"] == (lean == "1")

        # the page cache's chunk replaced between two REMAPs of the same pages
        pc = a.t.wins[a.win].obj.mapping.pages
        old = pc._frames[0]
        for tw in (a, b):
            _punch_and_rewrite(tw)
        assert pc._frames[0] is not old  # the premise: a new array
        assert _remaps(a, b, 3) == len(STEP)
        # ... many times over: new arrays land in the cache's occupied entries
        for i in range(24):
            for tw in (a, b):
                _punch_and_rewrite(tw)
            for page in (2, 513):
                op = ("remap", page, (i * 5 + page) % 41, POPULATE, P4, 0, 0, False)
                ra, rb = _apply(a, op), _apply(b, op)
                assert ra[0] and ra[1] == rb[1], op
            assert a.state() == b.state()

        # the window destroyed, another made at the same address (its page-table
        # chunks new arrays at the same virtual pages)
        ws = a.t.wins[a.win]
        addr, chunks = ws.window.address, dict(ws.window.mm.vmas[0].pt._chunks)
        for tw in (a, b):
            _recreate(tw)
        _first(a, b)
        nws = a.t.wins[a.win]
        assert nws.window.address == addr and nws is not ws
        assert all(c is not chunks.get(k) for k, c in nws.window.mm.vmas[0].pt._chunks.items())
        assert _remaps(a, b, 9) == len(STEP)

        s1 = a.engine.statistics()["lean"]
        if lean == "1":  # the cache reused exports, and made new ones for new arrays
            assert s1["reuses"] > s0["reuses"] and s1["exports"] > s0["exports"]
        else:
            assert (s1["reuses"], s1["exports"]) == (s0["reuses"], s0["exports"])
        # the counters the STATS ioctl / `shmfs stat` read, equal to the Python path's
        wa, wb = a.t.wins[a.win], b.t.wins[b.win]
        assert wa.window.mm.statistics() == wb.window.mm.statistics()
        assert wa.obj.mapping.statistics() == wb.obj.mapping.statistics()
        assert dict(a.t.stats) == dict(b.t.stats) and a.t.stats["destroyed"] == 1
    finally:
        a.close()
        b.close()
