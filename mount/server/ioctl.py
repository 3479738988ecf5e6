"""The daemon's side of the shmfs ioctls: decode a FUSE IOCTL, call fsimpl, encode the reply.

The ABI itself (command numbers, struct layouts) lives in mount.winapi.abi, which
clients import without the daemon's packages.
"""

from __future__ import annotations

from typing import Any

from mount.winapi.abi import (
    ATTACH,
    COMMANDS,
    GRANT,
    INFO,
    IOC_READ,
    IOC_WRITE,
    MADVISE,
    MPROTECT,
    QUERY_HEAD,
    QUERY_MAX_PAGES,
    REMAP,
    REMAPV_HEAD,
    REMAPV_MAX,
    REMOUNT,
    REMOUNT_INODES,
    REMOUNT_SIZE,
    SHMFS_IOC_MAGIC,
    STATS_DATA,
    STATS_HEAD,
    STATS_SIZE,
    PageInfo,
    decode_remapv,
    encode_query_reply,
    ioc_dir,
    ioc_nr,
    ioc_size,
    ioc_type,
)

# ===================================================================== daemon side
# ``serve`` answers one FUSE IOCTL request (called by mount.ops for every ioctl).
# It decodes the fixed-size struct, calls the fsimpl WindowTable and encodes the
# reply; nothing here touches fsimpl internals, and fsimpl's FsError passes
# through to ops.handle, which turns it into the error reply.


class AbiError(Exception):
    """A request that does not fit the ABI (unknown command, wrong size): ``errno``."""

    def __init__(self, errno: int, msg: str = "") -> None:
        super().__init__(errno, msg)
        self.errno = errno


_FUSE_IOCTL_DIR = 1 << 4
_STATS_SNAPSHOTS: dict[int, bytes] = {}  # (per ops object) offset > 0 continues a snapshot


def is_attach(cmd: int) -> bool:
    """Whether an ioctl command makes a window: ATTACH, or the GRANT that precedes it
    (whatever the struct size).  With -o writeback_cache the kernel opens O_WRONLY
    files O_RDWR, so a GRANT could not tell a write-only opener from a reader."""
    cmd &= 0xFFFFFFFF
    return (ioc_type(cmd) == SHMFS_IOC_MAGIC
            and COMMANDS.get(ioc_nr(cmd), ("",))[0] in ("ATTACH", "GRANT"))


def serve(ops: Any, req: Any, table: Any) -> list[bytes]:
    """Reply buffers for an IOCTL request ``req`` (``req.args``: IoctlIn) on ``table``
    (fsimpl.windows.WindowTable).  Raises AbiError or the table's FsError."""
    import errno as E

    from mount.wire import codec

    a = req.args
    cmd = a.cmd & 0xFFFFFFFF
    if ioc_type(cmd) != SHMFS_IOC_MAGIC or ioc_nr(cmd) not in COMMANDS:
        raise AbiError(E.ENOTTY, f"unknown ioctl {cmd:#x}")
    name, want = COMMANDS[ioc_nr(cmd)]
    if cmd != want:
        raise AbiError(E.EINVAL, f"{name}: wrong size or direction in {cmd:#x}")
    size = ioc_size(cmd)
    in_size = size if ioc_dir(cmd) & IOC_WRITE else 0
    out_size = size if ioc_dir(cmd) & IOC_READ else 0
    if a.in_size != in_size or len(a.data) != in_size or a.out_size < out_size:
        raise AbiError(E.EINVAL, f"{name}: in {a.in_size}/out {a.out_size} bytes")
    if a.flags & _FUSE_IOCTL_DIR and name not in ("STATS", "REMOUNT"):
        raise AbiError(E.ENOTTY, f"{name} on a directory")
    ino, fh, data = req.nodeid, a.fh, a.data
    payload = b""
    if name == "ATTACH":
        from fsimpl.types import Ctx

        token, wsize, pgoff, prot, flags = ATTACH.unpack(data)
        table.attach(ino, fh, Ctx(req.uid, req.gid, req.pid), token, wsize, pgoff, prot, flags)
    elif name == "GRANT":
        from fsimpl.types import Ctx

        prot, flags, _token = GRANT.unpack(data)
        token = table.grant(ino, fh, Ctx(req.uid, req.gid, req.pid), prot, flags)
        payload = GRANT.pack(prot, flags, token)
    elif name == "REMAP":
        start, rsize, pgoff, prot, flags = REMAP.unpack(data)
        table.remap(ino, fh, start, rsize, pgoff, prot, flags)
    elif name == "REMAPV":
        return _remapv(req, table, data)
    elif name == "MPROTECT":
        start, rsize, prot, flags = MPROTECT.unpack(data)
        table.mprotect(ino, fh, start, rsize, prot, flags)
    elif name == "MADVISE":
        start, rsize, advice, flags = MADVISE.unpack(data)
        if flags:
            raise AbiError(E.EINVAL, "MADVISE flags must be 0")
        table.madvise(ino, fh, start, rsize, advice)
    elif name == "QUERY":
        first, count, flags, _n, _s = QUERY_HEAD.unpack_from(data, 0)
        if flags or count > QUERY_MAX_PAGES:
            raise AbiError(E.EINVAL, "QUERY: flags != 0 or count > 512")
        npages, osize, rows = table.query(ino, fh, first, count)
        pages = [PageInfo(first + i, p, f, pr) for i, (p, f, pr) in enumerate(rows)]
        payload = encode_query_reply(first, npages, osize, pages)
    elif name == "INFO":
        i = table.info(ino, fh)
        payload = INFO.pack(i["object_ino"], i["size"], i["pgoff"], i["object_size"], i["prot"],
                            i["flags"], i["nr_vmas"], 0)
    elif name == "REMOUNT":
        _remount(ops, req, data)
    else:  # STATS
        payload = _stats_reply(ops, table, data)
    return [codec.reply(req.unique, codec.ioctl_out(0) + payload)]


def _remap_dtype() -> Any:
    import numpy as np

    return np.dtype([("start", "<u8"), ("size", "<u8"), ("pgoff", "<u8"), ("prot", "<u4"),
                     ("flags", "<u4")])


_REMAP_DTYPE = _remap_dtype()  # struct shmfs_win_remap, as the REMAP struct packs it


def _remapv(req: Any, table: Any, data: bytes) -> list[bytes]:
    """REMAPV: the entries in order; ``done`` says how many were applied.  A failing
    entry stops the vector: the reply is then a *successful* FUSE reply whose ioctl
    result is -errno, so the kernel still copies the struct (and ``done``) out and
    ioctl(2) fails with that errno (the applied entries' invalidations go first)."""
    import errno as E

    import numpy as np

    from fsimpl.errors import FsError
    from mount.wire import codec

    count, flags, _done, reserved = REMAPV_HEAD.unpack_from(data, 0)
    if flags or reserved or count > REMAPV_MAX:
        raise AbiError(E.EINVAL, "REMAPV: flags/reserved != 0 or count > 511")
    if count <= 8:  # a short vector: tuples (fsimpl applies it entry by entry anyway)
        ents: Any = decode_remapv(data)[3]
    else:  # an (n, 5) array, no tuple per entry
        rec = np.frombuffer(data, dtype=_REMAP_DTYPE, count=count, offset=REMAPV_HEAD.size)
        ents = np.stack([rec[f].astype(np.uint64) for f in _REMAP_DTYPE.names], axis=1)
    try:
        done, result = table.remapv(req.nodeid, req.args.fh, ents), 0
    except FsError as e:
        done = getattr(e, "done", None)
        if done is None:  # nothing applied (descriptor, not a window ...): a plain error
            raise
        result = -e.errno
    out = bytearray(data)
    REMAPV_HEAD.pack_into(out, 0, count, 0, done, 0)
    return [codec.reply(req.unique, codec.ioctl_out(result) + bytes(out))]


def _remount(ops: Any, req: Any, data: bytes) -> None:
    """``mount -o remount,size=,nr_inodes=``: only root or the mounting user may."""
    import errno as E
    import os

    size_bytes, nr_inodes, valid, flags = REMOUNT.unpack(data)
    if flags or valid & ~(REMOUNT_SIZE | REMOUNT_INODES):
        raise AbiError(E.EINVAL, "REMOUNT: unknown valid bits or flags")
    if req.uid not in (0, os.getuid()):
        raise AbiError(E.EPERM, "REMOUNT: not the mount's owner")
    ops.fs.remount(size_bytes if valid & REMOUNT_SIZE else None,
                   nr_inodes if valid & REMOUNT_INODES else None)


def _stats_reply(ops: Any, table: Any, data: bytes) -> bytes:
    import errno as E
    import json

    offset, _total, _len, flags = STATS_HEAD.unpack_from(data, 0)
    if flags:
        raise AbiError(E.EINVAL, "STATS flags must be 0")
    key = id(ops)
    doc = _STATS_SNAPSHOTS.get(key) if offset else None
    if doc is None:
        doc = json.dumps(stats_document(ops, table), sort_keys=True, default=str).encode()
        _STATS_SNAPSHOTS[key] = doc
    if offset > len(doc):
        raise AbiError(E.EINVAL, "STATS offset beyond the document")
    chunk = doc[offset : offset + STATS_DATA]
    out = bytearray(STATS_SIZE)
    STATS_HEAD.pack_into(out, 0, offset, len(doc), len(chunk), 0)
    out[STATS_HEAD.size : STATS_HEAD.size + len(chunk)] = chunk
    return bytes(out)


def stats_document(ops: Any, table: Any) -> dict[str, Any]:
    """Everything ``shmfs stat`` shows: pager, filesystem, windows, session."""
    from mount.wire.protocol import Opcode
    from vmcore.fault import statistics as fault_statistics

    fs = ops.fs
    # first: fs.statistics() reaps the evictions still pending, whose frees the arena's
    # and the pager's counters below must include (taken before, they showed the frames
    # of inodes the same document no longer counted)
    fs_stats = fs.statistics()
    doc: dict[str, Any] = {"faults": fault_statistics()}
    backing = getattr(fs, "_backing", None)
    if backing is not None:
        doc["arena"] = backing.arena.statistics()
    doc["fs"] = fs_stats
    doc["windows"] = table.statistics()
    doc["ops"] = ops.statistics()
    session_stats = getattr(ops, "session_statistics", None)
    if session_stats is not None:
        s = dict(session_stats())
        reqs = {}
        for op, v in dict(s.get("requests", {})).items():
            try:
                reqs[Opcode(int(op)).name] = v
            except ValueError:
                reqs[str(op)] = v
        s["requests"] = reqs
        doc["session"] = s
    return doc
