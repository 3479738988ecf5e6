"""What the files must contain: the oracle of the stress tool.

Each worker owns its files, so a FileModel (a bytearray that every operation
is applied to as well) says exactly which bytes a read must return: holes,
punched ranges, truncated-then-extended tails and fallocated pages read as
zeros, everything else as the last write or mmap store put there.

Files in the shared directory are raced over by every worker, so their names
are unpredictable; their *contents* are not: each one is a self-describing
record (magic, creator, sequence number, payload length) followed by a
payload generated from a seed derived from the header, so any reader can
check a file it finds under any name without knowing who made it.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
from dataclasses import dataclass

from mount.syscalls import (  # noqa: F401 -- the op kinds import them from here
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    fallocate,
    renameat2,
)

PAGE = 4096

class Mismatch(Exception):
    """A verification failed: the filesystem returned bytes the oracle forbids."""

    def __init__(self, what: str, path: str, detail: str) -> None:
        super().__init__(f"{what} on {path}: {detail}")
        self.what = what
        self.path = path
        self.detail = detail


def first_difference(got: bytes, want: bytes) -> str:
    """A short description of where two byte strings first differ."""
    if len(got) != len(want):
        n = min(len(got), len(want))
        prefix = next((i for i in range(n) if got[i] != want[i]), None)
        where = f", first differing byte at +{prefix}" if prefix is not None else ""
        return f"length {len(got)}, expected {len(want)}{where}"
    i = next(i for i in range(len(got)) if got[i] != want[i])
    j = i
    while j < len(got) and got[j] != want[j]:
        j += 1
    return (f"first differing byte at +{i} (page +{i // PAGE}), {j - i} bytes differ from "
            f"there: got {got[i:i + 16].hex()} expected {want[i:i + 16].hex()}")


class FileModel:
    """The bytes one owned file must hold (i_size = len(data))."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = bytearray()

    @property
    def size(self) -> int:
        return len(self.data)

    def write(self, off: int, buf: bytes) -> None:
        end = off + len(buf)
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        self.data[off:end] = buf

    def truncate(self, size: int) -> None:
        if size < len(self.data):
            del self.data[size:]
        else:
            self.data.extend(bytes(size - len(self.data)))

    def punch(self, off: int, length: int) -> None:
        end = min(off + length, len(self.data))
        if off < end:
            self.data[off:end] = bytes(end - off)

    def fallocate(self, off: int, length: int, keep_size: bool) -> None:
        if not keep_size and off + length > len(self.data):
            self.truncate(off + length)

    def copy_from(self, src: FileModel, off_in: int, off_out: int, length: int) -> int:
        """copy_file_range(2): ``length`` bytes of ``src`` (clipped to its size) at
        ``off_out``; returns the bytes a complete copy must report."""
        n = max(0, min(length, src.size - off_in))
        if n:
            self.write(off_out, bytes(src.data[off_in:off_in + n]))  # bytes(): src may be self
        return n

    def expect(self, off: int, length: int) -> bytes:
        """What pread(fd, length, off) must return."""
        return bytes(self.data[off:off + length])

    def check(self, got: bytes, off: int, length: int, path: str, what: str,
              fd: int | None = None) -> int:
        """Raise Mismatch unless ``got`` is what a read of (off, length) must return
        (``fd``: the descriptor it came from, for the second look)."""
        want = self.expect(off, length)
        if got != want:
            raise Mismatch(what, path, f"{what} at offset {off} length {length}: "
                           f"{first_difference(got, want)}; "
                           f"{second_look(_reopen(path, fd), off, length, want)}")
        return len(got)


def direct_read(path: str, off: int, length: int) -> bytes:
    """pread past the kernel's page cache (O_DIRECT: FUSE sends the READ to the daemon)."""
    import mmap

    start = off // PAGE * PAGE
    span = (off + length - start + PAGE - 1) // PAGE * PAGE
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, span)
        n = os.preadv(fd, [buf], start)
        return bytes(buf[off - start:min(n, off - start + length)])
    finally:
        os.close(fd)


def second_look(path: str, off: int, length: int, want: bytes) -> str:
    """After a mismatch: what the filesystem itself holds, past the kernel's page cache.

    Tells a stale or wrongly filled kernel page cache (O_DIRECT matches the
    oracle) from data the filesystem really lost (O_DIRECT differs too).
    """
    try:
        direct = direct_read(path, off, length)
        fd = os.open(path, os.O_RDONLY)
        try:
            buffered = os.pread(fd, length, off)
        finally:
            os.close(fd)
    except OSError as e:
        return f"second look impossible: {e}"
    verdict = "matches the oracle" if direct == want else first_difference(direct, want)
    again = "matches" if buffered == want else "still differs"
    return (f"second look: O_DIRECT read of the same range {verdict}; "
            f"a buffered re-read {again}")


# --- shared-directory records -----------------------------------------------------------------

RECORD = struct.Struct("<8sIIQI")  # magic, creator proc, payload length, seq, crc of header
MAGIC = b"shmstres"
MAX_PAYLOAD = 3 * PAGE


@dataclass(frozen=True, slots=True)
class Record:
    """The identity of one shared file: who created it and its sequence number."""

    proc: int
    seq: int
    length: int

    def encode(self) -> bytes:
        head = RECORD.pack(MAGIC, self.proc, self.length, self.seq, 0)
        crc = _digest(head)
        return RECORD.pack(MAGIC, self.proc, self.length, self.seq, crc) + self.payload()

    def payload(self) -> bytes:
        return random.Random(f"record:{self.proc}:{self.seq}").randbytes(self.length)


def _digest(head: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(head, digest_size=4).digest(), "little")


def new_record(proc: int, seq: int, rng: random.Random) -> Record:
    return Record(proc, seq, rng.randrange(0, MAX_PAYLOAD))


def _reopen(path: str, fd: int | None) -> str:
    """A path to the very inode behind fd (names race; /proc/self/fd does not)."""
    return path if fd is None else f"/proc/self/fd/{fd}"


def check_record(got: bytes, path: str, fd: int | None = None) -> Record:
    """Decode a shared file's content; raise Mismatch if it is not one intact record."""
    if len(got) < RECORD.size:
        raise Mismatch("shared-read", path, f"{len(got)} bytes: shorter than a record header")
    magic, proc, length, seq, crc = RECORD.unpack_from(got)
    if magic != MAGIC or crc != _digest(RECORD.pack(magic, proc, length, seq, 0)):
        try:
            direct = direct_read(_reopen(path, fd), 0, 4 * PAGE)
            look = (f"an O_DIRECT read returns {len(direct)} bytes starting "
                    f"{direct[:RECORD.size].hex()}")
        except OSError as e:
            look = f"second look impossible: {e}"
        raise Mismatch("shared-read", path, f"{len(got)} bytes with a corrupt header "
                       f"{got[:RECORD.size].hex()}; {look}")
    rec = Record(proc, seq, length)
    want = rec.encode()
    if got != want:
        raise Mismatch("shared-read", path, f"record of proc {proc} seq {seq}: "
                       f"{first_difference(got, want)}; "
                       f"{second_look(_reopen(path, fd), 0, len(want), want)}")
    return rec
