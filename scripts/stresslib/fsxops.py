"""fsx's checks that the plain stress ops do not make (``scripts/stress.py --fsx``).

fsx (xfstests' ltp/fsx.c) and LTP's fsx-linux look for three classic data bugs
the other op kinds cannot see:

* ``eofpage``: after any size change, the bytes past EOF in the EOF page read
  zero through a fresh mapping (fsx ``check_eofpage``); a truncate that forgets
  to zero the tail of a partial page, or a write-back that stores past i_size,
  shows here and nowhere else (read(2) stops at EOF);
* ``mapwrite_extend``: fsx ``domapwrite``: grow the file with ftruncate when the
  range ends past EOF, then store through a shared mapping and msync;
* ``direct_io``: page-aligned O_DIRECT writes and reads (fsx -Z), checked against
  the model, so the daemon's copy is compared without the kernel's page cache.

They are extra kinds, not part of ``ALL_OPS``: adding weights there would change
the op stream of every recorded seed.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from typing import Any

from stresslib.oracle import PAGE, Mismatch
from stresslib.worker import Worker

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_int64]
_libc.mmap.restype = ctypes.c_void_p
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def _eof_page(fd: int, start: int) -> bytes:
    """The whole page at ``start`` through a fresh shared mapping (the mmap module
    refuses a length past EOF, the kernel maps the EOF page whole)."""
    addr = _libc.mmap(None, PAGE, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
    if addr in (None, ctypes.c_void_p(-1).value):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    try:
        return ctypes.string_at(addr, PAGE)
    finally:
        _libc.munmap(addr, PAGE)


def op_eofpage(w: Worker) -> None:
    f = w.pick_file()
    size = f.model.size
    w.note(f"eofpage {f.path} size={size}")
    if size % PAGE == 0:
        return
    start = size // PAGE * PAGE
    page = _eof_page(f.fd, start)
    head, tail = page[:size - start], page[size - start:]
    if tail != bytes(len(tail)):
        bad = next(i for i, b in enumerate(tail) if b)
        raise Mismatch("eofpage", f.path, f"byte {size + bad} past EOF {size} reads "
                       f"{tail[bad]:#x} through a mapping, not 0")
    w.verified(f.model.check(head, start, size - start, f.path, "eofpage-head", f.fd))


def op_mapwrite_extend(w: Worker) -> None:
    f = w.pick_file()
    off = w.offset(f)
    n = w.length(off)
    data = w.rng.randbytes(n)
    start = off // PAGE * PAGE
    w.note(f"mapwrite {f.path} off={off} len={n} (size {f.model.size}"
           f"{', ftruncate first' if off + n > f.model.size else ''}), msync")
    if off + n > f.model.size:
        os.ftruncate(f.fd, off + n)
        f.model.truncate(off + n)
    with mmap.mmap(f.fd, off + n - start, mmap.MAP_SHARED,
                   mmap.PROT_READ | mmap.PROT_WRITE, offset=start) as m:
        m[off - start:off - start + n] = data
        m.flush()
    f.model.write(off, data)
    w.bytes_written += n


def op_direct_io(w: Worker) -> None:
    f = w.pick_file()
    r = w.rng
    off = r.randrange(0, w.params.max_size // PAGE) * PAGE
    pages = max(1, min(r.randrange(1, 9), (w.params.max_size - off) // PAGE))
    write = r.random() < 0.5
    data = r.randbytes(pages * PAGE) if write else b""
    w.note(f"O_DIRECT {'write' if write else 'read'} {f.path} off={off} len={pages * PAGE}")
    buf = mmap.mmap(-1, pages * PAGE)  # page-aligned, as O_DIRECT wants
    fd = os.open(f.path, os.O_RDWR | os.O_DIRECT)
    try:
        if write:
            buf[:] = data
            done = os.pwritev(fd, [buf], off)
            if done != len(data):
                raise Mismatch("direct-write", f.path, f"wrote {done} of {len(data)}")
            f.model.write(off, data)
            w.bytes_written += done
        else:
            n = os.preadv(fd, [buf], off)
            w.verified(f.model.check(bytes(buf[:n]), off, n, f.path, "direct-read", fd))
            want = max(0, min(pages * PAGE, f.model.size - off))
            if n != want:
                raise Mismatch("direct-read", f.path, f"read {n} bytes at {off}, "
                               f"expected {want} (size {f.model.size})")
    finally:
        os.close(fd)
        buf.close()


FSX_OPS: list[tuple[str, int, Any]] = [
    ("eofpage", 6, op_eofpage),
    ("mapwrite_extend", 6, op_mapwrite_extend),
    ("direct_io", 4, op_direct_io),
]
