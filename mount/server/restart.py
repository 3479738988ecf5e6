"""The serving side of ``-o restartable``: journal hooks, resent requests, resuming.

The session (mount/server/session.py) calls, for every request it reads::

    if hooks.before(msg):     # a resent request answered from the journal: done
        return
    ... handle it (fast path or generic) -> out ...
    out = hooks.after(opcode, out)   # commit record written; then the reply goes out

**Exactly once.** ``persist.commit`` (mount/server/persist) makes the record
durable -- the request, the inputs it consumed, its reply -- *before* the
reply is written, so a request the kernel resends (FUSE_UNIQUE_RESEND, bit 63
of ``unique``) either has a commit record, and gets the recorded reply
without being applied again, or has none, and was not applied (recovery
drops an uncommitted tail, the data it may have half-written in the memfd
arena is rewritten when it runs again) and is handled as new. A resent
request's bit 63 is cleared in the buffer before it is handled, so its
records carry the plain unique and a second resend finds them; its reply
gets the resent value back (the kernel looks the request up by it).

**Resuming** (``resume``, a restarted server, before the request loop):
first FUSE_NOTIFY_RESEND, so every request the dead server had read comes
back; then a NOTIFY_INVAL_INODE of every inode the kernel may cache (the
dead server may have died between a commit and the invalidations it owed,
e.g. of a REMAP's window aliases), queued to the writer thread, and every
reply answered from the journal waits behind them (READ and WRITE replies
never wait, as everywhere in the session). The invalidations cannot go out
before RESEND: invalidating a page waits for its lock, which a READ the dead
server had read holds until it is answered -- after the resend. A window's
invalidation is followed by a one-byte store that gives the kernel its size
(fsimpl/windows.py ``size_store``). Before all that, unlinked inodes whose
FORGET died with the server are forgotten (``_forget_lost``).

**INIT** carries FUSE_HAS_RESEND (flags2 bit 7) on kernels that can resend
(Linux 6.9+); without it a restart would leave callers blocked for ever, so
INIT is refused and the mount is taken down with a message that says why.

**Test hook** (tests/restart): ``SHMFS_TEST_KILL=OPNAME[:IOCTLCMD]:POINT:NTH[@NODEID]``
makes the first serving child SIGKILL itself at the NTH matching request (of
node NODEID only, when given: inode numbers of a fresh mount are sequential),
POINT = ``before_record`` (nothing journalled), ``after_record`` (``begin``
done, not handled), ``after_commit`` (committed, reply not written).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mount.wire import protocol as P
from mount.wire.codec import pack_attr, reply_error

if TYPE_CHECKING:
    from mount.server.session import Session

log = logging.getLogger("shmfs.restart")

FUSE_UNIQUE_RESEND = 1 << 63
FUSE_HAS_RESEND = 1 << 39  # in INIT's flags | flags2 << 32
NOTIFY_RESEND = 7  # enum fuse_notify_code (Linux 6.9)
NOTIFY_INVAL_INODE = 2
KILL_ENV = "SHMFS_TEST_KILL"
KILL_POINTS = ("before_record", "after_record", "after_commit")

_U64 = struct.Struct("<Q")
_INIT_FLAGS = struct.Struct("<II")  # fuse_init_in.flags, .flags2 at offset 12 of the body
_IN_HEADER = 40
_OPCODE_READ, _OPCODE_WRITE = int(P.Opcode.READ), int(P.Opcode.WRITE)
_OPCODE_INIT, _OPCODE_IOCTL = int(P.Opcode.INIT), int(P.Opcode.IOCTL)


def resend_notification() -> bytes:
    """FUSE_NOTIFY_RESEND: a bare out header (unique 0, error = the notify code)."""
    return P.OUT_HEADER.pack(P.OUT_HEADER.size, NOTIFY_RESEND, 0)


def inval_inode_notification(ino: int) -> bytes:
    """NOTIFY_INVAL_INODE of the whole inode: attributes and every cached page."""
    body = P.NOTIFY_INVAL_INODE_OUT.pack(ino, 0, 0)
    return P.OUT_HEADER.pack(P.OUT_HEADER.size + len(body), NOTIFY_INVAL_INODE, 0) + body


def inval_attrs_notification(ino: int) -> bytes:
    """NOTIFY_INVAL_INODE of the attributes only (offset -1): no page is touched."""
    body = P.NOTIFY_INVAL_INODE_OUT.pack(ino, -1, 0)
    return P.OUT_HEADER.pack(P.OUT_HEADER.size + len(body), NOTIFY_INVAL_INODE, 0) + body


def forget_request(ino: int, nlookup: int) -> bytes:
    """A FORGET as the kernel would send it (unique 0, no credentials)."""
    body = P.FORGET_IN.pack(nlookup)
    return P.IN_HEADER.pack(P.IN_HEADER.size + len(body), int(P.Opcode.FORGET), 0, ino,
                            0, 0, 0, 0, 0) + body


_O = P.Opcode
_ENTRY_REPLIES = frozenset(int(o) for o in (_O.LOOKUP, _O.MKNOD, _O.MKDIR, _O.SYMLINK, _O.LINK,
                                            _O.CREATE, _O.TMPFILE))
_ATTR_REPLIES = frozenset((int(_O.GETATTR), int(_O.SETATTR)))
# within fuse_entry_out: entry_valid, attr_valid (u64 each), their nsec fields (u32 each)
_ENTRY_TIMES_OFF, _ENTRY_TIMES_LEN = 16, 24
_DIRENT_NAMELEN = 16  # fuse_dirent: ino, off, namelen, type, name


def expire_attrs(opcode: int, reply: bytes,
                 current: Callable[[int], bytes | None] | None = None) -> bytes:
    """A recorded reply with its entry and attribute timeouts set to 0, and (with
    ``current``: inode number -> its fuse_attr now, None if gone) its attributes
    replaced by the inode's current ones.

    Its attributes describe the inode as of the request's commit, and requests
    committed after it (another process's ATTACH, write, truncate ...) may have
    changed them. The kernel applies those of a CREATE, MKNOD, MKDIR, SYMLINK or
    LINK reply with no attr_version check, size included (a resent CREATE of a file
    another process has since made a window of, or written to, would set the
    kernel's i_size back to 0), so they are replaced by the current ones; and the
    kernel is told they have already expired, so it asks again when it needs them."""
    if len(reply) <= P.OUT_HEADER.size or P.OUT_HEADER.unpack_from(reply)[1] != 0:
        return reply
    b = bytearray(reply)
    h = P.OUT_HEADER.size
    t0, n = _ENTRY_TIMES_OFF, _ENTRY_TIMES_LEN
    if opcode in _ENTRY_REPLIES and len(b) >= h + P.ENTRY_OUT_SIZE:
        b[h + t0:h + t0 + n] = bytes(n)
        _patch_attr(b, h + P.ENTRY_OUT_HEAD.size, current)
    elif opcode in _ATTR_REPLIES and len(b) >= h + P.ATTR_OUT_HEAD.size + P.ATTR.size:
        b[h:h + 12] = bytes(12)  # attr_valid, attr_valid_nsec
        _patch_attr(b, h + P.ATTR_OUT_HEAD.size, current)
    elif opcode == int(_O.READDIRPLUS):
        off = h
        while off + P.ENTRY_OUT_SIZE + 24 <= len(b):
            b[off + t0:off + t0 + n] = bytes(n)
            if int.from_bytes(b[off:off + 8], "little"):  # nodeid 0: name only, no inode
                _patch_attr(b, off + P.ENTRY_OUT_HEAD.size, current)
            namelen = int.from_bytes(b[off + P.ENTRY_OUT_SIZE + _DIRENT_NAMELEN:
                                       off + P.ENTRY_OUT_SIZE + _DIRENT_NAMELEN + 4], "little")
            off += P.ENTRY_OUT_SIZE + ((24 + namelen + 7) & ~7)
    return bytes(b)


def _patch_attr(b: bytearray, off: int, current: Callable[[int], bytes | None] | None) -> None:
    """The fuse_attr at ``off`` (its first field is the inode number) -> current."""
    if current is None:
        return
    now = current(int.from_bytes(b[off:off + 8], "little"))
    if now is not None and len(now) == P.ATTR.size:
        b[off:off + P.ATTR.size] = now


def init_offers_resend(msg: memoryview | bytes) -> bool:
    """True if this INIT request's flags (flags2 when FUSE_INIT_EXT) hold FUSE_HAS_RESEND."""
    if len(msg) < _IN_HEADER + 20:
        return False
    flags, flags2 = _INIT_FLAGS.unpack_from(msg, _IN_HEADER + 12)
    if not flags & P.FUSE_INIT_EXT:
        flags2 = 0
    return bool((flags | flags2 << 32) & FUSE_HAS_RESEND)


class KillHook:
    """SHMFS_TEST_KILL: SIGKILL this process at one request (tests only)."""

    def __init__(self, spec: str) -> None:
        parts = spec.split(":")
        if len(parts) == 4:
            name, cmd, self.point, nth = parts
            self.cmd: int | None = int(cmd, 0)
        elif len(parts) == 3:
            name, self.point, nth = parts
            self.cmd = None
        else:
            raise ValueError(f"{KILL_ENV}={spec!r}: OPNAME[:IOCTLCMD]:POINT:NTH[@NODEID]")
        if self.point not in KILL_POINTS:
            raise ValueError(f"{KILL_ENV}: point must be one of {KILL_POINTS}")
        self.opcode = int(P.Opcode[name.upper()])
        nth, _, node = nth.partition("@")
        self.nth = int(nth)
        self.nodeid = int(node) if node else None
        self.seen = 0
        self.armed = False

    def match(self, msg: memoryview) -> None:
        """Count ``msg`` if it is the kind the hook waits for; arm it at the NTH."""
        if int.from_bytes(msg[4:8], "little") != self.opcode:
            return
        if self.nodeid is not None and int.from_bytes(msg[16:24], "little") != self.nodeid:
            return
        if self.cmd is not None and (len(msg) < _IN_HEADER + 16 or int.from_bytes(
                msg[_IN_HEADER + 12:_IN_HEADER + 16], "little") != self.cmd):
            return
        self.seen += 1
        self.armed = self.seen == self.nth

    def at(self, point: str) -> None:
        if self.armed and point == self.point:
            log.warning("%s: SIGKILL at %s of request %d", KILL_ENV, point, self.nth)
            os.kill(os.getpid(), signal.SIGKILL)


class RestartHooks:
    """The session's journal hooks and the restart protocol (module docstring)."""

    def __init__(self, session: Session, persist: Any, recovered: Any | None,
                 refuse: Callable[[str], None] | None) -> None:
        self.session = session
        self.persist = persist
        self.info = recovered  # None: generation 0 (a fresh mount, INIT still to come)
        self.refuse = refuse
        self.can_reap = hasattr(persist, "reap")
        self._journalled = False
        self._unique = 0
        self._resent = 0  # the unique as resent (bit 63) of the request being handled
        self.resent_replayed = 0  # resent requests answered from the journal
        self.resent_handled = 0  # resent requests handled as new
        spec = os.environ.get(KILL_ENV)
        self.kill = KillHook(spec) if spec and recovered is None else None

    # --- around each request ------------------------------------------------------------------

    def before(self, msg: memoryview) -> bool:
        """Journal ``msg`` (begin) unless it is a resent request with a recorded reply,
        which is answered here (True: the session is done with it)."""
        self.persist.maybe_snapshot(self.session.ops)
        unique = _U64.unpack_from(msg, 8)[0]
        opcode = int.from_bytes(msg[4:8], "little")
        self._resent = 0
        if unique & FUSE_UNIQUE_RESEND:
            reply = self.info.reply_for(unique) if self.info is not None else None
            if reply is not None:
                reply = expire_attrs(opcode, reply, self._current_attr)
                self.resent_replayed += 1
                log.info("resent request %d (opcode %d) answered from the journal",
                         unique & ~FUSE_UNIQUE_RESEND, opcode)
                self._answer_recorded(opcode, reply)
                return True
            self.resent_handled += 1
            log.info("resent request %d (opcode %d) has no commit record: handled as new",
                     unique & ~FUSE_UNIQUE_RESEND, opcode)
            self._resent = unique
            unique &= ~FUSE_UNIQUE_RESEND
            _U64.pack_into(msg, 8, unique)
        kill = self.kill
        if kill is not None:
            kill.match(msg)
            kill.at("before_record")
        if opcode == _OPCODE_INIT and not init_offers_resend(msg):
            self._refuse_init(unique)
            self._journalled = False
            return True
        self._unique = unique
        self._journalled = self.persist.begin(msg)
        if kill is not None:
            kill.at("after_record")
        return False

    def after(self, opcode: int, out: list | None) -> list | None:
        """Commit the request's record with its reply; the reply to write."""
        if self._journalled:
            self._journalled = False
            if out is None or opcode == _OPCODE_READ:
                # a READ's reply is data the journal does not keep: not copied
                self.persist.commit(self._unique, out)
            else:
                reply = b"".join(out)  # one buffer: recorded, then written
                self.persist.commit(self._unique, reply)
                out = [reply]
        if self.kill is not None:
            self.kill.at("after_commit")
        if self._resent and out is not None:
            head = bytearray(out[0][:16])
            _U64.pack_into(head, 8, self._resent)
            out = [bytes(head), memoryview(out[0])[16:], *out[1:]]
        return out

    def _current_attr(self, ino: int) -> bytes | None:
        """The fuse_attr of inode ``ino`` as it is now (None if it is gone)."""
        table = getattr(getattr(self.session.ops, "fs", None), "_inodes", None)
        inode = None if table is None else table.get(ino)
        return None if inode is None else pack_attr(inode.attr())

    def _answer_recorded(self, opcode: int, reply: bytes) -> None:
        s = self.session
        if opcode in (_OPCODE_READ, _OPCODE_WRITE) or not s._pending:
            s._write([reply])
            return
        msgs: list = []
        s._reply_behind(msgs, reply)
        if msgs:
            s._queue_notify(msgs)

    def _refuse_init(self, unique: int) -> None:
        why = ("-o restartable needs a kernel that can resend requests to a restarted "
               "server (FUSE_HAS_RESEND, Linux 6.9 or later); this one does not offer it")
        log.error("%s", why)
        self.session._write([reply_error(unique, errno.EPROTO)])
        self.session._done = True
        self.session.refused = True
        if self.refuse is not None:
            self.refuse(why)

    # --- a restarted server -------------------------------------------------------------------

    def resume(self) -> None:
        """Generation > 0: RESEND, then invalidate every inode the kernel may cache
        (module docstring for the order); then report ready."""
        info = self.info
        if info is None:
            return
        s = self.session
        try:
            os.write(s.fd, resend_notification())
        except OSError as e:
            if e.errno != errno.ENODEV:  # unmounted meanwhile: the loop reads ENODEV and ends
                raise
        inodes = sorted(getattr(info, "cached_inodes", ()) or ())
        gone = self._forget_lost(inodes)
        if gone:
            inodes = [ino for ino in inodes if ino not in gone]
        if inodes:
            msgs = self._invalidations(inodes)
            s.stats.notifications += len(msgs)
            s._queue_notify(msgs)
        log.info("resumed: RESEND sent, %d inodes invalidated", len(inodes))
        if getattr(info, "initialized", True) and s.on_ready is not None:
            ready, s.on_ready = s.on_ready, None
            ready()

    def _forget_lost(self, inodes: list[int]) -> set[int]:
        """FORGETs the dead server had read but not journalled (the kernel never resends
        a FORGET) leave an inode's lookup count too high, and an unlinked inode's record
        would stay until unmount. For every unlinked inode with a lookup count, ask the
        kernel whether it still holds it -- a NOTIFY_INVAL_INODE of its attributes only
        waits for nothing and fails with ENOENT when the kernel has no such inode -- and
        forget those it does not hold with a FORGET of their whole count, handled (and
        journalled, so replay does the same) as if the kernel had sent it. Unlinked:
        nothing can look it up by name again, so no LOOKUP can race this; a real FORGET
        still queued in the kernel finds the count at 0, or no inode (both ignored).
        Written before RESEND, when no request is being handled. Returns those inodes."""
        s = self.session
        fs = getattr(s.ops, "fs", None)
        table = getattr(fs, "_inodes", None)
        if table is None:
            return set()
        gone: dict[int, int] = {}
        for ino in inodes:
            inode = table.get(ino)
            if inode is None or inode.nlink or inode.nlookup <= 0:
                continue
            try:
                os.write(s.fd, inval_attrs_notification(ino))
            except OSError as e:
                if e.errno == errno.ENOENT:
                    gone[ino] = inode.nlookup
                elif e.errno == errno.ENODEV:  # unmounted meanwhile
                    return set()
                else:
                    log.warning("probing inode %d failed: %s", ino, e)
        for ino, nlookup in gone.items():
            s._handle(memoryview(bytearray(forget_request(ino, nlookup))))
        if gone:
            log.info("forgot %d unlinked inodes the kernel no longer holds (FORGETs lost "
                     "with the dead server)", len(gone))
        return set(gone)

    def _invalidations(self, inodes: list[int]) -> list:
        """NOTIFY_INVAL_INODE of each inode; a window's is followed by the store that
        gives the kernel its size (fsimpl/windows.py ``size_store``): the dead server
        may have died between ATTACH's commit and that store."""
        s = self.session
        wins = getattr(getattr(s.ops, "fs", None), "_windows", None)
        msgs: list = []
        for ino in inodes:
            msgs.append([inval_inode_notification(ino)])
            if wins is not None and wins.is_window(ino):
                msgs.append(s._encode(wins.size_store(ino)))
        return msgs

    def statistics(self) -> dict[str, int]:
        return {"resent_replayed": self.resent_replayed, "resent_handled": self.resent_handled}

