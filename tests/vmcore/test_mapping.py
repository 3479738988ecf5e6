"""Mapping against a bytearray model, against the kernel's tmpfs (/dev/shm),
and the rmap / ENOSPC / sparse-size contracts."""

from __future__ import annotations

import errno
import os
import tempfile
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mount.syscalls import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocate
from vmcore import PAGE_SIZE, Arena, Budget, Mapping, NoSpace

P = PAGE_SIZE
# offsets cut at and around page boundaries, including the 512-page chunk boundary
PAGES = [0, 1, 2, 3, 5, 8, 510, 511, 512, 513]
DELTAS = [-P // 2, -2, -1, 0, 1, 2, P // 2]
offsets = st.builds(lambda p, d: max(0, p * P + d), st.sampled_from(PAGES), st.sampled_from(DELTAS))
lengths = st.one_of(
    st.sampled_from([1, 2, P - 1, P, P + 1, 2 * P, 3 * P + 7]), st.integers(0, 5 * P)
)


class Model:
    """What tmpfs does, byte by byte: data, i_size and per-page state."""

    def __init__(self, max_pages: int) -> None:
        self.data = bytearray()
        self.state: dict[int, str] = {}  # pgoff -> "data" | "falloc"
        self.max_pages = max_pages

    @property
    def size(self) -> int:
        return len(self.data)

    def free(self) -> int:
        return 1 << 62 if not self.max_pages else self.max_pages - len(self.state)

    def write(self, off: int, buf: bytes) -> int | None:
        if not buf:
            return 0
        end = off + len(buf)
        first, last = off // P, (end - 1) // P
        avail = self.free()
        n = len(buf)
        for p in range(first, last + 1):
            if p not in self.state:
                if avail == 0:
                    n = p * P - off
                    break
                avail -= 1
        if n <= 0:
            return None  # ENOSPC
        if off + n > self.size:
            self.data.extend(bytes(off + n - self.size))
        self.data[off : off + n] = buf[:n]
        for p in range(first, (off + n - 1) // P + 1):
            self.state[p] = "data"
        return n

    def read(self, off: int, length: int) -> bytes:
        return bytes(self.data[off : off + length])

    def truncate(self, n: int) -> None:
        if n > self.size:
            self.data.extend(bytes(n - self.size))
            return
        del self.data[n:]
        keep = -(-n // P)
        self.state = {p: s for p, s in self.state.items() if p < keep}

    def punch(self, off: int, length: int) -> None:
        end = off + length
        lo, hi = min(off, self.size), min(end, self.size)
        self.data[lo:hi] = bytes(hi - lo)
        for p in range(-(-off // P), end // P):
            self.state.pop(p, None)

    def fallocate(self, off: int, length: int, keep: bool) -> bool:
        pages = range(off // P, (off + length - 1) // P + 1)
        need = sum(p not in self.state for p in pages)
        if need > self.free():
            return False
        for p in pages:  # a second fallocate makes preallocated pages data (shmem)
            self.state[p] = "data" if p in self.state else "falloc"
        if not keep and off + length > self.size:
            self.data.extend(bytes(off + length - self.size))
        return True

    def seek_data(self, off: int) -> int:
        if off >= self.size:
            return -1
        for p in sorted(self.state):
            if p >= off // P and self.state[p] == "data":
                pos = max(off, p * P)
                return pos if pos < self.size else -1
        return -1

    def seek_hole(self, off: int) -> int:
        if off >= self.size:
            return -1
        p = off // P
        while self.state.get(p) == "data":
            p += 1
        return min(max(off, p * P), self.size)


class MappingMachine(RuleBasedStateMachine):
    """Random writes/reads/truncates/punches/fallocates, compared with Model."""

    def __init__(self) -> None:
        super().__init__()
        self.arena = Arena(segment_bytes=256 * P)
        self.budget = Budget()
        self.m = Mapping(self.arena, self.budget)
        self.model = Model(0)
        self.fill = 0

    @rule(max_pages=st.sampled_from([0, 0, 3, 6, 20]))
    def set_limit(self, max_pages: int) -> None:
        if max_pages and max_pages < self.budget.used_pages:
            with pytest.raises(ValueError):
                self.budget.resize(max_pages)
            return
        self.budget.resize(max_pages)
        self.model.max_pages = max_pages

    @rule(off=offsets, length=lengths)
    def write(self, off: int, length: int) -> None:
        self.fill = self.fill % 255 + 1
        buf = bytes([self.fill]) * length
        want = self.model.write(off, buf)
        if want is None:
            size = self.m.size
            with pytest.raises(NoSpace) as ei:
                self.m.write(off, buf)
            assert ei.value.errno == errno.ENOSPC
            assert self.m.size == size
        else:
            assert self.m.write(off, memoryview(buf)) == want

    @rule(off=offsets, length=lengths)
    def read(self, off: int, length: int) -> None:
        views = self.m.read(off, length)
        assert all(isinstance(v, memoryview) for v in views)
        assert b"".join(views) == self.model.read(off, length)

    @rule(size=offsets)
    def truncate(self, size: int) -> None:
        self.m.truncate(size)
        self.model.truncate(size)

    @rule(off=offsets, length=lengths)
    def punch(self, off: int, length: int) -> None:
        self.m.punch_hole(off, length)
        self.model.punch(off, length)

    @rule(off=offsets, length=lengths, keep=st.booleans())
    def fallocate(self, off: int, length: int, keep: bool) -> None:
        assume(length > 0)
        if self.model.fallocate(off, length, keep):
            self.m.fallocate(off, length, keep)
        else:
            used = self.budget.used_pages
            with pytest.raises(NoSpace):
                self.m.fallocate(off, length, keep)
            assert self.budget.used_pages == used

    @precondition(lambda self: self.model.size > 0)
    @rule(off=offsets)
    def seek(self, off: int) -> None:
        assert self.m.seek_data(off) == self.model.seek_data(off)
        assert self.m.seek_hole(off) == self.model.seek_hole(off)

    @invariant()
    def accounting(self) -> None:
        assert self.m.size == self.model.size
        assert self.m.nrpages == len(self.model.state)
        assert self.m.blocks() == 8 * len(self.model.state)
        assert self.budget.used_pages == len(self.model.state)
        assert self.arena.statistics()["frames_in_use"] == len(self.model.state)

    def teardown(self) -> None:
        self.m.release()
        assert self.arena.statistics()["frames_in_use"] == 0
        self.arena.close()


MappingMachine.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMappingModel = MappingMachine.TestCase


# -- the kernel as the oracle ------------------------------------------------------

def _lseek(fd: int, off: int, whence: int) -> int:
    try:
        return os.lseek(fd, off, whence)
    except OSError as e:
        assert e.errno == errno.ENXIO
        return -1


tmpfs_ops = st.lists(
    st.tuples(
        st.sampled_from(["write", "truncate", "punch", "falloc", "falloc_keep"]),
        offsets.filter(lambda o: o < 16 * P),
        lengths.filter(lambda n: n > 0),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a tmpfs at /dev/shm")
@settings(max_examples=80, deadline=None)
@given(ops=tmpfs_ops, probes=st.lists(offsets.filter(lambda o: o < 20 * P), max_size=6))
def test_against_kernel_tmpfs(ops, probes) -> None:
    arena = Arena(segment_bytes=64 * P)
    m = Mapping(arena, Budget())
    fd, path = tempfile.mkstemp(dir="/dev/shm", prefix="vmcore-oracle-")
    try:
        for i, (op, off, length) in enumerate(ops):
            if op == "write":
                buf = bytes([i + 1]) * length
                assert os.pwrite(fd, buf, off) == m.write(off, buf) == length
            elif op == "truncate":
                os.ftruncate(fd, off)
                m.truncate(off)
            elif op == "punch":
                fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, length)
                m.punch_hole(off, length)
            else:
                keep = op == "falloc_keep"
                fallocate(fd, FALLOC_FL_KEEP_SIZE if keep else 0, off, length)
                m.fallocate(off, length, keep)
            stt = os.fstat(fd)
            assert m.size == stt.st_size
            assert m.blocks() == stt.st_blocks
        size = m.size
        assert b"".join(m.read(0, size + P)) == os.pread(fd, size + P, 0)
        for off in [0, *probes]:
            assert m.seek_data(off) == _lseek(fd, off, os.SEEK_DATA), off
            assert m.seek_hole(off) == _lseek(fd, off, os.SEEK_HOLE), off
    finally:
        os.close(fd)
        os.unlink(path)
        m.release()
        arena.close()


# -- explicit cases -------------------------------------------------------------------


@pytest.fixture
def arena():
    a = Arena(segment_bytes=1024 * P)
    yield a
    a.close()


def test_write_split_at_every_cut_point(arena: Arena) -> None:
    """h11-style: the same bytes written in two pieces cut anywhere near a page
    boundary read back identically."""
    data = np.random.default_rng(7).integers(0, 256, 3 * P, dtype=np.uint8).tobytes()
    cuts = sorted({c for b in (0, P, 2 * P, 3 * P) for c in range(b - 3, b + 4) if 0 <= c <= 3 * P})
    for base in (0, 5, P - 1, 511 * P + 3):
        for cut in cuts:
            m = Mapping(arena, Budget())
            assert m.write(base + cut, data[cut:]) == len(data) - cut
            assert m.write(base, memoryview(data)[:cut]) == cut
            assert m.read_bytes(base, len(data)) == data
            assert m.read_bytes(0, base) == bytes(base)
            m.release()


def test_enospc_write_is_short_at_a_page_boundary_and_keeps_old_data(arena: Arena) -> None:
    budget = Budget(4)
    m = Mapping(arena, budget)
    m.write(0, b"A" * (2 * P))
    n = m.write(P + 100, b"B" * (5 * P))  # pages 1 (resident), 2, 3 charged, 4 not
    assert n == 4 * P - (P + 100)
    assert m.size == 4 * P
    assert m.read_bytes(0, 4 * P) == b"A" * (P + 100) + b"B" * n
    with pytest.raises(NoSpace):
        m.write(4 * P, b"C")
    assert m.size == 4 * P and budget.used_pages == 4
    # overwriting resident pages needs no charge
    assert m.write(0, b"D" * (4 * P)) == 4 * P
    m.punch_hole(P, P)
    assert m.write(10 * P, b"E" * 10) == 10 and m.size == 10 * P + 10
    assert budget.used_pages == 4


def test_fallocate_is_all_or_nothing(arena: Arena) -> None:
    budget = Budget(5)
    m = Mapping(arena, budget)
    m.write(0, b"x" * P)
    with pytest.raises(NoSpace):
        m.fallocate(0, 6 * P, keep_size=False)
    assert m.nrpages == 1 and budget.used_pages == 1 and m.size == P
    m.fallocate(0, 5 * P, keep_size=True)
    assert m.nrpages == 5 and m.size == P and m.blocks() == 40
    assert m.read_bytes(0, P) == b"x" * P


def test_one_tib_sparse_mapping_costs_little(arena: Arena) -> None:
    m = Mapping(arena, Budget())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        m.truncate(1 << 40)
        for off in (0, 1 << 39, (1 << 40) - P, 12345 * P + 17):
            m.write(off, b"z" * 100)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert m.nrpages == 4 and m.pages.nr_chunks == 4
    assert m.pages.index_bytes() < 64 << 10
    assert grown < 128 << 10, grown  # proportional to pages, not to 1 TiB
    assert m.seek_data(P) == 12345 * P  # page granularity, like tmpfs
    assert m.seek_hole(1 << 39) == (1 << 39) + P
    assert m.seek_data((1 << 39) + 1) == (1 << 39) + 1
    assert m.read_bytes((1 << 39) - 2, 4) == b"\0\0zz"
    assert m.blocks() == 32
    m.truncate(P)
    assert m.nrpages == 1 and m.pages.nr_chunks == 1


class RecordingRmap:
    """A fake rmap: records each call and what the mapping/arena looked like."""

    def __init__(self, m: Mapping) -> None:
        self.m = m
        self.calls: list[tuple[int, int | None, bool, int, int]] = []

    def unmap_mapping_range(self, first: int, nr: int | None, even_cows: bool) -> int:
        st = self.m.arena.statistics()
        self.calls.append((first, nr, even_cows, self.m.nrpages, st["frames_freed"]))
        return 0


def test_truncate_unmaps_drops_unmaps_then_frees(arena: Arena) -> None:
    m = Mapping(arena, Budget())
    m.write(0, b"q" * (10 * P))
    rmap = m.rmap = RecordingRmap(m)
    freed0 = arena.statistics()["frames_freed"]
    m.truncate(3 * P + 5)
    assert [c[:3] for c in rmap.calls] == [(4, None, True), (4, None, True)]
    assert rmap.calls[0][3] == 10 and rmap.calls[1][3] == 4  # dropped between the unmaps
    assert rmap.calls[0][4] == rmap.calls[1][4] == freed0  # freed only after both
    assert arena.statistics()["frames_freed"] == freed0 + 6
    assert m.read_bytes(3 * P, P) == b"q" * 5
    m.truncate(4 * P)
    assert m.read_bytes(3 * P, P) == b"q" * 5 + bytes(P - 5)  # partial page was zeroed


def test_truncate_within_the_last_page_needs_no_unmap(arena: Arena) -> None:
    m = Mapping(arena, Budget())
    m.write(0, b"q" * (2 * P))
    rmap = m.rmap = RecordingRmap(m)
    m.truncate(2 * P)
    m.truncate(2 * P - 1)
    assert rmap.calls == []


def test_punch_hole_unmaps_whole_pages_without_cows(arena: Arena) -> None:
    m = Mapping(arena, Budget())
    m.write(0, b"p" * (6 * P))
    rmap = m.rmap = RecordingRmap(m)
    m.punch_hole(P + 1, 3 * P)  # whole pages 2, 3; partial edges in pages 1 and 4
    assert [c[:3] for c in rmap.calls] == [(2, 2, False), (2, 2, False)]
    assert rmap.calls[0][3] == 6 and rmap.calls[1][3] == 4
    assert m.size == 6 * P
    assert m.read_bytes(0, 6 * P) == b"p" * (P + 1) + bytes(3 * P) + b"p" * (2 * P - 1)
    rmap.calls.clear()
    m.punch_hole(5 * P + 1, 10)  # inside one page: nothing to unmap
    assert rmap.calls == []
    assert m.read_bytes(5 * P, 12) == b"p" + bytes(10) + b"p"


def test_release_frees_everything(arena: Arena) -> None:
    budget = Budget()
    m = Mapping(arena, budget)
    m.write(0, b"r" * (300 * P))
    m.fallocate(400 * P, P, keep_size=True)
    m.release()
    assert m.nrpages == 0 and budget.used_pages == 0
    assert arena.statistics()["frames_in_use"] == 0


def test_read_views_alias_the_page_cache(arena: Arena) -> None:
    m = Mapping(arena, Budget())
    m.write(0, b"a" * 100)
    (v,) = m.read(0, 100)
    m.write(10, b"b")
    assert v[10:11] == b"b"


# -- ENOSPC against a size-limited kernel tmpfs -------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A scratch tmpfs of 4 pages (root only); always unmounted."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.system(f"mount -t tmpfs -o size={4 * P} vmcore-oracle {mnt}") != 0:
        pytest.fail("mount -t tmpfs failed")
    try:
        yield mnt
    finally:
        os.system(f"umount {mnt}")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a scratch tmpfs needs root")
def test_enospc_matches_a_size_limited_tmpfs(small_tmpfs, arena: Arena) -> None:
    m = Mapping(arena, Budget(4))
    fd = os.open(small_tmpfs / "f", os.O_CREAT | os.O_RDWR)
    try:
        steps = [
            ("write", 0, 2 * P),
            ("write", P + 100, 5 * P),  # short at the page that cannot be charged
            ("write", 4 * P, 1),  # nothing fits: ENOSPC
            ("truncate", P, 0),
            ("falloc", 0, 6 * P),  # all or nothing: ENOSPC, nothing allocated
            ("falloc_keep", P, 2 * P),
            ("write", 3 * P - 1, 3),
        ]
        for i, (op, off, n) in enumerate(steps):
            if op == "write":
                buf = bytes([i + 65]) * n
                try:
                    want = os.pwrite(fd, buf, off)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    with pytest.raises(NoSpace):
                        m.write(off, buf)
                else:
                    assert m.write(off, buf) == want
            elif op == "truncate":
                os.ftruncate(fd, off)
                m.truncate(off)
            else:
                keep = op == "falloc_keep"
                try:
                    fallocate(fd, FALLOC_FL_KEEP_SIZE if keep else 0, off, n)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    with pytest.raises(NoSpace):
                        m.fallocate(off, n, keep)
                else:
                    m.fallocate(off, n, keep)
            stt = os.fstat(fd)
            assert (m.size, m.blocks()) == (stt.st_size, stt.st_blocks), (i, op)
        assert m.read_bytes(0, m.size) == os.pread(fd, m.size, 0)
        for off in range(0, m.size, P // 2):
            assert m.seek_data(off) == _lseek(fd, off, os.SEEK_DATA)
            assert m.seek_hole(off) == _lseek(fd, off, os.SEEK_HOLE)
    finally:
        os.close(fd)
