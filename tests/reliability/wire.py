"""A FUSE "kernel" for tests: builds requests, talks to session_driver over a socket,
and checks every reply's header.

``Channel.exchange(msg)`` sends one request and then a GETATTR of the root as a
probe, and collects replies until the probe's answer: so it returns exactly
the replies the request produced (zero for FORGET, one for nearly everything
else) and proves on every call that the session still serves. Notifications
(unique 0) are counted and set aside.
"""

from __future__ import annotations

import contextlib
import errno as E
import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
REPO = Path(__file__).resolve().parents[2]
RECV_TIMEOUT = 20.0
PROBE_BASE = 1 << 62  # probe uniques live far above the requests'

# opcodes (linux/fuse.h)
LOOKUP, FORGET, GETATTR, SETATTR, READLINK, SYMLINK, MKNOD, MKDIR = 1, 2, 3, 4, 5, 6, 8, 9
UNLINK, RMDIR, RENAME, LINK, OPEN, READ, WRITE, STATFS, RELEASE = 10, 11, 12, 13, 14, 15, 16, 17, 18
FSYNC, SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR, FLUSH, INIT = 20, 21, 22, 23, 24, 25, 26
OPENDIR, READDIR, RELEASEDIR, FSYNCDIR, ACCESS, CREATE, INTERRUPT = 27, 28, 29, 30, 34, 35, 36
IOCTL, POLL, DESTROY, BATCH_FORGET, FALLOCATE, READDIRPLUS, RENAME2 = 39, 40, 38, 42, 43, 44, 45
LSEEK, COPY_FILE_RANGE, TMPFILE, STATX = 46, 47, 51, 52
NOTIFY_REPLY, CUSE_INIT = 41, 4096
NO_REPLY = {FORGET, BATCH_FORGET, NOTIFY_REPLY}
MAY_REPLY = {INTERRUPT}  # the kernel accepts (but needs no) answer to an INTERRUPT
ALL_OPCODES = [LOOKUP, FORGET, GETATTR, SETATTR, READLINK, SYMLINK, MKNOD, MKDIR, UNLINK, RMDIR,
               RENAME, LINK, OPEN, READ, WRITE, STATFS, RELEASE, FSYNC, SETXATTR, GETXATTR,
               LISTXATTR, REMOVEXATTR, FLUSH, INIT, OPENDIR, READDIR, RELEASEDIR, FSYNCDIR,
               ACCESS, CREATE, INTERRUPT, IOCTL, POLL, BATCH_FORGET, FALLOCATE, READDIRPLUS,
               RENAME2, LSEEK, COPY_FILE_RANGE, TMPFILE, STATX, NOTIFY_REPLY, CUSE_INIT]
VALID_ERRNOS = set(E.errorcode)


def request(opcode: int, unique: int, nodeid: int, body: bytes = b"", *, uid: int = 0,
            gid: int = 0, length: int | None = None) -> bytes:
    """One fuse_in_header + body; ``length`` overrides the header's len field."""
    n = IN_HEADER.size + len(body)
    return IN_HEADER.pack(n if length is None else length, opcode, unique, nodeid, uid, gid,
                          4242, 0, 0) + body


@dataclass(slots=True)
class Reply:
    unique: int
    error: int
    payload: bytes


class ProtocolViolation(AssertionError):
    """A reply the kernel would reject (or none where one was owed)."""


class Channel:
    """The test's end of the socketpair, plus the driver process."""

    def __init__(self, sock: socket.socket, proc: subprocess.Popen[str]) -> None:
        self.sock = sock
        self.proc = proc
        self.notifications = 0
        self._probe = PROBE_BASE
        self.final_stats: dict[str, object] = {}  # the driver's, after DESTROY
        self.stderr = ""

    def send(self, msg: bytes) -> None:
        self.sock.send(msg)

    def recv(self) -> Reply:
        try:
            data = self.sock.recv(4 << 20)
        except TimeoutError:
            raise ProtocolViolation(f"no reply within {RECV_TIMEOUT} s "
                                    f"(driver alive: {self.proc.poll() is None})") from None
        if not data:
            raise ProtocolViolation(f"session closed the channel (exit {self.proc.poll()})")
        if len(data) < OUT_HEADER.size:
            raise ProtocolViolation(f"reply of {len(data)} bytes: shorter than its header")
        length, error, unique = OUT_HEADER.unpack_from(data)
        if length != len(data):
            raise ProtocolViolation(f"reply header says {length} bytes, message has {len(data)}")
        if unique == 0:
            if error <= 0:
                raise ProtocolViolation(f"unique 0 with error {error}: not a notification")
        elif error > 0 or (error < 0 and -error not in VALID_ERRNOS):
            raise ProtocolViolation(f"reply to {unique} carries error {error}")
        elif error < 0 and length != OUT_HEADER.size:
            raise ProtocolViolation(f"error reply to {unique} carries a payload")
        return Reply(unique, error, data[OUT_HEADER.size:])

    def exchange(self, msg: bytes) -> list[Reply]:
        """Send msg, then a root GETATTR probe; return msg's replies (probe proved alive)."""
        self._probe += 1
        probe = self._probe
        self.send(msg)
        self.send(request(GETATTR, probe, 1, bytes(16)))
        got: list[Reply] = []
        while True:
            r = self.recv()
            if r.unique == 0:
                self.notifications += 1
                continue
            if r.unique == probe:
                if r.error != 0:
                    raise ProtocolViolation(f"GETATTR of the root failed: {r.error}")
                return got
            got.append(r)

    def call(self, opcode: int, unique: int, nodeid: int, body: bytes = b"") -> Reply:
        """A request that must get exactly one reply."""
        replies = self.exchange(request(opcode, unique, nodeid, body))
        check_replies(replies, unique, True)
        return replies[0]

    def create(self, unique: int, name: bytes = b"f", flags: int = os.O_RDWR,
               mode: int = 0o100644, parent: int = 1) -> tuple[int, int]:
        """CREATE ``name`` in ``parent`` (it must succeed): (its nodeid, its fh)."""
        c = self.call(CREATE, unique, parent, struct.pack("<IIII", flags, mode, 0, 0)
                      + name + b"\0")
        assert c.error == 0, c
        return struct.unpack_from("<Q", c.payload)[0], struct.unpack_from("<Q", c.payload, 128)[0]


def check_replies(replies: list[Reply], unique: int, owed: bool | None) -> None:
    """owed True: exactly one reply to unique; False: none; None: at most one."""
    strays = [r for r in replies if r.unique != unique]
    if strays:
        raise ProtocolViolation(f"replies to uniques nobody asked about: {strays}")
    if owed is True and len(replies) != 1:
        raise ProtocolViolation(f"request {unique} got {len(replies)} replies, owed one")
    if owed is False and replies:
        raise ProtocolViolation(f"request {unique} got {len(replies)} replies, owed none")
    if owed is None and len(replies) > 1:
        raise ProtocolViolation(f"request {unique} got {len(replies)} replies")


def owed_reply(msg: bytes) -> bool | None:
    """What the kernel would expect for this message (see check_replies)."""
    if len(msg) < 16:
        return False  # no unique to answer
    opcode, unique = struct.unpack_from("<IQ", msg, 4)
    if unique == 0:
        return False
    if opcode in NO_REPLY:
        # A well-formed one is never answered; a header too mangled to trust may be.
        return False if len(msg) >= IN_HEADER.size else None
    if opcode in MAY_REPLY:
        return None
    return True


@contextlib.contextmanager
def served_session(env: dict[str, str] | None = None) -> Iterator[Channel]:
    """A driver process serving a fresh ShmFs over a socketpair, after a valid INIT.
    ``env``: variables set for the driver on top of ours (SHMFS_HOTPATH=0 ...).

    On exit: DESTROY, then the driver must end with status 0 and print its
    statistics (returned through ``channel.final_stats``)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.session_driver",
                             str(theirs.fileno())], cwd=REPO, pass_fds=(theirs.fileno(),),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=None if env is None else {**os.environ, **env})
    theirs.close()
    ours.settimeout(RECV_TIMEOUT)
    ch = Channel(ours, proc)
    try:
        init = ch.call(INIT, 1, 0, struct.pack("<IIII", 7, 38, 1 << 20, 0xFFFFFFFF))
        assert init.error == 0 and struct.unpack_from("<II", init.payload) == (7, 38)
        yield ch
        ch.send(request(DESTROY, 2, 0))
        r = ch.recv()
        assert (r.unique, r.error) == (2, 0), r
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, f"driver exited {proc.returncode}:\n{err}"
        ch.final_stats = json.loads(out.strip().splitlines()[-1])
        ch.stderr = err
    finally:
        ours.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
