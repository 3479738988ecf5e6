"""Behaviour beyond Linux 2.6.23, each behind its PagerExt flag (docs/pager.md):
MADV_REMOVE on nonlinear windows, per-page protections (RFP-prot), and
nonlinear windows over write-notify mappings -- where the fault path must tell
a protection fault from a write-notify fault."""

from __future__ import annotations

import errno

import pytest

from vmcore import PAGE_SIZE, Arena, Budget, Mapping, Sigbus, Sigsegv, VmError
from vmcore.mm import Mm
from vmcore.pagetable import PTE_FILE, PTE_OWNPROT
from vmcore.vma import (
    MADV_REMOVE,
    MAP_CHGPROT,
    MAP_NONBLOCK,
    MAP_SHARED,
    MS_SYNC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    PagerExt,
    VmFlags,
)
from vmcore.window import Window, picture

P = PAGE_SIZE
RW = PROT_READ | PROT_WRITE


def obj(arena: Arena, npages: int, **kw: bool) -> Mapping:
    m = Mapping(arena, Budget(), **kw)
    for i in range(npages):
        m.write(i * P, bytes([0x30 + i]) * P)
    return m


def reversed_window(m: Mapping, n: int, ext: PagerExt) -> Window:
    w = Window(m, n, ext=ext)
    for i in range(n):
        w.remap(i, 1, n - 1 - i)
    return w


# ------------------------------------------------------------ MADV_REMOVE
def test_madv_remove_on_nonlinear_window_punches_the_pages_it_shows(arena: Arena) -> None:
    r"""
    window:  |  5|  4|  3|  2|  1|  0|      MADV_REMOVE window pages 1..2
    punches object pages 4 and 3 (not 1 and 2, the linear positions)
    """
    m = obj(arena, 6)
    w = reversed_window(m, 6, PagerExt.MADV_REMOVE_NONLINEAR)
    other = Mm()
    lin = other.mmap(m, 6 * P, PROT_READ, MAP_SHARED)
    assert other.load(lin + 4 * P, 1) == b"4"
    w.madvise(1, 2, MADV_REMOVE)
    assert m.seek_hole(0) == 3 * P and m.seek_data(3 * P) == 5 * P
    assert other.load(lin + 4 * P, 1) == b"\0"  # the linear view was zapped too
    assert other.load(lin + 2 * P, 1) == b"2"
    assert w.picture() == "|  5|  4|  3|  2|  1|  0|"  # pgoffs kept
    assert w.pread(P, 1) == b"\0" and w.pread(0, 1) == b"5"
    assert m.size == 6 * P


def test_madv_remove_nonlinear_is_einval_without_the_flag(arena: Arena) -> None:
    w = reversed_window(obj(arena, 4), 4, PagerExt.NONE)
    with pytest.raises(VmError) as ei:
        w.madvise(0, 1, MADV_REMOVE)
    assert ei.value.errno == errno.EINVAL


# ------------------------------------------------------ per-page protections
def test_per_page_protection_in_a_nonlinear_window(arena: Arena) -> None:
    r"""
    |  3 rw|  2 r-|  1 --|  0 rw|     own protections given by remap(MAP_CHGPROT)
    """
    m = obj(arena, 4)
    w = Window(m, 4, ext=PagerExt.PER_PAGE_PROT)
    for i, prot in enumerate([RW, PROT_READ, PROT_NONE, RW]):
        w.remap(i, 1, 3 - i, MAP_CHGPROT, prot)
    assert w.vmas[0].flags & VmFlags.MANYPROTS and len(w.vmas) == 1
    w.pwrite(0, b"a")
    assert w.pread(P, 1) == b"2"
    with pytest.raises(Sigsegv) as ei:
        w.pwrite(P, b"b")
    assert ei.value.address == w.address + P and "page prot" in ei.value.reason
    with pytest.raises(Sigsegv):
        w.pread(2 * P, 1)
    w.pwrite(3 * P, b"d")
    assert m.read_bytes(3 * P, 1) == b"a" and m.read_bytes(0, 1) == b"d"


def test_own_protection_survives_truncate_and_regrow(arena: Arena) -> None:
    m = obj(arena, 4)
    w = Window(m, 4, ext=PagerExt.PER_PAGE_PROT)
    w.remap(0, 1, 3, MAP_CHGPROT, PROT_READ)
    assert w.pread(0, 1) == b"3"
    m.truncate(2 * P)
    bits, _f, pgoff, prot = w.vmas[0].pt.get(w.address >> 12)
    assert bits == PTE_FILE | PTE_OWNPROT and pgoff == 3 and prot == PROT_READ
    with pytest.raises(Sigbus):
        w.pread(0, 1)
    m.truncate(4 * P)
    assert w.pread(0, 1) == b"\0"
    with pytest.raises(Sigsegv):
        w.pwrite(0, b"x")


def test_per_page_protection_rules(arena: Arena) -> None:
    m = obj(arena, 4)
    plain = Window(m, 4)
    with pytest.raises(VmError) as ei:
        plain.remap(0, 1, 2, MAP_CHGPROT, PROT_READ)  # flag off: prot must be 0
    assert ei.value.errno == errno.EINVAL
    w = Window(m, 4, prot=PROT_READ, ext=PagerExt.PER_PAGE_PROT)
    with pytest.raises(VmError) as ei:
        w.remap(0, 1, 2, MAP_CHGPROT, RW)  # more than the vma allows
    assert ei.value.errno == errno.EACCES
    rw = Window(m, 4, ext=PagerExt.PER_PAGE_PROT)
    rw.remap(1, 1, 1, MAP_CHGPROT, PROT_READ)  # at the linear position: still recorded
    with pytest.raises(Sigsegv):
        rw.pwrite(P, b"x")
    rw.mprotect(0, 4, RW)  # mprotect resets own protections
    rw.pwrite(P, b"x")
    assert not rw.vmas[0].flags & VmFlags.MANYPROTS


# -------------------------------------- write-notify vs protection faults
def test_protection_fault_is_told_from_write_notify_fault(arena: Arena) -> None:
    r"""
    write-notify mapping, nonlinear window (NONLINEAR_WRITENOTIFY):
    |  1 rw|  0 r-|     both PTEs read-only after msync(MS_SYNC)
    write page 0 -> write-notify fault: page_mkwrite, then writable
    write page 1 -> protection fault: SIGSEGV, page_mkwrite never called
    """
    m = obj(arena, 2, write_notify=True)
    calls: list[int] = []
    m.page_mkwrite = lambda vma, pgoff: calls.append(pgoff) or 0  # type: ignore[attr-defined]
    ext = PagerExt.PER_PAGE_PROT | PagerExt.NONLINEAR_WRITENOTIFY
    w = Window(m, 2, ext=ext)
    w.remap(0, 1, 1, MAP_CHGPROT | MAP_NONBLOCK, RW)
    w.remap(1, 1, 0, MAP_CHGPROT | MAP_NONBLOCK, PROT_READ)
    assert w.vmas[0].nonlinear
    assert w.pread(0, 1) == b"1" and w.pread(P, 1) == b"0"  # read faults: RO PTEs
    w.pwrite(0, b"a")  # read-only PTE, page allows writing: write-notify fault
    assert calls == [1] and w.mm.statistics()["mkwrite"] == 1
    with pytest.raises(Sigsegv):
        w.pwrite(P, b"c")  # read-only PTE, page forbids writing: protection fault
    assert calls == [1]
    w.mm.msync(w.address, 2 * P, MS_SYNC)  # clean + re-protect, nonlinear too
    w.pwrite(0, b"b")
    assert calls == [1, 1] and w.mm.statistics()["mkwrite"] == 2
    with pytest.raises(Sigsegv):
        w.pwrite(P, b"c")
    assert calls == [1, 1]
    assert m.read_bytes(P, 1) == b"b" and m.read_bytes(0, 1) == b"0"


def test_write_notify_mapping_falls_back_to_linear_vmas_by_default(arena: Arena) -> None:
    r"""§2.1 row 12 (SZ): remap on a dirty-accountable mapping emulates with a
    new linear VMA.
    before: |  0|  1|  2|  3|   one vma
    remap window 1 -> pgoff 3: |  0|  3|  2|  3|   three linear vmas
    """
    m = obj(arena, 4, write_notify=True)
    mm = Mm()
    a = mm.mmap(m, 4 * P, RW, MAP_SHARED)
    assert mm.remap_file_pages(a + P, P, 0, 3, MAP_NONBLOCK) == 0
    assert picture(mm, a, 4) == "|  0|  3|  2|  3|"
    assert mm.map_count == 3 and not any(v.nonlinear for v in mm.vmas)
    assert m.rmap.statistics()["vmas_nonlinear"] == 0
    assert mm.load(a + P, 1) == b"3"


def test_plain_remap_gives_back_the_vma_protection(arena: Arena) -> None:
    m = obj(arena, 4)
    w = Window(m, 4, ext=PagerExt.PER_PAGE_PROT)
    w.remap(0, 1, 2, MAP_CHGPROT, PROT_NONE)
    with pytest.raises(Sigsegv):
        w.pread(0, 1)
    w.remap(0, 1, 3)
    assert w.pread(0, 1) == b"3"
    w.pwrite(0, b"w")
    assert m.read_bytes(3 * P, 1) == b"w"


def test_madv_remove_of_a_scattered_window_punches_only_what_it_shows(arena: Arena) -> None:
    """A window whose pages show scattered object pages (one run each): the punch is
    done in one pass (Mapping.punch_pages) and must free exactly those pages, zap
    every other mapping of them, and leave the rest of the object alone."""
    n, stride = 64, 3
    m = obj(arena, n * stride)
    w = Window(m, n, ext=PagerExt.MADV_REMOVE_NONLINEAR)
    for i in range(n):
        w.remap(i, 1, i * stride)
    other = Mm()
    lin = other.mmap(m, n * stride * P, PROT_READ, MAP_SHARED)
    for p in range(n * stride):  # fault every page in through the linear mapping
        other.load(lin + p * P, 1)
    w.pread(0, n * P)  # and every window page
    w.madvise(0, n, MADV_REMOVE)
    assert m.blocks() == (n * stride - n) * P // 512  # (a load of a hole allocates it again)
    for p in range(n * stride):
        want = b"\0" if p % stride == 0 else bytes([(0x30 + p) & 0xFF])
        assert other.load(lin + p * P, 1) == want, p
    assert w.pread(5 * P, 1) == b"\0"
    assert w.shown()[:3] == [0, 3, 6]  # pgoffs kept
