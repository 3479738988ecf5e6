"""The clone readers' loop in C (native/hotclone.c, ``Engine.serve_clone``) against the
Python clone path (``Session._clone_cloop`` False, i.e. ``SHMFS_CLONE_CLOOP=0``): the
same replies and the same filesystem state for bursts of requests read from a clone
fd -- the hot path's (LOOKUP, CREATE, GETATTR, WRITE, READ, OPEN, RELEASE, MKDIR, RMDIR,
UNLINK, FORGET), ones the loop gives back to Python unlocked (FLUSH, STATFS, RENAME,
SETATTR, a malformed header, a large WRITE) and ones the engine declines under the lock
(a READ of an unknown handle, an OPEN with O_TRUNC) -- and the fs lock taken as
``Fairness._acquire`` takes it: a small request waits for a lock another thread holds
(and is answered only after it is let go), a request with data waits while a chunked
WRITE lets only small ones in, and a small request of another process just after a
large request marks the traffic mixed (``_note``).

In process, over socket pairs standing in for the device and the clone fd
(tests/server/test_clone_deferred.py's setting); only the clone reader runs."""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fsimpl import FsOptions, ShmFs
from mount.server import hotpath
from mount.server import session as session_mod
from mount.server.ops import Operations, OpsConfig
from mount.server.session import Session
from tests.reliability import wire as W

pytestmark = pytest.mark.skipif(not hotpath.available(), reason="_hotpath not built")

OUT = struct.Struct("<IiQ")
WAIT_S = 10.0  # bounded waits for a state the reader reaches
FUTURE_NS = 10**15  # "now" for the session's clock comparisons, whatever the timing


@contextmanager
def clone_session(c_loop: bool, c_spin: bool = True, *, spinning: int = 0
                  ) -> Iterator[tuple[Session, socket.socket]]:
    """A session whose one clone reader (up: ``_busy`` set) reads ``peer``'s messages;
    ``c_spin``: a configured clone spin runs in the C loop (else in Python around it);
    ``spinning``: another clone marked spinning (``_spinning``) for the whole run."""
    main_a, main_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    clone_a, clone_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with main_a, main_b, clone_a, clone_b:
        fs = ShmFs(FsOptions(size_bytes=64 << 20, nr_inodes=1000))
        s = Session(main_a.fileno(), Operations(fs, OpsConfig()),
                    Path("/nonexistent-shmfs-clone-loop"))
        assert s._hotpath is not None
        s._clone_cloop = c_loop
        s._clone_cspin = c_spin
        s._spinning = spinning
        s._fs_lock = threading.Lock()
        s._turn = threading.Condition(threading.Lock())
        s._clones = 1
        # the traffic mixed for the whole test (else the reader parks after a request)
        s._last_small = time.perf_counter_ns() + FUTURE_NS
        s._busy.set()
        fd = os.dup(clone_a.fileno())  # the reader closes its fd on the way out
        t = threading.Thread(target=s._clone_reader, args=(fd,), daemon=True)
        t.start()
        clone_b.settimeout(WAIT_S)
        try:
            yield s, clone_b
        finally:
            s._done = True
            s._busy.set()
            t.join(WAIT_S)
        assert not t.is_alive()
        # nothing on the main device fd: every reply is the clone's
        assert select.select([main_b], [], [], 0)[0] == []


def recv_all(peer: socket.socket, n: int) -> dict[int, tuple[int, bytes]]:
    out = {}
    for _ in range(n):
        data = peer.recv(4 << 20)
        length, err, unique = OUT.unpack_from(data)
        assert length == len(data) and unique not in out
        out[unique] = (err, data[16:])
    return out


def _masked(payload: bytes) -> bytes:
    """A reply without its clock-dependent bytes (attr_out's and entry_out's times) and
    the mount's random generation number (entry_out's)."""
    if len(payload) == 104:  # attr_out: fuse_attr at 16, its times at +24..+60
        return payload[:40] + payload[76:]
    if len(payload) in (128, 144):  # entry_out (+ open_out): fuse_attr at 40
        return payload[:8] + payload[16:64] + payload[100:]
    return payload


def create_in(flags: int, name: bytes) -> bytes:
    return struct.pack("<IIII", flags, 0o100644, 0o022, 0) + name + b"\0"


def rw_in(fh: int, off: int, size: int) -> bytes:
    return struct.pack("<QQIIQII", fh, off, size, 0, 0, os.O_RDWR, 0)


def _script(s: Session, peer: socket.socket) -> tuple[list, list]:
    """Rounds of bursts on the clone fd: every reply (masked) in order of unique, and
    the files' final (name, size, bytes) read through the fs."""
    replies: list = []
    kept: list[tuple[bytes, int, int]] = []
    for r in range(6):
        u = 1000 * (r + 1)
        name = f"f{r}".encode()
        c = recv_all(_send(peer, [W.request(W.CREATE, u, 1, create_in(os.O_RDWR, name))]), 1)
        err, payload = c[u]
        assert err == 0
        ino = struct.unpack_from("<Q", payload)[0]
        fh = struct.unpack_from("<Q", payload, 128)[0]
        data = bytes([65 + r]) * (700 + r)
        burst = [
            W.request(W.LOOKUP, u + 1, 1, b"nope\0"),                      # ENOENT, hot
            W.request(W.WRITE, u + 2, ino, rw_in(fh, 0, len(data)) + data),  # hot
            W.request(W.GETATTR, u + 3, ino, bytes(16)),                    # hot
            W.request(W.READ, u + 4, ino, rw_in(fh, 0, 4096)),              # hot
            W.request(W.FLUSH, u + 5, ino, struct.pack("<QIIQ", fh, 0, 0, 0)),  # Python's
            W.request(W.STATFS, u + 6, 1),                                  # Python's
            W.request(W.READ, u + 7, ino, rw_in(fh + 99, 0, 10)),           # declined: EBADF
            W.request(W.OPEN, u + 8, ino, struct.pack("<II", os.O_RDWR, 0)),  # hot
            W.request(W.MKDIR, u + 9, 1, struct.pack("<II", 0o755, 0o022) + b"d\0"),
            W.request(W.RMDIR, u + 10, 1, b"d\0"),
            W.request(W.GETATTR, u + 11, ino, bytes(16), length=80),        # malformed
            W.request(W.LOOKUP, u + 12, 1, name + b"\0"),                   # hot
        ]
        want = 12
        if r % 2:  # odd rounds: the file renamed, truncated by an OPEN, unlinked
            burst += [
                W.request(W.RENAME, u + 13, 1, struct.pack("<Q", 1) + name + b"\0x\0"),
                W.request(W.OPEN, u + 14, ino, struct.pack("<II", os.O_RDWR | os.O_TRUNC, 0)),
                W.request(W.UNLINK, u + 15, 1, b"x\0"),
                W.request(W.FORGET, 0, ino, struct.pack("<Q", 1)),          # no reply
            ]
            want += 3
        else:  # even rounds: a 100 KiB WRITE (more than the loop takes) and a truncate
            big = bytes([97 + r]) * (100 << 10)
            burst += [
                W.request(W.WRITE, u + 13, ino, rw_in(fh, 4096, len(big)) + big),
                W.request(W.SETATTR, u + 14, ino, struct.pack(
                    "<IIQQQQQQIIIIIIII", 1 << 3, 0, 0, 50_000, 0, 0, 0, 0, 0, 0, 0, 0,
                    0, 0, 0, 0)),
            ]
            want += 2
        got = recv_all(_send(peer, burst), want)
        got.update(c)
        replies += [(u2, err2, _masked(p2)) for u2, (err2, p2) in sorted(got.items())]
        if not r % 2:
            kept.append((name, ino, fh))
    # the state: each kept file's attributes and bytes, the renamed ones gone
    final = []
    u = 90_000
    for name, ino, fh in kept:
        final += [W.request(W.LOOKUP, u, 1, name + b"\0"),
                  W.request(W.READ, u + 1, ino, rw_in(fh, 0, 200 << 10))]
        u += 2
    final += [W.request(W.LOOKUP, u, 1, b"x\0"), W.request(W.STATFS, u + 1, 1)]
    got = recv_all(_send(peer, final), len(final))
    state = [(u2, err2, _masked(p2)) for u2, (err2, p2) in sorted(got.items())]
    return replies, state


def _send(peer: socket.socket, msgs: list[bytes]) -> socket.socket:
    for m in msgs:
        peer.send(m)
    return peer


def test_the_clone_loop_answers_as_the_python_clone_path() -> None:
    with clone_session(True) as (s, peer):
        c_replies, c_state = _script(s, peer)
        c_stats = s.statistics()
    with clone_session(False) as (s, peer):
        py_replies, py_state = _script(s, peer)
        py_stats = s.statistics()
    assert c_replies == py_replies
    assert c_state == py_state
    errs = {u: e for u, e, _ in c_replies}
    assert errs[1001] == -2 and errs[1007] == -9  # ENOENT, EBADF (the declined READ)
    # odd rounds' RENAME, OPEN(O_TRUNC), UNLINK; even rounds' 100 KiB WRITE, truncate
    assert [errs[u] for u in (2013, 2014, 2015, 1013, 1014)] == [0, 0, 0, 0, 0]
    # the kept files hold what was written, truncated to 50,000 bytes
    sizes = [p for u, e, p in c_state if e == 0 and len(p) > 1000]
    assert sizes and all(len(p) == 50_000 for p in sizes)
    cl = c_stats["hotpath"]
    py = py_stats["hotpath"]
    assert cl["clone_loop_served"] >= 6 * 8  # the hot requests of every round
    assert cl["clone_loop_returned"] >= 6 * 4  # FLUSH, STATFS, malformed, declined...
    assert cl["errors"] == 0 and cl["write_errors"] == 0
    assert py["clone_loop_entries"] == 0 and py["clone_loop_served"] == 0
    # the same requests counted per opcode, and as read by the clone: none twice
    count = {op: v["count"] for op, v in c_stats["requests"].items()}
    assert count == {op: v["count"] for op, v in py_stats["requests"].items()}
    assert c_stats["second_reader_requests"] == py_stats["second_reader_requests"] > 0


SPIN_NS = 200_000  # a clone spin long enough for a burst's next request to be waiting


@pytest.mark.parametrize("c_loop,c_spin", [(True, True), (True, False), (False, False)])
def test_the_clone_spin_gives_the_same_replies(monkeypatch: pytest.MonkeyPatch,
                                               c_loop: bool, c_spin: bool) -> None:
    """Twins: with a clone spin configured (``SHMFS_CLONE_SPIN_US``) -- in the C loop, in
    Python around it, or on the Python clone path -- the same replies and final state as
    without one, and the spins counted where they ran; none left marked spinning."""
    # (statistics and _spinning read once the reader has left: a request is counted
    # after its reply is out, and a spin may run on after the last one)
    with clone_session(True) as (s, peer):
        base_replies, base_state = _script(s, peer)
    base = s.statistics()
    monkeypatch.setattr(session_mod, "CLONE_SPIN_NS", SPIN_NS)
    with clone_session(c_loop, c_spin) as (s, peer):
        replies, state = _script(s, peer)
    st = s.statistics()
    assert s._spinning == 0
    assert replies == base_replies and state == base_state
    count = {op: v["count"] for op, v in st["requests"].items()}
    assert count == {op: v["count"] for op, v in base["requests"].items()}
    assert base["clone_spins"] == 0 and base["hotpath"]["clone_loop_spins"] == 0
    hp = st["hotpath"]
    # a spin after (nearly) every request answered; the bursts' next requests are
    # waiting, so spins find them
    assert st["clone_spins"] >= 6 * 8 and st["clone_spin_hits"] > 0
    if c_loop and c_spin:  # the loop spun itself, and answered many per call
        served = hp["clone_loop_served"]
        assert served > hp["clone_loop_entries"]
        # a spin after every request it answered but at most one a call (the batch
        # limit), counted in the session's clone_spins too
        assert hp["clone_loop_spins"] >= served - hp["clone_loop_entries"]
        assert 0 < hp["clone_loop_spin_hits"] <= hp["clone_loop_spins"] <= served
        # and Python spun only after the requests it answered itself: never again
        # after the loop's own spin
        python_answered = st["second_reader_requests"] - served
        assert st["clone_spins"] - hp["clone_loop_spins"] <= python_answered
        assert st["clone_spin_hits"] >= hp["clone_loop_spin_hits"]
    else:
        assert hp["clone_loop_spins"] == 0


def test_no_clone_spin_while_another_clone_spins(monkeypatch: pytest.MonkeyPatch) -> None:
    """One clone spins at a time (decisions 36): with another marked spinning the loop
    sleeps in poll(2) at once, and leaves the other's mark alone."""
    monkeypatch.setattr(session_mod, "CLONE_SPIN_NS", SPIN_NS)
    with clone_session(True, True, spinning=9999) as (s, peer):
        replies, _ = _script(s, peer)
    st = s.statistics()
    assert s._spinning == 9999
    assert replies and st["clone_spins"] == 0
    assert st["hotpath"]["clone_loop_spins"] == 0 and st["hotpath"]["clone_loop_served"] > 0


def _wait_until(cond) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, "the reader never got there"
        time.sleep(0.001)


@pytest.mark.parametrize("c_loop", [True, False])
def test_a_small_request_waits_for_the_fs_lock(c_loop: bool) -> None:
    """The lock held by another thread: the clone's GETATTR counts itself waiting
    (``_waiting``, as _acquire does) and is answered only once the lock is let go."""
    with clone_session(c_loop) as (s, peer):
        lock = s._fs_lock
        assert lock is not None
        lock.acquire()
        try:
            peer.send(W.request(W.GETATTR, 5, 1, bytes(16)))
            _wait_until(lambda: s._waiting == 1)
            assert select.select([peer], [], [], 0)[0] == []  # not answered meanwhile
        finally:
            lock.release()
        got = recv_all(peer, 1)
        assert got[5][0] == 0
        assert s._waiting == 0
        waits = s.statistics()["hotpath"]["clone_loop_lock_waits"]
    assert waits == (1 if c_loop else 0)


@pytest.mark.parametrize("c_loop", [True, False])
def test_a_data_request_waits_while_a_write_is_chunked(c_loop: bool) -> None:
    """With ``_chunking`` set (a large WRITE lets only small requests in between its
    chunks, and during its unlocked copy) a READ does not run even though the lock is
    free; a GETATTR after it does not overtake it (one reader, in order); once the chunked
    WRITE is over the READ is answered."""
    with clone_session(c_loop) as (s, peer):
        c = recv_all(_send(peer, [W.request(W.CREATE, 1, 1, create_in(os.O_RDWR, b"f"))]), 1)
        ino = struct.unpack_from("<Q", c[1][1])[0]
        fh = struct.unpack_from("<Q", c[1][1], 128)[0]
        s._chunking = True
        try:
            peer.send(W.request(W.READ, 2, ino, rw_in(fh, 0, 10)))
            # the reader is in _acquire's wait for the chunked WRITE to end (it looks
            # again every 50 ms): nothing is answered in several of those
            assert select.select([peer], [], [], 0.3)[0] == []
            assert not s._fs_lock.locked()  # type: ignore[union-attr]
        finally:
            with s._turn:  # type: ignore[union-attr]
                s._chunking = False
                s._turn.notify_all()  # type: ignore[union-attr]
        got = recv_all(peer, 1)
        assert got[2][0] == 0


@pytest.mark.parametrize("c_loop", [True, False])
def test_a_small_request_after_a_large_one_marks_the_traffic_mixed(c_loop: bool) -> None:
    """``_note``: a small request of another process than the last large request's,
    within 10 ms of it, sets ``_last_small`` (the chunking and the clones' spell);
    one of the large request's own process does not."""
    with clone_session(c_loop) as (s, peer):
        s._big_pid = 4242  # wire.request's pid
        s._big_ns = time.perf_counter_ns() + FUTURE_NS  # "just now", whatever the timing
        before = s._last_small  # in the future: mixed all along (clone_session)
        recv_all(_send(peer, [W.request(W.GETATTR, 1, 1, bytes(16))]), 1)
        assert s._last_small == before  # the writer's own GETATTR
        s._big_pid = 1
        recv_all(_send(peer, [W.request(W.GETATTR, 2, 1, bytes(16))]), 1)
        assert s._last_small < before  # set to the request's "now"
        recv_all(_send(peer, [W.request(W.FORGET, 0, 5, struct.pack("<Q", 1)),
                              W.request(W.GETATTR, 3, 1, bytes(16))]), 1)
