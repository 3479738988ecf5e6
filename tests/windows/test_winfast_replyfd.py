"""The window engine answering a request read from another fd (a clone reader's), in
process: ``Engine.remap_to(msg, fd)`` writes the batch's notifications to the
engine's fd and only its reply -- the one message with a request id -- to ``fd``,
the same bytes in the same order as the Python path makes them (docs/decisions.md,
"Clone readers hand window requests to the engine"). The live case, with real clone
readers, is tests/windows/test_winclones.py; the Twin harness and its Python oracle
are tests/windows/test_winfast_twin.py's."""

from __future__ import annotations

import os

import pytest

from mount.server import winfast
from tests.windows.helpers import drain_messages
from tests.windows.test_winfast_twin import CHGPROT, P4, POPULATE, Twin

pytestmark = pytest.mark.skipif(not winfast.available(),
                                reason="the C extension is not built (scripts/bootstrap.sh)")


def _unique(msg: bytes) -> int:
    return int.from_bytes(msg[8:16], "little")


class _AsClone:
    """Twin ``tw``'s engine as a clone reader calls it: every IOCTL through
    ``remap_to(msg, clone fd)``; each request's messages are recorded as (on the
    engine's fd, on the clone's fd), and handed to the Twin concatenated (so its
    byte-for-byte comparison with the Python path still applies)."""

    def __init__(self, tw: Twin) -> None:
        self.eng = tw.engine
        self.cr, self.cw = os.pipe()
        os.set_blocking(self.cr, False)
        self.seen: list[tuple[list[bytes], list[bytes]]] = []
        self.to_clone = True  # False: the engine's own remap (the first reader's call)
        drain = tw._drain

        def both() -> list[bytes]:
            main = drain()  # waits until the engine's writer is idle
            clone = drain_messages(self.cr)
            self.seen.append((main, clone))
            return main + clone

        tw._drain = both  # type: ignore[method-assign]

    def remap(self, msg: memoryview) -> object:
        if not self.to_clone:
            return self.eng.remap(msg)
        return self.eng.remap_to(msg, self.cw)

    def __getattr__(self, name: str) -> object:
        return getattr(self.eng, name)

    def close(self) -> None:
        self.eng.close()
        os.close(self.cr)
        os.close(self.cw)


def test_remap_to_sends_only_the_reply_to_the_readers_fd() -> None:
    a, b = Twin(native=True), Twin(native=False)
    try:
        rw = POPULATE | CHGPROT
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 1, rw)  # nonlinear, MANYPROTS: Python
            tw.t.read(tw.win, 0, 8 * P4)  # cached
        main_eng = a.engine
        clone = _AsClone(a)
        a.engine = clone  # type: ignore[assignment]
        seq = main_eng.queued_seq()
        steps = [
            ("ioctl", (P4, P4, 9, 3, rw), [2, 4, 0]),  # INVAL (cached), STORE, reply
            ("ioctl", (P4, P4, 11, 3, rw), [2, 4, 0]),
            ("ioctl", (9 * P4, P4, 12, 3, rw), [4, 0]),  # not cached: STORE, reply
            ("mprotect", (P4, P4, 1, 0), [2, 0]),  # cached, RW -> R: INVAL, reply
            ("mprotect", (12 * P4, P4, 1, 0), [0]),
            ("query", (0, 16), [0]),  # written by winvec.c itself, not the writer
            ("remapv", ([(2 * P4, P4, 13, 3, rw), (4 * P4, P4, 14, 1, CHGPROT)],), None),
        ]
        for kind, args, kinds in steps:
            na, ga = getattr(a, kind)(*args)
            nb, gb = getattr(b, kind)(*args)
            assert na is True and nb is False, (kind, args)
            assert ga == gb, (kind, args)  # the Python path's bytes, in its order
            assert a.state() == b.state(), (kind, args)
            main, on_clone = clone.seen[-1]
            assert [_unique(m) for m in main] == [0] * len(main), (kind, main)
            assert len(on_clone) == 1 and _unique(on_clone[0]) == a.unique, (kind, on_clone)
            if kinds is not None:
                assert [int.from_bytes(m[4:8], "little") for m in ga] == kinds, kind
        st = main_eng.statistics()
        # every reply the writer wrote went to the clone's fd (the QUERY's is not the
        # writer's); a REMAPV's entries may queue batches of their own
        assert st["clone_replies"] == 6, st
        assert main_eng.queued_seq() - seq >= 6
        main_eng.wait_written(main_eng.queued_seq())  # returns: everything is written
        # the engine's own remap: everything, reply included, on the engine's fd
        clone.to_clone = False
        na, ga = a.ioctl(6 * P4, P4, 15, 3, rw)
        nb, gb = b.ioctl(6 * P4, P4, 15, 3, rw)
        assert na is True and nb is False and ga == gb
        main, on_clone = clone.seen[-1]
        assert on_clone == [] and _unique(main[-1]) == a.unique
        assert main_eng.statistics()["clone_replies"] == 6
    finally:
        a.close()
        b.close()


def test_remap_to_refuses_a_negative_fd() -> None:
    a = Twin(native=True)
    try:
        with pytest.raises(ValueError):
            a.engine.remap_to(memoryview(bytearray(104)), -1)
    finally:
        a.close()
