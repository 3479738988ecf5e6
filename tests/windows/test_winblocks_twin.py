"""The object's attribute INVAL after a window fault allocates a hole, C against Python.

A window store (write(2) or a write-back) or READ whose fault allocates a hole of the
object changes its st_blocks behind the kernel's back; both paths now send one
attribute-only NOTIFY_INVAL_INODE of the object (offset -1,
fuse_reverse_inval_inode): a store's after its reply, in the place of the object's page
INVALs (which drop the attributes too, so it is sent only when none is), a READ's
before its reply, written by the reader (it locks no page, so it cannot wait for the
READ's pages; queued, it would put the reply behind the writer's queue).  The twins of
tests/windows/test_winfast_twin.py (one filesystem with the C engine, one without)
must send the same bytes in the same order and keep the same state; the live side is
tests/windows/test_winblocks_live.py (stat after the access, against tmpfs).
"""

from __future__ import annotations

import pytest

from fsimpl.windows import REMAPV_SCALAR_MAX
from mount.server import winfast
from tests.windows.test_winfast_twin import NONBLOCK, P4, POPULATE, Twin
from tests.windows.test_winoinval_twin import _objread

pytestmark = pytest.mark.skipif(not winfast.available(),
                                reason="the C extension is not built (scripts/bootstrap.sh)")

INVAL = 2  # FUSE_NOTIFY_INVAL_INODE
ATTRS = (1 << 64) - 1  # offset -1 on the wire: attributes only


def _kinds(msgs: list[bytes]) -> list[tuple]:
    """Each message: ('reply', error), ('store', ino, offset) or ('inval', ino, offset,
    length)."""
    out: list[tuple] = []
    for m in msgs:
        if int.from_bytes(m[8:16], "little") == 0 and int.from_bytes(m[4:8], "little") == 4:
            out.append(("store", int.from_bytes(m[16:24], "little"),
                        int.from_bytes(m[24:32], "little")))
        elif int.from_bytes(m[8:16], "little") == 0:  # unique 0: a notification
            assert int.from_bytes(m[4:8], "little") == INVAL
            out.append(("inval", int.from_bytes(m[16:24], "little"),
                        int.from_bytes(m[24:32], "little"), int.from_bytes(m[32:40], "little")))
        else:
            out.append(("reply", int.from_bytes(m[4:8], "little", signed=True)))
    return out


def _twins() -> tuple[Twin, Twin]:
    a, b = Twin(native=True), Twin(native=False)
    for tw in (a, b):
        tw.ioctl(20 * P4, P4, 7, 0, POPULATE)  # nonlinear
        tw.ioctl(P4, P4, 9, 0, NONBLOCK)  # page 1: file PTE of resident object page 9
        tw.ioctl(2 * P4, P4, 35, 0, NONBLOCK)  # page 2: file PTE of a hole (35)
        tw.ioctl(3 * P4, P4, 36, 0, NONBLOCK)  # page 3: file PTE of a hole (36)
        tw.ioctl(4 * P4, P4, 37, 0, NONBLOCK)  # page 4: file PTE of a hole (37)
    return a, b


def test_store_fault_into_a_hole_sends_the_objects_attributes_after_the_reply() -> None:
    """write(2) into a resident page: the reply alone; into a hole: the reply, then the
    object's attribute INVAL -- from C as from Python; a write-back likewise."""
    a, b = _twins()
    try:
        for page, flags, size, want in [
                (1, 0, 8, []),  # resident object page: nothing allocated
                (2, 0, P4, [("inval", a.obj, ATTRS, 0)]),  # whole-page write(2) of a hole
                (3, 1, P4, [("inval", a.obj, ATTRS, 0)]),  # a write-back into a hole
                (2, 0, 8, []),  # the page is allocated now: nothing more
                (33, 0, 100, [("inval", a.obj, ATTRS, 0)])]:  # none PTE, linear hole 33
            na, ga = a.launder(page, 0x60 + page, flags=flags, size=size)
            nb, gb = b.launder(page, 0x60 + page, flags=flags, size=size)
            assert na and not nb, page
            assert ga == gb, page
            assert _kinds(ga) == [("reply", 0), *want], page
            assert a.state() == b.state(), page
        assert a.engine.statistics()["wstore_invals"] == 3
    finally:
        a.close()
        b.close()


def test_store_fault_into_a_cached_hole_sends_its_page_inval_only() -> None:
    """The object's hole 35 is cached by the kernel (a pread of the object read its
    zeros): the store's page INVAL of it drops the attributes too -- no second one."""
    a, b = _twins()
    try:
        for tw in (a, b):
            _objread(tw, 35)
        na, ga = a.launder(2, 0x71, flags=0, size=8)
        nb, gb = b.launder(2, 0x71, flags=0, size=8)
        assert na and not nb and ga == gb
        assert _kinds(ga) == [("reply", 0), ("inval", a.obj, 35 * P4, P4)]
        assert a.state() == b.state()
    finally:
        a.close()
        b.close()


def test_read_fault_of_a_hole_sends_the_objects_attributes_before_the_reply() -> None:
    """A READ whose fault allocates a hole: the object's attribute INVAL, then the reply
    (both written by the reader); of a resident page, or once allocated: the reply."""
    a, b = _twins()
    try:
        for page, want in [(1, []), (4, [("inval", a.obj, ATTRS, 0)]), (4, []),
                           (34, [("inval", a.obj, ATTRS, 0)])]:  # a none PTE, linear hole
            na, ga = a.read_msg(page, P4)
            nb, gb = b.read_msg(page, P4)
            assert na and not nb, page
            assert ga == gb, page
            assert [k[0] for k in _kinds(ga)] == [*(w[0] for w in want), "reply"], page
            assert _kinds(ga)[:len(want)] == want, page
            assert a.state() == b.state(), page
        assert a.engine.statistics()["read"]["attr_invals"] == 2
    finally:
        a.close()
        b.close()


def test_populating_remaps_of_holes_send_the_objects_attributes() -> None:
    """A populating REMAP whose prefault allocates holes: the window's INVALs, the
    object's attribute INVAL, the STOREs, the reply; a short REMAPV: one per entry
    that allocated (each entry is exactly a REMAP) -- from C as from Python; a REMAP
    of resident pages sends none."""
    a, b = _twins()
    try:
        for ents, want in [
                ([(8 * P4, 2 * P4, 38, 0, POPULATE)], 1),  # holes 38, 39
                ([(10 * P4, P4, 3, 0, POPULATE)], 0),  # a resident page
                ([(11 * P4, P4, 32, 0, POPULATE), (13 * P4, P4, 4, 0, POPULATE),
                  (15 * P4, P4, 33, 0, POPULATE)], 2)]:  # two entries allocate
            na, ga = a.remapv(ents)
            nb, gb = b.remapv(ents)
            assert na and not nb, ents
            assert ga == gb, ents
            attrs = [m for m in ga if _kinds([m])[0] == ("inval", a.obj, ATTRS, 0)]
            assert len(attrs) == want, ents
            assert a.state() == b.state(), ents
        na, ga = a.ioctl(16 * P4, P4, 34, 0, POPULATE)  # a single REMAP of hole 34
        nb, gb = b.ioctl(16 * P4, P4, 34, 0, POPULATE)
        assert na and not nb and ga == gb
        assert _kinds(ga[:1]) == [("inval", a.obj, ATTRS, 0)]  # nothing cached: first
        assert _kinds(ga[1:2]) == [("store", a.win, 16 * P4)]  # then the STORE
        assert a.state() == b.state()
    finally:
        a.close()
        b.close()


def test_long_remapv_sends_the_objects_attributes_once() -> None:
    """A REMAPV past the scalar threshold (numpy, Python only): one attribute INVAL of
    the object for the call when its prefaults allocated holes, none otherwise."""
    tw = Twin(native=False)
    try:
        tw.ioctl(20 * P4, P4, 7, 0, POPULATE)
        for pgoffs, want in [(list(range(32, 40)) * 2, 1), (list(range(8)) * 2, 0)]:
            ents = [(p * P4, P4, pg, 0, POPULATE) for p, pg in enumerate(pgoffs, start=100)]
            assert len(ents) > REMAPV_SCALAR_MAX
            _native, got = tw.remapv(ents)
            attrs = [m for m in got if _kinds([m])[0] == ("inval", tw.obj, ATTRS, 0)]
            assert len(attrs) == want, pgoffs
    finally:
        tw.close()
