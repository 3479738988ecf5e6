"""Hypothesis stateful test of the pager against a plain reference model.

The reference knows nothing of page tables, frames or faults: it holds the
bytes of each object, a list of VMAs (start, end, object, pgoff, prot,
shared, nonlinear) and, per mapped page, what that page shows -- an object
pgoff, or the bytes of a private COW copy.  After every step the model and the
pager must agree on what every window page shows and on the object bytes;
loads and stores must agree on the data *and* on which accesses raise SIGBUS
or SIGSEGV; system calls must agree on their errno.

Layout (24 pages of address space, two objects of up to 12 pages)::

    region: |  .|  .|  .| ... 24 pages, windows are MAP_FIXED into it
    obj 0:  [ 0 .. 12 pages ]   obj 1: [ 0 .. 12 pages ]
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from vmcore import PAGE_SIZE, Arena, Budget, Mapping, Sigbus, Sigsegv, VmError
from vmcore.mm import Mm
from vmcore.vma import (
    MADV_DONTNEED,
    MADV_REMOVE,
    MAP_CHGPROT,
    MAP_FIXED,
    MAP_NONBLOCK,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    MS_ASYNC,
    MS_SYNC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    PagerExt,
    prot_allows,
)

P = PAGE_SIZE
NPAGES = 24
MAXOBJ = 12
BASE = 0x1000_0000
RW = PROT_READ | PROT_WRITE


@dataclass
class RVma:
    start: int
    end: int
    obj: int
    pgoff: int
    prot: int
    shared: bool
    nonlinear: bool = False
    manyprots: bool = False  # PER_PAGE_PROT: some page has its own protection

    def linear(self, i: int) -> int:
        return self.pgoff + i - self.start


class Ref:
    """The reference model: plain lists, dicts and bytearrays."""

    def __init__(self, nobj: int, remove_nonlinear: bool) -> None:
        self.objs = [bytearray() for _ in range(nobj)]
        self.vmas: list[RVma] = []
        self.show: dict[int, int | bytearray] = {}
        self.ownprot: dict[int, int] = {}  # page -> its own PROT_* (extension)
        self.remove_nonlinear = remove_nonlinear

    # vma list -------------------------------------------------------------
    def vma_at(self, i: int) -> RVma | None:
        return next((v for v in self.vmas if v.start <= i < v.end), None)

    def find_vma(self, i: int) -> RVma | None:
        return next((v for v in self.vmas if v.end > i), None)

    def split(self, v: RVma, at: int) -> RVma:
        r = RVma(
            at, v.end, v.obj, v.pgoff + at - v.start, v.prot, v.shared, v.nonlinear, v.manyprots
        )
        v.end = at
        self.vmas.insert(self.vmas.index(v) + 1, r)
        return r

    def overlapping(self, s: int, e: int) -> list[RVma]:
        return [v for v in self.vmas if v.start < e and v.end > s]

    def mergeable(self, a: RVma, b: RVma) -> bool:
        return (
            a.end == b.start
            and a.obj == b.obj
            and a.shared == b.shared
            and a.prot == b.prot
            and a.nonlinear == b.nonlinear
            and a.manyprots == b.manyprots
            and a.pgoff + a.end - a.start == b.pgoff
        )

    def merge_around(self, v: RVma) -> None:
        i = self.vmas.index(v)
        if i + 1 < len(self.vmas) and self.mergeable(v, self.vmas[i + 1]):
            v.end = self.vmas.pop(i + 1).end
        if i > 0 and self.mergeable(self.vmas[i - 1], v):
            self.vmas[i - 1].end = v.end
            self.vmas.pop(i)

    # calls ------------------------------------------------------------------
    def munmap(self, s: int, e: int) -> None:
        for v in self.overlapping(s, e):
            if v.start < s:
                v = self.split(v, s)
            if v.end > e:
                self.split(v, e)
            self.vmas.remove(v)
            for i in range(v.start, v.end):
                del self.show[i]
                self.ownprot.pop(i, None)

    def mmap(self, s: int, n: int, obj: int, prot: int, shared: bool, pgoff: int) -> None:
        self.munmap(s, s + n)
        v = RVma(s, s + n, obj, pgoff, prot, shared)
        self.vmas.append(v)
        self.vmas.sort(key=lambda x: x.start)
        for i in range(s, s + n):
            self.show[i] = v.linear(i)
        self.merge_around(v)

    def mprotect(self, s: int, e: int, prot: int) -> int:
        if self.vma_at(s) is None:
            return errno.ENOMEM
        done, pos = [], s
        for v in self.overlapping(s, e):
            if v.start > pos:
                break
            if v.start < s:
                v = self.split(v, s)
            if v.end > e:
                self.split(v, e)
            v.prot = prot
            v.manyprots = False
            for k in range(v.start, v.end):
                self.ownprot.pop(k, None)
            done.append(v)
            pos = v.end
        for v in done:
            if v in self.vmas:
                self.merge_around(v)
        return errno.ENOMEM if pos < e else 0

    def remap(self, s: int, n: int, pgoff: int) -> int:
        v = self.find_vma(s)
        if v is None or not v.shared or s < v.start or s + n > v.end:
            return errno.EINVAL
        if not v.nonlinear and pgoff == v.linear(s):
            return 0
        v.nonlinear = True
        for k in range(n):
            self.show[s + k] = pgoff + k
            self.ownprot.pop(s + k, None)  # a plain remap gives back the vma's prot
        return 0

    def remap_prot(self, s: int, n: int, pgoff: int, prot: int) -> int:
        """remap_file_pages(..., prot, pgoff, MAP_CHGPROT): no linear shortcut."""
        v = self.find_vma(s)
        if v is None or not v.shared or s < v.start or s + n > v.end:
            return errno.EINVAL
        if prot & ~v.prot:
            return errno.EACCES
        v.nonlinear = v.manyprots = True
        for k in range(n):
            self.show[s + k] = pgoff + k
            self.ownprot[s + k] = prot
        return 0

    def eof(self, obj: int) -> int:
        return len(self.objs[obj]) // P

    def access(self, i: int, write: bool) -> type[Exception] | None:
        v = self.vma_at(i)
        if v is None or not prot_allows(self.ownprot.get(i, v.prot), write):
            return Sigsegv
        sh = self.show[i]
        if isinstance(sh, bytearray):
            return None
        if sh >= self.eof(v.obj):
            return Sigbus
        return None

    def load(self, i: int) -> bytes:
        sh = self.show[i]
        if isinstance(sh, bytearray):
            return bytes(sh)
        v = self.vma_at(i)
        assert v is not None
        return bytes(self.objs[v.obj][sh * P : (sh + 1) * P])

    def store(self, i: int, off: int, data: bytes) -> None:
        v = self.vma_at(i)
        assert v is not None
        sh = self.show[i]
        if isinstance(sh, bytearray):
            sh[off : off + len(data)] = data
        elif v.shared:
            self.objs[v.obj][sh * P + off : sh * P + off + len(data)] = data
        else:
            page = bytearray(self.objs[v.obj][sh * P : (sh + 1) * P])
            page[off : off + len(data)] = data
            self.show[i] = page

    def truncate(self, obj: int, npages: int) -> None:
        old = self.eof(obj)
        if npages < old:
            for v in self.vmas:
                if v.obj == obj and not v.shared:
                    for i in range(v.start, v.end):
                        if isinstance(self.show[i], bytearray) and v.linear(i) >= npages:
                            self.show[i] = v.linear(i)
            del self.objs[obj][npages * P :]
        else:
            self.objs[obj].extend(bytes((npages - old) * P))

    def punch(self, obj: int, off: int, length: int) -> None:
        d = self.objs[obj]
        end = min(off + length, len(d))
        if off < end:
            d[off:end] = bytes(end - off)

    def madvise(self, s: int, e: int, advice: int) -> int:
        pos = s
        for v in self.overlapping(s, e):
            a, b = max(s, v.start), min(e, v.end)
            if advice == MADV_REMOVE:
                if v.nonlinear and not self.remove_nonlinear:
                    return errno.EINVAL
                if not (v.shared and v.prot & PROT_WRITE):
                    return errno.EACCES
                if v.nonlinear:
                    for i in range(a, b):
                        sh = self.show[i]
                        assert isinstance(sh, int)
                        self.punch(v.obj, sh * P, P)
                else:
                    self.punch(v.obj, v.linear(a) * P, (b - a) * P)
            else:  # DONTNEED: private copies go, nonlinear pgoffs stay
                for i in range(a, b):
                    if isinstance(self.show[i], bytearray):
                        self.show[i] = v.linear(i)
            pos = b
        if pos < e or any(self.vma_at(i) is None for i in range(s, e)):
            return errno.ENOMEM
        return 0


pages = st.integers(0, NPAGES - 1)
lengths = st.integers(1, 8)
win_lengths = st.integers(1, 16)


class PagerMachine(RuleBasedStateMachine):
    EXT = PagerExt.NONE

    def __init__(self) -> None:
        super().__init__()
        self.arena = Arena(segment_bytes=1 << 20)
        self.maps = [Mapping(self.arena, Budget()) for _ in range(2)]
        self.mm = Mm(ext=self.EXT)
        self.ref = Ref(2, bool(self.EXT & PagerExt.MADV_REMOVE_NONLINEAR))
        self.stamp = 0

    def teardown(self) -> None:
        self.mm.exit_mmap()
        self.arena.close()

    def expect(self, want: int, fn, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            fn(*args)
        except VmError as e:
            if isinstance(e, (Sigbus, Sigsegv)):
                raise
            assert e.errno == want, f"{fn.__name__}{args}: errno {e.errno}, model says {want}"
            return
        assert want == 0, f"{fn.__name__}{args} succeeded, model says errno {want}"

    def pick(self, data: st.DataObject, shared_only: bool = False) -> int:
        """A page index: mostly a mapped one (a shared one for remap), sometimes any."""
        mapped = [
            i
            for i, v in ((i, self.ref.vma_at(i)) for i in range(NPAGES))
            if v is not None and (v.shared or not shared_only)
        ]
        if mapped and data.draw(st.integers(0, 9), label="bias") > 0:
            return data.draw(st.sampled_from(mapped), label="page")
        return data.draw(pages, label="page")

    @initialize(
        n0=st.integers(0, MAXOBJ),
        n1=st.integers(0, MAXOBJ),
        first=st.integers(1, NPAGES),
        shared=st.booleans(),
    )
    def setup(self, n0: int, n1: int, first: int, shared: bool) -> None:
        for k, n in enumerate((n0, n1)):
            payload = b"".join(bytes([(k * 64 + p) & 0xFF]) * P for p in range(n))
            if payload:
                self.maps[k].write(0, payload)
            self.ref.objs[k][:] = payload
        # start with a window over object 0 (a shared one in most runs)
        flags = (MAP_SHARED if shared or first % 3 else MAP_PRIVATE) | MAP_FIXED
        self.mm.mmap(self.maps[0], first * P, RW, flags, 0, addr=BASE)
        self.ref.mmap(0, first, 0, RW, bool(flags & MAP_SHARED), 0)

    @rule(
        i=pages,
        n=win_lengths,
        obj=st.integers(0, 1),
        prot=st.sampled_from([PROT_READ, RW]),
        shared=st.booleans(),
        pgoff=st.integers(0, 14),
        populate=st.booleans(),
    )
    def mmap(
        self, i: int, n: int, obj: int, prot: int, shared: bool, pgoff: int, populate: bool
    ) -> None:
        n = min(n, NPAGES - i)
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_FIXED
        if populate:
            flags |= MAP_POPULATE
        a = self.mm.mmap(self.maps[obj], n * P, prot, flags, pgoff, addr=BASE + i * P)
        assert a == BASE + i * P
        self.ref.mmap(i, n, obj, prot, shared, pgoff)
        if populate and not shared and prot & PROT_WRITE:
            # make_pages_present(write=VM_WRITE) breaks COW on every page up to
            # the first one beyond EOF (2.6.23: MAP_POPULATE works on private maps)
            for k in range(i, i + n):
                if self.ref.access(k, True) is not None:
                    break
                self.ref.show[k] = bytearray(self.ref.load(k))

    @rule(i=pages, n=st.integers(1, 3))
    def munmap(self, i: int, n: int) -> None:
        n = min(n, NPAGES - i)
        self.mm.munmap(BASE + i * P, n * P)
        self.ref.munmap(i, i + n)

    @rule(data=st.data(), n=lengths, prot=st.sampled_from([PROT_NONE, PROT_READ, RW, RW]))
    def mprotect(self, data: st.DataObject, n: int, prot: int) -> None:
        i = self.pick(data)
        n = min(n, NPAGES - i)
        want = self.ref.mprotect(i, i + n, prot)
        self.expect(want, self.mm.mprotect, BASE + i * P, n * P, prot)

    @rule(data=st.data(), n=st.integers(1, 4), pgoff=st.integers(0, 14), nonblock=st.booleans())
    def remap(self, data: st.DataObject, n: int, pgoff: int, nonblock: bool) -> None:
        i = self.pick(data, shared_only=True)
        v = self.ref.vma_at(i)
        if v is not None and data.draw(st.integers(0, 9), label="fit") > 0:
            n = min(n, v.end - i)  # mostly stay inside the vma
        n = min(n, NPAGES - i)
        want = self.ref.remap(i, n, pgoff)
        flags = MAP_NONBLOCK if nonblock else 0
        self.expect(want, self.mm.remap_file_pages, BASE + i * P, n * P, 0, pgoff, flags)

    @rule(data=st.data(), off=st.integers(0, P - 1))
    def load(self, data: st.DataObject, off: int) -> None:
        i = self.pick(data)
        want = self.ref.access(i, False)
        try:
            got = self.mm.load(BASE + i * P + off, min(16, P - off))
        except (Sigbus, Sigsegv) as e:
            assert type(e) is want, f"load page {i}: {type(e).__name__}, model says {want}"
            assert e.address == BASE + i * P + off
            return
        assert want is None, f"load page {i} succeeded, model says {want.__name__}"
        assert got == self.ref.load(i)[off : off + 16]

    @rule(data=st.data(), off=st.integers(0, P - 8))
    def store(self, data: st.DataObject, off: int) -> None:
        i = self.pick(data)
        self.stamp += 1
        data = self.stamp.to_bytes(8, "little")
        want = self.ref.access(i, True)
        try:
            self.mm.store(BASE + i * P + off, data)
        except (Sigbus, Sigsegv) as e:
            assert type(e) is want, f"store page {i}: {type(e).__name__}, model says {want}"
            return
        assert want is None, f"store page {i} succeeded, model says {want.__name__}"
        self.ref.store(i, off, data)

    @rule(obj=st.integers(0, 1), npages=st.integers(0, MAXOBJ + 2))
    def truncate(self, obj: int, npages: int) -> None:
        self.maps[obj].truncate(npages * P)
        self.ref.truncate(obj, npages)

    @rule(obj=st.integers(0, 1), off=st.integers(0, MAXOBJ * P), length=st.integers(1, 3 * P))
    def punch(self, obj: int, off: int, length: int) -> None:
        self.maps[obj].punch_hole(off, length)
        self.ref.punch(obj, off, length)

    @rule(data=st.data(), n=st.integers(1, 3), advice=st.sampled_from([MADV_REMOVE, MADV_DONTNEED]))
    def madvise(self, data: st.DataObject, n: int, advice: int) -> None:
        i = self.pick(data)
        n = min(n, NPAGES - i)
        want = self.ref.madvise(i, i + n, advice)
        self.expect(want, self.mm.madvise, BASE + i * P, n * P, advice)

    @rule(data=st.data(), n=lengths, flags=st.sampled_from([MS_SYNC, MS_ASYNC]))
    def msync(self, data: st.DataObject, n: int, flags: int) -> None:
        i = self.pick(data)
        n = min(n, NPAGES - i)
        unmapped = any(self.ref.vma_at(k) is None for k in range(i, i + n))
        self.expect(errno.ENOMEM if unmapped else 0, self.mm.msync, BASE + i * P, n * P, flags)

    @rule()
    def load_everything(self) -> None:
        for i in range(NPAGES):
            want = self.ref.access(i, False)
            try:
                got = self.mm.load(BASE + i * P, P)
            except (Sigbus, Sigsegv) as e:
                assert type(e) is want, f"page {i}: {type(e).__name__}, model says {want}"
                continue
            assert want is None, f"page {i} loaded, model says {want.__name__}"
            assert got == self.ref.load(i), f"page {i} data differs"

    @invariant()
    def windows_show_what_the_model_says(self) -> None:
        got = self.mm.shown(BASE, NPAGES)
        want = [
            None
            if (v := self.ref.show.get(i)) is None
            else "cow"
            if isinstance(v, bytearray)
            else v
            for i in range(NPAGES)
        ]
        assert got == want, f"\nimpl  {got}\nmodel {want}"
        vmas = [(v.start, v.end, v.nonlinear, v.prot) for v in self.mm.vmas]
        rv = [(BASE + v.start * P, BASE + v.end * P, v.nonlinear, v.prot) for v in self.ref.vmas]
        assert vmas == rv

    @invariant()
    def objects_hold_the_model_bytes(self) -> None:
        for m, d in zip(self.maps, self.ref.objs, strict=True):
            assert m.size == len(d)
            assert m.read_bytes(0, m.size) == bytes(d)


class PagerMachineExtensions(PagerMachine):
    """The same with the extensions on: MADV_REMOVE on nonlinear windows and
    per-page protections given by remap(MAP_CHGPROT)."""

    EXT = PagerExt.MADV_REMOVE_NONLINEAR | PagerExt.PER_PAGE_PROT

    @rule(
        data=st.data(),
        n=st.integers(1, 4),
        pgoff=st.integers(0, 14),
        prot=st.sampled_from([PROT_NONE, PROT_READ, RW]),
        nonblock=st.booleans(),
    )
    def remap_prot(
        self, data: st.DataObject, n: int, pgoff: int, prot: int, nonblock: bool
    ) -> None:
        i = self.pick(data, shared_only=True)
        v = self.ref.vma_at(i)
        if v is not None and data.draw(st.integers(0, 9), label="fit") > 0:
            n = min(n, v.end - i)
        want = self.ref.remap_prot(i, n, pgoff, prot)
        flags = MAP_CHGPROT | (MAP_NONBLOCK if nonblock else 0)
        self.expect(want, self.mm.remap_file_pages, BASE + i * P, n * P, prot, pgoff, flags)


#: the default run does 200 examples; a long profile sets e.g. SHMFS_PAGER_EXAMPLES=5000
EXAMPLES = int(os.environ.get("SHMFS_PAGER_EXAMPLES", "200"))

TestPager = PagerMachine.TestCase
TestPager.settings = settings(max_examples=EXAMPLES, stateful_step_count=50, deadline=None)
TestPagerExtensions = PagerMachineExtensions.TestCase
TestPagerExtensions.settings = settings(
    max_examples=max(EXAMPLES // 2, 50), stateful_step_count=50, deadline=None
)
