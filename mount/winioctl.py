"""The window ioctl ABI of shmfs (docs/windows.md is the C-header view of this file).

Every command is a FUSE *restricted* ioctl: the kernel copies exactly
``_IOC_SIZE(cmd)`` bytes in (``_IOW``/``_IOWR``) and out (``_IOR``/``_IOWR``), so
each command carries one fixed-size little-endian struct.  This module holds the
command numbers, the ``struct.Struct`` layouts and encode/decode helpers; the
client (mount.winclient), the CLI (mount.wincli) and the daemon's handler
(``serve`` at the end of this file, called by ops.py) all build on it, so the
numbers exist once.

It imports only the standard library at module level, so a client needs
neither numpy nor the daemon's packages.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

PAGE_SIZE = 4096

# ------------------------------------------------------------------ <asm-generic/ioctl.h>
_IOC_NRBITS, _IOC_TYPEBITS, _IOC_SIZEBITS = 8, 8, 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
IOC_NONE, IOC_WRITE, IOC_READ = 0, 1, 2
IOC_SIZE_MAX = (1 << _IOC_SIZEBITS) - 1  # 16383: the largest struct a command can carry


def _ioc(direction: int, typ: int, nr: int, size: int) -> int:
    assert 0 <= size <= IOC_SIZE_MAX
    return (
        (direction << _IOC_DIRSHIFT)
        | (typ << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
        | (size << _IOC_SIZESHIFT)
    )


def ioc_dir(cmd: int) -> int:
    return (cmd >> _IOC_DIRSHIFT) & 3


def ioc_type(cmd: int) -> int:
    return (cmd >> _IOC_TYPESHIFT) & 0xFF


def ioc_nr(cmd: int) -> int:
    return (cmd >> _IOC_NRSHIFT) & 0xFF


def ioc_size(cmd: int) -> int:
    return (cmd >> _IOC_SIZESHIFT) & IOC_SIZE_MAX


# ------------------------------------------------------------------------- constants
SHMFS_IOC_MAGIC = ord("S")

# protections and flags carry the kernel's x86-64 values (vmcore.vma)
PROT_NONE, PROT_READ, PROT_WRITE = 0x0, 0x1, 0x2
MAP_POPULATE = 0x8000
MAP_NONBLOCK = 0x10000
MAP_CHGPROT = 0x20000  # the per-page-protection extension's remap flag
MADV_NORMAL, MADV_WILLNEED, MADV_DONTNEED, MADV_REMOVE = 0, 3, 4, 9

#: REMAP flags: MAP_NONBLOCK and MAP_CHGPROT as remap_file_pages(2); POPULATE asks the
#: daemon to prefault the object pages (the 2.6.23 default; the mount's default is
#: non-blocking because a daemon-side prefault does not fill the kernel's page cache).
SHMFS_REMAP_POPULATE = MAP_POPULATE
REMAP_FLAGS = SHMFS_REMAP_POPULATE | MAP_NONBLOCK | MAP_CHGPROT

#: MPROTECT flag: mprotect(2) of the window's VMA (splits it) instead of per-page prot
SHMFS_MPROTECT_VMA = 0x1

#: QUERY page flags
PAGE_PRESENT = 0x01  # the window's PTE is present (object page faulted in)
PAGE_FILE = 0x02  # nonlinear file PTE: pgoff remembered, nothing faulted
PAGE_DIRTY = 0x04  # written through the window since the PTE became present
PAGE_OWNPROT = 0x08  # the page has its own protection (MPROTECT, REMAP|MAP_CHGPROT)
PAGE_BEYOND_EOF = 0x10  # pgoff >= object pages: mmap access SIGBUS, pread/pwrite EIO
PAGE_RESIDENT = 0x20  # the object page exists (allocated in the object's page cache)
PAGE_CACHED = 0x40  # the kernel may cache this window page (served since last invalidation)

#: INFO window flags
WIN_NONLINEAR = 0x1
WIN_MANYPROTS = 0x2

QUERY_MAX_PAGES = 512
STATS_DATA = 16352

# --------------------------------------------------------------------------- structs
#: struct shmfs_win_attach { u64 object_ino, size, pgoff; u32 prot, flags; }       32
ATTACH = struct.Struct("<QQQII")
#: struct shmfs_win_remap { u64 start, size, pgoff; u32 prot, flags; }             32
REMAP = struct.Struct("<QQQII")
#: struct shmfs_win_mprotect { u64 start, size; u32 prot, flags; }                 24
MPROTECT = struct.Struct("<QQII")
#: struct shmfs_win_madvise { u64 start, size; u32 advice, flags; }                24
MADVISE = struct.Struct("<QQII")
#: struct shmfs_win_query header { u64 first; u32 count, flags; u64 npages, object_size; }
QUERY_HEAD = struct.Struct("<QIIQQ")
#: struct shmfs_win_page { u64 pgoff; u32 flags, prot; }                           16
QUERY_PAGE = struct.Struct("<QII")
QUERY_SIZE = QUERY_HEAD.size + QUERY_MAX_PAGES * QUERY_PAGE.size  # 8224
#: struct shmfs_win_info { u64 object_ino, size, pgoff, object_size;
#:                         u32 prot, flags, nr_vmas, reserved; }                    48
INFO = struct.Struct("<QQQQIIII")
#: struct shmfs_stats { u64 offset, total; u32 len, flags; char data[16352]; }  16376
STATS_HEAD = struct.Struct("<QQII")
STATS_SIZE = STATS_HEAD.size + STATS_DATA
#: struct shmfs_remount { u64 size_bytes, nr_inodes; u32 valid, flags; }          24
REMOUNT = struct.Struct("<QQII")
REMOUNT_SIZE, REMOUNT_INODES = 0x1, 0x2  # valid bits: which limits to change

_S = SHMFS_IOC_MAGIC
SHMFS_IOC_WIN_ATTACH = _ioc(IOC_WRITE, _S, 1, ATTACH.size)
SHMFS_IOC_WIN_REMAP = _ioc(IOC_WRITE, _S, 2, REMAP.size)
SHMFS_IOC_WIN_MPROTECT = _ioc(IOC_WRITE, _S, 3, MPROTECT.size)
SHMFS_IOC_WIN_MADVISE = _ioc(IOC_WRITE, _S, 4, MADVISE.size)
SHMFS_IOC_WIN_QUERY = _ioc(IOC_READ | IOC_WRITE, _S, 5, QUERY_SIZE)
SHMFS_IOC_WIN_INFO = _ioc(IOC_READ, _S, 6, INFO.size)
SHMFS_IOC_STATS = _ioc(IOC_READ | IOC_WRITE, _S, 7, STATS_SIZE)
SHMFS_IOC_REMOUNT = _ioc(IOC_WRITE, _S, 8, REMOUNT.size)

#: nr -> (name, full command number)
COMMANDS: dict[int, tuple[str, int]] = {
    1: ("ATTACH", SHMFS_IOC_WIN_ATTACH),
    2: ("REMAP", SHMFS_IOC_WIN_REMAP),
    3: ("MPROTECT", SHMFS_IOC_WIN_MPROTECT),
    4: ("MADVISE", SHMFS_IOC_WIN_MADVISE),
    5: ("QUERY", SHMFS_IOC_WIN_QUERY),
    6: ("INFO", SHMFS_IOC_WIN_INFO),
    7: ("STATS", SHMFS_IOC_STATS),
    8: ("REMOUNT", SHMFS_IOC_REMOUNT),
}


# --------------------------------------------------------------------- value types
@dataclass(slots=True, frozen=True)
class PageInfo:
    """One window page as QUERY reports it."""

    index: int
    pgoff: int
    flags: int
    prot: int

    @property
    def present(self) -> bool:
        return bool(self.flags & PAGE_PRESENT)

    @property
    def dirty(self) -> bool:
        return bool(self.flags & PAGE_DIRTY)

    @property
    def beyond_eof(self) -> bool:
        return bool(self.flags & PAGE_BEYOND_EOF)


@dataclass(slots=True, frozen=True)
class WindowInfo:
    """What INFO reports about a window."""

    object_ino: int
    size: int
    pgoff: int
    object_size: int
    prot: int
    flags: int
    nr_vmas: int

    @property
    def npages(self) -> int:
        return self.size // PAGE_SIZE


def encode_query_reply(first: int, npages: int, object_size: int, pages: list[PageInfo]) -> bytes:
    """The whole fixed-size QUERY struct the daemon copies out."""
    assert len(pages) <= QUERY_MAX_PAGES
    out = bytearray(QUERY_SIZE)
    QUERY_HEAD.pack_into(out, 0, first, len(pages), 0, npages, object_size)
    pos = QUERY_HEAD.size
    for p in pages:
        QUERY_PAGE.pack_into(out, pos, p.pgoff, p.flags, p.prot)
        pos += QUERY_PAGE.size
    return bytes(out)


def decode_query_reply(buf: bytes | bytearray) -> tuple[int, int, list[PageInfo]]:
    """(window npages, object size, pages) from a QUERY struct."""
    first, count, _flags, npages, object_size = QUERY_HEAD.unpack_from(buf, 0)
    count = min(count, QUERY_MAX_PAGES)
    pages = []
    pos = QUERY_HEAD.size
    for i in range(count):
        pgoff, flags, prot = QUERY_PAGE.unpack_from(buf, pos)
        pages.append(PageInfo(first + i, pgoff, flags, prot))
        pos += QUERY_PAGE.size
    return npages, object_size, pages


def page_flags_text(flags: int) -> str:
    """Short letters for a QUERY flags word: P F D O E R C (or '-')."""
    letters = zip(
        "PFDOERC",
        (PAGE_PRESENT, PAGE_FILE, PAGE_DIRTY, PAGE_OWNPROT, PAGE_BEYOND_EOF, PAGE_RESIDENT,
         PAGE_CACHED),
        strict=True,
    )
    return "".join(ch if flags & bit else "-" for ch, bit in letters)


def prot_text(prot: int) -> str:
    return ("r" if prot & PROT_READ else "-") + ("w" if prot & PROT_WRITE else "-")


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


def serve(ops: Any, req: Any, table: Any) -> list[bytes]:
    """Reply buffers for an IOCTL request ``req`` (``req.args``: IoctlIn) on ``table``
    (fsimpl.windows.WindowTable).  Raises AbiError or the table's FsError."""
    import errno as E

    from mount import codec

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

        obj, wsize, pgoff, prot, flags = ATTACH.unpack(data)
        table.attach(ino, fh, Ctx(req.uid, req.gid, req.pid), obj, wsize, pgoff, prot, flags)
    elif name == "REMAP":
        start, rsize, pgoff, prot, flags = REMAP.unpack(data)
        table.remap(ino, fh, start, rsize, pgoff, prot, flags)
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
    from mount.protocol import Opcode
    from vmcore.fault import statistics as fault_statistics

    fs = ops.fs
    doc: dict[str, Any] = {"faults": fault_statistics()}
    backing = getattr(fs, "_backing", None)
    if backing is not None:
        doc["arena"] = backing.arena.statistics()
    doc["fs"] = fs.statistics()
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
