"""The cheap paths of a small window MADV_REMOVE against the general ones, in process.

``vmcore.pagetable.WINMADV`` switches three shortcuts (docs/decisions.md, "A one-page
MADV_REMOVE without numpy"): a zap walks only the chunks the C filter names, a zap that
clears nothing returns a shared empty result, and a one-page MADV_REMOVE finds the
object page it shows with scalar lookups.  Two identical filesystems, each with one
object shown by three windows whose pages share object pages (as uml_physmem's guests
share frames), get the same random sequence of window operations: remaps, READs
(pages the kernel caches), stores through a window (pending write-backs), write(2) and
punches of the object, and MADV_REMOVE / MADV_DONTNEED of 1-3 pages, including
unaligned, beyond-the-window, read-only and unknown-advice calls.  The first twin runs
with the shortcuts, the second without.  After every operation both must have queued
byte-identical notifications, raised the same errno and hold the same state: every
window's page-table chunks, the object's page cache and bytes, each window's cached /
pending / pushed pages and epoch, the table's, mapping's, rmap's and mm's counters, the
inode times.  A shortcut that changed anything but the time it takes fails here.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsimpl import Ctx, FsError, FsOptions, ShmFs
from fsimpl.windows import windows_of
from mount.wire.codec import encode_notify
from vmcore import pagetable
from vmcore.vma import MADV_DONTNEED, MADV_REMOVE, MADV_WILLNEED

P4 = 4096
ROOT = Ctx(0, 0, 1)
NWIN = 3
WIN_PAGES = 1100  # three page-table chunks: the chunk filter has something to skip
OBJ_PAGES = 48  # few object pages: windows show the same ones
PAGES = [0, 1, 2, 3, 7, 510, 511, 512, 513, 1024, 1099]


class Twin:
    """One filesystem: an object, three windows over it, a counting clock.

    ``SWITCH`` names the module flag that ``run(op, fast)`` sets to ``fast`` for the
    operation (a subclass twins another shortcut by naming its flag)."""

    SWITCH: tuple[object, str] = (pagetable, "WINMADV")

    def __init__(self) -> None:
        self.fs = fs = ShmFs(FsOptions(), clock=itertools.count(1).__next__)
        a, self.ofh = fs.create(1, b"obj", 0o644, os.O_RDWR, ROOT)
        self.obj = a.ino
        data = b"".join(struct.pack("<Q", p) * 512 for p in range(OBJ_PAGES))
        fs.write(self.obj, self.ofh, 0, memoryview(data))
        self.t = windows_of(fs)
        self.wins: list[tuple[int, int, int]] = []
        for k in range(NWIN):
            w, wfh = fs.create(1, b"win%d" % k, 0o600, os.O_RDWR, ROOT)
            rofh = fs.open(w.ino, os.O_RDONLY)
            self.t.attach(w.ino, wfh, ROOT, self.t.grant(self.obj, self.ofh, ROOT, 3),
                          WIN_PAGES * P4, 0, 3)
            self.wins.append((w.ino, wfh, rofh))
        fs.drain_events()

    def run(self, op: tuple, fast: bool) -> tuple[int, list[bytes]]:
        """Apply ``op`` with the SWITCH flag set to ``fast``; (errno or 0, the
        notifications it queued, encoded)."""
        module, flag = self.SWITCH
        saved = getattr(module, flag)
        setattr(module, flag, fast)
        try:
            err = 0
            try:
                self._apply(op)
            except FsError as e:
                err = e.errno
            return err, [bytes(encode_notify(ev)) for ev in self.fs.drain_events()]
        finally:
            setattr(module, flag, saved)

    def _apply(self, op: tuple) -> None:
        kind, w = op[0], op[1]
        ino, wfh, rofh = self.wins[w]
        if kind == "remap":
            _, _, page, pgoff, n = op
            self.t.remap(ino, wfh, page * P4, n * P4, pgoff, 0, 0)
        elif kind == "read":
            self.t.read(ino, op[2] * P4, P4)
        elif kind == "store":  # a store through the window's mmap, not written back yet
            self.t.write(ino, op[2] * P4, memoryview(bytes([op[3]]) * P4))
        elif kind == "objcache":  # the kernel caches an object page (a READ of the object)
            self.t.object_cached(self.obj, op[2] * P4, P4)
        elif kind == "objwrite":
            self.fs.write(self.obj, self.ofh, op[2] * P4 + 8, memoryview(b"w" * 16))
        elif kind == "madvise":
            _, _, page, off, size, advice, ro = op
            self.t.madvise(ino, rofh if ro else wfh, page * P4 + off, size, advice)

    def state(self) -> dict:
        out: dict = {"stats": dict(self.t.stats), "budget": self.t.budget.statistics()}
        for k, (ino, _wfh, _ro) in enumerate(self.wins):
            ws = self.t.wins[ino]
            vmas = ws.window.mm.vmas
            out[f"vmas{k}"] = [(v.start, v.end, int(v.flags), v.prot, v.pgoff) for v in vmas]
            out[f"chunks{k}"] = {
                (j, ck): (c.bits.tobytes(), c.frame.tobytes(), c.pgoff.tobytes(),
                          c.prot.tobytes())
                for j, vma in enumerate(vmas) for ck, c in vma.pt._chunks.items()}
            out[f"ws{k}"] = (set(ws.cached), dict(ws.pending), set(ws.pushed), ws.epoch)
            out[f"mm{k}"] = ws.window.mm.statistics()
        m = self.fs._inodes[self.obj].mapping
        pc = m.pages
        out["cache"] = {k: (pc._frames[k].tobytes(), pc._flags[k].tobytes()) for k in pc._keys}
        out["gen"], out["nrpages"] = pc.gen, pc.nrpages
        out["mapping"] = m.statistics()
        out["rmap"] = m.rmap.statistics()
        n = (m.size + P4 - 1) // P4
        out["bytes"] = [bytes(m.arena.view(f)) if f >= 0 else None
                        for f in m.pages.lookup_range(0, n).tolist()]
        out["times"] = {i: (x.mtime_ns, x.ctime_ns) for i, x in self.fs._inodes.items()}
        out["objstate"] = {i: set(o.cached) for i, o in self.t.objs.items()}
        return out


W = st.integers(0, NWIN - 1)
REMAP = st.tuples(st.just("remap"), W, st.sampled_from(PAGES), st.integers(0, OBJ_PAGES + 2),
                  st.sampled_from([1, 1, 1, 2]))
# mostly the one-page MADV_REMOVE; then what must behave exactly as before
MADVISE = st.tuples(st.just("madvise"), W, st.sampled_from(PAGES),
                    st.sampled_from([0, 0, 0, 0, 0, 0, 100]),
                    st.sampled_from([P4, P4, P4, P4, P4, P4, 1, P4 - 1, P4 + 1, 2 * P4, 3 * P4,
                                     0]),
                    st.sampled_from([MADV_REMOVE] * 6 + [MADV_DONTNEED, MADV_WILLNEED, 77]),
                    st.sampled_from([False] * 7 + [True]))
OPS = st.one_of(
    REMAP, REMAP, MADVISE, MADVISE,
    st.tuples(st.just("read"), W, st.sampled_from(PAGES)),
    st.tuples(st.just("store"), W, st.sampled_from(PAGES), st.integers(0, 255)),
    st.tuples(st.just("objwrite"), W, st.integers(0, OBJ_PAGES - 1)),
    st.tuples(st.just("objcache"), W, st.integers(0, OBJ_PAGES - 1)),
)


def _check(ops: list[tuple]) -> int:
    """Run ``ops`` on both twins, comparing after each; returns the MADV_REMOVEs that
    punched something on the fast twin."""
    fast, slow = Twin(), Twin()
    punched = 0
    for op in ops:
        before = fast.fs._inodes[fast.obj].mapping.frames_freed
        got = fast.run(op, True)
        want = slow.run(op, False)
        assert got == want, op
        assert fast.state() == slow.state(), op
        if op[0] == "madvise" and fast.fs._inodes[fast.obj].mapping.frames_freed > before:
            punched += 1
    return punched


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=10, max_size=60))
def test_fast_and_general_madvise_paths_agree(ops: list[tuple]) -> None:
    _check(ops)


def test_long_random_sequences_agree_and_punch() -> None:
    """Long sequences over few pages: many one-page MADV_REMOVEs find a remapped page
    (the case the shortcuts serve), so the comparison above is not vacuous."""
    r = random.Random(12)
    pages = PAGES[:6]
    for _ in range(4):
        ops: list[tuple] = []
        for _ in range(150):
            w, page = r.randrange(NWIN), r.choice(pages)
            kind = r.choice(["remap", "remap", "read", "store", "madvise", "madvise", "objw",
                             "objc"])
            if kind == "remap":
                ops.append(("remap", w, page, r.randrange(OBJ_PAGES), 1))
            elif kind == "read":
                ops.append(("read", w, page))
            elif kind == "store":
                ops.append(("store", w, page, r.randrange(256)))
            elif kind == "objc":
                ops.append(("objcache", w, r.randrange(OBJ_PAGES)))
            elif kind == "objw":
                ops.append(("objwrite", w, r.randrange(OBJ_PAGES)))
            else:
                ops.append(("madvise", w, page, 0, P4,
                            r.choice([MADV_REMOVE, MADV_REMOVE, MADV_DONTNEED]), False))
        assert _check(ops) >= 10


def test_a_shared_page_punched_through_one_window_leaves_every_window() -> None:
    """The case uml_physmem sends: object page 5 shown (and cached) by all three
    windows; a one-page MADV_REMOVE through one frees it, drops every window's view and
    the object's cached copy -- identically on both paths."""
    ops: list[tuple] = []
    for w, page in ((0, 3), (1, 511), (2, 1024)):
        ops += [("remap", w, page, 5, 1), ("read", w, page)]
    # a pending store through window 1, then a second view of page 5 in it
    ops += [("remap", 1, 512, 6, 1), ("store", 1, 512, 9), ("remap", 1, 600, 5, 1)]
    ops += [("madvise", 0, 3, 0, P4, MADV_REMOVE, False)]
    assert _check(ops) == 1
    # and the fast twin's result is what it should be, not only what the other did
    t = Twin()
    for op in ops:
        err, msgs = t.run(op, True)
        assert err == 0, op
    # every window's cached view of page 5 and the object's attributes were invalidated
    assert len(msgs) == 4
    m = t.fs._inodes[t.obj].mapping
    assert m.pages.lookup_range(5, 1).tolist() == [-1]  # a hole now
    for ino, _wfh, _ro in t.wins:
        assert t.t.wins[ino].cached.isdisjoint({3, 511, 1024})


def test_a_read_only_descriptor_cannot_punch() -> None:
    t = Twin()
    assert t.run(("remap", 0, 3, 5, 1), True)[0] == 0
    err, msgs = t.run(("madvise", 0, 3, 0, P4, MADV_REMOVE, True), True)
    assert err in (errno.EBADF, errno.EACCES, errno.EPERM)
    assert msgs == []
    assert t.fs._inodes[t.obj].mapping.pages.lookup_range(5, 1).tolist() != [-1]


@pytest.mark.parametrize("fast", [True, False])
def test_one_page_madv_remove_frees_the_frame(fast: bool) -> None:
    t = Twin()
    m = t.fs._inodes[t.obj].mapping
    assert t.run(("remap", 2, 1099, 7, 1), fast)[0] == 0
    before = m.pages.nrpages
    assert t.run(("madvise", 2, 1099, 0, P4, MADV_REMOVE, False), fast)[0] == 0
    assert m.pages.nrpages == before - 1
    assert t.fs._inodes[t.obj].mapping.read_bytes(7 * P4, P4) == bytes(P4)
