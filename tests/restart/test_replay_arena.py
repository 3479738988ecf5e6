"""The arena's restartable mode (vmcore/arena.py ``memfd=``, ``set_replaying``):
the data lives in a memfd another process can map, frees really return memory
and read back as zero, a second Arena over the same memfd continues exactly
where the first one's allocator state says, and replay touches no byte."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vmcore.arena import PAGE_SIZE, Arena

SEG = 16 * PAGE_SIZE


@pytest.fixture
def memfd() -> int:
    fd = os.memfd_create("arena-test")
    yield fd
    os.close(fd)


def _fill(a: Arena, frames: np.ndarray, byte: int) -> None:
    a.copy_in(frames, 0, memoryview(bytes([byte]) * (frames.size * PAGE_SIZE)))


def _resident(fd: int) -> int:
    """Bytes of the memfd backed by memory (st_blocks counts its shmem pages)."""
    return os.fstat(fd).st_blocks * 512


def test_data_is_in_the_memfd_and_grows_by_segments(memfd: int) -> None:
    a = Arena(SEG, memfd=memfd)
    frames = a.alloc(20)  # past one segment: a second range of the memfd
    _fill(a, frames, 7)
    assert os.fstat(memfd).st_size == 2 * SEG
    f = int(frames[17])
    assert os.pread(memfd, 3, f * PAGE_SIZE) == b"\x07\x07\x07"
    a.close()


def test_free_punches_the_memfd(memfd: int) -> None:
    a = Arena(SEG, memfd=memfd, populate=False)
    frames = a.alloc(8)
    _fill(a, frames, 9)
    before = _resident(memfd)
    a.free(frames[:4])
    assert _resident(memfd) <= before - 4 * PAGE_SIZE  # the memory went back
    again = a.alloc(4)  # the freed run comes back first, and reads as zero
    assert sorted(again.tolist()) == sorted(frames[:4].tolist())
    assert not any(bytes(a.view(int(f))).strip(b"\0") for f in again)
    a.close()


def test_a_second_arena_continues_from_the_allocator_state(memfd: int) -> None:
    a = Arena(SEG, memfd=memfd)
    frames = a.alloc(30)
    _fill(a, frames, 5)
    a.free(frames[3:9])
    a.share(frames[10:12])
    state = a.allocator_state()
    nxt = a.alloc(10)  # what the first arena would hand out next
    a.close()
    b = Arena(SEG, memfd=memfd)  # a new server over the same memfd
    b.restore_allocator_state(state)
    assert b.alloc(10).tolist() == nxt.tolist()
    assert b.refcount(int(frames[10])) == 2
    assert bytes(b.view(int(frames[20])))[:2] == b"\x05\x05"  # the data is there
    b.close()


def test_replaying_touches_no_byte(memfd: int) -> None:
    a = Arena(SEG, memfd=memfd, populate=False)
    frames = a.alloc(4)
    _fill(a, frames, 3)
    a.set_replaying(True)
    _fill(a, frames, 8)  # a replayed WRITE: not copied
    a.zero_range(int(frames[0]), 0, 100)  # a replayed truncate: not zeroed
    new = a.alloc(2)
    a.copy_frames(frames[:2], new)  # a replayed copy-on-write break: not copied
    a.page(int(frames[1]))[:] = 1  # a store through a page table goes to scratch memory
    a.free(frames[2:])  # a replayed free: bookkeeping only, nothing punched
    a.set_replaying(False)
    assert all(bytes(a.view(int(f))) == b"\x03" * PAGE_SIZE for f in frames)
    assert not bytes(a.view(int(new[0]))).strip(b"\0")
    assert a.statistics()["frames_free"] == 2  # ... but the allocator knows
    a.close()


def test_default_arena_is_still_anonymous() -> None:
    a = Arena(SEG)
    assert a.memfd is None and not a.replaying
    a.close()


def test_stale_free_frames_are_zero_when_handed_out_again(memfd: int) -> None:
    """A killed request wrote into frames it had just taken; after recovery they are
    free again, and whoever gets them -- not only the resent request -- sees zeros."""
    a = Arena(SEG, memfd=memfd, populate=False)
    keep = a.alloc(4)
    _fill(a, keep, 1)
    gone = a.alloc(3)
    a.free(gone)  # free runs, punched
    state = a.allocator_state()  # what the journal says: nothing after this
    dirty = a.alloc(6)  # the killed request: 3 reused frames and 3 fresh ones ...
    _fill(a, dirty, 0xEE)  # ... written, then the process died
    a.close()
    b = Arena(SEG, memfd=memfd, populate=False)
    b.restore_allocator_state(state)
    assert b.mark_free_stale() >= 6
    other = b.alloc(2)  # someone else allocates first (a different size, even)
    more = b.alloc1()
    for f in [*other.tolist(), more]:
        assert not bytes(b.view(f)).strip(b"\0"), f"frame {f} handed out with stale bytes"
    assert all(bytes(b.view(int(f))) == b"\x01" * PAGE_SIZE for f in keep)  # data stays
    b.close()


def test_one_alloc_across_the_last_stale_run_and_fresh_space(memfd: int) -> None:
    """The stale frames run out in the middle of one alloc (free run, then fresh
    space): the rest is handed out as usual (this raised in the kill loop)."""
    a = Arena(SEG, memfd=memfd, populate=False)
    a.free(a.alloc(3))
    state = a.allocator_state()
    a.close()
    b = Arena(SEG, memfd=memfd, populate=False)
    b.restore_allocator_state(state)
    b.mark_free_stale()
    frames = b.alloc(10)  # 3 stale, then 7 past the bump pointer
    assert frames.size == 10 and b._stale is None
    b.close()
