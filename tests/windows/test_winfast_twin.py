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

The launder (native/winlaunder.c) is twinned the same way: a write-back WRITE
(FUSE_WRITE_CACHE, one page) goes to ``Engine.write`` first on the native twin
and must give the reply bytes and the state -- the object's page bytes, the
filesystem's operation counters, the inode times (both twins run on a counting
clock), the rmap's lookup count -- of the Python path, whether it was taken (a
redirect to the page the window showed when stored, or a DISCARD) or declined
(not pending, a refused page, another cached window page showing the target, a
hole, the object's cached copy); so are write(2)s and write-backs with nothing
pending (native/winwrite.c: stores through the page table).
"""

from __future__ import annotations

import errno
import fcntl
import itertools
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
from mount.winapi.abi import (
    QUERY_SIZE,
    REMAPV_SIZE,
    SHMFS_IOC_WIN_MPROTECT,
    SHMFS_IOC_WIN_QUERY,
    SHMFS_IOC_WIN_REMAPV,
    encode_remapv,
)
from mount.wire import protocol as P
from mount.wire.codec import encode_notify, parse_request
from tests.windows.helpers import drain_messages
from vmcore.fault import FAULT_STATS

pytestmark = pytest.mark.skipif(not winfast.available(),
                                reason="the C extension is not built (scripts/bootstrap.sh)")


@pytest.fixture(autouse=True, scope="module", params=["1", "0"], ids=["lean", "nolean"])
def winlean(request: pytest.FixtureRequest):
    """Every twin here with the engine's slot reads and cached array exports on (the
    default) and off (``SHMFS_WINLEAN=0``, winlean): the same bytes and state either
    way.  Module-scoped so that hypothesis' examples share it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHMFS_WINLEAN", request.param)
        yield request.param


P4 = 4096
ROOT = Ctx(0, 0, 1)
WIN_PAGES = 600  # two page-table chunks
OBJ_DATA = 32  # object pages 0..31 hold data, 32..39 are holes, 40 holds data (EOF 41)
REMAP_CMD = 0x40205302
MPROTECT_CMD = SHMFS_IOC_WIN_MPROTECT
POPULATE, NONBLOCK, CHGPROT = 0x8000, 0x10000, 0x20000
PAGES = [0, 1, 2, 3, 5, 510, 511, 512, 513, 599]
F_SETPIPE_SZ = 1031


class Twin:
    """One filesystem, its window, and how its replies are collected."""

    def __init__(self, native: bool) -> None:
        self.fs = fs = ShmFs(FsOptions(), clock=itertools.count(1).__next__)
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
        req = parse_request(msg)
        out = self.ops.handle(req)
        events = self.fs.drain_events()
        reply = b"".join(bytes(x) for x in out)
        if req.opcode == P.Opcode.WRITE:
            # the session's order for a WRITE (Session._handle): the reply first, then
            # the notifications of other inodes, then its own inode's
            own = [ev for ev in events if getattr(ev, "ino", None) == req.nodeid]
            other = [ev for ev in events if getattr(ev, "ino", None) != req.nodeid]
            return [reply, *(encode_notify(ev) for ev in [*other, *own])]
        return [*(encode_notify(ev) for ev in events), reply]

    def _drain(self) -> list[bytes]:
        self.engine.wait_idle()
        return drain_messages(self.rfd)

    def ioctl(self, start: int, size: int, pgoff: int, prot: int, flags: int,
              fh: int | None = None) -> tuple[bool, list[bytes]]:
        return self._send_ioctl(REMAP_CMD, struct.pack("<QQQII", start, size, pgoff, prot,
                                                       flags), 32, 0, fh)

    def mprotect(self, start: int, size: int, prot: int, flags: int,
                 fh: int | None = None) -> tuple[bool, list[bytes]]:
        """SHMFS_IOC_WIN_MPROTECT as the kernel sends it: to the engine first (its
        Engine.remap takes per-page MPROTECTs too), else the Python path."""
        return self._send_ioctl(MPROTECT_CMD, struct.pack("<QQII", start, size, prot, flags),
                                24, 0, fh)

    def query(self, first: int, count: int, flags: int = 0, fh: int | None = None,
              in_size: int = QUERY_SIZE, out_size: int = QUERY_SIZE,
              ioflags: int = 0) -> tuple[bool, list[bytes]]:
        """SHMFS_IOC_WIN_QUERY as the kernel sends it: to the engine first (its
        Engine.remap answers QUERYs, native/winvec.c), else the Python path."""
        payload = (struct.pack("<QII", first, count, flags) + bytes(QUERY_SIZE))[:in_size]
        native, got = self._send_ioctl(SHMFS_IOC_WIN_QUERY, payload, in_size, out_size, fh,
                                       ioflags)
        assert not native or len(got) == 1  # a QUERY queues no notification
        return native, got

    def remapv(self, entries: list[tuple[int, int, int, int, int]], fh: int | None = None,
               head: tuple[int, int, int, int] | None = None,
               in_size: int = REMAPV_SIZE) -> tuple[bool, list[bytes]]:
        """SHMFS_IOC_WIN_REMAPV of (start, size, pgoff, prot, flags) entries as the
        kernel sends it: to the engine first (native/winvec.c), else Python. ``head``
        overrides the struct's (count, flags, done, reserved)."""
        data = encode_remapv(entries)
        if head is not None:
            struct.pack_into("<IIII", data, 0, *head)
        return self._send_ioctl(SHMFS_IOC_WIN_REMAPV, bytes(data)[:in_size], in_size,
                                REMAPV_SIZE, fh)

    def _send_ioctl(self, cmd: int, payload: bytes, in_size: int, out_size: int,
                    fh: int | None, ioflags: int = 0) -> tuple[bool, list[bytes]]:
        """An IOCTL ``cmd`` of the window with ``payload`` as the kernel sends it: to
        the engine first (Engine.remap: REMAP, MPROTECT, QUERY, REMAPV), else Python.
        (True, the engine's messages: its notifications, then the reply) or (False,
        the Python path's)."""
        self.unique += 1
        body = P.IOCTL_IN.pack(self.wfh if fh is None else fh, ioflags, cmd, 0, in_size,
                               out_size) + payload
        msg = P.IN_HEADER.pack(40 + len(body), int(P.Opcode.IOCTL), self.unique, self.win,
                               0, 0, 1, 0, 0) + body
        if self.engine is not None:
            n = self.engine.remap(memoryview(bytearray(msg)))
            if n is not None:
                got = self._drain()
                assert len(got) == n + 1
                return True, got
        return False, self._python(msg)

    def launder(self, page: int, value: int, fh: int | None = None,
                flags: int = 1, size: int = P4, off: int = 0) -> tuple[bool, list[bytes]]:
        """The kernel's write-back of window page ``page`` (a WRITE, FUSE_WRITE_CACHE),
        or with ``flags`` 0 a write(2) of ``size`` bytes at ``off`` into the page."""
        self.unique += 1
        body = P.WRITE_IN.pack(self.wfh if fh is None else fh, page * P4 + off, size, flags, 0,
                               os.O_RDWR, 0) + bytes([value]) * size
        msg = P.IN_HEADER.pack(40 + len(body), int(P.Opcode.WRITE), self.unique, self.win,
                               0, 0, 1, 0, 0) + body
        if self.engine is not None:
            r = self.engine.write(memoryview(bytearray(msg)), self.wfd)
            if r is not None:
                assert r == 0
                return True, self._drain()
        return False, self._python(msg)

    def read_msg(self, page: int, size: int = P4, off: int = 0,
                 fh: int | None = None) -> tuple[bool, list[bytes]]:
        """The kernel's READ of ``size`` bytes at ``off`` into window page ``page``."""
        self.unique += 1
        body = P.READ_IN.pack(self.wfh if fh is None else fh, page * P4 + off, size, 0, 0,
                              os.O_RDWR, 0)
        msg = P.IN_HEADER.pack(40 + len(body), int(P.Opcode.READ), self.unique, self.win,
                               0, 0, 1, 0, 0) + body
        if self.engine is not None:
            r = self.engine.read(memoryview(bytearray(msg)), self.wfd)
            if r is not None:
                assert r == 0
                return True, self._drain()
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
            "ocached": set(self.t.objs[self.obj].cached),
            "epoch": ws.epoch, "stats": dict(self.t.stats),
            "mm": ws.window.mm.statistics(), "fstats": ws.obj.mapping.fstats.as_dict(),
            "objsize": ws.obj.mapping.size, "budget": self.t.budget.statistics(),
            "objbytes": _object_bytes(ws.obj.mapping),
            "ops": dict(self.fs._ops), "lookups": ws.obj.mapping.rmap.stats.lookups,
            "times": {i: (n.mtime_ns, n.ctime_ns) for i, n in self.fs._inodes.items()},
        }


def winfast_wfault() -> bool:
    """Whether the engine faults a store's page in (SHMFS_WINFAST_WFAULT, read by the
    Engine when it is made)."""
    return os.environ.get("SHMFS_WINFAST_WFAULT", "1") != "0"


def _object_bytes(mapping: object) -> list[bytes | None]:
    """Each object page's bytes (None: a hole), read from the arena without a fault
    (a read() would count one in the statistics the twins compare)."""
    n = (mapping.size + P4 - 1) // P4
    frames = mapping.pages.lookup_range(0, n).tolist() if n else []
    return [bytes(mapping.arena.view(f)) if f >= 0 else None for f in frames]


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
    # MAP_CHGPROT remaps with every protection (5: beyond the window's, EACCES), and
    # per-page MPROTECTs (Python's, or the engine's when it takes them)
    st.tuples(st.just("remap"), st.sampled_from(PAGES), st.integers(0, 45),
              st.sampled_from([POPULATE | CHGPROT, POPULATE | CHGPROT, CHGPROT,
                               NONBLOCK | CHGPROT]),
              st.sampled_from([P4, P4, 2 * P4, 16 * P4]), st.sampled_from([3, 3, 1, 2, 0, 5]),
              st.just(0), st.just(False)),
    st.tuples(st.just("mprotect"), st.sampled_from(PAGES), st.sampled_from([1, 1, 2, 16, 17]),
              st.sampled_from([3, 3, 1, 2, 0, 5]), st.sampled_from([0, 0, 0, 0, 0, 0, 1])),
    st.tuples(st.just("read"), st.sampled_from(PAGES)),
    # short REMAPVs (native/winvec.c): one-page entries, overlapping or not, some
    # beyond the window or the object, read-only descriptors
    st.tuples(st.just("remapv"),
              st.lists(st.tuples(st.sampled_from([*PAGES, 4, 6, 8, 600]), st.integers(0, 45),
                                 st.sampled_from([POPULATE | CHGPROT, POPULATE | CHGPROT,
                                                  CHGPROT, POPULATE, 0]),
                                 st.sampled_from([3, 3, 1, 0, 5]),
                                 st.sampled_from([1, 1, 1, 2])),
                       min_size=1, max_size=10),
              st.sampled_from([False, False, False, True])),
    # QUERY (native/winvec.c): in range, across chunks, clipped, past the end, 0, 513
    st.tuples(st.just("query"), st.sampled_from([0, 1, 5, 509, 511, 598, 600, 700]),
              st.sampled_from([1, 1, 4, 16, 512, 0, 513]), st.sampled_from([0, 0, 0, 0, 1]),
              st.sampled_from([False, False, False, True])),
    st.tuples(st.just("writeback"), st.sampled_from(PAGES), st.integers(0, 255)),
    st.tuples(st.just("objwrite"), st.integers(0, 40), st.integers(0, 255)),
    st.tuples(st.just("launder"), st.sampled_from(PAGES), st.integers(0, 255)),
    st.tuples(st.just("launder"), st.sampled_from(PAGES), st.integers(0, 255)),
    st.tuples(st.just("punch"), st.integers(0, 40)),
    # write(2) of a window through a WRITE message: the engine's store path
    st.tuples(st.just("pwrite"), st.sampled_from(PAGES), st.integers(0, 255),
              st.sampled_from([8, 100, P4, 2 * P4, 3 * P4 + 5, 17 * P4]),
              st.sampled_from([0, 0, 16, P4 - 8]), st.sampled_from([0, 0, 0, 1])),
    st.tuples(st.just("pwrite"), st.sampled_from(PAGES), st.integers(0, 255),
              st.sampled_from([8, P4]), st.just(0), st.just(0)),
    # a READ through a message: the engine's read path
    st.tuples(st.just("rmsg"), st.sampled_from(PAGES), st.sampled_from([1, 100, P4, 2 * P4,
                                                                        17 * P4]),
              st.sampled_from([0, 0, 8, P4 - 4])),
)


def _apply(tw: Twin, op: tuple) -> object:
    kind = op[0]
    if kind == "remap":
        _k, page, pgoff, flags, size, prot, misalign, ro = op
        start = page * P4 + misalign
        return tw.ioctl(start, size, pgoff, prot, flags, tw.rofh if ro else None)
    if kind == "launder":
        return tw.launder(op[1], op[2])
    if kind == "remapv":  # ([(page, pgoff, flags, prot, npages)], read-only descriptor)
        _k, ents, ro = op
        return tw.remapv([(p * P4, n * P4, pg, prot if flags & CHGPROT else 0, flags)
                          for p, pg, flags, prot, n in ents], tw.rofh if ro else None)
    if kind == "query":  # (first, count, flags, read-only descriptor)
        _k, first, count, flags, ro = op
        return tw.query(first, count, flags, tw.rofh if ro else None)
    if kind == "mprotect":  # (page, npages, prot, flags)
        _k, page, npages, prot, flags = op
        return tw.mprotect(page * P4, npages * P4, prot, flags)
    if kind == "pwrite":  # (page, value, size, offset in the page, write flags)
        _k, page, value, size, off, flags = op
        if page * P4 + off + size > WIN_PAGES * P4:
            size = WIN_PAGES * P4 - page * P4 - off
        return tw.launder(page, value, flags=flags, size=size, off=off)
    if kind == "rmsg":  # (page, size, offset in the page)
        _k, page, size, off = op
        return tw.read_msg(page, size, off)
    if kind == "punch":  # FALLOC_FL_PUNCH_HOLE | KEEP_SIZE: pending targets become DISCARD
        tw.fs.fallocate(tw.obj, tw.ofh, 3, op[1] * P4, P4)
        return [encode_notify(ev) for ev in tw.fs.drain_events()]
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


@settings(max_examples=int(os.environ.get("TWIN_EXAMPLES", "80")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=60))
def test_native_and_python_paths_agree(ops: list[tuple]) -> None:
    a, b = Twin(native=True), Twin(native=False)
    try:
        assert a.state() == b.state()
        for op in ops:
            ra, rb = _apply(a, op), _apply(b, op)
            if op[0] in ("remap", "launder", "pwrite", "rmsg", "mprotect", "query", "remapv"):
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
    native = launders = stores = reads = chg = mpr = 0
    try:
        for _ in range(600):
            r = rng.random()
            page = int(rng.choice(PAGES))
            if r < 0.45:
                op: tuple = ("remap", page, int(rng.integers(0, 46)),
                             POPULATE if rng.random() < 0.8 else NONBLOCK,
                             int(rng.choice([1, 1, 1, 2, 3])) * P4, 0, 0, False)
            elif r < 0.6:  # uml_physmem's: MAP_CHGPROT with the page's own protection
                op = ("remap", page, int(rng.integers(0, 46)),
                      CHGPROT | (POPULATE if rng.random() < 0.7 else NONBLOCK), P4,
                      int(rng.choice([3, 3, 3, 1, 0])), 0, False)
            elif r < 0.63:
                op = ("mprotect", page, int(rng.choice([1, 1, 2])), int(rng.choice([3, 1, 0])),
                      0)
            elif r < 0.75:
                op = ("read", page)
            elif r < 0.85:
                op = ("writeback", page, int(rng.integers(0, 256)))
            elif r < 0.90:
                op = ("launder", page, int(rng.integers(0, 256)))
            elif r < 0.93:
                op = ("pwrite", page, int(rng.integers(0, 256)), int(rng.choice([8, P4, 2 * P4])),
                      0, 0)
            elif r < 0.95:
                op = ("rmsg", page, int(rng.choice([8, P4, 2 * P4])), 0)
            else:
                op = ("objwrite", int(rng.integers(0, 41)), int(rng.integers(0, 256)))
            ra, rb = _apply(a, op), _apply(b, op)
            if op[0] in ("remap", "launder", "pwrite", "rmsg", "mprotect", "query", "remapv"):
                native += ra[0]
                chg += ra[0] and op[0] == "remap" and bool(op[3] & CHGPROT)
                mpr += ra[0] and op[0] == "mprotect"
                launders += ra[0] and op[0] == "launder"
                stores += ra[0] and op[0] == "pwrite"
                reads += ra[0] and op[0] == "rmsg"
                assert ra[1] == rb[1], op
            else:
                a.fs.drain_events()
                b.fs.drain_events()
                assert ra == rb, op
            assert a.state() == b.state(), op
        assert native > 150, native
        assert chg > 20, chg
        assert mpr >= 3, mpr
        assert launders > 5, launders
        assert stores >= 3, stores
        assert reads >= 3, reads
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
        # the window's INVAL, the object's attribute INVAL (the holes allocated: its
        # st_blocks), 16 STOREs, the reply
        assert [int.from_bytes(m[4:8], "little") for m in got] == [2, 2] + [4] * 16 + [0]
        assert [int.from_bytes(got[1][k:k + 8], "little") for k in (16, 24, 32)] == [
            a.obj, (1 << 64) - 1, 0]
        assert a.state() == b.state()
        native, got = a.ioctl(16 * P4, 17 * P4, 0, 0, POPULATE)
        assert not native and got == b.ioctl(16 * P4, 17 * P4, 0, 0, POPULATE)[1]
        assert a.state() == b.state()
    finally:
        a.close()
        b.close()


def test_launder_redirect_and_discard_are_native_and_exact() -> None:
    """A page the kernel cached, then remapped: its write-back goes to the object page
    it showed (pending), taken by the engine, byte for byte and state for state as in
    Python; after a punch of that object page, the write-back is dropped (DISCARD),
    also in C.  A write-back of a page with nothing pending goes to Python."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)  # nonlinear
            tw.t.read(tw.win, 3 * P4, P4)  # cached: shows object page 3
            tw.ioctl(3 * P4, P4, 9, 0, NONBLOCK)  # moved: pending[3] = (3, rw)
            assert tw.t.wins[tw.win].pending == {3: (3, 3)}
        native, got = a.launder(3, 0xA5)
        assert native and got == b.launder(3, 0xA5)[1]
        assert [int.from_bytes(m[4:8], "little") for m in got] == [0]  # the reply alone
        assert int.from_bytes(got[0][16:20], "little") == P4
        assert a.state() == b.state()
        pages = _object_bytes(a.t.wins[a.win].obj.mapping)
        assert pages[3] == bytes([0xA5]) * P4  # where it was stored
        assert pages[9][:8] == struct.pack("<Q", 9)  # not where it shows now
        assert a.t.stats["writeback_redirected"] == 1
        for tw in (a, b):  # a cached page's object page is punched: its write-back goes
            tw.t.read(tw.win, 5 * P4, P4)
            tw.fs.fallocate(tw.obj, tw.ofh, 3, 5 * P4, P4)
            tw.fs.drain_events()
            assert tw.t.wins[tw.win].pending[5] is None  # DISCARD
        native, got = a.launder(5, 0x11)
        assert native and got == b.launder(5, 0x11)[1]
        assert a.state() == b.state() and a.t.stats["writeback_discarded"] == 1
        # nothing pending for page 7: the write-back follows the page table, in Python
        native, got = a.launder(7, 0x22)
        assert not native and got == b.launder(7, 0x22)[1]
        assert a.state() == b.state()
        st_ = a.engine.statistics()
        assert st_["launders"] == 2 and st_["launders_discarded"] == 1
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("case", ["short", "long", "flags0", "flags3", "unaligned", "badfh",
                                  "otherfh", "past_end", "not_window", "huge_off", "header"])
def test_malformed_launders_are_declined(case: str) -> None:
    """What the engine must not take: each declines with the state untouched, and the
    Python path answers it (an errno, or the write it is)."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)
            tw.t.read(tw.win, 3 * P4, P4)
            tw.ioctl(3 * P4, P4, 9, 0, NONBLOCK)  # pending: the engine's case but for `case`
        kw: dict = {}
        page = 3
        if case == "short":
            kw["size"] = 100
        elif case == "long":
            kw["size"] = 2 * P4
        elif case == "flags0":
            kw["flags"] = 0  # a write(2), not a write-back
        elif case == "flags3":
            kw["flags"] = 3  # FUSE_WRITE_LOCKOWNER too
        elif case == "badfh":
            kw["fh"] = 987654
        elif case == "otherfh":
            kw["fh"] = a.ofh  # a handle of another inode: EBADF in Python
        elif case == "past_end":
            page = WIN_PAGES
        if case in ("unaligned", "not_window", "huge_off", "header"):
            a.unique += 1
            off = {"unaligned": 3 * P4 + 8, "huge_off": (1 << 63) - P4}.get(case, 3 * P4)
            node = a.obj if case == "not_window" else a.win
            body = P.WRITE_IN.pack(a.wfh, off, P4, 1, 0, 2, 0) + bytes(P4)
            n = 40 + len(body) + (8 if case == "header" else 0)
            msg = P.IN_HEADER.pack(n, int(P.Opcode.WRITE), a.unique, node, 0, 0, 1, 0, 0) + body
            before = a.state()
            assert a.engine.write(memoryview(bytearray(msg)), a.wfd) is None
            assert a.state() == before
            return
        before = a.state()
        native, got = a.launder(page, 0x33, **kw)
        # a write(2) (flags0) into the not-present page is the engine's since its store
        # fault is (native/winwrite.c): taken, with the Python path's bytes and state
        assert native == (case == "flags0" and winfast_wfault()), case
        assert got == b.launder(page, 0x33, **kw)[1]
        assert a.state() == b.state()
        assert before["objbytes"][3] == a.state()["objbytes"][3] or case in (
            "flags0", "flags3", "long", "short")  # those are real writes, in Python
    finally:
        a.close()
        b.close()


def test_launder_with_another_cached_view_is_declined() -> None:
    """Another cached window page shows the launder's target: the Python path must
    invalidate it (a notification), so the engine declines; the outcome is Python's."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 3, 0, POPULATE)  # page 20 shows object page 3 (pushed)
            tw.t.read(tw.win, 3 * P4, P4)  # page 3 (linear) shows it too, cached
            tw.ioctl(3 * P4, P4, 9, 0, NONBLOCK)  # pending[3] = (3, rw)
        native, got = a.launder(3, 0x44)
        assert not native and got == b.launder(3, 0x44)[1]
        assert a.state() == b.state()
        assert 20 not in a.t.wins[a.win].cached  # invalidated by the Python path
        assert a.engine.statistics()["launder_declined"] == 1
    finally:
        a.close()
        b.close()


def test_window_writes_are_native_and_exact() -> None:
    """write(2) and a write-back with nothing pending, of pages with a present,
    writable PTE: the engine stores through the page table (the object page shown
    now), byte for byte and state for state as in Python; a page that needs a fault,
    or another cached view of the written object page, goes to Python."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)  # nonlinear
            tw.ioctl(P4, P4, 9, 0, POPULATE)  # pages 1, 2: present, writable
            tw.ioctl(2 * P4, P4, 10, 0, POPULATE)
        cases = [
            dict(page=1, value=0x51, flags=0, size=100, off=16),  # write(2) in one page
            dict(page=1, value=0x52, flags=0, size=P4 + 16, off=P4 - 8),  # pages 2 and 3
            dict(page=1, value=0x53, flags=0, size=2 * P4, off=0),  # pages 1 and 2
            dict(page=2, value=0x54, flags=1, size=P4, off=0),  # write-back, nothing pending
        ]
        native = []
        for c in cases:
            na, ga = a.launder(c["page"], c["value"], flags=c["flags"], size=c["size"],
                               off=c["off"])
            nb, gb = b.launder(c["page"], c["value"], flags=c["flags"], size=c["size"],
                               off=c["off"])
            assert not nb and ga == gb, c
            assert a.state() == b.state(), c
            native.append(na)
        # the second case reaches page 3, never faulted: Python; the others are native
        assert native == [True, False, True, True]
        pages = _object_bytes(a.t.wins[a.win].obj.mapping)
        assert pages[9] == bytes([0x53]) * P4 and pages[10] == bytes([0x54]) * P4
        assert a.engine.statistics()["wstores"] == 3
        # another cached window page shows object page 9: Python invalidates it
        for tw in (a, b):
            tw.ioctl(5 * P4, P4, 9, 0, POPULATE)  # page 5 shows 9 too (pushed: cached)
        na, ga = a.launder(1, 0x55, flags=0, size=8, off=0)
        assert not na and ga == b.launder(1, 0x55, flags=0, size=8, off=0)[1]
        assert a.state() == b.state() and 5 not in a.t.wins[a.win].cached
    finally:
        a.close()
        b.close()


def test_window_write_attacks_are_declined_untouched() -> None:
    """Handles of another inode, unknown handles, O_APPEND handles, writes past the
    window's end and lying sizes: declined with nothing changed (Python answers)."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)
            tw.ioctl(P4, P4, 9, 0, POPULATE)
        app = a.fs.open(a.win, os.O_RDWR | os.O_APPEND)
        bpp = b.fs.open(b.win, os.O_RDWR | os.O_APPEND)
        for fh_a, fh_b in [(a.ofh, b.ofh), (424242, 424242), (app, bpp)]:
            na, ga = a.launder(1, 0x61, fh=fh_a, flags=0, size=8)
            _nb, gb = b.launder(1, 0x61, fh=fh_b, flags=0, size=8)
            assert not na and ga == gb
            assert a.state() == b.state()
        na, ga = a.launder(WIN_PAGES - 1, 0x62, flags=0, size=P4 + 8)  # past the end
        assert not na and ga == b.launder(WIN_PAGES - 1, 0x62, flags=0, size=P4 + 8)[1]
        assert a.state() == b.state()
        a.unique += 1  # the header's length and the WRITE's size disagree
        body = P.WRITE_IN.pack(a.wfh, P4, 100, 0, 0, 2, 0) + bytes(60)
        msg = P.IN_HEADER.pack(40 + len(body), int(P.Opcode.WRITE), a.unique, a.win,
                               0, 0, 1, 0, 0) + body
        before = a.state()
        assert a.engine.write(memoryview(bytearray(msg)), a.wfd) is None
        assert a.state() == before
    finally:
        a.close()
        b.close()


def test_window_reads_are_native_and_exact() -> None:
    """A READ of pages whose PTEs are present and readable, or file PTEs (the read
    fault, in C, allocating a hole): the reply (header and page bytes) and the state
    as in Python; a page whose fault raises SIGBUS, a foreign or unknown handle, a
    READ past the window's end: Python, untouched."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 0, POPULATE)
            tw.ioctl(P4, P4, 9, 0, POPULATE)
            tw.ioctl(2 * P4, P4, 10, 0, POPULATE)
            tw.ioctl(3 * P4, P4, 35, 0, POPULATE)  # a hole: populated, zero-filled
        for page, size, off, want in [(1, P4, 0, True), (1, 2 * P4, 0, True),
                                      (1, 100, 8, True), (3, P4, 0, True),
                                      (2, 3 * P4, 0, True),  # 4: a none PTE, faulted in C
                                      (WIN_PAGES - 1, 2 * P4, 0, False)]:  # past the end
            na, ga = a.read_msg(page, size, off)
            nb, gb = b.read_msg(page, size, off)
            assert na == want and not nb and ga == gb, (page, size, off)
            assert a.state() == b.state(), (page, size, off)
        # a file PTE (remapped without populating): the READ faults it in, in C -- a
        # resident object page, or a hole it allocates; a page past the object's end
        # (SIGBUS: EIO) stays Python
        for tw in (a, b):
            tw.ioctl(4 * P4, P4, 11, 0, NONBLOCK)
            tw.ioctl(5 * P4, P4, 34, 0, NONBLOCK)
            tw.ioctl(6 * P4, P4, 44, 0, NONBLOCK)
        for page, want in [(4, True), (5, True), (6, False), (4, True), (5, True)]:
            na, ga = a.read_msg(page, P4)
            nb, gb = b.read_msg(page, P4)
            assert na == want and not nb and ga == gb, page
            assert a.state() == b.state(), page
        # a none PTE (never remapped, in an existing chunk): the linear page, in C
        na, ga = a.read_msg(30, P4)
        assert na and ga == b.read_msg(30, P4)[1]
        assert a.state() == b.state()
        for tw in (a, b):  # two window pages showing one hole: one READ allocates once
            tw.ioctl(7 * P4, P4, 36, 0, NONBLOCK)
            tw.ioctl(8 * P4, P4, 36, 0, NONBLOCK)
        na, ga = a.read_msg(7, 2 * P4)
        assert not na and ga == b.read_msg(7, 2 * P4)[1]  # declined: Python's order
        assert a.state() == b.state()
        got = a.read_msg(1, 16)[1][0]
        assert got == b.read_msg(1, 16)[1][0]
        assert got[16:24] == struct.pack("<Q", 9) and len(got) == 32
        for fh_a, fh_b in [(a.ofh, b.ofh), (424242, 424242)]:
            na, ga = a.read_msg(1, P4, fh=fh_a)
            assert not na and ga == b.read_msg(1, P4, fh=fh_b)[1]
            assert a.state() == b.state()
        assert a.engine.statistics()["read"]["reads"] >= 5
    finally:
        a.close()
        b.close()


def test_chgprot_remaps_are_native_and_exact() -> None:
    """MAP_CHGPROT remaps (uml_physmem's page-table updates): the first one sets
    VM_MANYPROTS in Python; after it, populating RW and non-populating read-only or
    PROT_NONE remaps are the engine's, byte for byte and state for state.  Declined
    untouched: a protection beyond the window's (EACCES), a populating read-only
    remap of a writable window (its prefault is a write fault), a non-zero prot
    without MAP_CHGPROT (EINVAL), a read-only descriptor (EBADF)."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            assert tw.ioctl(20 * P4, P4, 7, 1, POPULATE | CHGPROT)[0] is False  # MANYPROTS
            tw.t.read(tw.win, 0, 4 * P4)  # cached: remaps of them invalidate first
        cases = [  # (start, size, pgoff, prot, flags, fh, native)
            (P4, P4, 9, 3, POPULATE | CHGPROT, None, True),
            (2 * P4, 2 * P4, 11, 1, CHGPROT, None, True),
            (5 * P4, P4, 12, 0, NONBLOCK | CHGPROT, None, True),
            (P4, P4, 9, 1, CHGPROT, None, True),  # same page, new prot: an INVAL
            (6 * P4, 3 * P4, 30, 3, POPULATE | CHGPROT, None, True),  # holes allocated
            (7 * P4, P4, 3, 5, POPULATE | CHGPROT, None, False),  # EACCES
            (7 * P4, P4, 3, 1, POPULATE | CHGPROT, None, False),  # write prefault of a RO page
            (7 * P4, P4, 3, 1, POPULATE, None, False),  # EINVAL
            (7 * P4, P4, 3, 3, POPULATE | CHGPROT, "ro", False),  # EBADF
            (7 * P4, P4, 3, 3, POPULATE | CHGPROT | 0x4, None, False),  # unknown flag
            (P4, P4, 9, 3, POPULATE | CHGPROT, None, True),
        ]
        for start, size, pgoff, prot, flags, fh, native in cases:
            fa = a.rofh if fh == "ro" else None
            fb = b.rofh if fh == "ro" else None
            na, ga = a.ioctl(start, size, pgoff, prot, flags, fa)
            nb, gb = b.ioctl(start, size, pgoff, prot, flags, fb)
            assert na is native and nb is False, (start, prot, flags)
            assert ga == gb, (start, prot, flags)
            assert a.state() == b.state(), (start, prot, flags)
        ws = a.t.wins[a.win]
        vma = ws.window.mm.vmas[0]
        assert vma.pt.get((ws.addr >> 12) + 1)[3] == 3  # page 1's own protection
    finally:
        a.close()
        b.close()


def test_mprotects_are_native_and_exact() -> None:
    """Per-page MPROTECT (uml_physmem's protect): taken by the engine once the window
    is nonlinear with VM_MANYPROTS, one coalesced INVAL of the cached pages whose
    protection changes, byte for byte and state for state (an unchanged cached page
    is refaulted: test_mprotect_refaults_are_native_and_exact); declined untouched:
    MPROTECT_VMA, a protection beyond
    the window's, prot bits beyond READ|WRITE, a range past the window, 17 pages,
    an unaligned start, a read-only descriptor, a malformed struct size."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            assert tw.mprotect(0, P4, 1, 0)[0] is False  # linear still: Python
            tw.ioctl(20 * P4, P4, 7, 1, POPULATE | CHGPROT)  # nonlinear, MANYPROTS
            tw.t.read(tw.win, 0, 6 * P4)  # cached
        cases = [  # (start, size, prot, flags, fh, native, notifications)
            (P4, P4, 1, 0, None, True, [2, 0]),  # cached, RW -> R: INVAL
            (8 * P4, 2 * P4, 0, 0, None, True, [0]),  # not cached
            (2 * P4, 3 * P4 - 100, 1, 0, None, True, [2, 0]),  # 3 pages (size rounded up)
            (P4, P4, 1, 0, None, True, [0]),  # no longer cached
            (5 * P4, P4, 3, 0, None, True, [0]),  # cached and unchanged: refaulted
            (6 * P4, P4, 1, 1, None, False, None),  # MPROTECT_VMA
            (6 * P4, P4, 4, 0, None, False, None),  # EINVAL
            (6 * P4, P4, 3 | 8, 0, None, False, None),
            ((WIN_PAGES - 1) * P4, 2 * P4, 1, 0, None, False, None),  # ENOMEM
            (30 * P4, 17 * P4, 1, 0, None, False, None),
            (6 * P4 + 1, P4, 1, 0, None, False, None),
            (6 * P4, P4, 1, 0, "ro", False, None),  # EBADF
            (6 * P4, 0, 1, 0, None, False, None),  # nothing to do: Python
        ]
        for start, size, prot, flags, fh, native, kinds in cases:
            fa = a.rofh if fh == "ro" else None
            fb = b.rofh if fh == "ro" else None
            na, ga = a.mprotect(start, size, prot, flags, fa)
            nb, gb = b.mprotect(start, size, prot, flags, fb)
            assert na is native and nb is False, (start, size, prot, flags)
            assert ga == gb, (start, size, prot, flags)
            if kinds is not None:
                assert [int.from_bytes(m[4:8], "little") for m in ga] == kinds
            assert a.state() == b.state(), (start, size, prot, flags)
        assert a.engine.statistics()["mprotects"] == 5
        # a truncated MPROTECT struct is declined and answered by Python (EINVAL)
        before = a.state()
        body = P.IOCTL_IN.pack(a.wfh, 0, MPROTECT_CMD, 0, 16, 0) + bytes(16)
        msg = P.IN_HEADER.pack(40 + len(body), int(P.Opcode.IOCTL), 1, a.win, 0, 0, 1, 0, 0)
        assert a.engine.remap(memoryview(bytearray(msg + body))) is None
        assert a.state() == before
    finally:
        a.close()
        b.close()


def _query_pages(reply: bytes) -> list[tuple[int, int, int]]:
    """(pgoff, flags, prot) rows of a QUERY reply (FUSE header, ioctl_out, struct)."""
    count = int.from_bytes(reply[32 + 8:32 + 12], "little")
    return [struct.unpack_from("<QII", reply, 32 + 32 + 16 * i) for i in range(count)]


def test_queries_are_native_and_exact() -> None:
    """QUERY (uml_physmem's query) is the engine's on a window of one VMA, linear or
    not, with pages present, file PTEs, own protections, holes, pages beyond EOF,
    cached pages, across page-table chunks and clipped at the window's end -- byte for
    byte the Python path's reply, and the same state (the "queries" counter
    included); any descriptor of the window will do (a QUERY only reads).  Declined
    untouched: flags != 0 or more than 512 pages (EINVAL), a descriptor of another
    inode or none (EBADF), a directory ioctl (ENOTTY), short in/out sizes, a split
    window (MPROTECT_VMA)."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        def both(*args: object, native: bool = True, **kw: object) -> list[bytes]:
            na, ga = a.query(*args, **kw)  # type: ignore[arg-type]
            nb, gb = b.query(*args, **kw)  # type: ignore[arg-type]
            assert na is native and nb is False, args
            assert ga == gb, args
            assert a.state() == b.state(), args
            return ga

        got = both(0, 4)  # linear window, nothing touched
        assert [p[0] for p in _query_pages(got[0])] == [0, 1, 2, 3]
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 1, POPULATE | CHGPROT)  # nonlinear, own prot
            tw.ioctl(21 * P4, 2 * P4, 35, 0, NONBLOCK)  # file PTEs of holes
            tw.ioctl(23 * P4, P4, 45, 0, NONBLOCK)  # beyond EOF
            tw.ioctl(511 * P4, 2 * P4, 3, 0, POPULATE)  # across the chunk boundary
            tw.t.read(tw.win, 0, 3 * P4)  # cached
            tw.fs.drain_events()
        rows = _query_pages(both(18, 8)[0])
        assert rows[2] == (7, 0x02 | 0x08 | 0x20, 1)  # file PTE (no RO prefault), resident
        assert rows[3][1] == 0x02 and rows[5][1] & 0x10  # file PTE of a hole; beyond EOF
        assert _query_pages(both(0, 2)[0])[0][1] & 0x40  # cached
        both(505, 16)
        both(590, 512)  # clipped to the window's 10 last pages
        both(600, 1)  # at the end: no page
        both(1 << 40, 3)  # far past it
        both(3, 0)
        both(0, 512, fh=a.rofh)  # a read-only descriptor may QUERY
        assert a.engine.statistics()["queries"] == 9
        # declined, answered by Python with its errno
        both(0, 1, flags=1, native=False)  # EINVAL
        both(0, 513, native=False)  # EINVAL
        both(0, 1, fh=a.ofh, native=False)  # another inode's descriptor: EBADF
        both(0, 1, fh=9999, native=False)  # no such descriptor: EBADF
        both(0, 1, ioflags=P.FUSE_IOCTL_DIR, native=False)  # ENOTTY
        both(0, 1, out_size=16, native=False)  # EINVAL
        errs = [int.from_bytes(both(0, 1, native=False, **kw)[-1][4:8], "little", signed=True)
                for kw in ({"flags": 1}, {"fh": 9999}, {"fh": a.ofh})]
        assert errs == [-errno.EINVAL, -errno.EBADF, -errno.EBADF]
        assert a.engine.statistics()["queries"] == 9
        for tw in (a, b):  # a split window: _state across VMAs, Python
            tw.mprotect(100 * P4, P4, 1, 1)
            tw.fs.drain_events()
        both(95, 10, native=False)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("in_size", [0, 16, QUERY_SIZE - 1])
def test_malformed_queries_are_declined(in_size: int) -> None:
    """A QUERY whose fuse_ioctl_in sizes or length do not match is declined untouched
    (mount/server/ioctl.py answers EINVAL)."""
    tw = Twin(native=True)
    try:
        before = tw.state()
        assert tw.query(0, 1, in_size=in_size)[0] is False
        assert tw.state() == before
    finally:
        tw.close()


def test_mprotect_refaults_are_native_and_exact() -> None:
    """An MPROTECT that leaves a cached page's protection unchanged (uml_physmem's
    protect to the protection a page already has) is the engine's: the page's PTE
    becomes an own-protection file PTE and is refaulted present (a MINOR read
    prefault, native/winvec.c), no notification for it, byte for byte and state for
    state (fault counters included).  Declined untouched: an unchanged cached page
    between two changing ones (the coalesced INVAL drops it: Python), the switch off
    (SHMFS_WINFAST_VEC=0)."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 1, POPULATE | CHGPROT)  # nonlinear, MANYPROTS
            tw.t.read(tw.win, 0, 8 * P4)  # cached
        faults = FAULT_STATS.faults

        def both(start: int, size: int, prot: int, native: bool, kinds: list[int] | None,
                 reread: bool = False) -> None:
            na, ga = a.mprotect(start, size, prot, 0)
            nb, gb = b.mprotect(start, size, prot, 0)
            assert na is native and nb is False, (start, size, prot)
            assert ga == gb, (start, size, prot)
            if kinds is not None:
                assert [int.from_bytes(m[4:8], "little") for m in ga] == kinds
            assert a.state() == b.state(), (start, size, prot)
            if reread:
                for tw in (a, b):
                    tw.t.read(tw.win, 0, 8 * P4)
                assert a.state() == b.state()

        both(0, P4, 3, True, [0])  # the VMA's protection, now the page's own: refaulted
        ws = a.t.wins[a.win]
        bits = ws.window.mm.vmas[0].pt.get(ws.addr >> 12)[0]
        assert bits & 0x01 and bits & 0x20 and 0 in ws.cached  # present, own prot, cached
        both(0, 3 * P4, 1, True, [2, 0], reread=True)  # all three change: one INVAL
        both(0, 3 * P4, 1, True, [0])  # all three unchanged: three refaults
        both(4 * P4, P4, 1, True, [2, 0], reread=True)
        both(3 * P4, 3 * P4, 1, False, None)  # 3 and 5 change around unchanged 4: Python
        for tw in (a, b):
            tw.t.read(tw.win, 0, 8 * P4)
        both(6 * P4, P4, 1, True, [2, 0], reread=True)
        # 5 (Python made it read-only) and 6 unchanged ahead of 7, which changes:
        # refaulted outside the INVAL's span
        both(5 * P4, 3 * P4, 1, True, [2, 0])
        assert a.engine.statistics()["mprotect_refaults"] == 1 + 3 + 2
        assert FAULT_STATS.faults > faults
    finally:
        a.close()
        b.close()


def test_short_remapvs_are_native_and_exact() -> None:
    """A short REMAPV (uml_physmem's page-table switch: 2-8 one-page MAP_CHGPROT
    entries) of disjoint entries is the engine's whole: each entry's INVAL / STOREs in
    order, then the reply with the struct copied back and ``done`` = count, byte for
    byte and state for state.  Declined untouched (Python answers, ``done`` saying how
    many entries it applied): entries that overlap or touch (an entry's range and the
    page after it), an entry the engine would decline (here: beyond the window, a
    protection beyond the window's), more than 8 entries, none, flags or reserved
    set, a read-only descriptor (EBADF), a truncated struct."""
    a, b = Twin(native=True), Twin(native=False)
    try:
        def both(ents: list[tuple[int, ...]], native: bool, **kw: object) -> list[bytes]:
            na, ga = a.remapv(ents, **kw)  # type: ignore[arg-type]
            nb, gb = b.remapv(ents, **kw)  # type: ignore[arg-type]
            assert na is native and nb is False, ents
            assert ga == gb, ents
            assert a.state() == b.state(), ents
            return ga

        rw = POPULATE | CHGPROT
        for tw in (a, b):
            tw.ioctl(20 * P4, P4, 7, 1, rw)  # nonlinear, MANYPROTS: Python
            tw.t.read(tw.win, 0, 8 * P4)  # cached
        got = both([(0, P4, 9, 3, rw), (2 * P4, P4, 10, 3, rw), (4 * P4, P4, 11, 1, CHGPROT)],
                   True)
        assert [int.from_bytes(m[4:8], "little") for m in got] == [2, 4, 2, 4, 2, 0]
        assert int.from_bytes(got[-1][32 + 8:32 + 12], "little") == 3  # done
        both([(510 * P4, P4, 33, 3, rw), (100 * P4, 2 * P4, 34, 3, rw)], True)  # holes
        both([(6 * P4, P4, 3, 0, CHGPROT)], True)
        both([(0, P4, 1, 3, rw), (P4, P4, 2, 3, rw)], False)  # 0's next page is 1
        both([(0, P4, 1, 3, rw), (0, P4, 2, 3, rw)], False)  # the same page twice
        both([(0, P4, 1, 3, rw), (600 * P4, P4, 2, 3, rw)], False)  # beyond: done = 1
        both([(0, P4, 1, 3, rw), (8 * P4, P4, 2, 5, rw)], False)  # EACCES: done = 1
        both([(2 * k * P4, P4, k, 3, rw) for k in range(9)], False)  # 9: the vector path
        both([], False)
        both([(0, P4, 1, 3, rw)], False, head=(1, 1, 0, 0))  # flags: EINVAL
        both([(0, P4, 1, 3, rw)], False, head=(1, 0, 0, 7))  # reserved: EINVAL
        both([(0, P4, 1, 3, rw)], False, fh=a.rofh)  # EBADF
        both([(0, P4, 1, 3, rw)], False, in_size=REMAPV_SIZE - 32)  # EINVAL
        both([(2 * k * P4, P4, 20 + k, 3, rw) for k in range(8)], True)
        assert a.engine.statistics()["remapvs"] == 4
    finally:
        a.close()
        b.close()
