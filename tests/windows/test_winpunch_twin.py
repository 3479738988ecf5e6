"""A whole-page hole punch of a window's object without the reverse-map lookup, against
the general path, in process.

``fsimpl.wincoherence.WINPUNCH`` switches the shortcut of ``object_punched``
(docs/decisions.md, "The FSYNC of a file in the window engine ...", last part): after
FALLOCATE(PUNCH_HOLE) of whole object pages, object_changed's reverse-map lookup is
skipped because every window page that showed a punched page and may be cached had a
present PTE, which the punch's own zap reported and dropped.  The twins of
tests/windows/test_winmadv_twin.py (one object shown by three windows sharing object
pages) get the same random sequences -- remaps, READs (cached window pages), stores
(pending write-backs), populating remaps (pushed pages), object writes and caching,
MADV_REMOVE, and punches of 1-3 object pages, aligned or not, inside and beyond the
object -- one twin with the shortcut, one without.  After every step both must have
queued byte-identical notifications, raised the same errno and hold the same state
(every page table, the page cache and bytes, each window's cached / pending / pushed
pages, the counters, the times), except the reverse map's ``lookups`` counter, which
counts the lookups made: one fewer per whole-page punch (checked).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsimpl import wincoherence
from fsimpl.types import InvalInode
from mount.wire.codec import encode_notify
from tests.windows import test_winmadv_twin as base
from vmcore.vma import MADV_REMOVE

P4 = base.P4
PUNCH_HOLE_KEEP_SIZE = 0x02 | 0x01


class Twin(base.Twin):
    """test_winmadv_twin's filesystem, with punches of the object and populating remaps;
    ``run(op, fast)`` switches the punch's shortcut."""

    SWITCH = (wincoherence, "WINPUNCH")

    def _apply(self, op: tuple) -> None:
        if op[0] == "punch":
            _, _, page, off, size = op
            self.fs.fallocate(self.obj, self.ofh, PUNCH_HOLE_KEEP_SIZE, page * P4 + off, size)
        elif op[0] == "premap":  # a populating remap: the page is pushed (NOTIFY_STORE)
            _, w, page, pgoff = op
            ino, wfh, _ro = self.wins[w]
            self.t.remap(ino, wfh, page * P4, P4, pgoff, 0, 0x8000)
        else:
            super()._apply(op)

    def state(self) -> dict:
        out = super().state()
        out["rmap"] = {k: v for k, v in out["rmap"].items() if k != "lookups"}
        return out


W = st.integers(0, base.NWIN - 1)
PUNCH = st.tuples(st.just("punch"), W, st.integers(0, base.OBJ_PAGES + 2),
                  st.sampled_from([0, 0, 0, 0, 100]),
                  st.sampled_from([P4, P4, P4, 2 * P4, 3 * P4, 1, P4 - 1, P4 + 100]))
OPS = st.one_of(
    base.OPS, PUNCH, PUNCH,
    st.tuples(st.just("premap"), W, st.sampled_from(base.PAGES),
              st.integers(0, base.OBJ_PAGES - 1)),
)


def _check(ops: list[tuple]) -> int:
    """Run ``ops`` on both twins, comparing after each; returns the whole-page punches
    that freed a page a window showed and the kernel cached (the shortcut's case)."""
    fast, slow = Twin(), Twin()
    served = 0
    for op in ops:
        m = fast.fs._inodes[fast.obj].mapping
        freed, lookups = m.frames_freed, m.rmap.stats.lookups
        cached = sum(len(fast.t.wins[ino].cached) for ino, _w, _r in fast.wins)
        got = fast.run(op, True)
        want = slow.run(op, False)
        assert got == want, op
        assert fast.state() == slow.state(), op
        if op[0] == "punch" and not (op[3] or op[4] % P4) and not got[0]:
            assert m.rmap.stats.lookups == lookups, op  # the lookup was skipped
            after = sum(len(fast.t.wins[ino].cached) for ino, _w, _r in fast.wins)
            if m.frames_freed > freed and after < cached:
                served += 1
    return served


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=10, max_size=60))
def test_whole_page_punch_without_lookup_agrees(ops: list[tuple]) -> None:
    _check(ops)


def test_long_random_sequences_agree_and_punch_cached_pages() -> None:
    """Long sequences over few pages, so that many punches free a page some window
    shows and the kernel caches (the comparison above is not vacuous)."""
    r = random.Random(34)
    pages = base.PAGES[:6]
    served = 0
    for _ in range(4):
        ops: list[tuple] = []
        for _ in range(150):
            w, page, pg = r.randrange(base.NWIN), r.choice(pages), r.randrange(12)
            kind = r.choice(["remap", "premap", "read", "read", "store", "punch", "punch",
                             "objc", "madv"])
            if kind == "remap":
                ops.append(("remap", w, page, pg, 1))
            elif kind == "premap":
                ops.append(("premap", w, page, pg))
            elif kind == "read":
                ops.append(("read", w, page))
            elif kind == "store":
                ops.append(("store", w, page, r.randrange(256)))
            elif kind == "objc":
                ops.append(("objcache", w, pg))
            elif kind == "madv":
                ops.append(("madvise", w, page, 0, P4, MADV_REMOVE, False))
            else:
                ops.append(("punch", w, pg, 0, P4))
        served += _check(ops)
    assert served >= 20


@pytest.mark.parametrize("fast", [True, False])
def test_unaligned_punch_still_looks_up(fast: bool) -> None:
    """A punch with a zeroed partial edge keeps the reverse-map lookup either way (the
    window pages showing the zeroed page are invalidated: their bytes changed)."""
    tw = Twin()
    ino, wfh, _ro = tw.wins[0]
    tw.t.remap(ino, wfh, 2 * P4, P4, 5, 0, 0)
    tw.t.read(ino, 2 * P4, P4)  # window page 2 shows object page 5, cached
    tw.fs.drain_events()
    lookups = tw.fs._inodes[tw.obj].mapping.rmap.stats.lookups
    err, msgs = tw.run(("punch", 0, 5, 100, 200), fast)
    assert err == 0 and tw.fs._inodes[tw.obj].mapping.rmap.stats.lookups == lookups + 1
    assert msgs == [bytes(encode_notify(InvalInode(ino, 2 * P4, P4)))]
