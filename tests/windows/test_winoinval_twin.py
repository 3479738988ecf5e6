"""A window store over an object page the kernel caches, in C (native/winwrite.c).

uml_physmem's guests read their physical-memory file directly (pread of the object)
and store through their windows; before this change every such store's WRITE (a
write-back of a page stored through a mapping, or a write(2)) went to Python because
the object's cached copy has to be invalidated (``_inval_object``).  The engine now
drops those pages from the object's cached set and queues one INVAL_INODE of the
object per run of them after its reply, the order the session gives a WRITE's
notifications of another inode.

The twins of tests/windows/test_winfast_twin.py (the same filesystem with and
without the engine) must produce the same bytes for the kernel -- the reply, then the
object's invalidations -- and the same state (the object's cached set included)
after every step; ``SHMFS_WINFAST_OINVAL=0`` must decline exactly these stores.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from mount.server import winfast
from mount.wire import protocol as P
from tests.windows.test_winfast_twin import (
    NONBLOCK,
    P4,
    PAGES,
    POPULATE,
    ROOT,
    WIN_PAGES,
    Twin,
    _apply,
)

pytestmark = pytest.mark.skipif(not winfast.available(),
                                reason="the C extension is not built (scripts/bootstrap.sh)")

INVAL = 2  # FUSE_NOTIFY_INVAL_INODE


def _objread(tw: Twin, pgoff: int, npages: int = 1) -> None:
    """A pread of the object itself: the kernel now caches those object pages."""
    tw.fs.read(tw.obj, tw.ofh, pgoff * P4, npages * P4)
    tw.fs.drain_events()


def _invals(msgs: list[bytes]) -> list[tuple[int, int, int]]:
    """(ino, offset, length) of each INVAL_INODE among msgs (after the reply)."""
    out = []
    for m in msgs[1:]:
        assert int.from_bytes(m[4:8], "little") == INVAL
        out.append((int.from_bytes(m[16:24], "little"), int.from_bytes(m[24:32], "little"),
                    int.from_bytes(m[32:40], "little")))
    return out


def test_store_over_cached_object_pages_is_native_and_exact() -> None:
    """write(2) of one and of two pages and a write-back, each over object pages the
    kernel caches: native, the reply then one INVAL of the object per run, the cached
    set emptied of them, everything else as in Python."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)  # nonlinear
            tw.ioctl(P4, P4, 9, 0, POPULATE)  # window pages 1, 2, 3 show 9, 10, 12
            tw.ioctl(2 * P4, P4, 10, 0, POPULATE)
            tw.ioctl(3 * P4, P4, 12, 0, POPULATE)
            _objread(tw, 8, 6)  # object pages 8..13 cached by the kernel
        assert a.state() == b.state()
        cases = [
            (dict(page=1, value=0x71, flags=0, size=100, off=16), [(9, 1)]),
            (dict(page=2, value=0x72, flags=0, size=2 * P4, off=0), [(10, 1), (12, 1)]),
            (dict(page=1, value=0x73, flags=1, size=P4, off=0), []),  # 9 no longer cached
        ]
        for c, runs in cases:
            na, ga = a.launder(c["page"], c["value"], flags=c["flags"], size=c["size"],
                               off=c["off"])
            nb, gb = b.launder(c["page"], c["value"], flags=c["flags"], size=c["size"],
                               off=c["off"])
            assert na and not nb, c
            assert ga == gb, c
            assert _invals(ga) == [(a.obj, p * P4, n * P4) for p, n in runs], c
            assert a.state() == b.state(), c
        assert a.t.objs[a.obj].cached == {8, 11, 13}
        # two adjacent object pages written in one call: one INVAL of both
        for tw in (a, b):
            tw.ioctl(4 * P4, P4, 13, 0, POPULATE)
            tw.ioctl(5 * P4, P4, 14, 0, POPULATE)
            _objread(tw, 13, 2)
        na, ga = a.launder(4, 0x74, flags=0, size=2 * P4)
        assert na and ga == b.launder(4, 0x74, flags=0, size=2 * P4)[1]
        assert _invals(ga) == [(a.obj, 13 * P4, 2 * P4)]
        assert a.state() == b.state()
        st = a.engine.statistics()
        assert st["wstore_invals"] == 4 and st["wstores"] == 4
        assert a.t.stats["inval_events"] == b.t.stats["inval_events"]
    finally:
        a.close()
        b.close()


def test_switch_off_declines_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """SHMFS_WINFAST_OINVAL=0: the same store goes to Python, untouched (the A/B)."""
    monkeypatch.setenv("SHMFS_WINFAST_OINVAL", "0")
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)
            tw.ioctl(P4, P4, 9, 0, POPULATE)
            _objread(tw, 9)
        na, ga = a.launder(1, 0x75, flags=0, size=8)
        assert not na and ga == b.launder(1, 0x75, flags=0, size=8)[1]
        assert _invals(ga) == [(a.obj, 9 * P4, P4)]
        assert a.state() == b.state()
        for tw in (a, b):  # not cached: still native with the switch off
            tw.ioctl(2 * P4, P4, 10, 0, POPULATE)
        na, ga = a.launder(2, 0x76, flags=0, size=8)
        assert na and ga == b.launder(2, 0x76, flags=0, size=8)[1]
        assert a.engine.statistics()["wstore_invals"] == 0
    finally:
        a.close()
        b.close()


def test_other_cached_view_still_declines() -> None:
    """A cached object page and another cached window page showing it: Python (the
    other view's invalidation is not the engine's), and nothing changed before."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)
            tw.ioctl(P4, P4, 9, 0, POPULATE)
            tw.ioctl(5 * P4, P4, 9, 0, POPULATE)  # page 5 shows 9 too, cached
            _objread(tw, 9)
        na, ga = a.launder(1, 0x77, flags=0, size=8)
        assert not na and ga == b.launder(1, 0x77, flags=0, size=8)[1]
        assert a.state() == b.state()
        assert 9 not in a.t.objs[a.obj].cached and 5 not in a.t.wins[a.win].cached
    finally:
        a.close()
        b.close()


def test_random_sequence_with_object_reads() -> None:
    """A seeded sequence of remaps, touches, stores, write(2)s, object writes and object
    reads (the kernel caching object pages): every native store over a cached object
    page gives Python's bytes and state."""
    rng = np.random.default_rng(31)
    a, b = Twin(native=True), Twin(native=False)
    try:
        for _ in range(500):
            r = rng.random()
            page = int(rng.choice(PAGES))
            if r < 0.35:
                op: tuple = ("remap", page, int(rng.integers(0, 46)),
                             POPULATE if rng.random() < 0.8 else NONBLOCK,
                             int(rng.choice([1, 1, 1, 2])) * P4, 0, 0, False)
            elif r < 0.45:
                op = ("read", page)
            elif r < 0.6:
                op = ("writeback", page, int(rng.integers(0, 256)))
            elif r < 0.75:
                op = ("pwrite", page, int(rng.integers(0, 256)), int(rng.choice([8, P4, 2 * P4])),
                      0, int(rng.choice([0, 1])))
            elif r < 0.8:
                op = ("objwrite", int(rng.integers(0, 41)), int(rng.integers(0, 256)))
            else:
                op = ("objread", int(rng.integers(0, 40)), int(rng.choice([1, 1, 2])))
            if op[0] == "objread":
                for tw in (a, b):
                    _objread(tw, op[1], op[2])
            else:
                ra, rb = _apply(a, op), _apply(b, op)
                if op[0] in ("remap", "pwrite"):
                    assert ra[1] == rb[1], op
                else:
                    a.fs.drain_events()
                    b.fs.drain_events()
                    assert ra == rb, op
            assert a.state() == b.state(), op
        st = a.engine.statistics()
        assert st["wstore_invals"] >= 10, st
        assert st["wstores"] >= 20, st
    finally:
        a.close()
        b.close()


def test_reply_precedes_the_invalidation_on_the_pipe() -> None:
    """The reply is written by the caller, the INVAL by the writer thread after it:
    the kernel's WRITE is answered before any notification it might wait behind."""
    a = Twin(native=True)
    try:
        a.ioctl(20 * P4, P4, 7, 0, POPULATE)
        a.ioctl(P4, P4, 9, 0, POPULATE)
        _objread(a, 9)
        na, ga = a.launder(1, 0x78, flags=0, size=8)
        assert na and len(ga) == 2
        assert len(ga[0]) == P.OUT_HEADER.size + 8  # fuse_out_header + fuse_write_out
        assert _invals(ga) == [(a.obj, 9 * P4, P4)]
    finally:
        a.close()


class Twin2(Twin):
    """The twin with a second window over the same object: a store through the first
    invalidates the second's cached views of the written object pages."""

    def __init__(self, native: bool) -> None:
        super().__init__(native)
        w, self.wfh2 = self.fs.create(1, b"win2", 0o600, os.O_RDWR, ROOT)
        self.win2 = w.ino
        self.t.attach(self.win2, self.wfh2, ROOT, self.t.grant(self.obj, self.ofh, ROOT, 3),
                      WIN_PAGES * P4, 0, 3)
        self.fs.drain_events()

    def second(self, op: tuple) -> object:
        """``op`` (an _apply tuple) on the second window."""
        self.win, self.win2 = self.win2, self.win
        self.wfh, self.wfh2 = self.wfh2, self.wfh
        try:
            return _apply(self, op)
        finally:
            self.win, self.win2 = self.win2, self.win
            self.wfh, self.wfh2 = self.wfh2, self.wfh

    def state(self) -> dict:
        st = super().state()
        ws = self.t.wins[self.win2]
        chunks = {ck: (c.bits.tobytes(), c.frame.tobytes(), c.pgoff.tobytes(), c.prot.tobytes())
                  for v in ws.window.mm.vmas for ck, c in v.pt._chunks.items()}
        st["win2"] = (set(ws.cached), dict(ws.pending), set(ws.pushed), ws.epoch, chunks,
                      ws.window.mm.statistics())
        return st


def _fill_second(tw: Twin2, n: int = 90) -> None:
    """n cached pages in the second window (more than _stored's few-pages threshold, so
    the store takes the reverse-map path uml_physmem's 4096-page windows take)."""
    for i in range(n):
        tw.second(("remap", 100 + i, i % 40, POPULATE, P4, 0, 0, False))
    tw.fs.drain_events()


@pytest.mark.parametrize("fill", [True, False])
def test_store_invalidates_other_windows_cached_views_natively(fill: bool) -> None:
    """A store through window 1 over object page 9, which window 2 shows (cached) at
    pages 7 and 8 and, with ``fill`` among its 90 others, at 109, 149 and 189: native;
    the reply, then one INVAL of window 2 per run of those pages, the pages uncached
    there.  With ``fill`` the store takes _stored's reverse-map path, without it the
    few-cached-pages path."""
    a, b = Twin2(native=True), Twin2(native=False)
    try:
        for tw in (a, b):
            if fill:
                _fill_second(tw)
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)
            tw.ioctl(P4, P4, 9, 0, POPULATE)
            tw.second(("remap", 7, 9, POPULATE, P4, 0, 0, False))
            tw.second(("remap", 8, 9, POPULATE, P4, 0, 0, False))
            tw.fs.drain_events()
            _objread(tw, 9)
        assert a.state() == b.state()
        assert {7, 8} <= a.t.wins[a.win2].cached
        na, ga = a.launder(1, 0x79, flags=0, size=8)
        nb, gb = b.launder(1, 0x79, flags=0, size=8)
        assert na and not nb
        assert ga == gb
        assert _invals(ga) == [(a.obj, 9 * P4, P4), (a.win2, 7 * P4, 2 * P4)] + (
            [(a.win2, 109 * P4, P4), (a.win2, 149 * P4, P4), (a.win2, 189 * P4, P4)]
            if fill else [])
        assert a.state() == b.state()
        assert not {7, 8, 109, 149, 189} & a.t.wins[a.win2].cached
        # a write-back (FUSE_WRITE_CACHE) of the same page: nothing cached shows 9 now
        na, ga = a.launder(1, 0x7a, flags=1)
        assert na and ga == b.launder(1, 0x7a, flags=1)[1] and len(ga) == 1
        assert a.state() == b.state()
    finally:
        a.close()
        b.close()


def test_alias_in_the_writers_own_window_declines() -> None:
    """Another cached page of the writer's own window shows the written object page:
    Python (its INVAL goes after the other inodes'), nothing changed before."""
    a, b = Twin2(native=True), Twin2(native=False)
    try:
        for tw in (a, b):
            _fill_second(tw)
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)
            tw.ioctl(P4, P4, 9, 0, POPULATE)
            tw.ioctl(5 * P4, P4, 9, 0, POPULATE)  # the writer's window's page 5 shows 9
            tw.fs.drain_events()
        na, ga = a.launder(1, 0x7b, flags=0, size=8)
        assert not na and ga == b.launder(1, 0x7b, flags=0, size=8)[1]
        assert a.state() == b.state()
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("fill", [True, False])
def test_random_two_windows_sequence(fill: bool) -> None:
    """Remaps, touches, stores and write(2)s through both windows, and object reads, in a
    seeded sequence: every store through either window gives Python's bytes and state,
    most of them natively, many invalidating the other window's views."""
    rng = np.random.default_rng(7)
    a, b = Twin2(native=True), Twin2(native=False)
    pages = [*PAGES, *range(100, 190, 7)]
    try:
        for tw in (a, b):
            if fill:
                _fill_second(tw)
        for _ in range(600):
            r = rng.random()
            page = int(rng.choice(pages))
            if r < 0.4:
                op: tuple = ("remap", page, int(rng.integers(0, 41)),
                             POPULATE if rng.random() < 0.85 else NONBLOCK, P4, 0, 0, False)
            elif r < 0.5:
                op = ("read", page)
            elif r < 0.65:
                op = ("writeback", page, int(rng.integers(0, 256)))
            elif r < 0.85:
                op = ("pwrite", page, int(rng.integers(0, 256)), int(rng.choice([8, P4])), 0,
                      int(rng.choice([0, 1])))
            elif r < 0.9:
                op = ("objwrite", int(rng.integers(0, 41)), int(rng.integers(0, 256)))
            else:
                op = ("objread", int(rng.integers(0, 40)), 1)
            second = rng.random() < 0.5
            if op[0] == "objread":
                for tw in (a, b):
                    _objread(tw, op[1], op[2])
            else:
                ra = a.second(op) if second else _apply(a, op)
                rb = b.second(op) if second else _apply(b, op)
                if op[0] in ("remap", "pwrite"):
                    assert ra[1] == rb[1], op
                else:
                    a.fs.drain_events()
                    b.fs.drain_events()
                    assert ra == rb, op
            assert a.state() == b.state(), (op, second)
        st = a.engine.statistics()
        assert st["wstores"] >= 40, st
        assert st["wstore_invals"] >= 5, st
        assert st["wstore_faults"] >= 3, st
    finally:
        a.close()
        b.close()


def test_store_faults_are_native_and_exact() -> None:
    """A write(2) or write-back of a window page that is not present: the engine makes
    the store fault (a resident object page: MINOR, UPTODATE|DIRTY; a hole: MAJOR, a
    frame charged and allocated; a none PTE: its linear object page) with Python's
    bytes and state; beyond EOF, read-only, and a full size= budget stay Python's."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)  # nonlinear
            tw.ioctl(P4, P4, 9, 0, NONBLOCK)  # page 1: file PTE of resident page 9
            tw.ioctl(2 * P4, P4, 35, 0, NONBLOCK)  # page 2: file PTE of a hole (35)
            tw.ioctl(4 * P4, P4, 45, 0, NONBLOCK)  # page 4: beyond EOF (41 pages)
            tw.ioctl(6 * P4, P4, 11, 1, NONBLOCK | 0x20000)  # page 6: read-only, own prot
        cases = [  # (page, write flags, size, native)
            (1, 0, 8, True), (2, 0, P4, True), (4, 0, 8, False), (6, 0, 8, False),
            (5, 0, 8, True),  # none PTE: linear page 5 of the object (resident)
            (33, 0, 100, True),  # none PTE, a hole at its linear position
        ]
        for page, flags, size, want in cases:
            before = a.t.objs[a.obj]
            na, ga = a.launder(page, 0x40 + page, flags=flags, size=size)
            nb, gb = b.launder(page, 0x40 + page, flags=flags, size=size)
            assert na == want and not nb, (page, na)
            assert ga == gb, page
            assert a.state() == b.state(), page
            del before
        st = a.engine.statistics()
        assert st["wstore_faults"] == 4, st
        assert a.state()["objbytes"][35][:8] == bytes([0x42]) * 8
        assert a.state()["fstats"]["pages_allocated"] == b.state()["fstats"]["pages_allocated"]
    finally:
        a.close()
        b.close()


def test_store_fault_with_full_budget_is_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """No page left under size=: the hole's store fault is Python's (ENOSPC)."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)
            tw.ioctl(2 * P4, P4, 35, 0, NONBLOCK)
            budget = tw.t.wins[tw.win].obj.mapping.budget
            monkeypatch.setattr(type(budget), "free_pages", property(lambda self: 0))
        na, ga = a.launder(2, 0x50, flags=0, size=8)
        assert not na and ga == b.launder(2, 0x50, flags=0, size=8)[1]
        assert a.state() == b.state()
    finally:
        a.close()
        b.close()


def test_wfault_switch_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """SHMFS_WINFAST_WFAULT=0: a store into a not-present page goes to Python."""
    monkeypatch.setenv("SHMFS_WINFAST_WFAULT", "0")
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)
            tw.ioctl(P4, P4, 9, 0, NONBLOCK)
        na, ga = a.launder(1, 0x51, flags=0, size=8)
        assert not na and ga == b.launder(1, 0x51, flags=0, size=8)[1]
        assert a.state() == b.state() and a.engine.statistics()["wstore_faults"] == 0
    finally:
        a.close()
        b.close()
