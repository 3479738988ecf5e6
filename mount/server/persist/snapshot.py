"""Snapshots: the filesystem's metadata pickled into the snapshot memfd.

What is in one: the ShmFs object's attributes (inodes, names, xattrs, ACLs,
handles, lookup counts, the vmcore mappings with their page-cache index, the
window table with its page tables and grants, the limits' accounting), the
Operations fields that outlive INIT (negotiated minor and flags, the random
generation of the mount), the arena's allocator state, and the replies of the
last committed requests (one may still be unanswered when the server dies).
What is not: the file data (it is in the arena memfd already), and the
process's own wiring, which the new server makes again: the clock, the atime
options, the session's callbacks (``TRANSIENT_FS_KEYS``).

The arena and the fs object itself are pickled as references (pickle's
persistent ids) and resolved to the new server's objects on load, so that
structures pointing back at them (mappings, the window table) are rewired.

Layout of the snapshot memfd: two slots (``SLOTS``), each a ``TRAILER``
(length, CRC) then the pickle; a snapshot is written into the slot the header
does not name, and becomes current only when the journal header is rewritten
after it is complete (journal.py).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import types
import zlib
from typing import Any

SLOTS = (0, 1 << 40)  # sparse offsets in the memfd: neither slot limits the other's size
TRAILER = struct.Struct("<QI")  # pickle length, CRC-32
TRANSIENT_FS_KEYS = frozenset({"_clock", "atime_mode", "store_queued"})
OPS_KEYS = ("proto_minor", "init_flags", "destroyed", "generation")


class _Ref:
    """Persistent-id tags."""

    FS = "fs"
    ARENA = "arena"
    TRANSIENT = "transient"
    NO_CHUNKS = "pagecache-empty"


def _no_chunks() -> Any:
    """vmcore.pagecache's empty-chunks sentinel (a PageCache without pages)."""
    from vmcore import pagecache

    return pagecache._NO_CHUNKS


class _Transient:
    """What a per-process callable loads as (never used: the new server's wins)."""

    def __repr__(self) -> str:
        return "<transient>"


TRANSIENT = _Transient()


class _Pickler(pickle.Pickler):
    def __init__(self, f: io.BytesIO, fs: Any, arena: Any) -> None:
        super().__init__(f, protocol=5)
        self._fs = fs
        self._arena = arena

    def persistent_id(self, obj: Any) -> str | None:
        if obj is self._fs:
            return _Ref.FS
        if obj is self._arena:
            return _Ref.ARENA
        if isinstance(obj, types.LambdaType) and obj.__name__ == "<lambda>":
            # a closure inside the state would come back as nothing: refuse it loudly
            raise pickle.PicklingError(f"snapshot: a lambda in the state ({obj.__qualname__})")
        if isinstance(obj, types.MappingProxyType):  # a module's shared empty sentinel
            if obj is _no_chunks():
                return _Ref.NO_CHUNKS
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: io.BytesIO, fs: Any, arena: Any) -> None:
        super().__init__(f)
        self._fs = fs
        self._arena = arena

    def persistent_load(self, pid: Any) -> Any:
        if pid == _Ref.FS:
            return self._fs
        if pid == _Ref.ARENA:
            return self._arena
        if pid == _Ref.TRANSIENT:
            return TRANSIENT
        if pid == _Ref.NO_CHUNKS:
            return _no_chunks()
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def dump(ops: Any, arena: Any, replies: list[tuple[int, bytes]], pos: int, seq: int) -> bytes:
    """The snapshot of ``ops`` (and its fs) as of journal position ``pos``/``seq``."""
    fs = ops.fs
    state = {k: v for k, v in vars(fs).items() if k not in TRANSIENT_FS_KEYS}
    # an event queue is always drained by the time a snapshot is taken; keep it empty
    state["_events"] = []
    blob = {
        "fs": state,
        "ops": {k: getattr(ops, k) for k in OPS_KEYS},
        "arena": arena.allocator_state(),
        "replies": replies,
        "pos": pos,
        "seq": seq,
    }
    f = io.BytesIO()
    _Pickler(f, fs, arena).dump(blob)
    return f.getvalue()


def load(data: bytes, ops: Any, arena: Any) -> dict[str, Any]:
    """Put a snapshot's state into the new server's ``ops`` and ``arena``; returns
    the rest of it (replies, pos, seq)."""
    fs = ops.fs
    blob = _Unpickler(io.BytesIO(data), fs, arena).load()
    arena.restore_allocator_state(blob["arena"])
    for k, v in blob["fs"].items():
        if v is not TRANSIENT:
            setattr(fs, k, v)
    for k, v in blob["ops"].items():
        setattr(ops, k, v)
    table = getattr(fs, "_windows", None)
    if table is not None:  # keyed by id(window mm): the mms are new objects
        table._by_mm = {id(ws.window.mm): ws for ws in table.wins.values()}
    return blob


def write_slot(fd: int, slot_off: int, data: bytes) -> None:
    """Write a snapshot into a slot: the trailer last, so a torn write fails its check."""
    from mount.server.persist.journal import punch

    punch(fd, slot_off, SLOTS[1])  # the older snapshot that was there
    view = memoryview(data)
    off = slot_off + TRAILER.size
    while view:
        n = os.pwrite(fd, view, off)
        view = view[n:]
        off += n
    os.pwrite(fd, TRAILER.pack(len(data), zlib.crc32(data)), slot_off)


def read_slot(fd: int, slot_off: int) -> bytes:
    """A complete snapshot from its slot, or ValueError."""
    raw = os.pread(fd, TRAILER.size, slot_off)
    if len(raw) < TRAILER.size:
        raise ValueError("snapshot slot is empty")
    length, crc = TRAILER.unpack(raw)
    parts = []
    off, left = slot_off + TRAILER.size, length
    while left:
        chunk = os.pread(fd, min(left, 64 << 20), off)
        if not chunk:
            raise ValueError("snapshot is truncated")
        parts.append(chunk)
        off += len(chunk)
        left -= len(chunk)
    data = b"".join(parts)
    if zlib.crc32(data) != crc:
        raise ValueError("snapshot fails its checksum")
    return data
