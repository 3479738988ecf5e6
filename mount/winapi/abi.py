"""The window ioctl ABI of shmfs (docs/windows.md is the C-header view of this file).

Every command is a FUSE *restricted* ioctl: the kernel copies exactly
``_IOC_SIZE(cmd)`` bytes in (``_IOW``/``_IOWR``) and out (``_IOR``/``_IOWR``), so
each command carries one fixed-size little-endian struct.  This module holds the
command numbers, the ``struct.Struct`` layouts and encode/decode helpers; the
client (mount.winapi.client), the CLI (mount.cli.window) and the daemon's
handler (mount.server.ioctl, called by ops.py) all build on it, so the numbers
exist once.

It imports only the standard library at module level, so a client needs
neither numpy nor the daemon's packages.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

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
REMAPV_MAX = 511  # entries of one SHMFS_IOC_WIN_REMAPV: 16 + 511 * 32 = 16368 bytes

# --------------------------------------------------------------------------- structs
#: struct shmfs_win_attach { u8 token[16]; u64 size, pgoff; u32 prot, flags; }    40
#: (the token comes from GRANT; the old 32-byte form with an inode number is EINVAL)
ATTACH = struct.Struct("<16sQQII")
#: struct shmfs_win_grant { u32 prot, flags; u8 token[16] (out); }                 24
GRANT = struct.Struct("<II16s")
TOKEN_BYTES = 16
#: struct shmfs_win_remap { u64 start, size, pgoff; u32 prot, flags; }             32
REMAP = struct.Struct("<QQQII")
#: struct shmfs_win_remapv { u32 count, flags, done, reserved;
#:                           struct shmfs_win_remap entries[511]; }              16368
REMAPV_HEAD = struct.Struct("<IIII")
REMAPV_SIZE = REMAPV_HEAD.size + REMAPV_MAX * REMAP.size
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
SHMFS_IOC_WIN_GRANT = _ioc(IOC_READ | IOC_WRITE, _S, 9, GRANT.size)
SHMFS_IOC_WIN_REMAPV = _ioc(IOC_READ | IOC_WRITE, _S, 10, REMAPV_SIZE)

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
    9: ("GRANT", SHMFS_IOC_WIN_GRANT),
    10: ("REMAPV", SHMFS_IOC_WIN_REMAPV),
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


def encode_remapv(entries: list[tuple[int, int, int, int, int]]) -> bytearray:
    """The REMAPV struct for up to 511 (start, size, pgoff, prot, flags) entries."""
    if len(entries) > REMAPV_MAX:
        raise ValueError(f"at most {REMAPV_MAX} entries a call")
    buf = bytearray(REMAPV_SIZE)
    REMAPV_HEAD.pack_into(buf, 0, len(entries), 0, 0, 0)
    pos = REMAPV_HEAD.size
    for e in entries:
        REMAP.pack_into(buf, pos, *e)
        pos += REMAP.size
    return buf


def decode_remapv(buf: bytes | bytearray) -> tuple[int, int, int, list[tuple[int, ...]]]:
    """(count, flags, reserved, entries) of a REMAPV struct (count clipped to 511)."""
    count, flags, _done, reserved = REMAPV_HEAD.unpack_from(buf, 0)
    n = min(count, REMAPV_MAX)
    ents = list(REMAP.iter_unpack(bytes(buf[REMAPV_HEAD.size : REMAPV_HEAD.size
                                            + n * REMAP.size])))
    return count, flags, reserved, ents


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
