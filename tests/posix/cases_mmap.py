"""mmap(2) of files: MAP_PRIVATE copy-on-write isolation, a shared mapping and
write(2) seeing each other, msync, SIGBUS past EOF after a truncate and on a
0-byte file, zeros past EOF in the last page (fsx's check_eofpage), and the
refusals (EACCES for PROT_WRITE|MAP_SHARED on an O_RDONLY fd, ENODEV ...).

Mappings are made with libc's mmap through ctypes: Python's mmap module refuses
lengths past EOF and empty files before asking the kernel.  Accesses that may
fault run in a forked child whose fate (exit or signal) is recorded."""

from __future__ import annotations

import ctypes
import mmap
import os
import signal

from .framework import Ctx, case

A = "mmap"
P = 4096
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_int64]
_libc.mmap.restype = ctypes.c_void_p
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MAP_FAILED = ctypes.c_void_p(-1).value
RW = mmap.PROT_READ | mmap.PROT_WRITE
MS_ASYNC, MS_INVALIDATE, MS_SYNC = 1, 2, 4  # linux/mman.h; the mmap module lacks them


def _mmap(fd: int, length: int, prot: int = RW, flags: int = mmap.MAP_SHARED,
          off: int = 0) -> int:
    addr = _libc.mmap(None, length, prot, flags, fd, off)
    if addr == MAP_FAILED or addr is None:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return addr


def _msync(addr: int, length: int, flags: int) -> int:
    if _libc.msync(addr, length, flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return 0


def _peek(addr: int, n: int) -> bytes:
    return ctypes.string_at(addr, n)


def _poke(addr: int, data: bytes) -> None:
    ctypes.memmove(addr, data, len(data))


def _fate(fn) -> str:
    """Run ``fn()`` in a forked child: 'ok:<result>' or the signal that ended it."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        import faulthandler

        faulthandler.disable()  # the expected SIGBUS is the answer, not a crash to dump
        try:
            res = fn()
            os.write(wfd, repr(res).encode()[:200])
            os._exit(0)
        except BaseException:
            os._exit(3)
    os.close(wfd)
    out = b""
    while chunk := os.read(rfd, 4096):
        out += chunk
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return f"exit {os.WEXITSTATUS(status)}: {out.decode()}"


def _file(name: str, data: bytes = b"") -> int:
    fd = os.open(name, os.O_CREAT | os.O_RDWR, 0o644)
    if data:
        os.pwrite(fd, data, 0)
    return fd


@case(A)
def case_private_cow(ctx: Ctx) -> None:
    """Stores into a MAP_PRIVATE mapping stay private; untouched pages still
    show later write(2)s, touched ones do not."""
    fd = _file("f", b"a" * P + b"b" * P)
    r = ctx.rec
    m = _mmap(fd, 2 * P, RW, mmap.MAP_PRIVATE)
    _poke(m, b"PRIV")
    r.call("file after private store", os.pread, fd, 4, 0)
    os.pwrite(fd, b"WW", 0)
    os.pwrite(fd, b"XX", P)
    r.note("touched page keeps private copy", _peek(m, 4))
    r.note("untouched page shows write(2)", _peek(m + P, 2))
    r.call("msync private", _msync, m, 2 * P, MS_SYNC)
    r.call("file after msync", os.pread, fd, 4, 0)
    m2 = _mmap(fd, P, mmap.PROT_READ, mmap.MAP_SHARED)
    r.note("second shared mapping", _peek(m2, 4))
    r.fstat(fd)


@case(A)
def case_shared_coherence(ctx: Ctx) -> None:
    """A shared mapping sees write(2); read(2) sees stores; msync flags."""
    fd = _file("f", b"0" * (3 * P))
    r = ctx.rec
    m = _mmap(fd, 3 * P)
    os.pwrite(fd, b"written", P + 10)
    r.note("map sees write", _peek(m + P + 10, 7))
    _poke(m + 2 * P + 100, b"stored")
    r.call("read sees store", os.pread, fd, 6, 2 * P + 100)
    r.call("MS_ASYNC", _msync, m, 3 * P, MS_ASYNC)
    r.call("MS_SYNC", _msync, m, 3 * P, MS_SYNC)
    r.call("MS_INVALIDATE", _msync, m, 3 * P, MS_INVALIDATE)
    r.call("MS_SYNC|MS_ASYNC", _msync, m, 3 * P, MS_SYNC | MS_ASYNC)
    r.call("msync bad flag", _msync, m, P, 64)
    r.call("msync unaligned", _msync, m + 1, P, MS_SYNC)
    g = _file("g")
    r.call("other fd sees store", os.pread, os.open("f", os.O_RDONLY), 6, 2 * P + 100)
    os.close(g)
    r.fstat(fd)


@case(A)
def case_sigbus_after_truncate(ctx: Ctx) -> None:
    """After a truncate, the page past the new EOF faults with SIGBUS; the rest
    of the EOF page reads zeros, also after the file grows again."""
    fd = _file("f", b"x" * (3 * P))
    r = ctx.rec
    m = _mmap(fd, 3 * P)
    os.ftruncate(fd, P + 100)
    r.note("before EOF", _peek(m + P + 90, 10))
    r.note("EOF page tail is zero", _peek(m + P + 100, P - 100) == bytes(P - 100))
    r.note("page past EOF", _fate(lambda: _peek(m + 2 * P, 1)))
    r.note("store past EOF", _fate(lambda: _poke(m + 2 * P + 5, b"z")))
    os.ftruncate(fd, 3 * P)
    r.fstat(fd)
    r.note("after growing: old tail", _peek(m + P + 100, 20))
    r.call("read third page", os.pread, fd, 8, 2 * P)
    r.note("after growing: third page", _peek(m + 2 * P, 8))
    # no fstat after the load from the hole: tmpfs's shmem_fault allocates a page
    # for it, FUSE sends a READ like read(2)'s (docs/divergences.md)
    r.note("size", os.fstat(fd).st_size)


@case(A)
def case_eof_page_after_shrink(ctx: Ctx) -> None:
    """fsx check_eofpage: after a truncate down into a page, the bytes past EOF
    in that page read zero through a new mapping and after re-extension."""
    fd = _file("f", bytes(range(1, 256)) * 64)
    r = ctx.rec
    os.ftruncate(fd, 5000)
    m = _mmap(fd, 2 * P, mmap.PROT_READ)
    r.note("tail past EOF zero", _peek(m + 5000, 2 * P - 5000) == bytes(2 * P - 5000))
    r.note("last byte before EOF", _peek(m + 4999, 1))
    os.ftruncate(fd, 20000)
    r.note("regrown range zero", os.pread(fd, 20000, 0)[5000:] == bytes(15000))
    r.fstat(fd)


@case(A)
def case_store_past_eof_in_last_page(ctx: Ctx) -> None:
    """A store through the mapping past EOF inside the EOF page does not fault
    and is not part of the file; extending by write(2) elsewhere shows zeros."""
    fd = _file("f", b"q" * 100)
    r = ctx.rec
    m = _mmap(fd, P)
    r.note("store past EOF", _fate(lambda: _poke(m + 200, b"GARBAGE")))
    r.call("read past EOF", os.pread, fd, 10, 200)
    r.fstat(fd)


@case(A)
def case_empty_file(ctx: Ctx) -> None:
    """mmap of a 0-byte file succeeds; touching it is SIGBUS; after ftruncate
    the same mapping works."""
    fd = _file("f")
    r = ctx.rec
    m = r.call("mmap 0-byte file", lambda: _mmap(fd, P) != 0)
    if not m:
        return
    m = _mmap(fd, P)
    r.note("read", _fate(lambda: _peek(m, 1)))
    r.note("write", _fate(lambda: _poke(m, b"x")))
    os.ftruncate(fd, 10)
    r.note("after ftruncate", _peek(m, 12))
    _poke(m, b"hi")
    r.call("read(2) sees it", os.pread, fd, 4, 0)
    r.call("mmap length 0", _mmap, fd, 0)


@case(A)
def case_refusals(ctx: Ctx) -> None:
    """EACCES, EINVAL, ENODEV and EBADF answers of mmap(2)."""
    _file("f", b"z" * P)
    os.mkdir("d")
    r = ctx.rec
    ro = os.open("f", os.O_RDONLY)
    wo = os.open("f", os.O_WRONLY)
    r.call("O_RDONLY PROT_WRITE MAP_SHARED", lambda: bool(_mmap(ro, P)))
    r.call("O_RDONLY PROT_WRITE MAP_PRIVATE", lambda: bool(_mmap(ro, P, RW, mmap.MAP_PRIVATE)))
    r.call("O_RDONLY PROT_READ MAP_SHARED", lambda: bool(_mmap(ro, P, mmap.PROT_READ)))
    r.call("O_WRONLY PROT_WRITE", lambda: bool(_mmap(wo, P, mmap.PROT_WRITE)))
    r.call("O_WRONLY PROT_READ", lambda: bool(_mmap(wo, P, mmap.PROT_READ)))
    r.call("unaligned offset", lambda: bool(_mmap(ro, P, mmap.PROT_READ, mmap.MAP_SHARED, 1)))
    r.call("offset far past EOF", lambda: bool(_mmap(ro, P, mmap.PROT_READ, mmap.MAP_SHARED,
                                                    1 << 40)))
    dfd = os.open("d", os.O_RDONLY)
    r.call("directory", lambda: bool(_mmap(dfd, P, mmap.PROT_READ)))
    pfd = os.open("f", os.O_PATH)
    r.call("O_PATH", lambda: bool(_mmap(pfd, P, mmap.PROT_READ)))
    m = _mmap(ro, P, mmap.PROT_READ)
    import ctypes as c
    _libc.mprotect.argtypes = [c.c_void_p, c.c_size_t, c.c_int]
    r.call("mprotect to write on O_RDONLY shared", lambda: _libc.mprotect(m, P, RW) == 0
           or os.strerror(c.get_errno()))


@case(A)
def case_mapping_outlives_unlink_and_close(ctx: Ctx) -> None:
    """The mapping keeps the file: after close and unlink the pages stay
    readable and writable, and the inode goes at munmap."""
    fd = _file("f", b"k" * (2 * P))
    m = _mmap(fd, 2 * P)
    os.close(fd)
    os.unlink("f")
    r = ctx.rec
    _poke(m + P, b"after")
    r.note("read back", _peek(m + P, 5))
    r.note("first page", _peek(m, 3))
    r.call("munmap", _libc.munmap, m, 2 * P)
    r.call("listing", lambda: sorted(os.listdir(".")))


@case(A)
def case_store_past_eof_then_extend(ctx: Ctx) -> None:
    """A store through the mapping past EOF inside the EOF page, then the file
    grows by ftruncate: 6.18 tmpfs shows the stored bytes (the page is kept);
    POSIX and shmfs give zeros. A strict xfail on shmfs (test_conformance.py
    SHMFS_EXCLUSIONS, docs/divergences.md 19)."""
    fd = _file("f", b"q" * 100)
    r = ctx.rec
    m = _mmap(fd, P)
    _poke(m + 200, b"GARBAGE")
    r.call("msync", _msync, m, P, MS_SYNC)
    _libc.munmap(m, P)
    os.ftruncate(fd, 1000)
    r.call("read after extend", os.pread, fd, 8, 200)
    m2 = _mmap(fd, P, mmap.PROT_READ)
    r.note("new mapping", _peek(m2 + 200, 8))


@case(A)
def case_seek_data_sees_unsynced_stores(ctx: Ctx) -> None:
    """SEEK_DATA/SEEK_HOLE and st_blocks after stores through a shared mapping
    into holes, once msync or fsync has run.  Before that, FUSE's lseek asks
    the daemon, which has not been sent the dirty pages yet (docs/divergences.md
    15), so those answers are not compared."""
    fd = _file("f")
    os.ftruncate(fd, 8 * P)
    m = _mmap(fd, 8 * P)
    _poke(m + 3 * P + 5, b"x")
    _poke(m + 6 * P, b"y")
    r = ctx.rec
    r.call("pread", os.pread, fd, 1, 6 * P)
    r.call("msync", _msync, m, 8 * P, MS_SYNC)
    r.call("SEEK_DATA 0", os.lseek, fd, 0, os.SEEK_DATA)
    r.call("SEEK_HOLE 3P", os.lseek, fd, 3 * P, os.SEEK_HOLE)
    r.call("SEEK_DATA 4P", os.lseek, fd, 4 * P, os.SEEK_DATA)
    r.fstat(fd)
    _poke(m + P, b"z")
    r.call("fsync", os.fsync, fd)
    r.call("SEEK_DATA 0 after fsync", os.lseek, fd, 0, os.SEEK_DATA)
    r.fstat(fd)


@case(A)
def case_io_through_own_mapping(ctx: Ctx) -> None:
    """write(2) from a buffer that maps the same file, and read(2) into one
    (the page-fault-while-copying cases that deadlock careless filesystems)."""
    fd = _file("f", bytes(range(256)) * 32)  # 8 KiB
    r = ctx.rec
    mm = mmap.mmap(fd, 2 * P)
    r.call("pwrite from own mapping", os.pwrite, fd, memoryview(mm)[:100], P + 50)
    r.call("pread into own mapping", os.preadv, fd, [memoryview(mm)[P:P + 200]], 0)
    r.call("content", lambda: os.pread(fd, 2 * P, 0) == bytes(mm[:2 * P]))
    r.note("bytes", (mm[P:P + 4], mm[P + 50:P + 54], mm[P + 200:P + 204]))
    os.ftruncate(fd, 3 * P)
    mm2 = mmap.mmap(fd, 3 * P)
    r.call("pwrite from mapped hole", os.pwrite, fd, memoryview(mm2)[2 * P:2 * P + 10], 0)
    r.call("zeros written", os.pread, fd, 12, 0)
    r.note("size", os.fstat(fd).st_size)  # not blocks: divergences.md 18
    mm.close()
    mm2.close()


@case(A)
def case_punch_and_truncate_while_mapped(ctx: Ctx) -> None:
    """A punch zeroes what shared mappings show; a truncate below a private
    mapping's copied pages makes them SIGBUS too."""
    fd = _file("f", b"p" * (4 * P))
    r = ctx.rec
    sh = _mmap(fd, 4 * P)
    pv = _mmap(fd, 4 * P, RW, mmap.MAP_PRIVATE)
    _poke(pv + 3 * P, b"private")
    from .libc import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocate
    fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, P, P)
    r.note("shared sees punch", _peek(sh + P, 4))
    r.note("private untouched page sees punch", _peek(pv + P, 4))
    os.ftruncate(fd, 2 * P)
    r.note("private copied page past EOF", _fate(lambda: _peek(pv + 3 * P, 7)))
    r.note("shared page past EOF", _fate(lambda: _peek(sh + 3 * P, 1)))
    r.note("size", os.fstat(fd).st_size)  # not blocks: the loads from the hole (divergences.md 18)
