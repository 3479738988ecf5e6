"""Structured malformed requests against the C request paths, with the Python path as oracle.

Two session drivers (tests/reliability/session_driver.py, the real Session over a
SOCK_SEQPACKET socketpair) serve the same fresh ShmFs: one with the C engines on
(native/hotpath.c + hotloop.c + hotmeta.c for the file hot path, native/winfast.c and
win*.c for window requests), one with them off (SHMFS_HOTPATH=0, SHMFS_WINFAST=0,
SHMFS_CLOOP=0: every request through Python). Both get the same set-up (a data file,
a window attached to a source file through GRANT/ATTACH, a directory), then the same
mutants of valid requests for every opcode the C paths accept:

- the header's len smaller / larger than the bytes sent, the message cut inside the header,
- the body cut at every byte boundary (every one up to 128 bytes, then samples),
- names without NUL, of 255 / 256 / 300 bytes, empty, "a\\0b",
- each fixed u32/u64 field replaced by an edge value (0, 1, 2^31, 2^32-1, 2^63-1,
  2^63 = "negative", 2^64-1, ...),
- unknown / wrong-type nodeids and handles,
- IOCTL in_size / out_size that lie, every flag bit, REMAPV counts that overflow.

Every mutant must get exactly one reply (none for FORGET / BATCH_FORGET) with a valid
errno on both (``wire.Channel`` checks the reply headers; a GETATTR probe after each
proves the session serves), a READ of an untouched sentinel file after each must return
its bytes on the engines' session, and where both answer the errno must be the same.
A C engine that reads past a buffer does not raise: run this under
scripts/asan_check.sh to see those.
"""

from __future__ import annotations

import contextlib
import errno as E
import itertools
import os
import random
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mount.winapi import abi
from tests.reliability import wire as W

SAME_PAYLOAD = {W.READ, W.WRITE, W.LSEEK}  # replies without times or tokens: equal bytes
ENGINES_OFF = {"SHMFS_HOTPATH": "0", "SHMFS_WINFAST": "0", "SHMFS_CLOOP": "0"}
ENGINES_ON = {"SHMFS_HOTPATH": "1", "SHMFS_WINFAST": "1", "SHMFS_CLOOP": "1",
              "SHMFS_CLOOP_IOCTL": "1"}
U64_EDGES = [0, 1, 4095, 4096, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 4097, 2**63 - 1, 2**63,
             2**63 + 1, 2**64 - 4096, 2**64 - 1]
U32_EDGES = [0, 1, 255, 256, 4096, 2**31 - 1, 2**31, 2**32 - 4096, 2**32 - 1]
SENTINEL = bytes(range(256)) * 20
PAGE = 4096
FUSE_IOCTL_FLAG_BITS = [0, 1, 2, 4, 8, 16, 32]


@dataclass
class Ctx:
    """One session's set-up: the nodeids / handles / token the templates refer to."""

    ch: W.Channel
    uniques: Iterator[int]
    nodes: dict[str, int] = field(default_factory=dict)

    def call(self, opcode: int, nodeid: int, body: bytes) -> W.Reply:
        return self.ch.call(opcode, next(self.uniques), nodeid, body)


# (name, opcode, node key, fixed-part struct format or None, body builder, prep)
Body = Callable[[Ctx], bytes]


@dataclass(frozen=True)
class Template:
    name: str
    opcode: int
    node: str
    fmt: str  # the fixed struct in front of any name / data ("" when none)
    body: Body
    prep: Callable[[Ctx], None] | None = None
    names: bool = False  # a NUL-terminated name follows the fixed part


def rw(fh: int, off: int, size: int) -> bytes:
    return struct.pack("<QQIIQII", fh, off, size, 0, 0, os.O_RDWR, 0)


def ioctl(fh: int, cmd: int, data: bytes, *, out_size: int | None = None) -> bytes:
    size = abi.ioc_size(cmd)
    in_size = size if abi.ioc_dir(cmd) & abi.IOC_WRITE else 0  # the kernel's: _IOC_SIZE
    out = (size if abi.ioc_dir(cmd) & abi.IOC_READ else 0) if out_size is None else out_size
    return struct.pack("<QIIQII", fh, 0, cmd, 0, in_size, out) + data[:in_size].ljust(in_size,
                                                                                     b"\0")


def _open_tmp(c: Ctx) -> None:
    r = c.call(W.OPEN, c.nodes["file"], struct.pack("<II", os.O_RDWR, 0))
    assert r.error == 0, r
    c.nodes["tmpfh"] = struct.unpack_from("<Q", r.payload)[0]


def _make_victim(c: Ctx) -> None:
    r = c.call(W.CREATE, 1, struct.pack("<IIII", os.O_RDWR, 0o100644, 0, 0) + b"u\0")
    assert r.error in (0, -E.EEXIST), r
    if r.error == 0:  # the kernel would RELEASE it; keep the handle table small
        ino = struct.unpack_from("<Q", r.payload)[0]
        fh = struct.unpack_from("<Q", r.payload, 128)[0]
        assert c.call(W.RELEASE, ino, struct.pack("<QIIQ", fh, 0, 0, 0)).error == 0


def _make_rd(c: Ctx) -> None:
    r = c.call(W.MKDIR, 1, struct.pack("<II", 0o755, 0) + b"rd\0")
    assert r.error in (0, -E.EEXIST), r


def _lookup_forgettable(c: Ctx) -> None:
    r = c.call(W.LOOKUP, 1, b"fg\0")
    assert r.error == 0, r


def _fresh_window(c: Ctx) -> None:
    """An empty file "w2" of its own to ATTACH (the last one unlinked and closed)."""
    if "w2" in c.nodes:
        c.call(W.RELEASE, c.nodes["w2"], struct.pack("<QIIQ", c.nodes["w2fh"], 0, 0, 0))
        c.call(W.UNLINK, 1, b"w2\0")
    c.nodes["w2"], c.nodes["w2fh"] = c.ch.create(next(c.uniques), b"w2")
    g = c.call(W.IOCTL, c.nodes["src"], ioctl(c.nodes["srcfh"], abi.SHMFS_IOC_WIN_GRANT,
                                              abi.GRANT.pack(3, 0, bytes(16))))
    assert g.error == 0, g  # a token of its own: ATTACH spends the one it is given
    c.nodes["token2"] = abi.GRANT.unpack_from(g.payload, 16)[2]  # type: ignore[assignment]


def refresh(c: Ctx) -> None:
    """New handles of the data file and the window: a mutant may have released the old
    ones (a RELEASE whose fh became 1), which would leave later templates only EBADF."""
    for node, key in (("file", "fh"), ("win", "wfh")):
        r = c.call(W.OPEN, c.nodes[node], struct.pack("<II", os.O_RDWR, 0))
        assert r.error == 0, (node, r)
        c.nodes[key] = struct.unpack_from("<Q", r.payload)[0]


def _remapv(c: Ctx) -> bytes:
    entries = [abi.REMAP.pack(i * PAGE, PAGE, 3 - i, 0, 0) for i in range(4)]
    return abi.REMAPV_HEAD.pack(4, 0, 0, 0) + b"".join(entries)


def _query(c: Ctx) -> bytes:
    return abi.QUERY_HEAD.pack(0, 8, 0, 0, 0) + bytes(abi.QUERY_SIZE - abi.QUERY_HEAD.size)


def _stats(c: Ctx) -> bytes:
    return abi.STATS_HEAD.pack(0, 0, 0, 0) + bytes(abi.STATS_DATA)


SA = "<IIQQQqqqIIIIIIII"
TEMPLATES: list[Template] = [
    Template("lookup", W.LOOKUP, "root", "", lambda c: b"f\0", names=True),
    Template("lookup-miss", W.LOOKUP, "root", "", lambda c: b"nothere\0", names=True),
    Template("getattr", W.GETATTR, "file", "<IIQ",
             lambda c: struct.pack("<IIQ", 1, 0, c.nodes["fh"])),
    Template("setattr", W.SETATTR, "file", SA, lambda c: struct.pack(
        SA, 1 | 8 | 16, 0, c.nodes["fh"], 3 * PAGE, 0, 0, 0, 0, 0, 0, 0, 0o100644, 0, 0, 0, 0)),
    Template("create", W.CREATE, "root", "<IIII",
             lambda c: struct.pack("<IIII", os.O_RDWR, 0o100644, 0o022, 0) + b"new\0", names=True),
    Template("open", W.OPEN, "file", "<II", lambda c: struct.pack("<II", os.O_RDWR, 0)),
    Template("read", W.READ, "file", "<QQIIQII", lambda c: rw(c.nodes["fh"], 100, 5000)),
    Template("write", W.WRITE, "file", "<QQIIQII",
             lambda c: rw(c.nodes["fh"], 2 * PAGE - 3, 7) + b"written"),
    Template("flush", W.FLUSH, "file", "<QIIQ",
             lambda c: struct.pack("<QIIQ", c.nodes["fh"], 0, 0, 7)),
    Template("release", W.RELEASE, "file", "<QIIQ",
             lambda c: struct.pack("<QIIQ", c.nodes["tmpfh"], os.O_RDWR, 0, 0), prep=_open_tmp),
    Template("unlink", W.UNLINK, "root", "", lambda c: b"u\0", prep=_make_victim, names=True),
    Template("forget", W.FORGET, "fg", "<Q", lambda c: struct.pack("<Q", 1),
             prep=_lookup_forgettable),
    Template("batch-forget", W.BATCH_FORGET, "zero", "<II", lambda c: struct.pack(
        "<IIQQ", 1, 0, c.nodes["fg"], 1), prep=_lookup_forgettable),
    Template("fsync", W.FSYNC, "file", "<QII", lambda c: struct.pack("<QII", c.nodes["fh"], 1, 0)),
    Template("fallocate", W.FALLOCATE, "file", "<QQQII",
             lambda c: struct.pack("<QQQII", c.nodes["fh"], PAGE, 2 * PAGE, 0, 0)),
    Template("lseek", W.LSEEK, "file", "<QQII",
             lambda c: struct.pack("<QQII", c.nodes["fh"], 10, 3, 0)),
    Template("rmdir", W.RMDIR, "root", "", lambda c: b"rd\0", prep=_make_rd, names=True),
    Template("lookup-in-dir", W.LOOKUP, "dir", "", lambda c: b"inner\0", names=True),
    Template("create-excl", W.CREATE, "root", "<IIII", lambda c: struct.pack(
        "<IIII", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o100600, 0o022, 0) + b"f\0", names=True),
    Template("create-in-dir", W.CREATE, "dir", "<IIII", lambda c: struct.pack(
        "<IIII", os.O_WRONLY | os.O_CREAT, 0o100600, 0o022, 0) + b"c\0", names=True),
    Template("open-trunc", W.OPEN, "file", "<II",
             lambda c: struct.pack("<II", os.O_WRONLY | os.O_TRUNC, 0)),
    Template("read-dir", W.READ, "dir", "<QQIIQII", lambda c: rw(c.nodes["fh"], 0, 100)),
    Template("getattr-dir", W.GETATTR, "dir", "<IIQ", lambda c: bytes(16)),
    Template("mkdir", W.MKDIR, "root", "<II", lambda c: struct.pack("<II", 0o755, 0) + b"nd\0",
             names=True),
    Template("rename", W.RENAME, "root", "<Q", lambda c: struct.pack("<Q", 1) + b"nd\0nd2\0",
             names=True),
    # the window's own READ / WRITE / FSYNC (native/winread.c, winwrite.c, winfsync.c)
    Template("win-read", W.READ, "win", "<QQIIQII",
             lambda c: rw(c.nodes["wfh"], PAGE - 10, 3 * PAGE)),
    Template("win-write", W.WRITE, "win", "<QQIIQII",
             lambda c: rw(c.nodes["wfh"], PAGE + 5, 9) + b"via-windo"),
    Template("win-fsync", W.FSYNC, "win", "<QII",
             lambda c: struct.pack("<QII", c.nodes["wfh"], 0, 0)),
    Template("win-getattr", W.GETATTR, "win", "<IIQ", lambda c: struct.pack("<IIQ", 0, 0, 0)),
]
IOCTL_HEAD = "<QIIQII"
# (name, command, the payload's struct format: its fields are mutated too, payload)
WINDOW_IOCTLS: list[tuple[str, int, str, Body]] = [
    ("remap", abi.SHMFS_IOC_WIN_REMAP, "QQQII", lambda c: abi.REMAP.pack(PAGE, 2 * PAGE, 2, 0, 0)),
    ("remap-chgprot", abi.SHMFS_IOC_WIN_REMAP, "QQQII",
     lambda c: abi.REMAP.pack(0, PAGE, 1, 1, abi.MAP_CHGPROT)),
    ("remapv", abi.SHMFS_IOC_WIN_REMAPV, "IIIIQQQIIQQQII", _remapv),
    # QUERY before MPROTECT: an MPROTECT_VMA mutant splits the window, and the C QUERY
    # declines split windows (Python answers them)
    ("query", abi.SHMFS_IOC_WIN_QUERY, "QIIQQ", _query),
    ("mprotect", abi.SHMFS_IOC_WIN_MPROTECT, "QQII",
     lambda c: abi.MPROTECT.pack(0, 2 * PAGE, 1, 0)),
    ("madvise", abi.SHMFS_IOC_WIN_MADVISE, "QQII",
     lambda c: abi.MADVISE.pack(0, PAGE, abi.MADV_WILLNEED, 0)),
    ("info", abi.SHMFS_IOC_WIN_INFO, "", lambda c: b""),
    ("stats", abi.SHMFS_IOC_STATS, "QQII", _stats),
    ("remount", abi.SHMFS_IOC_REMOUNT, "QQII", lambda c: abi.REMOUNT.pack(0, 0, 0, 0)),
    ("attach-busy", abi.SHMFS_IOC_WIN_ATTACH, "16sQQII",
     lambda c: abi.ATTACH.pack(c.nodes["token"], 8 * PAGE, 0, 3, 0)),
]
for _name, _cmd, _pfmt, _payload in WINDOW_IOCTLS:
    TEMPLATES.append(Template(
        "ioctl-" + _name, W.IOCTL, "win", IOCTL_HEAD + _pfmt,
        (lambda cmd, payload: lambda c: ioctl(c.nodes["wfh"], cmd, payload(c)))(_cmd, _payload)))
TEMPLATES.append(Template("ioctl-attach", W.IOCTL, "w2", IOCTL_HEAD + "16sQQII", lambda c: ioctl(
    c.nodes["w2fh"], abi.SHMFS_IOC_WIN_ATTACH,
    abi.ATTACH.pack(c.nodes["token2"], 8 * PAGE, 0, 3, 0)), prep=_fresh_window))
TEMPLATES.append(Template("ioctl-grant", W.IOCTL, "file", IOCTL_HEAD + "II16s", lambda c: ioctl(
    c.nodes["fh"], abi.SHMFS_IOC_WIN_GRANT, abi.GRANT.pack(3, 0, bytes(16)))))
TEMPLATES.append(Template("ioctl-foreign", W.IOCTL, "file", IOCTL_HEAD, lambda c: struct.pack(
    IOCTL_HEAD, c.nodes["fh"], 0, 0x5401, 0, 0, 60)))


def set_up(ch: W.Channel) -> Ctx:
    """The files every template refers to, made the same way on both sessions."""
    c = Ctx(ch, itertools.count(100))
    c.nodes.update(root=1, zero=0)
    c.nodes["file"], c.nodes["fh"] = ch.create(next(c.uniques), b"f")
    data = b"d" * 3 * PAGE
    assert c.call(W.WRITE, c.nodes["file"], rw(c.nodes["fh"], 0, len(data)) + data).error == 0
    c.nodes["sent"], c.nodes["sfh"] = ch.create(next(c.uniques), b"sentinel")
    r = c.call(W.WRITE, c.nodes["sent"], rw(c.nodes["sfh"], 0, len(SENTINEL)) + SENTINEL)
    assert r.error == 0
    c.nodes["fg"], fgfh = ch.create(next(c.uniques), b"fg")
    assert c.call(W.RELEASE, c.nodes["fg"], struct.pack("<QIIQ", fgfh, 0, 0, 0)).error == 0
    r = c.call(W.MKDIR, 1, struct.pack("<II", 0o755, 0) + b"d\0")
    assert r.error == 0
    c.nodes["dir"] = struct.unpack_from("<Q", r.payload)[0]
    inner, ifh = ch.create(next(c.uniques), b"inner", parent=c.nodes["dir"])
    assert c.call(W.RELEASE, inner, struct.pack("<QIIQ", ifh, 0, 0, 0)).error == 0
    c.nodes["src"], c.nodes["srcfh"] = src, sfh = ch.create(next(c.uniques), b"src")
    assert c.call(W.WRITE, src, rw(sfh, 0, 8 * PAGE) + b"s" * 8 * PAGE).error == 0
    g = c.call(W.IOCTL, src, ioctl(sfh, abi.SHMFS_IOC_WIN_GRANT, abi.GRANT.pack(3, 0, bytes(16))))
    assert g.error == 0, g
    c.nodes["token"] = abi.GRANT.unpack_from(g.payload, 16)[2]  # type: ignore[assignment]
    c.nodes["win"], c.nodes["wfh"] = ch.create(next(c.uniques), b"win")
    a = c.call(W.IOCTL, c.nodes["win"], ioctl(c.nodes["wfh"], abi.SHMFS_IOC_WIN_ATTACH,
                                              abi.ATTACH.pack(c.nodes["token"], 8 * PAGE, 0, 3, 0)))
    assert a.error == 0, a
    return c


# --- mutations: (label, function of (opcode, nodeid, body) -> (opcode, nodeid, body, len));
# len None: the true length, >= 0: the header's len field says so, < 0: the message is
# cut to -len bytes (inside the header)
Msg = tuple[int, int, bytes, int | None]
Mutation = tuple[str, Callable[[int, int, bytes], Msg]]


def _fields(fmt: str) -> list[tuple[int, str]]:
    """(offset, 'Q'|'I') of each integer field of a little-endian struct format."""
    out, off = [], 0
    for count, ch in re.findall(r"(\d*)([A-Za-z])", fmt):
        if ch in "QqIi":
            for _ in range(int(count or 1)):
                out.append((off, ch.upper()))
                off += struct.calcsize("<" + ch)
        else:
            off += struct.calcsize(f"<{count}{ch}")
    return out


def _put(body: bytes, off: int, code: str, value: int) -> bytes:
    if off + struct.calcsize("<" + code) > len(body):
        return body
    b = bytearray(body)
    struct.pack_into("<" + code, b, off, value)
    return bytes(b)


def mutations(t: Template, sample_body: bytes, rng: random.Random, extra: int) -> list[Mutation]:
    """Every systematic mutant of template t plus ``extra`` random combinations."""
    n = len(sample_body)
    out: list[Mutation] = [("valid", lambda o, i, b: (o, i, b, None))]
    cuts = list(range(n)) if n <= 128 else list(range(129)) + sorted(rng.sample(range(129, n), 24))
    for cut in cuts:
        out.append((f"cut{cut}", lambda o, i, b, cut=cut: (o, i, b[:cut], None)))
    hdr = W.IN_HEADER.size
    for d in (-1, 1, 8, -8, 4096, -(n // 2) - 1):
        out.append((f"len{d:+d}", lambda o, i, b, d=d: (o, i, b, max(0, hdr + len(b) + d))))
    for k in (1, 4, 8, 15, 16, 20, 24, 32, 39):  # the message itself ends inside the header
        out.append((f"hdrcut{k}", lambda o, i, b, k=k: (o, i, b, -k)))
    for length in (0, 1, 39, 40, 2**31, 2**32 - 1):
        out.append((f"len={length}", lambda o, i, b, length=length: (o, i, b, length)))
    for uid in (65534, 1000):  # another user (run() sends these with uid = gid = N)
        out.append((f"uid={uid}", lambda o, i, b: (o, i, b, None)))
    for node in (0, 424242, 2**63, 2**64 - 1, 1):
        out.append((f"node={node}", lambda o, i, b, node=node: (o, node, b, None)))
    fixed = _fields(t.fmt)
    for off, code in fixed:
        edges = U64_EDGES if code == "Q" else U32_EDGES
        for v in edges:
            out.append((f"@{off}{code}={v}", lambda o, i, b, off=off, code=code, v=v:
                        (o, i, _put(b, off, code, v), None)))
    if t.names:
        start = struct.calcsize(t.fmt) if t.fmt else 0
        for label, name in (("nonul", b"abc"), ("255", b"n" * 255 + b"\0"),
                            ("256", b"n" * 256 + b"\0"), ("300", b"n" * 300 + b"\0"),
                            ("empty", b"\0"), ("none", b""), ("a0b", b"a\0b\0"),
                            ("dot", b".\0"), ("dotdot", b"..\0"), ("slash", b"a/b\0")):
            out.append((f"name-{label}", lambda o, i, b, name=name, start=start:
                        (o, i, b[:start] + name, None)))
    if t.opcode == W.IOCTL:
        for v in (0, 1, 8, 31, 32, 40, 16367, 16368, 16369, 2**20, 2**32 - 1):
            out.append((f"in_size={v}", lambda o, i, b, v=v: (o, i, _put(b, 24, "I", v), None)))
            out.append((f"out_size={v}", lambda o, i, b, v=v: (o, i, _put(b, 28, "I", v), None)))
        for f in FUSE_IOCTL_FLAG_BITS[1:]:
            out.append((f"ioflags={f}", lambda o, i, b, f=f: (o, i, _put(b, 8, "I", f), None)))
        for cmdsize in (0, 8, 0x3FFF):  # the size bits of the command lie
            out.append((f"cmdsize={cmdsize}", lambda o, i, b, cs=cmdsize: (
                o, i, _put(b, 12, "I", (struct.unpack_from("<I", b, 12)[0] & ~(0x3FFF << 16))
                           | (cs << 16)), None)))
        if t.name == "ioctl-remapv":
            for count in (0, 1, 5, 511, 512, 2**16, 2**31, 2**32 - 1):
                out.append((f"remapv-count={count}", lambda o, i, b, count=count:
                            (o, i, _put(b, 32, "I", count), None)))
                out.append((f"remapv-count={count}-short", lambda o, i, b, count=count:
                            (o, i, _put(b, 32, "I", count)[:32 + 16 + 32 * 2], None)))
                out.append((f"remapv-count={count}-insize", lambda o, i, b, count=count: (
                    o, i, _put(_put(b, 32, "I", count)[:32 + 16 + 32], 24, "I", 16 + 32), None)))
            for done in (1, 4, 2**32 - 1):
                out.append((f"remapv-done={done}", lambda o, i, b, done=done:
                            (o, i, _put(b, 40, "I", done), None)))
    for k in range(extra):  # random combinations: a few field edges, maybe a cut / a lie
        seed = rng.getrandbits(64)

        def combo(o: int, i: int, b: bytes, seed: int = seed) -> Msg:
            r = random.Random(seed)
            b = bytearray(b)
            for _ in range(r.randint(1, 4)):
                if not b:
                    break
                if fixed and r.random() < 0.7:
                    off, code = r.choice(fixed)
                    v = r.choice(U64_EDGES if code == "Q" else [*U32_EDGES, r.getrandbits(32)])
                    b = bytearray(_put(bytes(b), off, code, v % (2**64 if code == "Q" else 2**32)))
                else:
                    p = r.randrange(len(b))
                    b[p] = r.getrandbits(8)
            body = bytes(b)
            if r.random() < 0.3:
                body = body[:r.randrange(len(body) + 1)]
            length = None if r.random() < 0.8 else max(
                0, hdr + len(body) + r.choice([-9, -1, 1, 64]))
            return o, i, body, length
        out.append((f"rand{k}", combo))
    return out


@dataclass
class Finding:
    template: str
    mutant: str
    detail: str


@dataclass
class Outcome:
    sent: int = 0
    compared: int = 0
    stats: dict[str, object] = field(default_factory=dict)  # each driver's final statistics
    valid: dict[str, int | None] = field(default_factory=dict)  # template -> errno of "valid"
    findings: list[Finding] = field(default_factory=list)


def _errno_of(replies: list[W.Reply]) -> int | None:
    return replies[0].error if replies else None


def _check_sentinel(c: Ctx) -> None:
    r = c.call(W.READ, c.nodes["sent"], rw(c.nodes["sfh"], 0, len(SENTINEL)))
    assert r.error == 0 and r.payload == SENTINEL, "the sentinel READ after a mutant failed"


def run(seed: int, extra: int, *, only: list[str] | None = None) -> Outcome:
    """Every template's mutants on an engines-on and an engines-off session."""
    rng = random.Random(seed)
    out = Outcome()
    with contextlib.ExitStack() as stack:
        on = set_up(stack.enter_context(W.served_session(ENGINES_ON)))
        off = set_up(stack.enter_context(W.served_session(ENGINES_OFF)))
        assert {k: v for k, v in on.nodes.items() if "token" not in k} == {
            k: v for k, v in off.nodes.items() if "token" not in k}, "set-up differs"
        for t in TEMPLATES:
            if only and t.name not in only:
                continue
            refresh(on)
            refresh(off)
            if t.prep:
                t.prep(on)
                t.prep(off)
            muts = mutations(t, t.body(on), rng, extra)
            for label, mut in muts:
                errs: list[int | None] = []
                payloads: list[bytes] = []
                for c in (on, off):
                    if t.prep:
                        t.prep(c)
                    o, i, b, length = mut(t.opcode, c.nodes[t.node], t.body(c))
                    unique = next(c.uniques)
                    uid = int(label[4:]) if label.startswith("uid=") else 0
                    if length is not None and length < 0:  # cut inside the header
                        msg = W.request(o, unique, i, b)[:-length]
                    else:
                        msg = W.request(o, unique, i, b, uid=uid, gid=uid, length=length)
                    try:
                        replies = c.ch.exchange(msg)
                        W.check_replies(replies, unique, W.owed_reply(msg))
                    except AssertionError as e:
                        raise AssertionError(
                            f"{t.name}/{label} ({'engines' if c is on else 'python'}): {e}\n"
                            f"driver alive: {c.ch.proc.poll() is None}") from None
                    errs.append(_errno_of(replies))
                    if o in SAME_PAYLOAD and replies and replies[0].error == 0:
                        payloads.append(replies[0].payload)
                    out.sent += 1
                _check_sentinel(on)
                if label == "valid":
                    out.valid[t.name] = errs[0]
                if (errs[0] is None) != (errs[1] is None):  # one answered, one did not
                    out.findings.append(Finding(t.name, label,
                                                f"engines {errs[0]} python {errs[1]}"))
                elif len(payloads) == 2 and payloads[0] != payloads[1]:
                    out.findings.append(Finding(t.name, label, "engines and python: same errno, "
                                                f"other bytes ({len(payloads[0])} vs "
                                                f"{len(payloads[1])})"))
                elif None not in errs:
                    out.compared += 1
                    if errs[0] != errs[1]:
                        out.findings.append(Finding(t.name, label,
                                                    f"engines {errs[0]} python {errs[1]}"))
        on_ch, off_ch = on.ch, off.ch
    out.stats = {"engines": on_ch.final_stats, "python": off_ch.final_stats}
    for ch in (on_ch, off_ch):
        ops = ch.final_stats["ops"]  # type: ignore[index]
        if ops["unexpected"]:  # type: ignore[index]
            out.findings.append(Finding("session", "unexpected", ch.stderr[-2000:]))
    return out


# --- bursts: the C loop's cached / deferred WRITE bookkeeping (appends3, decisions 39, 45)
# The WRITE cache and the deferred counts and times live inside one call of the C loop,
# i.e. while requests are already waiting: so these are sent whole before any reply is
# read. Valid appends and overwrites of the data file through two handles, with mutants
# (cut, lying lengths, edge offsets, unknown handles), READs, GETATTRs, truncating
# SETATTRs and FLUSHes between; afterwards the file's size and bytes must be the same on
# both sessions, and each request's errno.


def _burst(c: Ctx, rng: random.Random, size_hint: int) -> list[tuple[int, bytes]]:
    file, fh, fh2 = c.nodes["file"], c.nodes["fh"], c.nodes["fh2"]
    out = []
    off = size_hint
    for _ in range(rng.randint(4, 16)):
        u = next(c.uniques)
        kind = rng.random()
        h = fh if rng.random() < 0.7 else fh2
        n = rng.choice([1, 7, 100, PAGE - 1, PAGE, PAGE + 3, 3 * PAGE])
        data = bytes([u & 0xFF]) * n
        if kind < 0.45:  # an append where the last one ended (the cached case)
            body, length = rw(h, off, n) + data, None
            off += n
        elif kind < 0.55:  # an overwrite before EOF
            body, length = rw(h, rng.randrange(max(1, off)), n) + data, None
        elif kind < 0.75:  # a malformed or refused WRITE between
            body = rw(h, off, n) + data
            m = rng.randrange(6)
            length = None
            if m == 0:
                body = body[:rng.randrange(len(body))]
            elif m == 1:
                length = W.IN_HEADER.size + len(body) + rng.choice([-1, 1, -n, 4096])
            elif m == 2:
                body = _put(body, 8, "Q", rng.choice([2**63 - 1, 2**63, 2**64 - 1, 2**63 - 2]))
            elif m == 3:
                body = _put(body, 0, "Q", rng.choice([0, 9999, 2**64 - 1]))
            elif m == 4:
                body = _put(body, 16, "I", rng.choice([0, n + 1, 2**32 - 1]))
            else:
                body = _put(body, 20, "I", rng.choice([1, 2, 4, 0x80000000]))
            out.append((u, W.request(W.WRITE, u, file, body, length=length)))
            continue
        elif kind < 0.85:
            out.append((u, W.request(W.READ, u, file, rw(h, rng.randrange(off + 1), 2 * PAGE))))
            continue
        elif kind < 0.92:
            out.append((u, W.request(W.GETATTR, u, file, bytes(16))))
            continue
        elif kind < 0.96:
            off = rng.randrange(off + 1)
            out.append((u, W.request(W.SETATTR, u, file, struct.pack(
                SA, 8, 0, 0, off, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))))
            continue
        else:
            out.append((u, W.request(W.FLUSH, u, file, struct.pack("<QIIQ", h, 0, 0, 0))))
            continue
        out.append((u, W.request(W.WRITE, u, file, body, length=length)))
    return out


def _file_state(c: Ctx) -> tuple[int, bytes]:
    a = c.call(W.GETATTR, c.nodes["file"], bytes(16))
    size = struct.unpack_from("<Q", a.payload, 16 + 8)[0]
    data = b""
    for off in range(0, min(size, 4 << 20), 64 << 10):  # a socketpair's datagram limit
        r = c.call(W.READ, c.nodes["file"], rw(c.nodes["fh"], off, 64 << 10))
        assert r.error == 0, r
        data += r.payload
    return size, data


def run_bursts(seed: int, bursts: int) -> Outcome:
    """``bursts`` seeded bursts on an engines-on and an engines-off session."""
    out = Outcome()
    with contextlib.ExitStack() as stack:
        on = set_up(stack.enter_context(W.served_session(ENGINES_ON)))
        off = set_up(stack.enter_context(W.served_session(ENGINES_OFF)))
        for c in (on, off):
            refresh(c)
            r = c.call(W.OPEN, c.nodes["file"], struct.pack("<II", os.O_RDWR, 0))
            c.nodes["fh2"] = struct.unpack_from("<Q", r.payload)[0]
        for b in range(bursts):
            got: list[list[int | None]] = []
            size = _file_state(on)[0]
            _file_state(off)  # the same uniques on both
            if size > 4 << 20:  # an edge-offset mutant made it huge: appends would be EFBIG
                size = 1 << 20
                for c in (on, off):
                    assert c.call(W.SETATTR, c.nodes["file"], struct.pack(
                        SA, 8, 0, 0, size, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).error == 0
            for c in (on, off):
                msgs = _burst(c, random.Random(seed * 1_000_003 + b), size)
                for _, m in msgs:
                    c.ch.send(m)
                probe = next(c.uniques)
                replies = c.ch.exchange(W.request(W.GETATTR, probe, 1, bytes(16)))
                replies = [r for r in replies if r.unique != probe]
                owed = {u for u, m in msgs if W.owed_reply(m)}
                assert sorted(r.unique for r in replies) == sorted(owed), \
                    f"burst {b}: lost or duplicated replies"
                errs = {r.unique: r.error for r in replies}
                got.append([errs.get(u) for u, _m in msgs])
                out.sent += len(msgs)
                _check_sentinel(c)
            out.compared += len(got[0])
            for i, (e_on, e_off) in enumerate(zip(*got, strict=True)):
                if e_on != e_off:
                    out.findings.append(Finding("burst", f"{b}/{i}",
                                                f"engines {e_on} python {e_off}"))
            s_on, s_off = _file_state(on), _file_state(off)
            if s_on != s_off:
                pairs = zip(s_on[1], s_off[1], strict=False)
                first = next((i for i, (x, y) in enumerate(pairs) if x != y),
                             min(len(s_on[1]), len(s_off[1])))
                out.findings.append(Finding("burst", f"{b}/state", (
                    f"size {s_on[0]} vs {s_off[0]}, {len(s_on[1])} vs {len(s_off[1])} bytes"
                    f" read, first difference at {first}: "
                    f"{s_on[1][first:first + 8]!r} vs {s_off[1][first:first + 8]!r}")))
        on_ch, off_ch = on.ch, off.ch
    out.stats = {"engines": on_ch.final_stats, "python": off_ch.final_stats}
    for ch in (on_ch, off_ch):
        if ch.final_stats["ops"]["unexpected"]:  # type: ignore[index]
            out.findings.append(Finding("session", "unexpected", ch.stderr[-2000:]))
    return out
