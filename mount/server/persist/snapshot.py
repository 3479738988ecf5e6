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

The arena and the fs object itself are pickled as references (a reducer in
the pickler's dispatch table) and resolved to the new server's objects on
load, so that structures pointing back at them (mappings, the window table)
are rewired.  A lambda anywhere in the state fails the snapshot.

Layout of the snapshot memfd: two slots (``SLOTS``), each a ``TRAILER``
(length, CRC) then the pickle; a snapshot is written into the slot the header
does not name, and becomes current only when the journal header is rewritten
after it is complete (journal.py).
"""

from __future__ import annotations

import copyreg
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


# The objects of the new server that references in a snapshot resolve to while one
# is loaded (load() sets them; one load at a time, in the server's one thread).
_TARGETS: dict[str, Any] = {}


def _target(name: str) -> Any:
    """Unpickling: the new server's object for a reference (see _reducers)."""
    return _TARGETS[name]


def _no_chunks() -> Any:
    """vmcore.pagecache's empty-chunks sentinel (a PageCache without pages)."""
    from vmcore import pagecache

    return pagecache._NO_CHUNKS


def _function(fn: Any) -> Any:
    if fn.__name__ == "<lambda>":
        # a closure inside the state would come back as nothing: refuse it loudly
        raise pickle.PicklingError(f"snapshot: a lambda in the state ({fn.__qualname__})")
    return fn.__qualname__  # a module-level function: pickled by name


def _mappingproxy(obj: Any) -> Any:
    if obj is _no_chunks():
        return (_no_chunks, ())
    raise pickle.PicklingError("snapshot: a mappingproxy in the state")


def _pickler(f: io.BytesIO, fs: Any, arena: Any) -> pickle.Pickler:
    """A pickler that writes the fs and the arena as references (by type, so that
    only those objects pay for the check: a per-object hook cost 40 % of a dump)."""
    p = pickle.Pickler(f, protocol=5)
    table = dict(copyreg.dispatch_table)
    table[type(fs)] = lambda obj: (_target, ("fs",)) if obj is fs else obj.__reduce_ex__(5)
    table[type(arena)] = (lambda obj: (_target, ("arena",)) if obj is arena
                          else obj.__reduce_ex__(5))
    table[types.FunctionType] = _function
    table[types.MappingProxyType] = _mappingproxy
    p.dispatch_table = table
    return p


def dump(ops: Any, arena: Any, replies: list[tuple[int, bytes]], pos: int, seq: int,
         **extra: Any) -> bytes:
    """The snapshot of ``ops`` (and its fs) as of journal position ``pos``/``seq``;
    ``extra`` (e.g. the recorded atime options) comes back in load()'s result."""
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
        **extra,
    }
    f = io.BytesIO()
    _pickler(f, fs, arena).dump(blob)
    return f.getvalue()


def load(data: bytes, ops: Any, arena: Any) -> dict[str, Any]:
    """Put a snapshot's state into the new server's ``ops`` and ``arena``; returns
    the rest of it (replies, pos, seq)."""
    fs = ops.fs
    _TARGETS.update(fs=fs, arena=arena)
    try:
        blob = pickle.loads(data)
    finally:
        _TARGETS.clear()
    arena.restore_allocator_state(blob["arena"])
    for k, v in blob["fs"].items():
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
