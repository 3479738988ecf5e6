"""The redo journal of a restartable mount: records in a memfd, and its header.

Layout of the journal memfd (docs/restart-design.md):

* two header slots (bytes 0 and 4096), written alternately with a counter and a
  CRC: the valid slot with the higher counter names the snapshot to start from
  (its offset in the snapshot memfd) and the journal position and sequence
  number the snapshot covers up to.  A header write is one pwrite(2) of less
  than a page, and a torn one fails its CRC: the other slot still holds the
  previous, complete header.
* records from byte 8192 on, back to back; offsets only grow.  The part before
  the current snapshot's position is punched (its memory is returned) once the
  snapshot is complete.

A record is ``RECORD`` (magic, kind, total length, length of the side inputs,
sequence number, clock value, length of the request bytes, length of the
reply, and the arena's bump pointer and free-frame count after the request:
a replay that allocates differently is detected), the request bytes, the
reply, the pickled side inputs, then a CRC-32 of all that.  A scan stops at
the first record whose magic, sequence number (each one more than the last),
length or CRC is wrong: a record torn by the process's death, or the old
bytes past the end of the journal, are never taken for a record.  Records are
written through a shared mapping of the memfd (no syscall per record); the
mapping moves along the file as it grows.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

HEADER = struct.Struct("<IIQQQQI")  # magic, version, counter, snap_off, start, seq, crc
HEADER_MAGIC = 0x53484A48  # "HJHS"
VERSION = 1
SLOT = 4096
FIRST_RECORD = 2 * SLOT

RECORD = struct.Struct("<IIIIQQIIII")
RECORD_MAGIC = 0x5245434A  # "JCER"
CRC = struct.Struct("<I")
KIND_REQUEST = 1  # a request with a reply, written after handling, before the reply
KIND_NOREPLY = 2  # FORGET / BATCH_FORGET, written before handling
KIND_REAP = 3  # a deferred eviction run (fsimpl reap), written before it
KIND_DEFER = 4  # the session changed fs.defer_evictions (one byte), written before it counts
MAP_CHUNK = 16 << 20
NO_CHECK = (0xFFFFFFFF, 0xFFFFFFFF)
_PAGE = 4096

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 1, 2


def punch(fd: int, off: int, length: int) -> None:
    """Give the memory of bytes [off, off+length) of a memfd back (they read as zero)."""
    if length > 0 and _libc.fallocate(fd, _FALLOC_FL_KEEP_SIZE | _FALLOC_FL_PUNCH_HOLE,
                                      off, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass(slots=True)
class Header:
    """Where recovery starts: the snapshot slot and the journal position after it."""

    counter: int = 0
    snap_off: int = -1  # offset of the snapshot in the snap memfd; -1: none yet
    start: int = FIRST_RECORD  # first journal byte the snapshot does not cover
    seq: int = 1  # sequence number of the record at ``start``


@dataclass(slots=True)
class Record:
    """One journal record as recovery reads it."""

    kind: int
    seq: int
    now: int
    msg: bytes
    reply: bytes
    side: bytes  # pickled side inputs, b"" when the request consumed none
    end: int  # offset just past this record
    check: tuple[int, int]  # the arena's (bump, free frames) after it; NO_CHECK: unknown


def read_header(fd: int) -> Header | None:
    """The newest valid header slot, or None for a journal never written."""
    best: Header | None = None
    for slot in (0, SLOT):
        raw = os.pread(fd, HEADER.size, slot)
        if len(raw) < HEADER.size:
            continue
        magic, version, counter, snap_off, start, seq, crc = HEADER.unpack(raw)
        if magic != HEADER_MAGIC or version != VERSION:
            continue
        if zlib.crc32(raw[: HEADER.size - 4]) != crc:
            continue
        h = Header(counter, snap_off if snap_off != (1 << 64) - 1 else -1, start, seq)
        if best is None or h.counter > best.counter:
            best = h
    return best


def write_header(fd: int, h: Header) -> None:
    """Write ``h`` (its counter already bumped) into the slot the counter selects."""
    body = HEADER.pack(HEADER_MAGIC, VERSION, h.counter,
                       h.snap_off if h.snap_off >= 0 else (1 << 64) - 1, h.start, h.seq, 0)
    body = body[:-4] + CRC.pack(zlib.crc32(body[:-4]))
    os.pwrite(fd, body, (h.counter % 2) * SLOT)


class JournalWriter:
    """Appends records at ``pos`` with sequence numbers from ``seq``."""

    def __init__(self, fd: int, pos: int, seq: int) -> None:
        self.fd = fd
        self.pos = pos
        self.seq = seq
        self.bytes_written = 0
        self.last = pos  # where the latest record starts
        self._map: mmap.mmap | None = None
        self._mv: memoryview | None = None
        self._map_off = 0
        self._map_end = 0

    def _remap(self, need: int) -> None:
        """Map the file from the page of ``pos`` on, at least ``need`` bytes."""
        self._unmap()
        off = self.pos & ~(_PAGE - 1)
        length = max(MAP_CHUNK, -(-(self.pos - off + need) // _PAGE) * _PAGE)
        if os.fstat(self.fd).st_size < off + length:
            os.ftruncate(self.fd, off + length)
        self._map = mmap.mmap(self.fd, length, flags=mmap.MAP_SHARED,
                              prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=off)
        self._mv = memoryview(self._map)
        self._map_off, self._map_end = off, off + length

    def _unmap(self) -> None:
        if self._mv is not None:
            self._mv.release()
            self._mv = None
        if self._map is not None:
            self._map.close()
            self._map = None

    def append(self, kind: int, now: int, msg: bytes | memoryview, reply: bytes = b"",
               side: bytes = b"", check: tuple[int, int] = NO_CHECK) -> None:
        """One record, complete in the memfd when this returns."""
        total = RECORD.size + len(msg) + len(reply) + len(side) + CRC.size
        if self.pos + total > self._map_end:
            self._remap(total)
        rec = b"".join((RECORD.pack(RECORD_MAGIC, kind, total, len(side), self.seq, now,
                                    len(msg), len(reply), check[0] & 0xFFFFFFFF,
                                    check[1] & 0xFFFFFFFF), msg, reply, side))
        o = self.pos - self._map_off
        mv = self._mv
        assert mv is not None
        mv[o : o + total] = rec + CRC.pack(zlib.crc32(rec))
        self.last = self.pos
        self.pos += total
        self.seq += 1
        self.bytes_written += total

    def close(self) -> None:
        self._unmap()


def scan(fd: int, start: int, seq: int) -> Iterator[Record]:
    """The valid records from ``start`` on, the first numbered ``seq``; stops at
    the first torn, stale or foreign one."""
    size = os.fstat(fd).st_size
    if start >= size:
        return
    with mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as m:
        pos = start
        while pos + RECORD.size + CRC.size <= size:
            (magic, kind, total, side_len, rseq, now, msg_len, reply_len, bump,
             nfree) = RECORD.unpack_from(m, pos)
            if (magic != RECORD_MAGIC or rseq != seq or pos + total > size
                    or total != RECORD.size + msg_len + reply_len + side_len + CRC.size):
                return
            body_end = pos + total - CRC.size
            if zlib.crc32(m[pos:body_end]) != CRC.unpack_from(m, body_end)[0]:
                return
            a = pos + RECORD.size
            b = a + msg_len
            c = b + reply_len
            yield Record(kind, rseq, now, m[a:b], m[b:c], m[c:body_end], pos + total,
                         (bump, nfree))
            pos += total
            seq += 1
