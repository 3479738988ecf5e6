"""fsimpl.windows.WindowTable in-process: checks, invalidation exactness, write-back routing.

No mount: a ShmFs is driven directly and the events it queues for the session are
inspected.  The live tests (test_rows.py, test_coherence.py ...) show the same
behaviour through the kernel.
"""

from __future__ import annotations

import errno
import os

import pytest

from fsimpl import Ctx, FsError, FsOptions, InvalInode, ShmFs
from fsimpl.windows import windows_of
from fsimpl.windowstate import DISCARD, FUSE_WRITE_CACHE, MPROTECT_VMA

P = 4096
ROOT = Ctx(0, 0, 1)
USER = Ctx(1000, 1000, 2)
PROT_R, PROT_RW = 1, 3
MADV_DONTNEED, MADV_REMOVE = 4, 9


def page(i: int) -> bytes:
    return bytes([65 + i % 26]) * P


class Rig:
    """A filesystem with one 8-page object and helpers to make windows over it."""

    def __init__(self, npages: int = 8) -> None:
        self.fs = ShmFs(FsOptions())
        a, self.ofh = self.fs.create(1, b"obj", 0o644, os.O_RDWR, ROOT)
        self.obj = a.ino
        self.fs.write(self.obj, self.ofh, 0, memoryview(b"".join(page(i) for i in range(npages))))
        self.t = windows_of(self.fs)
        self.n = 0

    def window(self, npages: int = 8, prot: int = PROT_RW, pgoff: int = 0,
               flags: int = os.O_RDWR) -> tuple[int, int]:
        self.n += 1
        a, fh = self.fs.create(1, b"win%d" % self.n, 0o600, os.O_RDWR, ROOT)
        self.t.attach(a.ino, fh, ROOT, self.token(), npages * P, pgoff, prot)
        if flags != os.O_RDWR:
            fh = self.fs.open(a.ino, flags)
        self.events()
        return a.ino, fh

    def token(self, ctx: Ctx = ROOT, prot: int = PROT_RW, fh: int | None = None) -> bytes:
        """GRANT on the object's read-write handle (or ``fh``) for ``ctx``."""
        return self.t.grant(self.obj, self.ofh if fh is None else fh, ctx, prot)

    def events(self) -> list[tuple[int, int, int]]:
        return [(e.ino, e.off, e.length) for e in self.fs.drain_events()
                if isinstance(e, InvalInode)]

    def read(self, ino: int, off: int, n: int) -> bytes:
        return b"".join(bytes(v) for v in self.t.read(ino, off, n))


def errno_of(fn, *args, **kw) -> int:
    with pytest.raises(FsError) as ei:
        fn(*args, **kw)
    return ei.value.errno


def test_attach_checks() -> None:
    r = Rig()
    fs, t = r.fs, r.t
    a, fh = fs.create(1, b"w", 0o600, os.O_RDWR, ROOT)
    ro = fs.open(a.ino, os.O_RDONLY)
    tok = r.token()
    # checks on the window file come first and do not spend the token
    assert errno_of(t.attach, a.ino, ro, ROOT, tok, P, 0, PROT_RW) == errno.EBADF
    assert errno_of(t.attach, a.ino, fh, ROOT, tok, 100, 0, PROT_RW) == errno.EINVAL
    assert errno_of(t.attach, a.ino, fh, ROOT, tok, 0, 0, PROT_RW) == errno.EINVAL
    assert errno_of(t.attach, a.ino, fh, ROOT, tok, P, 0, 8) == errno.EINVAL
    assert errno_of(t.attach, a.ino, fh, ROOT, tok, P, 0, PROT_RW, 1) == errno.EINVAL
    assert errno_of(t.attach, a.ino, fh, ROOT, bytes(16), P, 0, PROT_RW) == errno.EACCES
    # the object is the token's: a window cannot be its own object, nor a directory's
    own = t.grant(a.ino, fh, ROOT, PROT_RW)
    assert errno_of(t.attach, a.ino, fh, ROOT, own, P, 0, PROT_RW) == errno.EINVAL
    assert errno_of(t.grant, 1, fh, ROOT, PROT_R) == errno.EISDIR
    t.attach(a.ino, fh, ROOT, tok, 2 * P, 0, PROT_R)
    assert fs.getattr(a.ino).size == 2 * P
    assert errno_of(t.attach, a.ino, fh, ROOT, r.token(), P, 0, PROT_RW) == errno.EBUSY
    b, fhb = fs.create(1, b"w2", 0o600, os.O_RDWR, ROOT)
    assert errno_of(t.grant, a.ino, fh, ROOT, PROT_R) == errno.EINVAL  # a window: no object
    fs.write(b.ino, fhb, 0, memoryview(b"x"))
    assert errno_of(t.attach, b.ino, fhb, ROOT, r.token(), P, 0, PROT_RW) == errno.EINVAL


def test_a_token_needs_the_open_mode_and_serves_once_its_uid_and_its_handle() -> None:
    r = Rig()
    fs, t = r.fs, r.t
    ro = fs.open(r.obj, os.O_RDONLY)
    wo = fs.open(r.obj, os.O_WRONLY)
    assert errno_of(t.grant, r.obj, ro, USER, PROT_RW) == errno.EACCES  # as mmap(2)
    assert errno_of(t.grant, r.obj, wo, USER, PROT_R) == errno.EACCES
    assert errno_of(t.grant, r.obj, ro, USER, 8) == errno.EINVAL
    assert errno_of(t.grant, r.obj, 9999, USER, PROT_R) == errno.EBADF

    def window(ctx: Ctx) -> tuple[int, int]:
        a, fh = fs.create(1, b"w%d" % r.n, 0o666, os.O_RDWR, ctx)
        r.n += 1
        return a.ino, fh

    w, fh = window(USER)
    tok = t.grant(r.obj, ro, USER, PROT_R)
    assert errno_of(t.attach, w, fh, USER, tok, P, 0, PROT_RW) == errno.EACCES  # beyond
    assert errno_of(t.attach, w, fh, USER, tok, P, 0, PROT_R) == errno.EACCES  # spent
    tok = t.grant(r.obj, ro, USER, PROT_R)
    other = Ctx(1001, 1001, 3)
    w2, fh2 = window(other)
    assert errno_of(t.attach, w2, fh2, other, tok, P, 0, PROT_R) == errno.EACCES  # stolen
    assert errno_of(t.attach, w, fh, USER, tok, P, 0, PROT_R) == errno.EACCES  # burnt
    tok = t.grant(r.obj, ro, USER, PROT_R)
    fs.release(r.obj, ro)
    assert errno_of(t.attach, w, fh, USER, tok, P, 0, PROT_R) == errno.EACCES  # handle gone
    assert len(t.grants) == 0
    ro = fs.open(r.obj, os.O_RDONLY)
    t.attach(w, fh, USER, t.grant(r.obj, ro, USER, PROT_R), P, 0, PROT_R)
    # only the owner (or root) turns a file into a window
    w3, fh3 = window(ROOT)
    assert errno_of(t.attach, w3, fh3, USER, t.grant(r.obj, ro, USER, PROT_R), P, 0,
                    PROT_R) == errno.EPERM
    for _ in range(20):  # a handle keeps at most PER_HANDLE tokens: the oldest retire
        t.grant(r.obj, ro, USER, PROT_R)
    assert len(t.grants) == 8


def test_page_tables_are_charged_to_pt_size_and_credited_when_the_window_goes() -> None:
    from fsimpl.ptbudget import CHUNK_COST, WINDOW_COST

    fs = ShmFs(FsOptions(pt_size_bytes=WINDOW_COST + 4 * CHUNK_COST))
    a, ofh = fs.create(1, b"obj", 0o644, os.O_RDWR, ROOT)
    fs.setattr(a.ino, ROOT, size=1 << 30)
    t = windows_of(fs)
    w, fh = fs.create(1, b"w", 0o600, os.O_RDWR, ROOT)
    t.attach(w.ino, fh, ROOT, t.grant(a.ino, ofh, ROOT, PROT_RW), 1 << 30, 0, PROT_RW)
    assert t.budget.used == WINDOW_COST
    for i in range(4):  # one page in each of four 512-page chunks
        t.remap(w.ino, fh, i * 512 * P, P, 7, 0, 0)
    assert t.budget.used == WINDOW_COST + 4 * CHUNK_COST
    assert errno_of(t.remap, w.ino, fh, 4 * 512 * P, P, 7, 0, 0) == errno.ENOMEM
    assert errno_of(t.read, w.ino, 9 * 512 * P, P) == errno.ENOMEM  # a fault needs a chunk
    t.remap(w.ino, fh, 1, P, 9, 0, 0)  # within an existing chunk: free
    w2, fh2 = fs.create(1, b"w2", 0o600, os.O_RDWR, ROOT)
    tok = t.grant(a.ino, ofh, ROOT, PROT_RW)
    assert errno_of(t.attach, w2.ino, fh2, ROOT, tok, P, 0, PROT_RW) == errno.ENOMEM
    fs.unlink(1, b"w")
    fs.release(w.ino, fh)
    fs.forget(w.ino, fs._inodes[w.ino].nlookup)
    fs.reap()
    assert t.budget.used == 0
    t.attach(w2.ino, fh2, ROOT, t.grant(a.ino, ofh, ROOT, PROT_RW), P, 0, PROT_RW)


def test_window_size_is_fixed_and_plain_files_are_not_windows() -> None:
    r = Rig()
    w, fh = r.window(4)
    assert errno_of(r.fs.setattr, w, ROOT, size=0) == errno.EINVAL
    assert errno_of(r.fs.open, w, os.O_RDWR | os.O_TRUNC) == errno.EINVAL
    assert errno_of(r.fs.fallocate, w, fh, 0, 0, P) == errno.EINVAL
    assert errno_of(r.t.remap, r.obj, r.ofh, 0, P, 1, 0, 0) == errno.ENOTTY


def test_read_only_descriptor_cannot_change_a_window() -> None:
    r = Rig()
    w, ro = r.window(flags=os.O_RDONLY)
    assert errno_of(r.t.remap, w, ro, 0, P, 3, 0, 0) == errno.EBADF
    assert errno_of(r.t.mprotect, w, ro, 0, P, PROT_R, 0) == errno.EBADF
    assert errno_of(r.t.madvise, w, ro, 0, P, MADV_REMOVE) == errno.EBADF
    assert errno_of(r.t.madvise, w, ro, 0, P, MADV_DONTNEED) == errno.EBADF
    r.t.madvise(w, ro, 0, P, 3)  # WILLNEED changes nothing: allowed
    assert r.t.query(w, ro, 0, 1)[2][0][0] == 0


def test_remap_invalidates_exactly_the_cached_pages_that_moved() -> None:
    r = Rig()
    w, fh = r.window()
    r.t.remap(w, fh, 0, 2 * P, 5, 0, 0)  # nothing cached yet: no event
    assert r.events() == []
    assert r.read(w, 0, 4 * P)[::P] == b"FGCD"
    r.t.remap(w, fh, P, 2 * P, 6, 0, 0)  # page 1 stays on pgoff 6, page 2 moves 2 -> 7
    assert r.events() == [(w, 2 * P, P)]
    r.t.remap(w, fh, 5 * P, P, 0, 0, 0)  # page 5 was never read: nothing to invalidate
    assert r.events() == []
    assert r.read(w, 0, 3 * P)[::P] == b"FGH"


def test_object_write_and_window_store_invalidate_other_inodes() -> None:
    r = Rig()
    w1, _fh1 = r.window()
    w2, fh2 = r.window()
    r.t.remap(w2, fh2, 0, P, 3, 0, 0)  # w2 page 0 shows pgoff 3, as does w1 page 3
    r.read(w1, 0, 8 * P)
    r.read(w2, 0, 2 * P)
    r.fs.read(r.obj, r.ofh, 3 * P, P)  # the kernel caches object page 3
    r.fs.write(r.obj, r.ofh, 3 * P + 10, memoryview(b"zz"))
    assert sorted(r.events()) == [(w1, 3 * P, P), (w2, 0, P)]
    r.read(w1, 0, 8 * P)
    r.read(w2, 0, 2 * P)
    r.fs.read(r.obj, r.ofh, 3 * P, P)
    assert r.t.write(w2, 5, memoryview(b"yy")) == 2
    assert sorted(r.events()) == [(r.obj, 3 * P, P), (w1, 3 * P, P)]
    assert r.read(w1, 3 * P, 12) == b"DDDDDyyDDDzz"


def test_truncate_and_punch_zap_reports_invalidate_and_discard_stale_write_backs() -> None:
    r = Rig()
    w, fh = r.window()
    r.t.remap(w, fh, 0, P, 6, 0, 0)
    r.read(w, 0, 8 * P)
    r.fs.setattr(r.obj, ROOT, size=4 * P)  # pgoffs 4..7 go: window pages 0 and 4..7
    assert sorted(r.events()) == [(w, 0, P), (w, 4 * P, 4 * P)]
    assert r.t.wins[w].pending[0] is DISCARD
    # the kernel launders window page 0 (dirty before the truncate): dropped, not resurrected
    assert r.t.write(w, 0, memoryview(b"q" * P), FUSE_WRITE_CACHE) == P
    assert r.fs.getattr(r.obj).size == 4 * P
    assert errno_of(r.t.read, w, 0, 10) == errno.EIO
    r.fs.setattr(r.obj, ROOT, size=8 * P)
    assert r.read(w, 0, 4) == b"\0\0\0\0"  # row 8: the re-extended page is fresh


def test_write_back_after_remap_lands_where_the_store_was_made() -> None:
    r = Rig()
    w, fh = r.window()
    r.read(w, 0, 8 * P)  # window page 2 cached (shows pgoff 2)
    r.t.remap(w, fh, 2 * P, P, 7, 0, 0)
    assert r.events() == [(w, 2 * P, P)]
    # launder of a store made before the remap: goes to pgoff 2, not 7
    assert r.t.write(w, 2 * P, memoryview(b"s" * 4), FUSE_WRITE_CACHE) == 4
    obj = r.fs.read(r.obj, r.ofh, 0, 8 * P)
    data = b"".join(bytes(v) for v in obj)
    assert data[2 * P : 2 * P + 5] == b"ssssC" and data[7 * P] == ord("H")
    # once the kernel re-read the page, write-backs follow the page table again
    assert r.read(w, 2 * P, 1) == b"H"
    r.t.write(w, 2 * P, memoryview(b"t"), FUSE_WRITE_CACHE)
    data = b"".join(bytes(v) for v in r.fs.read(r.obj, r.ofh, 0, 8 * P))
    assert data[7 * P : 7 * P + 2] == b"tH"


def test_per_page_protection_and_vma_mprotect() -> None:
    r = Rig()
    w, fh = r.window()
    r.read(w, 0, 8 * P)
    r.t.mprotect(w, fh, 3 * P, 2 * P, PROT_R, 0)
    assert r.events() == [(w, 3 * P, 2 * P)]
    assert errno_of(r.t.write, w, 3 * P, memoryview(b"x")) == errno.EACCES
    assert r.t.write(w, 2 * P, memoryview(b"x" * (2 * P))) == P  # short: stops at page 3
    q = r.t.query(w, fh, 0, 8)[2]
    assert [row[2] for row in q] == [PROT_RW] * 3 + [PROT_R] * 2 + [PROT_RW] * 3
    assert [row[0] for row in q] == list(range(8))  # pgoffs kept
    assert errno_of(r.t.mprotect, w, fh, 0, P, 7, 0) == errno.EINVAL
    wr, fhr = r.window(prot=PROT_R)
    assert errno_of(r.t.mprotect, wr, fhr, 0, P, PROT_RW, 0) == errno.EACCES
    r.t.mprotect(w, fh, 6 * P, P, PROT_R, MPROTECT_VMA)  # splits the VMA (row 21)
    assert r.t.info(w, fh)["nr_vmas"] == 3
    assert errno_of(r.t.remap, w, fh, 5 * P, 2 * P, 0, 0, 0) == errno.EINVAL  # row 20


def test_madvise_remove_frees_object_pages_and_invalidates_the_object() -> None:
    r = Rig()
    w, fh = r.window()
    r.t.remap(w, fh, 0, P, 5, 0, 0)
    r.fs.read(r.obj, r.ofh, 0, 8 * P)
    blocks = r.fs.getattr(r.obj).blocks
    r.t.madvise(w, fh, 0, P, MADV_REMOVE)  # nonlinear window: punches pgoff 5
    assert r.fs.getattr(r.obj).blocks == blocks - P // 512
    assert r.events() == [(r.obj, 5 * P, P)]
    data = b"".join(bytes(v) for v in r.fs.read(r.obj, r.ofh, 0, 8 * P))
    assert data[5 * P : 6 * P] == bytes(P) and data[4 * P] == ord("E")
    wr, fhr = r.window(prot=PROT_R)
    assert errno_of(r.t.madvise, wr, fhr, 0, P, MADV_REMOVE) == errno.EACCES  # row 11
    assert errno_of(r.t.madvise, w, fh, 0, P, 77) == errno.EINVAL


def test_destroying_a_window_releases_the_object() -> None:
    r = Rig()
    w, fh = r.window()
    r.fs.unlink(1, b"obj")
    r.fs.release(r.obj, r.ofh)
    assert r.fs.getattr(r.obj).blocks == 8 * P // 512  # held by the window
    assert r.read(w, 0, 1) == b"A"
    r.fs.unlink(1, b"win1")
    r.fs.release(w, fh)
    r.fs.forget(w, 1)  # the kernel's FORGET after the last close evicts the window
    assert not r.t.wins and not r.t.objs
    assert r.fs.statistics()["used_pages"] == 0


def test_a_remap_that_changes_nothing_keeps_later_punches_visible() -> None:
    r = Rig()
    w, fh = r.window()
    r.t.remap(w, fh, 0, P, 5, 0, 0)  # the window is nonlinear from now on
    r.read(w, 0, 8 * P)
    r.t.remap(w, fh, 2 * P, P, 2, 0, 0)  # same pgoff: the kernel's copy stays valid
    assert r.events() == []
    w2, fh2 = r.window(1, pgoff=2)
    r.t.madvise(w2, fh2, 0, P, MADV_REMOVE)  # punch pgoff 2 through another window
    assert (w, 2 * P, P) in r.events()


def test_store_at_the_size_limit_is_enospc() -> None:
    fs = ShmFs(FsOptions(size_bytes=4 * P))
    a, ofh = fs.create(1, b"obj", 0o644, os.O_RDWR, ROOT)
    fs.write(a.ino, ofh, 0, memoryview(bytes(3 * P)))
    fs.setattr(a.ino, ROOT, size=16 * P)  # pages 3..15 are holes, one page of room left
    t = windows_of(fs)
    w, fh = fs.create(1, b"w", 0o600, os.O_RDWR, ROOT)
    t.attach(w.ino, fh, ROOT, t.grant(a.ino, ofh, ROOT, PROT_RW), 4 * P, 8, PROT_RW)
    assert t.write(w.ino, 0, memoryview(b"x")) == 1  # the last page of the budget
    assert errno_of(t.write, w.ino, P, memoryview(b"y")) == errno.ENOSPC


def test_a_store_invalidates_aliases_in_the_same_window() -> None:
    r = Rig()
    w, fh = r.window()
    r.t.remap(w, fh, 5 * P, P, 1, 0, 0)  # pages 1 and 5 both show pgoff 1
    r.read(w, 0, 8 * P)
    assert r.t.write(w, P + 3, memoryview(b"al")) == 2
    assert r.events() == [(w, 5 * P, P)]  # the alias; page 1 itself holds the new data
    assert r.read(w, 5 * P + 3, 2) == b"al"


def test_st_blocks_and_seek_describe_the_object_pages_shown() -> None:
    from fsimpl.types import SEEK_DATA, SEEK_HOLE

    r = Rig()
    fs, t = r.fs, r.t
    fs.fallocate(r.obj, r.ofh, 3, 3 * P, P)  # punch object page 3 (PUNCH_HOLE|KEEP_SIZE)
    w, fh = r.window(16)  # pages 8..15 lie past the object's end (reads fail: data)
    assert fs.getattr(w).blocks == 7 * 8
    seek = lambda off, wh: fs.lseek(w, fh, off, wh)  # noqa: E731
    assert (seek(0, SEEK_DATA), seek(0, SEEK_HOLE)) == (0, 3 * P)
    assert (seek(3 * P + 5, SEEK_DATA), seek(4 * P, SEEK_HOLE)) == (4 * P, 16 * P)
    t.remap(w, fh, 0, P, 3, 0, 0)  # page 0 now shows the hole, page 3 shows pgoff 3 too
    t.remap(w, fh, 3 * P, P, 0, 0, 0)  # and page 3 shows pgoff 0 (data)
    assert fs.getattr(w).blocks == 7 * 8
    assert (seek(0, SEEK_DATA), seek(0, SEEK_HOLE)) == (P, 0)
    assert seek(P, SEEK_HOLE) == 16 * P
    assert errno_of(seek, 16 * P, SEEK_DATA) == errno.ENXIO
    r.read(w, 0, P)  # a read fault allocates the hole (row 12): data now
    assert fs.getattr(w).blocks == 8 * 8 and seek(0, SEEK_HOLE) == 16 * P


def test_st_blocks_of_a_huge_sparse_window_is_cheap() -> None:
    r = Rig()
    fs, t = r.fs, r.t
    fs.setattr(r.obj, ROOT, size=1 << 40)
    w, fh = r.window(1 << 28)  # 1 TiB of window: a page-by-page walk would take minutes
    t.remap(w, fh, (1 << 27) * P, P, 2, 0, 0)
    assert fs.getattr(w).blocks == 9 * 8  # 8 linear pages + the remapped one
    assert fs.lseek(w, fh, P * 8, 3) == (1 << 27) * P


def test_no_writable_window_over_an_append_only_object() -> None:
    # do_mmap(): a shared writable mapping of an IS_APPEND file is EACCES; a window
    # with PROT_WRITE is one.  Read-only windows stay allowed, as mmap(PROT_READ) does.
    from fsimpl.fsflags import FS_APPEND_FL

    r = Rig()
    t = r.t
    tok = r.token()  # minted before chattr +a: ATTACH checks again
    r.fs._get(r.obj).fsflags |= FS_APPEND_FL
    assert errno_of(r.token) == errno.EACCES
    a, fh = r.fs.create(1, b"w", 0o600, os.O_RDWR, ROOT)
    assert errno_of(t.attach, a.ino, fh, ROOT, tok, P, 0, PROT_RW) == errno.EACCES
    t.attach(a.ino, fh, ROOT, r.token(prot=PROT_R), P, 0, PROT_R)
    assert r.read(a.ino, 0, P) == page(0)


def test_a_one_page_append_to_the_object_shows_in_the_window_st_blocks() -> None:
    # the single-page allocating fault (PageCache.insert1) must bump the page cache's
    # generation, or the window's cached st_blocks/SEEK layout goes stale
    from fsimpl.types import SEEK_DATA

    r = Rig()
    fs = r.fs
    fs.fallocate(r.obj, r.ofh, 3, 3 * P, P)  # object page 3 becomes a hole
    w, fh = r.window(8)
    assert fs.getattr(w).blocks == 7 * 8
    assert fs.lseek(w, fh, 3 * P, SEEK_DATA) == 4 * P
    fs.write(r.obj, r.ofh, 3 * P, memoryview(page(3)))  # one new page, one WRITE
    assert fs.getattr(w).blocks == 8 * 8
    assert fs.lseek(w, fh, 3 * P, SEEK_DATA) == 3 * P


# ------------------------------------------------------------------- REMAPV
def _v(*entries: tuple[int, int, int]) -> list[tuple[int, int, int, int, int]]:
    """(window page, pages, pgoff) -> REMAPV entries (start, size, pgoff, prot, flags)."""
    return [(i * P, n * P, pg, 0, 0) for i, n, pg in entries]


def test_remapv_is_the_remaps_in_order_with_coalesced_invalidations() -> None:
    r = Rig(32)
    w, fh = r.window(32)
    assert r.t.remapv(w, fh, _v((0, 2, 5), (0, 1, 9))) == 2  # later entries win
    assert r.events() == []  # nothing cached: no notification
    assert r.read(w, 0, 3 * P)[::P] == b"JGC"
    r.read(w, 0, 32 * P)  # the kernel caches every page
    # pages 3, 5, 7 move (gaps of one page: one notification for 3..7); page 30 moves
    # (more than COALESCE_GAP away: its own); pages 10-14 are remapped to what they
    # already show (no event, though they lie between).  Nine entries: longer than
    # REMAPV_SCALAR_MAX, so this is the vector path
    assert r.t.remapv(w, fh, _v((3, 1, 30), (5, 1, 29), (7, 1, 28), (10, 1, 10), (11, 1, 11),
                                (12, 1, 12), (13, 1, 13), (14, 1, 14), (30, 1, 1))) == 9
    assert sorted(r.events()) == [(w, 3 * P, 5 * P), (w, 30 * P, P)]
    assert r.read(w, 3 * P, 5 * P)[::P] == bytes([65 + 30 % 26, 69, 65 + 29 % 26, 71,
                                                   65 + 28 % 26])
    info = r.t.query(w, fh, 0, 32)[2]
    assert [p for p, _f, _pr in info][:11] == [9, 6, 2, 30, 4, 29, 6, 28, 8, 9, 10]


def test_remapv_stops_at_the_first_failing_entry_and_says_how_many_applied() -> None:
    r = Rig(16)
    w, fh = r.window(8)
    r.read(w, 0, 8 * P)
    bad = [(0, P, 3, 0, 0), (P, P, 4, 0, 0), (7 * P, 2 * P, 0, 0, 0), (2 * P, P, 5, 0, 0)]
    with pytest.raises(FsError) as ei:
        r.t.remapv(w, fh, bad)
    assert ei.value.errno == errno.EINVAL and ei.value.done == 2  # type: ignore[attr-defined]
    assert [p for p, _f, _pr in r.t.query(w, fh, 0, 3)[2]] == [3, 4, 2]
    assert sorted(r.events()) == [(w, 0, P), (w, P, P)]  # the applied part is invalidated
    # the same through the vector path (longer than REMAPV_SCALAR_MAX): one event
    r.read(w, 0, 8 * P)
    long = [(k * P, P, 8 + k, 0, 0) for k in range(7)] + [(7 * P, 2 * P, 0, 0, 0)] + [
        (0, P, 1, 0, 0)] * 2
    with pytest.raises(FsError) as ei:
        r.t.remapv(w, fh, long)
    assert ei.value.errno == errno.EINVAL and ei.value.done == 7  # type: ignore[attr-defined]
    assert sorted(r.events()) == [(w, 0, 7 * P)]
    assert [p for p, _f, _pr in r.t.query(w, fh, 0, 8)[2]] == [8, 9, 10, 11, 12, 13, 14, 7]
    r.t.remapv(w, fh, bad[:2])  # back to the layout the checks below expect
    with pytest.raises(FsError) as ei:
        r.t.remapv(w, fh, [(0, P, 1, 0, 0), (P, P, 1, 0, 0x4)])  # unknown flag bit
    assert ei.value.errno == errno.EINVAL and ei.value.done == 1  # type: ignore[attr-defined]
    ro = r.fs.open(w, os.O_RDONLY)
    assert errno_of(r.t.remapv, w, ro, _v((0, 1, 1))) == errno.EBADF
    with pytest.raises(FsError) as ei:  # page prot beyond the window's: EACCES
        r2 = Rig(4)
        w2, fh2 = r2.window(4, PROT_R)
        r2.t.remapv(w2, fh2, [(0, P, 1, PROT_RW, 0x20000)])
    assert ei.value.errno == errno.EACCES


def test_remapv_write_back_of_a_moved_page_lands_where_the_store_was_made() -> None:
    r = Rig(16)
    w, fh = r.window(8)
    r.read(w, 0, 8 * P)
    r.t.remapv(w, fh, _v((2, 1, 9), (3, 1, 10)))
    r.events()
    # the kernel launders page 2's store (made before the remap) after the invalidation
    assert r.t.write(w, 2 * P, memoryview(b"s" * P), FUSE_WRITE_CACHE) == P
    data = b"".join(bytes(v) for v in r.fs.read(r.obj, r.ofh, 0, 16 * P))
    assert data[2 * P] == ord("s") and data[9 * P] == ord("J")  # object page 2, not 9


# ------------------------------------------------------- NOTIFY_STORE (populate)
POPULATE = 0x8000


def test_populating_remap_pushes_the_new_page_after_its_invalidation() -> None:
    from fsimpl.types import StorePage

    r = Rig(16)
    w, fh = r.window(8)
    r.read(w, 0, 8 * P)
    r.t.remap(w, fh, 2 * P, P, 9, 0, POPULATE)
    ev = r.fs.drain_events()
    assert [(type(e).__name__, e.ino, e.off) for e in ev] == [
        ("InvalInode", w, 2 * P), ("StorePage", w, 2 * P)]
    assert isinstance(ev[1], StorePage) and ev[1].data == page(9)
    assert 2 in r.t.wins[w].cached  # the kernel holds it now: later changes invalidate it
    # beyond the object's end and without read permission: nothing pushed
    r.t.remap(w, fh, 3 * P, P, 40, 0, POPULATE)
    r.t.remap(w, fh, 4 * P, P, 4, 0, 0x20000 | POPULATE)  # MAP_CHGPROT to PROT_NONE
    assert not [e for e in r.fs.drain_events() if isinstance(e, StorePage)]


def test_write_back_of_a_pushed_page_follows_pending_until_the_store_is_written() -> None:
    r = Rig(16)
    w, fh = r.window(8)
    r.read(w, 0, 8 * P)
    queued = {"yes": True}
    r.fs.store_queued = lambda ino, pg: queued["yes"]
    r.t.remap(w, fh, 2 * P, P, 9, 0, POPULATE)
    r.events()
    # the launder of the copy the remap replaced comes while the store is queued
    r.t.write(w, 2 * P, memoryview(b"old!"), FUSE_WRITE_CACHE)
    # once the store reached the kernel, a write-back is of the pushed copy (pgoff 9)
    queued["yes"] = False
    r.t.write(w, 2 * P + 4, memoryview(b"new!"), FUSE_WRITE_CACHE)
    data = b"".join(bytes(v) for v in r.fs.read(r.obj, r.ofh, 0, 16 * P))
    assert data[2 * P : 2 * P + 5] == b"old!C"
    assert data[9 * P : 9 * P + 8] == b"JJJJnew!"
    assert 2 not in r.t.wins[w].pending and 2 not in r.t.wins[w].pushed


def test_mprotect_of_a_scattered_window_is_one_vector_with_exact_invalidations() -> None:
    r = Rig(64)
    w, fh = r.window(32)
    r.t.remapv(w, fh, [(i * P, P, (i * 7) % 64, 0, 0) for i in range(32)])  # 32 runs
    r.read(w, 0, 20 * P)  # the kernel caches pages 0..19 only
    r.events()
    r.t.mprotect(w, fh, 0, 32 * P, PROT_R, 0)
    assert r.events() == [(w, 0, 20 * P)]  # exactly the cached pages, one notification
    q = r.t.query(w, fh, 0, 32)[2]
    assert [p for p, _f, _pr in q] == [(i * 7) % 64 for i in range(32)]  # pgoffs kept
    assert {pr for _p, _f, pr in q} == {PROT_R}
    assert errno_of(r.t.write, w, 5 * P, memoryview(b"x")) == errno.EACCES


def test_remapv_past_pt_size_is_enomem_with_a_count_and_the_budget_stays_exact() -> None:
    # the vector path allocates page-table chunks too: charged to pt_size= like REMAP
    from fsimpl.ptbudget import CHUNK_COST, WINDOW_COST

    fs = ShmFs(FsOptions(pt_size_bytes=WINDOW_COST + 4 * CHUNK_COST))
    a, ofh = fs.create(1, b"obj", 0o644, os.O_RDWR, ROOT)
    fs.setattr(a.ino, ROOT, size=1 << 30)
    t = windows_of(fs)
    w, fh = fs.create(1, b"w", 0o600, os.O_RDWR, ROOT)
    t.attach(w.ino, fh, ROOT, t.grant(a.ino, ofh, ROOT, PROT_RW), 1 << 30, 0, PROT_RW)
    entries = [(i * 512 * P, P, 7, 0, 0) for i in range(12)]  # 12 chunks, vector path
    with pytest.raises(FsError) as ei:
        t.remapv(w.ino, fh, entries)
    assert ei.value.errno == errno.ENOMEM
    assert t.budget.used <= WINDOW_COST + 4 * CHUNK_COST
    shown = [p for p, _f, _pr in t.query(w.ino, fh, 0, 1)[2]]
    assert shown in ([0], [7])  # either applied or not, never half a page table entry
    fs.unlink(1, b"w")
    fs.release(w.ino, fh)
    fs.forget(w.ino, fs._inodes[w.ino].nlookup)
    fs.reap()
    assert t.budget.used == 0


def test_a_scattered_madv_remove_through_one_window_shows_in_another_windows_st_blocks() -> None:
    # MADV_REMOVE of a nonlinear window punches scattered object pages in one pass
    # (PageCache.remove_pages): it must bump the generation that keys every other
    # window's cached st_blocks/SEEK layout
    r = Rig(16)
    fs, t = r.fs, r.t
    a, fha = r.window(16)
    b, _fhb = r.window(16)
    assert fs.getattr(b).blocks == 16 * 8
    t.remapv(a, fha, _v(*[(i, 1, (i * 5) % 16) for i in range(16)]))  # scattered: vector path
    t.madvise(a, fha, 0, 4 * P, MADV_REMOVE)  # object pages 0, 5, 10, 15
    assert fs.getattr(b).blocks == 12 * 8
