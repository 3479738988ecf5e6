"""The C REMAP fast path (native/winfast.c) against the Python path, in process.

Two identical filesystems get the same random sequence of window operations.  On
the first, every REMAP goes to the C engine first (and to the Python path when the
engine declines, as the session does); on the second, always to the Python path.
After every operation both must have produced the same bytes for the kernel (the
notifications, in order, then the reply) and hold the same state: page-table
chunks, the object's page cache (frames, flags, generation), the window's cached /
pending / pushed bookkeeping and epoch, and every counter.  The sequences include
what the engine must decline (first remap, a new page-table chunk, holes, pages
beyond EOF, several pages, unaligned starts, prot, unknown flags, read-only
descriptors), so the decline rules are checked too: a decline that changed
anything would make the states differ.
"""

from __future__ import annotations

import fcntl
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsimpl import Ctx, FsOptions, ShmFs
from fsimpl.windows import windows_of
from mount.server import winfast
from mount.server.ops import Operations
from mount.wire import protocol as P
from mount.wire.codec import encode_notify, parse_request
from vmcore.fault import FAULT_STATS

pytestmark = pytest.mark.skipif(not winfast.available(),
                                reason="the C extension is not built (scripts/bootstrap.sh)")

P4 = 4096
ROOT = Ctx(0, 0, 1)
WIN_PAGES = 600  # two page-table chunks
OBJ_DATA = 32  # object pages 0..31 hold data, 32..39 are holes, 40 holds data (EOF 41)
REMAP_CMD = 0x40205302
POPULATE, NONBLOCK, CHGPROT = 0x8000, 0x10000, 0x20000
PAGES = [0, 1, 2, 3, 5, 510, 511, 512, 513, 599]
F_SETPIPE_SZ = 1031


class Twin:
    """One filesystem, its window, and how its replies are collected."""

    def __init__(self, native: bool) -> None:
        self.fs = fs = ShmFs(FsOptions())
        a, self.ofh = fs.create(1, b"obj", 0o644, os.O_RDWR, ROOT)
        self.obj = a.ino
        data = b"".join(struct.pack("<Q", p) * 512 for p in range(OBJ_DATA))
        fs.write(self.obj, self.ofh, 0, memoryview(data))
        fs.write(self.obj, self.ofh, 40 * P4, memoryview(b"x" * P4))
        self.t = windows_of(fs)
        w, self.wfh = fs.create(1, b"win", 0o600, os.O_RDWR, ROOT)
        self.win = w.ino
        self.rofh = fs.open(self.win, os.O_RDONLY)
        self.t.attach(self.win, self.wfh, ROOT, self.t.grant(self.obj, self.ofh, ROOT, 3),
                      WIN_PAGES * P4, 0, 3)
        fs.drain_events()
        self.ops = Operations(fs)
        self.unique = 100
        self.engine = None
        if native:
            self.rfd, self.wfd = os.pipe()
            # a 16-page remap queues 16 stores (66 KiB): more than a default pipe holds,
            # and the test reads only once the engine is idle
            fcntl.fcntl(self.wfd, F_SETPIPE_SZ, 1 << 20)
            os.set_blocking(self.rfd, False)
            self.engine = winfast.engine(self.wfd, fs, {})
            assert self.engine is not None
            fs.store_queued = self.engine.store_queued
        else:
            fs.store_queued = lambda ino, page: False

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            os.close(self.rfd)
            os.close(self.wfd)

    def _python(self, msg: bytes) -> list[bytes]:
        out = self.ops.handle(parse_request(msg))
        msgs = [encode_notify(ev) for ev in self.fs.drain_events()]
        return [*msgs, b"".join(bytes(x) for x in out)]

    def _drain(self) -> list[bytes]:
        self.engine.wait_idle()
        buf = b""
        while True:
            try:
                chunk = os.read(self.rfd, 1 << 16)
            except BlockingIOError:
                break
            buf += chunk
        out = []
        while buf:
            n = int.from_bytes(buf[:4], "little")
            out.append(buf[:n])
            buf = buf[n:]
        return out

    def ioctl(self, start: int, size: int, pgoff: int, prot: int, flags: int,
              fh: int | None = None) -> tuple[bool, list[bytes]]:
        self.unique += 1
        body = P.IOCTL_IN.pack(self.wfh if fh is None else fh, 0, REMAP_CMD, 0, 32, 0)
        body += struct.pack("<QQQII", start, size, pgoff, prot, flags)
        msg = P.IN_HEADER.pack(40 + len(body), int(P.Opcode.IOCTL), self.unique, self.win,
                               0, 0, 1, 0, 0) + body
        if self.engine is not None:
            n = self.engine.remap(memoryview(bytearray(msg)))
            if n is not None:
                got = self._drain()
                assert len(got) == n + 1
                return True, got
        return False, self._python(msg)

    def state(self) -> dict:
        ws = self.t.wins[self.win]
        vmas = ws.window.mm.vmas
        chunks = {}
        for k, vma in enumerate(vmas):
            for ck, c in vma.pt._chunks.items():
                chunks[k, ck] = (c.bits.tobytes(), c.frame.tobytes(), c.pgoff.tobytes(),
                                 c.prot.tobytes())
        pc = ws.obj.mapping.pages
        cache = {k: (pc._frames[k].tobytes(), pc._flags[k].tobytes()) for k in pc._keys}
        return {
            "vmas": [(v.start, v.end, int(v.flags), v.prot, v.pgoff) for v in vmas],
            "chunks": chunks, "cache": cache, "gen": pc.gen, "nrpages": pc.nrpages,
            "cached": set(ws.cached), "pending": dict(ws.pending), "pushed": set(ws.pushed),
            "epoch": ws.epoch, "stats": dict(self.t.stats),
            "mm": ws.window.mm.statistics(), "fstats": ws.obj.mapping.fstats.as_dict(),
            "objsize": ws.obj.mapping.size, "budget": self.t.budget.statistics(),
        }


COMMON = st.tuples(st.just("remap"), st.sampled_from(PAGES), st.integers(0, 45),
                   st.sampled_from([POPULATE, POPULATE, POPULATE, 0, NONBLOCK]),
                   st.sampled_from([P4, P4, P4, 2 * P4, 3 * P4, 16 * P4, 17 * P4]),
                   st.just(0), st.just(0), st.just(False))
OPS = st.one_of(
    COMMON, COMMON, COMMON, COMMON,
    # the common case and its neighbours
    st.tuples(st.just("remap"), st.sampled_from(PAGES), st.integers(0, 45),
              st.sampled_from([POPULATE, POPULATE, 0, NONBLOCK, POPULATE | NONBLOCK, CHGPROT,
                               0x4, POPULATE | CHGPROT]),
              st.sampled_from([P4, P4, P4, 2 * P4, P4 + 100, 100]),
              st.sampled_from([0, 0, 0, 5, 1]), st.sampled_from([0, 0, 0, 0, 1, 2]),
              st.booleans()),
    st.tuples(st.just("read"), st.sampled_from(PAGES)),
    st.tuples(st.just("writeback"), st.sampled_from(PAGES), st.integers(0, 255)),
    st.tuples(st.just("objwrite"), st.integers(0, 40), st.integers(0, 255)),
)


def _apply(tw: Twin, op: tuple) -> object:
    kind = op[0]
    if kind == "remap":
        _k, page, pgoff, flags, size, prot, misalign, ro = op
        start = page * P4 + misalign
        return tw.ioctl(start, size, pgoff, prot, flags, tw.rofh if ro else None)
    if kind == "read":
        return b"".join(bytes(v) for v in tw.t.read(tw.win, op[1] * P4, P4)) \
            if _readable(tw, op[1]) else None
    if kind == "writeback":
        try:
            return tw.t.write(tw.win, op[1] * P4 + 16, memoryview(bytes([op[2]]) * 64), 1)
        except Exception as e:  # the same refusal on both sides
            return type(e).__name__, getattr(e, "errno", None)
    tw.fs.write(tw.obj, tw.ofh, op[1] * P4 + 8, memoryview(bytes([op[2]]) * 32))
    return [encode_notify(ev) for ev in tw.fs.drain_events()]


def _readable(tw: Twin, page: int) -> bool:
    try:
        tw.t.read(tw.win, page * P4, 1)
    except Exception:
        return False
    return True


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=60))
def test_native_and_python_paths_agree(ops: list[tuple]) -> None:
    a, b = Twin(native=True), Twin(native=False)
    try:
        assert a.state() == b.state()
        for op in ops:
            ra, rb = _apply(a, op), _apply(b, op)
            if op[0] == "remap":
                assert ra[1] == rb[1], op  # the same notifications and reply bytes
            else:
                a.fs.drain_events()
                b.fs.drain_events()
                assert ra == rb, op
            assert a.state() == b.state(), op
    finally:
        a.close()
        b.close()


def test_common_case_is_native_and_exact() -> None:
    """The bench's step: after the first remap, a populating single-page REMAP of a
    resident object page is the engine's, with INVAL (page cached before) + STORE +
    reply, byte for byte as the Python path makes them."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            assert tw.ioctl(0, P4, 7, 0, POPULATE)[0] is False  # first remap: nonlinear now
        native, got = a.ioctl(P4, P4, 9, 0, POPULATE)
        assert native and got == b.ioctl(P4, P4, 9, 0, POPULATE)[1]
        assert [int.from_bytes(m[4:8], "little") for m in got] == [4, 0]  # STORE, reply
        # page 1 is now cached (pushed): moving it again invalidates it first
        native, got = a.ioctl(P4, P4, 11, 0, POPULATE)
        assert native and got == b.ioctl(P4, P4, 11, 0, POPULATE)[1]
        assert [int.from_bytes(m[4:8], "little") for m in got] == [2, 4, 0]
        page = np.frombuffer(got[1][40:], dtype="<u8")
        assert page[0] == 11 and len(got[1]) == 40 + P4
        assert a.state() == b.state()
        st_ = a.engine.statistics()
        assert st_["remaps"] == 2 and st_["stores"] == 2 and st_["invals"] == 1
        # ... and the FAULT_STATS the two share moved by one prefault each
        assert FAULT_STATS.faults > 0
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("msg", [
    b"",
    b"\x00" * 10,
    bytes(104),
    # a REMAP header claiming a longer message than it is
    P.IN_HEADER.pack(200, int(P.Opcode.IOCTL), 1, 2, 0, 0, 1, 0, 0) + bytes(64),
    # right length, wrong sizes in fuse_ioctl_in
    P.IN_HEADER.pack(104, int(P.Opcode.IOCTL), 1, 2, 0, 0, 1, 0, 0)
    + P.IOCTL_IN.pack(1, 0, REMAP_CMD, 0, 16, 0) + bytes(32),
    # huge offsets, unaligned, huge pgoff: the engine declines, Python answers EINVAL
    P.IN_HEADER.pack(104, int(P.Opcode.IOCTL), 1, 2, 0, 0, 1, 0, 0)
    + P.IOCTL_IN.pack(1, 0, REMAP_CMD, 0, 32, 0)
    + struct.pack("<QQQII", (1 << 64) - 4096, P4, (1 << 64) - 1, 0, POPULATE),
])
def test_malformed_messages_are_declined(msg: bytes) -> None:
    tw = Twin(native=True)
    try:
        before = tw.state()
        assert tw.engine.remap(memoryview(bytearray(msg))) is None
        assert tw.state() == before
    finally:
        tw.close()


def test_long_random_sequence_mostly_native() -> None:
    """A long seeded sequence in the bench's proportions (remap, touch, store back,
    write(2) of the object): hundreds of native remaps, each checked against the
    Python path's bytes and state."""
    rng = np.random.default_rng(12)
    a, b = Twin(native=True), Twin(native=False)
    native = 0
    try:
        for _ in range(600):
            r = rng.random()
            page = int(rng.choice(PAGES))
            if r < 0.6:
                op: tuple = ("remap", page, int(rng.integers(0, 46)),
                             POPULATE if rng.random() < 0.8 else NONBLOCK,
                             int(rng.choice([1, 1, 1, 2, 3])) * P4, 0, 0, False)
            elif r < 0.75:
                op = ("read", page)
            elif r < 0.95:
                op = ("writeback", page, int(rng.integers(0, 256)))
            else:
                op = ("objwrite", int(rng.integers(0, 41)), int(rng.integers(0, 256)))
            ra, rb = _apply(a, op), _apply(b, op)
            if op[0] == "remap":
                native += ra[0]
                assert ra[1] == rb[1], op
            else:
                a.fs.drain_events()
                b.fs.drain_events()
                assert ra == rb, op
            assert a.state() == b.state(), op
        assert native > 150, native
    finally:
        a.close()
        b.close()


def test_sixteen_pages_with_holes_in_one_call() -> None:
    """The largest REMAP the engine takes (16 pages, the last ones holes of the
    object that it allocates): 16 STOREs and the reply, exact; 17 pages: Python."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)  # nonlinear; an entry outside the range
            tw.t.read(tw.win, 0, 16 * P4)  # cached: the remap invalidates them first
        native, got = a.ioctl(0, 16 * P4, 24, 0, POPULATE)  # object pages 24..39: 32.. holes
        assert native and got == b.ioctl(0, 16 * P4, 24, 0, POPULATE)[1]
        assert [int.from_bytes(m[4:8], "little") for m in got] == [2] + [4] * 16 + [0]
        assert a.state() == b.state()
        native, got = a.ioctl(16 * P4, 17 * P4, 0, 0, POPULATE)
        assert not native and got == b.ioctl(16 * P4, 17 * P4, 0, 0, POPULATE)[1]
        assert a.state() == b.state()
    finally:
        a.close()
        b.close()
