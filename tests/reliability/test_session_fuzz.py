"""Hostile input to the real session loop, without the kernel.

``mount.server.session.Session`` serves a fresh ShmFs over a SOCK_SEQPACKET socketpair
(session_driver.py) after a valid INIT. Hypothesis feeds it malformed,
truncated, oversized and random requests; after every one a GETATTR probe
must be answered, every request that is owed a reply gets exactly one with a
valid errno (or success), and none is answered twice or out of thin air.
At the end DESTROY must stop the session cleanly (exit status 0, no exception
escaped). The targeted cases pin what the answer must be: READ/WRITE at
2^63-1 and "negative" (>= 2^63) offsets, ioctl structs with huge sizes,
256-byte names, forgets of unknown nodes, requests for nodes that do not exist.
"""

from __future__ import annotations

import errno as E
import itertools
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mount.winapi import abi
from tests.reliability import wire as W
from tests.reliability.wire import Channel, check_replies, owed_reply, request

MAX_FILE_SIZE = 2**63 - 1  # tmpfs s_maxbytes: MAX_LFS_FILESIZE = LLONG_MAX
FUZZ = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_uniques = itertools.count(1000)


class Files:
    """A file (nodeid, open fh) and a directory created through the protocol."""

    def __init__(self, ch: Channel, tag: int = 0) -> None:
        r = ch.call(W.CREATE, next(_uniques), 1,
                    struct.pack("<IIII", 2, 0o100644, 0o022, 0) + b"victim%d\0" % tag)
        assert r.error == 0
        self.file = struct.unpack_from("<Q", r.payload)[0]
        self.fh = struct.unpack_from("<Q", r.payload, 128)[0]
        r = ch.call(W.WRITE, next(_uniques), self.file,
                    struct.pack("<QQIIQII", self.fh, 0, 5, 0, 0, 0, 0) + b"hello")
        assert r.error == 0
        r = ch.call(W.MKDIR, next(_uniques), 1,
                    struct.pack("<II", 0o755, 0o022) + b"d%d\0" % tag)
        assert r.error == 0
        self.dir = struct.unpack_from("<Q", r.payload)[0]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Channel, Files]]:
    with W.served_session() as ch:
        yield ch, Files(ch)
    # served_session checked: DESTROY answered, driver exit status 0. And no handler
    # met an exception it did not expect (answered EIO: a bug even if the session lives).
    assert ch.final_stats["ops"]["unexpected"] == 0, ch.stderr  # type: ignore[index]


@pytest.fixture
def fresh(served: tuple[Channel, Files]) -> tuple[Channel, Files]:
    """A file and handle of its own for a targeted test (fuzzing may have released
    or changed the shared ones)."""
    ch, _ = served
    return ch, Files(ch, next(_uniques))


def _exchange(ch: Channel, msg: bytes) -> list[W.Reply]:
    replies = ch.exchange(msg)
    if len(msg) >= 16:
        check_replies(replies, struct.unpack_from("<Q", msg, 8)[0], owed_reply(msg))
    else:
        check_replies(replies, 0, False)
    return replies


def _tame(msg: bytes) -> bytes:
    """Keep a fuzzed message from ending the session (DESTROY) or faking a probe."""
    b = bytearray(msg)
    if len(b) >= 8 and struct.unpack_from("<I", b, 4)[0] == W.DESTROY:
        struct.pack_into("<I", b, 4, W.STATFS)
    if len(b) >= 16:
        struct.pack_into("<Q", b, 8, struct.unpack_from("<Q", b, 8)[0] % W.PROBE_BASE)
    return bytes(b)


@FUZZ
@given(st.binary(min_size=0, max_size=300))
def test_random_bytes_are_answered_once_and_the_session_keeps_serving(
        served: tuple[Channel, Files], raw: bytes) -> None:
    ch, _ = served
    _exchange(ch, _tame(raw))


EXTREME = st.sampled_from([0, 1, 4095, 4096, 2**31 - 1, 2**32 - 1, 2**63 - 4097, MAX_FILE_SIZE,
                           2**63 - 1, 2**63, 2**64 - 4096, 2**64 - 1])
U64 = st.one_of(EXTREME, st.integers(0, 2**64 - 1))
U32 = st.one_of(st.sampled_from([0, 1, 255, 256, 4096, 2**31, 2**32 - 1]),
                st.integers(0, 2**32 - 1))


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A body shaped like the fixed structs (u64/u32 fields with edge values), then
    maybe a name, maybe garbage, maybe cut short."""
    fields = draw(st.lists(st.one_of(U64.map(lambda v: struct.pack("<Q", v)),
                                     U32.map(lambda v: struct.pack("<I", v))), max_size=8))
    body = b"".join(fields)
    tail = draw(st.one_of(st.just(b""), st.binary(max_size=64),
                          st.integers(0, 300).map(lambda n: b"n" * n + b"\0"),
                          st.just(b"a\0b\0"), st.just(b"\0")))
    body += tail
    cut = draw(st.integers(0, len(body)))
    return body[:cut] if draw(st.booleans()) else body


@FUZZ
@given(opcode=st.one_of(st.sampled_from(W.ALL_OPCODES), st.integers(0, 2**32 - 1)),
       node=st.sampled_from(["file", "dir", "root", 0, 77777, 2**64 - 1]),
       body=bodies(), length_delta=st.sampled_from([0, 0, 0, 0, -1, 1, -40, 10_000]),
       unique=st.integers(1, 2**62 - 1), uid=st.sampled_from([0, 65534]))
def test_structured_requests_with_edge_values(served: tuple[Channel, Files], opcode: int,
                                              node: object, body: bytes, length_delta: int,
                                              unique: int, uid: int) -> None:
    ch, files = served
    nodeid = {"file": files.file, "dir": files.dir, "root": 1}.get(node, node)  # type: ignore[call-overload]
    if opcode == W.DESTROY:
        opcode = W.STATFS
    n = W.IN_HEADER.size + len(body)
    msg = request(opcode, unique, nodeid, body, uid=uid, gid=uid, length=max(0, n + length_delta))
    _exchange(ch, msg)


# --- targeted cases -------------------------------------------------------------------------------


def _reset(ch: Channel, files: Files) -> None:
    """The victim file back to its 5 bytes "hello" (fuzzing may have changed it)."""
    sa = struct.pack("<IIQQQqqqIIIIIIII", 1 << 3, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert ch.call(W.SETATTR, next(_uniques), files.file, sa).error == 0
    assert _rw(ch, files, W.WRITE, 0, 5, b"hello").error == 0


def _rw(ch: Channel, files: Files, opcode: int, off: int, size: int, data: bytes = b"") -> W.Reply:
    body = struct.pack("<QQIIQII", files.fh, off, size, 0, 0, 0, 0) + data
    return ch.call(opcode, next(_uniques), files.file, body)


@pytest.mark.parametrize("off", [2**63 - 1, MAX_FILE_SIZE, MAX_FILE_SIZE - 1, 2**63, 2**64 - 1,
                                 2**64 - 4096])
@pytest.mark.parametrize("size", [0, 1, 4096, 2**32 - 1])
def test_read_at_extreme_offsets_returns_nothing(fresh: tuple[Channel, Files], off: int,
                                                 size: int) -> None:
    ch, files = fresh
    _reset(ch, files)
    r = _rw(ch, files, W.READ, off, size)
    assert r.error in (0, -E.EINVAL, -E.EOVERFLOW, -E.EFBIG)
    if r.error == 0:
        assert r.payload == b""  # far past EOF: no bytes, never another file's memory


@pytest.mark.parametrize("off", [MAX_FILE_SIZE - 2, MAX_FILE_SIZE, 2**63, 2**64 - 1, 2**64 - 4096])
def test_write_past_the_largest_file_is_refused_or_clipped(fresh: tuple[Channel, Files],
                                                           off: int) -> None:
    ch, files = fresh
    _reset(ch, files)
    r = _rw(ch, files, W.WRITE, off, 3, b"abc")
    if off < MAX_FILE_SIZE:  # generic_write_checks: clipped to what fits below the limit
        assert r.error == 0 and struct.unpack_from("<I", r.payload)[0] == MAX_FILE_SIZE - off
    else:
        assert r.error in (-E.EFBIG, -E.EINVAL), r
    a = ch.call(W.GETATTR, next(_uniques), files.file, bytes(16))
    size = struct.unpack_from("<Q", a.payload, 16 + 8)[0]
    assert size < 2**63 and size <= MAX_FILE_SIZE


def test_write_ending_exactly_at_the_limit_then_reads_back(fresh: tuple[Channel, Files]) -> None:
    ch, files = fresh
    _reset(ch, files)
    r = _rw(ch, files, W.WRITE, MAX_FILE_SIZE - 3, 3, b"xyz")
    assert r.error == 0 and struct.unpack_from("<I", r.payload)[0] == 3
    r = _rw(ch, files, W.READ, MAX_FILE_SIZE - 4, 100)
    assert r.error == 0 and r.payload == b"\0xyz"
    r = _rw(ch, files, W.READ, 0, 5)
    assert r.payload == b"hello"
    _reset(ch, files)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(cmd=U32, flags=U32, arg=U64, in_size=U32, out_size=U32, payload=st.binary(max_size=200),
       fh=st.sampled_from(["fh", 0, 2**64 - 1]))
def test_ioctl_with_garbage_and_huge_sizes(served: tuple[Channel, Files], cmd: int, flags: int,
                                           arg: int, in_size: int, out_size: int,
                                           payload: bytes, fh: object) -> None:
    ch, files = served
    handle = files.fh if fh == "fh" else fh
    body = struct.pack("<QIIQII", handle, flags, cmd, arg, in_size, out_size) + payload
    r = ch.call(W.IOCTL, next(_uniques), files.file, body)
    if not (cmd >> 8) & 0xFF == ord("S"):
        assert r.error < 0  # not a shmfs command: an errno, never success


WINDOW_CMDS = [abi.SHMFS_IOC_WIN_ATTACH, abi.SHMFS_IOC_WIN_REMAP,
               abi.SHMFS_IOC_WIN_MPROTECT, abi.SHMFS_IOC_WIN_MADVISE,
               abi.SHMFS_IOC_WIN_QUERY, abi.SHMFS_IOC_WIN_INFO, abi.SHMFS_IOC_STATS]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(cmd=st.sampled_from(WINDOW_CMDS), node=st.sampled_from(["file", "dir", "root", 424242]),
       fh=st.sampled_from(["fh", 0, 2**64 - 1]), in_size=st.one_of(st.none(), U32),
       out_size=U32, fields=st.lists(U64.map(lambda v: struct.pack("<Q", v)), max_size=6),
       cut=st.integers(0, 64))
def test_window_ioctls_with_garbage_structs_are_answered_once(
        served: tuple[Channel, Files], cmd: int, node: object, fh: object, in_size: int | None,
        out_size: int, fields: list[bytes], cut: int) -> None:
    """The real window commands with garbage (and truncated, and huge) structs, on files
    that are no windows, directories and nodes that do not exist."""
    ch, files = served
    nodeid = {"file": files.file, "dir": files.dir, "root": 1}.get(node, node)  # type: ignore[call-overload]
    handle = files.fh if fh == "fh" else fh
    payload = b"".join(fields)[:cut]
    size = len(payload) if in_size is None else in_size
    body = struct.pack("<QIIQII", handle, 0, cmd, 0, size, out_size) + payload
    _exchange(ch, request(W.IOCTL, next(_uniques), nodeid, body))


NAME_OPS = {
    W.LOOKUP: b"", W.UNLINK: b"", W.RMDIR: b"", W.MKDIR: struct.pack("<II", 0o755, 0),
    W.MKNOD: struct.pack("<IIII", 0o100644, 0, 0, 0),
    W.CREATE: struct.pack("<IIII", 2, 0o644, 0, 0),
}


@pytest.mark.parametrize("opcode", sorted(NAME_OPS))
def test_names_of_256_bytes_are_enametoolong(served: tuple[Channel, Files], opcode: int) -> None:
    ch, _ = served
    r = ch.call(opcode, next(_uniques), 1, NAME_OPS[opcode] + b"x" * 256 + b"\0")
    assert r.error == -E.ENAMETOOLONG
    r = ch.call(W.RENAME, next(_uniques), 1,
                struct.pack("<Q", 1) + b"victim\0" + b"y" * 256 + b"\0")
    assert r.error == -E.ENAMETOOLONG
    r = ch.call(W.LINK, next(_uniques), 1, struct.pack("<Q", 2) + b"z" * 256 + b"\0")
    assert r.error == -E.ENAMETOOLONG


def test_name_of_255_bytes_is_fine(served: tuple[Channel, Files]) -> None:
    ch, _ = served
    name = b"m" * 255
    r = ch.call(W.MKDIR, next(_uniques), 1, struct.pack("<II", 0o755, 0) + name + b"\0")
    assert r.error == 0
    assert ch.call(W.RMDIR, next(_uniques), 1, name + b"\0").error == 0


@FUZZ
@given(forgets=st.lists(st.tuples(st.sampled_from([1, 0, 55555, 2**63, 2**64 - 1]), U64),
                        min_size=0, max_size=20),
       count_delta=st.sampled_from([0, 0, 1, -1, 2**31]))
def test_forgets_of_unknown_nodes_are_ignored(served: tuple[Channel, Files],
                                              forgets: list[tuple[int, int]],
                                              count_delta: int) -> None:
    ch, files = served
    for nodeid, nlookup in forgets[:3]:
        assert ch.exchange(request(W.FORGET, next(_uniques), nodeid,
                                   struct.pack("<Q", nlookup))) == []
    count = max(0, min(len(forgets) + count_delta, 2**32 - 1))
    body = struct.pack("<II", count, 0) + b"".join(struct.pack("<QQ", *f) for f in forgets)
    assert ch.exchange(request(W.BATCH_FORGET, next(_uniques), 0, body)) == []
    # the file and the root were never forgotten by "the kernel": still there
    assert ch.call(W.GETATTR, next(_uniques), files.file, bytes(16)).error == 0


NODE_OPS = {
    W.GETATTR: bytes(16), W.READLINK: b"", W.LOOKUP: b"x\0", W.OPEN: bytes(8),
    W.OPENDIR: bytes(8), W.MKDIR: struct.pack("<II", 0o755, 0) + b"x\0",
    W.CREATE: struct.pack("<IIII", 2, 0o644, 0, 0) + b"x\0", W.UNLINK: b"x\0",
    W.READ: struct.pack("<QQIIQII", 1, 0, 4096, 0, 0, 0, 0),
    W.WRITE: struct.pack("<QQIIQII", 1, 0, 1, 0, 0, 0, 0) + b"q",
    W.SETXATTR: struct.pack("<II", 1, 0) + b"user.a\0" + b"v", W.LISTXATTR: bytes(8),
    W.FALLOCATE: struct.pack("<QQQII", 1, 0, 4096, 0, 0),
    W.LSEEK: struct.pack("<QQII", 1, 0, 3, 0), W.ACCESS: bytes(8),
    W.SETATTR: struct.pack("<IIQQQqqqIIIIIIII", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0o644, 0, 0, 0),
}


@pytest.mark.parametrize("nodeid", [0, 987654, 2**64 - 1])
@pytest.mark.parametrize("opcode", sorted(NODE_OPS))
def test_requests_for_nodes_that_do_not_exist_fail(served: tuple[Channel, Files], nodeid: int,
                                                   opcode: int) -> None:
    ch, _ = served
    r = ch.call(opcode, next(_uniques), nodeid, NODE_OPS[opcode])
    assert r.error < 0


def test_session_ends_cleanly_and_no_handler_hit_an_unexpected_exception() -> None:
    """A fresh session through the targeted battery, then DESTROY: exit 0, and ops
    counted no unexpected exception (each would have been an EIO from a handler bug)."""
    with W.served_session() as ch:
        files = Files(ch)
        for off in (2**63 - 1, 2**63, 2**64 - 1):
            _rw(ch, files, W.READ, off, 4096)
            _rw(ch, files, W.WRITE, off, 1, b"x")
        for opcode, body in NODE_OPS.items():
            ch.call(opcode, next(_uniques), 987654, body)
        ch.call(W.IOCTL, next(_uniques), files.file,
                struct.pack("<QIIQII", files.fh, 0, 0x5401, 0, 2**32 - 1, 2**32 - 1))
        ch.exchange(request(W.BATCH_FORGET, next(_uniques), 0, struct.pack("<II", 2**31, 0)))
        ch.call(W.FALLOCATE, next(_uniques), files.file,
                struct.pack("<QQQII", files.fh, 2**63 - 1, 2**63 - 1, 0, 0))
        ch.call(W.LSEEK, next(_uniques), files.file,
                struct.pack("<QQII", files.fh, 2**64 - 1, 3, 0))
    stats = ch.final_stats
    assert stats["destroyed"] is True
    assert stats["ops"]["unexpected"] == 0, ch.stderr  # type: ignore[index]
    assert "Traceback" not in ch.stderr, ch.stderr


# ------------------------------------------------- an unprivileged user against windows
# The kernel puts the caller's own (nodeid, fh) into every IOCTL it forwards: a user can
# only issue window commands on files it opened.  So the attacker below (uid 1000) holds
# two files of its own and throws every window command at them with garbage and with
# plausible structs -- root's inode numbers where a token goes, tokens it really got
# from GRANT on its own file, any sizes and pgoffs -- and reads through whatever window
# it managed to make.  Root's files must never be read or changed.
ATTACKER = 1000
SECRETS = {b"readable": b"inner secret", b"w666": b"root's w666", b"secret600": b"six hundred"}


class Victims:
    """Root's files (privdir 0700 / readable 0644, w666 0666; secret600 0600), no root
    handle left open, and the attacker's own file and empty window candidates."""

    def __init__(self, ch: Channel) -> None:
        self.ch = ch
        r = ch.call(W.MKDIR, next(_uniques), 1, struct.pack("<II", 0o700, 0) + b"privdir\0")
        assert r.error == 0
        priv = struct.unpack_from("<Q", r.payload)[0]
        self.inos: list[int] = [priv]
        for name, parent, mode in ((b"readable", priv, 0o644), (b"w666", priv, 0o666),
                                   (b"secret600", 1, 0o600)):
            ino, fh = self._create(parent, name, 0o100000 | mode, uid=0)
            self._write(ino, fh, SECRETS[name], uid=0)
            self._release(ino, fh)
            self.inos.append(ino)
        self.mine, self.mine_fh = self._create(1, b"mine", 0o100644, uid=ATTACKER)
        self._write(self.mine, self.mine_fh, b"attacker's own".ljust(4 * 4096, b"."),
                    uid=ATTACKER)
        self.wins = [self._create(1, b"atk%d" % i, 0o100600, uid=ATTACKER) for i in range(3)]

    def _send(self, opcode: int, nodeid: int, body: bytes, uid: int) -> W.Reply:
        unique = next(_uniques)
        replies = _exchange(self.ch, request(opcode, unique, nodeid, body, uid=uid, gid=uid))
        return replies[0]

    def _create(self, parent: int, name: bytes, mode: int, *, uid: int) -> tuple[int, int]:
        r = self._send(W.CREATE, parent, struct.pack("<IIII", 2, mode, 0, 0) + name + b"\0",
                       uid)
        assert r.error == 0, r.error
        return struct.unpack_from("<Q", r.payload)[0], struct.unpack_from("<Q", r.payload, 128)[0]

    def _write(self, ino: int, fh: int, data: bytes, *, uid: int) -> None:
        body = struct.pack("<QQIIQII", fh, 0, len(data), 0, 0, 0, 0) + data
        assert self._send(W.WRITE, ino, body, uid).error == 0

    def _release(self, ino: int, fh: int) -> None:
        assert self._send(W.RELEASE, ino, struct.pack("<QIIQ", fh, 0, 0, 0), 0).error == 0

    def ioctl(self, target: int, cmd: int, payload: bytes) -> W.Reply:
        ino, fh = (self.mine, self.mine_fh) if target < 0 else self.wins[target]
        size = abi.ioc_size(cmd)
        in_size = size if abi.ioc_dir(cmd) & abi.IOC_WRITE else 0
        out_size = size if abi.ioc_dir(cmd) & abi.IOC_READ else 0
        payload = payload[:in_size].ljust(in_size, b"\0")
        body = struct.pack("<QIIQII", fh, 0, cmd, 0, in_size, out_size) + payload
        return self._send(W.IOCTL, ino, body, ATTACKER)

    def read(self, target: int, off: int, n: int) -> W.Reply:
        ino, fh = self.wins[target]
        return self._send(W.READ, ino, struct.pack("<QQIIQII", fh, off, n, 0, 0, 0, 0), ATTACKER)

    def root_reads(self) -> dict[bytes, bytes]:
        """What root reads from its files (a fresh handle each), through the protocol."""
        out = {}
        for name, ino in zip((b"readable", b"w666", b"secret600"), self.inos[1:], strict=True):
            r = self._send(W.OPEN, ino, struct.pack("<II", 0, 0), 0)
            assert r.error == 0
            fh = struct.unpack_from("<Q", r.payload)[0]
            d = self._send(W.READ, ino, struct.pack("<QQIIQII", fh, 0, 4096, 0, 0, 0, 0), 0)
            self._release(ino, fh)
            out[name] = d.payload
        return out


@pytest.fixture(scope="module")
def victims() -> Iterator[Victims]:
    with W.served_session() as ch:
        yield Victims(ch)
    assert ch.final_stats["ops"]["unexpected"] == 0, ch.stderr  # type: ignore[index]


ALL_CMDS = [c for _n, c in sorted(abi.COMMANDS.values())]


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(
    st.sampled_from(ALL_CMDS), st.sampled_from([-1, 0, 1, 2]),
    st.sampled_from(["victim-ino", "granted", "random", "zero"]),
    st.sampled_from([4096, 8192, 16 * 4096, 2**40, 0, 4095]), st.integers(0, 2**20),
    st.sampled_from([0, 1, 2, 3, 0x20000, 0x8000]), st.binary(min_size=0, max_size=48)),
    min_size=1, max_size=8),
    reads=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 64 * 4096)), max_size=4))
def test_an_unprivileged_user_reaches_only_its_own_files(
        victims: Victims, steps: list[tuple], reads: list[tuple[int, int]]) -> None:
    v = victims
    seen: list[bytes] = []
    for cmd, target, tok_kind, size, pgoff, prot, junk in steps:
        token = b""
        if tok_kind == "victim-ino":
            token = struct.pack("<Q", v.inos[pgoff % len(v.inos)]).ljust(16, b"\0")
        elif tok_kind == "granted":
            g = v.ioctl(-1, abi.SHMFS_IOC_WIN_GRANT, abi.GRANT.pack(prot & 3, 0, bytes(16)))
            token = abi.GRANT.unpack(g.payload[16:16 + abi.GRANT.size])[2] if g.error == 0 \
                else bytes(16)
        elif tok_kind == "random":
            token = junk[:16].ljust(16, b"\x5a")
        else:
            token = bytes(16)
        name = abi.COMMANDS[abi.ioc_nr(cmd)][0]
        if name == "ATTACH":
            payload = abi.ATTACH.pack(token, size % 2**64, pgoff, prot & 0xFFFFFFFF, 0)
        elif name in ("REMAP",):
            payload = abi.REMAP.pack(pgoff * 4096 % 2**64, size, pgoff * 7, prot, prot)
        elif name == "GRANT":
            payload = abi.GRANT.pack(prot, 0, token)
        else:
            payload = junk
        r = v.ioctl(target, cmd, payload)
        seen.append(r.payload)
    for target, off in reads:
        r = v.read(target, off, 8192)
        seen.append(r.payload)
    for blob in seen:
        for secret in SECRETS.values():
            assert secret not in blob
    # the attacker's windows, whatever it made, show its own file only
    for target in range(3):
        r = v.ioctl(target, abi.SHMFS_IOC_WIN_INFO, b"")
        if r.error == 0:
            info = abi.INFO.unpack(r.payload[16:16 + abi.INFO.size])
            assert info[0] == v.mine
    assert v.root_reads() == {k: s for k, s in SECRETS.items()}
