"""Arena: allocation, contiguity, zeroing, views and memory returned to the host."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vmcore import PAGE_SIZE, Arena


@pytest.fixture
def arena():
    a = Arena(segment_bytes=64 * PAGE_SIZE, name="test-arena")
    yield a
    a.close()


def test_alloc_is_contiguous_zeroed_and_never_frame_zero(arena: Arena) -> None:
    f = arena.alloc(10)
    assert f.dtype == np.int64 and f.size == 10
    assert 0 not in f
    assert (np.diff(f) == 1).all()
    for fr in f:
        assert not arena.page(fr).any()


def test_frames_are_distinct_across_allocations(arena: Arena) -> None:
    got = np.concatenate([arena.alloc(k) for k in (1, 7, 30, 64, 3)])
    assert np.unique(got).size == got.size


def test_freed_frames_are_reused_and_read_as_zero(arena: Arena) -> None:
    f = arena.alloc(8)
    for fr in f:
        arena.page(fr)[:] = 0xAB
    arena.free(f[2:6])
    g = arena.alloc(4)
    assert sorted(g.tolist()) == sorted(f[2:6].tolist())  # the freed run comes back
    assert (np.diff(g) == 1).all()  # still contiguous
    for fr in g:
        assert not arena.page(fr).any()
    for fr in (f[0], f[1], f[6], f[7]):
        assert (arena.page(fr) == 0xAB).all()


def test_alloc_grows_segments(arena: Arena) -> None:
    f = arena.alloc(150)  # > 2 segments of 64 frames
    assert arena.statistics()["segments"] == 3
    data = np.arange(150 * PAGE_SIZE, dtype=np.uint64).astype(np.uint8)
    arena.copy_in(f, 0, memoryview(data))
    out = b"".join(arena.views(f, 0, data.size))
    assert out == data.tobytes()
    # a run that crosses a segment boundary is split there
    assert len(arena.views(f, 0, data.size)) == 3


def test_double_free_and_zero_frame_free_are_refused(arena: Arena) -> None:
    f = arena.alloc(2)
    arena.free(f[:1])
    with pytest.raises(ValueError):
        arena.free(f[:1])
    with pytest.raises(ValueError):
        arena.free([0])


def test_zero_frame_is_read_only(arena: Arena) -> None:
    assert arena.view(Arena.ZERO_FRAME).readonly
    with pytest.raises(ValueError):
        arena.page(Arena.ZERO_FRAME)[0] = 1
    assert not arena.page(Arena.ZERO_FRAME).any()


def test_views_merge_runs_and_clip(arena: Arena) -> None:
    f = arena.alloc(6)
    for i, fr in enumerate(f):
        arena.page(fr)[:] = i + 1
    frames = np.array([f[0], f[1], f[2], 0, 0, f[4], f[3]], dtype=np.int64)
    vs = arena.views(frames, 0, frames.size * PAGE_SIZE)
    assert [len(v) for v in vs] == [3 * PAGE_SIZE, 2 * PAGE_SIZE, PAGE_SIZE, PAGE_SIZE]
    assert vs[1].readonly and not any(vs[1])
    vs = arena.views(frames, 100, 3 * PAGE_SIZE)
    assert sum(len(v) for v in vs) == 3 * PAGE_SIZE
    assert bytes(vs[0][:1]) == b"\x01" and len(vs) == 2
    joined = b"".join(vs)
    assert joined[: 3 * PAGE_SIZE - 100] == b"\x01" * (PAGE_SIZE - 100) + b"\x02" * PAGE_SIZE + (
        b"\x03" * PAGE_SIZE
    )
    assert joined[3 * PAGE_SIZE - 100 :] == b"\x00" * 100
    assert arena.views(frames, 5, 0) == []


def test_views_alias_the_arena_no_copy(arena: Arena) -> None:
    f = arena.alloc(2)
    vs = arena.views(f, 0, 2 * PAGE_SIZE)
    arena.page(f[1])[7] = 42
    assert vs[0][PAGE_SIZE + 7] == 42


def test_copy_in_across_fragmented_runs(arena: Arena) -> None:
    f = arena.alloc(6)
    frames = np.array([f[5], f[0], f[1], f[3]], dtype=np.int64)
    data = os.urandom(4 * PAGE_SIZE - 300)
    arena.copy_in(frames, 200, memoryview(data))
    assert b"".join(arena.views(frames, 200, len(data))) == data
    assert not arena.page(f[5])[:200].any()


def test_zero_range(arena: Arena) -> None:
    (fr,) = arena.alloc(1)
    arena.page(fr)[:] = 9
    arena.zero_range(fr, 10, 20)
    p = arena.page(fr)
    assert not p[10:20].any() and (p[:10] == 9).all() and (p[20:] == 9).all()


def _resident_blocks(a: Arena) -> int:
    """512-byte blocks of arena memory the kernel says are resident (mincore)."""
    return a.resident_bytes() // 512


def test_free_returns_memory_to_the_host() -> None:
    a = Arena(segment_bytes=1024 * PAGE_SIZE)
    try:
        base = _resident_blocks(a)
        f = a.alloc(512)
        a.copy_in(f, 0, memoryview(b"\x5a" * (512 * PAGE_SIZE)))
        full = _resident_blocks(a)
        assert full - base >= 512 * PAGE_SIZE // 512  # the data is really stored
        a.free(f[::2])  # 256 single-page runs
        half = _resident_blocks(a)
        assert half - base == pytest.approx((full - base) / 2, abs=8)
        a.free(f[1::2])
        assert _resident_blocks(a) == base
        st = a.statistics()
        assert st["frames_returned"] == 512 and st["frames_in_use"] == 0
        assert st["bytes_resident"] == base * 512
    finally:
        a.close()


def test_a_forked_child_does_not_share_or_copy_the_arena() -> None:
    """MADV_DONTFORK: a fork (a helper the daemon spawns) neither copies the data
    on write nor sees it; the parent's frames are untouched by the child."""
    a = Arena(segment_bytes=64 * PAGE_SIZE)
    try:
        f = a.alloc(1)
        a.page(int(f[0]))[:] = 7
        pid = os.fork()
        if pid == 0:  # child: the segment is not mapped here
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
            vec = (ctypes.c_ubyte * 1)()
            rc = libc.mincore(a._addrs[0], PAGE_SIZE, vec)
            os._exit(0 if rc != 0 and ctypes.get_errno() == 12 else 1)  # ENOMEM: unmapped
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert (a.page(int(f[0])) == 7).all()
    finally:
        a.close()


def test_free_batches_contiguous_runs() -> None:
    a = Arena(segment_bytes=1024 * PAGE_SIZE)
    try:
        f = a.alloc(300)
        a.free(f[::-1])  # order does not matter: one run, one punch
        assert a.statistics()["punch_calls"] == 1
    finally:
        a.close()


def test_populate_ahead_keeps_frames_zeroed_data_intact_and_memory_bounded() -> None:
    """The populate-ahead thread (docs/performance.md) may only pre-fault memory:
    every frame alloc hands out still reads as zeros, data already stored is
    never touched, at most 2 x nbytes of resident memory holds no data, and
    close() ends the thread. Nothing here depends on how far the thread got."""
    import threading

    import numpy as np

    ahead = 1 << 20
    a = Arena(segment_bytes=4 << 20)
    try:
        a.start_populate_ahead(ahead, chunk_bytes=256 << 10)
        thread = next(t for t in threading.enumerate() if t.name == "shmfs-populate")
        rng = np.random.default_rng(5)
        live: dict[int, int] = {}
        for round_ in range(40):
            k = int(rng.integers(1, 96))
            if round_ % 2:  # the single-frame path (appends) shares the bookkeeping
                frames = np.array([a.alloc1() for _ in range(k)], dtype=np.int64)
            else:
                frames = a.alloc(k)
            for f in frames.tolist():
                page = a.page(f)
                assert not page.any(), f"frame {f} not zero when handed out"
                page[:] = (f * 7 + round_) % 251 + 1
                live[f] = (f * 7 + round_) % 251 + 1
            if live and round_ % 3 == 2:  # free a random half: reused runs come back punched
                victims = [f for f in live if rng.random() < 0.5]
                a.free(np.array(victims, dtype=np.int64))
                for f in victims:
                    del live[f]
            for f, v in live.items():
                assert (a.page(f) == v).all(), f"frame {f} changed under the thread"
            st = a.statistics()
            assert st["bytes_resident"] <= (len(live) + 1) * 4096 + 2 * ahead + (256 << 10)
    finally:
        a.close()
    assert not thread.is_alive()
    # every populated free frame is counted exactly once (alloc1 uncounts the ones it takes)
    assert a._free_ready == int(np.count_nonzero(a._pop & ~a._in_use))


def test_alloc1_hands_out_zeroed_distinct_frames_reusing_freed_ones(arena: Arena) -> None:
    """alloc1 is alloc(1) as a plain int: never frame 0, zero-filled, distinct,
    freed frames first (and they read as zero), segments grow as needed."""
    seen = [arena.alloc1() for _ in range(150)]  # crosses two 64-frame segments
    assert len(set(seen)) == 150 and 0 not in seen
    assert arena.statistics()["frames_allocated"] == 150
    for f in seen:
        assert not arena.page(f).any()
        arena.page(f)[:] = 9
    victims = sorted(seen)[100:110]
    arena.free(np.array(victims, dtype=np.int64))
    again = [arena.alloc1() for _ in range(10)]
    assert sorted(again) == victims
    assert all(not arena.page(f).any() for f in again)
    arena.free(np.array(again[:1], dtype=np.int64))
    with pytest.raises(ValueError):  # alloc1 marks frames in use like alloc: no double free
        arena.free(np.array(again[:1], dtype=np.int64))


def test_scattered_free_in_one_batch_zeroes_exactly_the_freed_frames() -> None:
    """Many scattered runs go to the host in process_madvise batches (or run by run
    where the kernel lacks it): freed frames read zero, their neighbours keep data."""
    a = Arena(segment_bytes=4096 * PAGE_SIZE)
    try:
        f = a.alloc(3000)
        for fr in f.tolist():
            a.page(fr)[:] = fr % 251 + 1
        gone = f[::3]  # 1000 single-frame runs, more than one IOV_MAX batch
        a.free(gone)
        assert all(not a.page(fr).any() for fr in gone.tolist())
        kept = np.setdiff1d(f, gone)
        assert all((a.page(fr) == fr % 251 + 1).all() for fr in kept.tolist())
        assert a.statistics()["frames_in_use"] == len(kept)
    finally:
        a.close()


def _populate_step(a: Arena) -> tuple[int, int] | None:
    """One round of the populate-ahead thread's free-list work, without the thread
    or the syscall (the bookkeeping is what decides which frames get populated)."""
    with a._cond:
        r = a._next_free_range()
        if r is not None:
            s, e = r
            newly = ~a._in_use[s:e] & ~a._pop[s:e]
            a._pop[s:e] |= newly
            a._free_ready += int(np.count_nonzero(newly))
    return r


def test_populate_ahead_tops_up_the_free_list_head_in_whole_chunks() -> None:
    """docs/performance.md change 29: once alloc has used half of the populated
    head of the free list, the thread populates the next unpopulated frames of the
    ``ahead`` frames alloc takes next in chunks, not the one or two frames past a
    window that ended inside the populated head (appends into freed frames ran at
    half speed). Never more than ``ahead`` (+ one chunk) free frames populated."""
    a = Arena(segment_bytes=4 << 20)  # 1024 frames a segment
    try:
        ahead, chunk = 256, 64
        frames = a.alloc(600)
        a.free(frames)
        a._ahead, a._ahead_chunk = ahead, chunk  # start_populate_ahead minus the thread
        head = int(frames[0])  # alloc1 takes the single free run from its start
        steps = []
        while (r := _populate_step(a)) is not None:
            steps.append(r)
        assert steps == [(head + i, head + i + chunk) for i in range(0, ahead, chunk)]
        assert a._free_ready == ahead
        taken = [a.alloc1() for _ in range(ahead // 2 + 1)]
        assert taken == list(range(head, head + ahead // 2 + 1))
        assert a._free_ready == ahead // 2 - 1
        first = _populate_step(a)
        assert first == (head + ahead, head + ahead + chunk)  # a whole chunk, not 1-2 frames
        while _populate_step(a) is not None:
            pass
        nxt = head + ahead // 2 + 1  # what alloc hands out next: all of it populated
        assert a._pop[nxt : nxt + ahead].all()
        assert a._free_ready == int(np.count_nonzero(a._pop & ~a._in_use)) <= ahead + chunk
        for f in [a.alloc1() for _ in range(20)]:  # still zero-filled when handed out
            assert not a.page(f).any()
    finally:
        a._ahead = 0
        a.close()


# -- the reserve (set_reserve; docs/performance.md change 30) ----------------------------


def _partition_ok(a: Arena, live: set[int]) -> None:
    """Every frame below the bump pointer is exactly one of: the zero page, live
    (handed out), reserved, or on the free list; the counters agree."""
    free = [f for s, k in a._free_runs for f in range(s, s + k)]
    res = list(a._res)
    parts = [0, *live, *res, *free]
    assert len(parts) == len(set(parts)), "a frame is in two places at once"
    assert set(parts) == set(range(a._bump)), "a frame was lost"
    assert set(np.flatnonzero(a._in_use).tolist()) == {0, *live, *res}
    st = a.statistics()
    assert st["frames_in_use"] == len(live) and st["frames_reserved"] == len(res)
    assert st["frames_free"] == len(free) == a._nfree


def test_reserve_hands_out_batches_in_order_and_counts_only_what_it_hands_out() -> None:
    a = Arena(segment_bytes=64 * PAGE_SIZE)
    try:
        a.set_reserve(8)
        got = [a.alloc1() for _ in range(3)]
        assert got == [1, 2, 3]  # ascending: a file's pages stay one run for READs
        assert a._res == [8, 7, 6, 5, 4] and a._bump == 9  # one batch of 8 taken
        _partition_ok(a, set(got))
        assert a.statistics()["frames_allocated"] == 3
        for f in got:
            assert not a.page(f).any()
        got += [a.alloc1() for _ in range(6)]  # crosses into the second batch
        assert got == list(range(1, 10)) and len(a._res) == 7
        _partition_ok(a, set(got))
        more = a.alloc(4)  # alloc() never takes reserved frames
        assert not set(more.tolist()) & set(a._res)
        _partition_ok(a, set(got) | set(more.tolist()))
        with pytest.raises(ValueError):  # a reserved frame was never handed out
            a.free(np.array([a._res[0]], dtype=np.int64))
        _partition_ok(a, set(got) | set(more.tolist()))
    finally:
        a.close()


def test_reserve_comes_back_when_nothing_is_stored_and_when_turned_off() -> None:
    a = Arena(segment_bytes=256 * PAGE_SIZE)
    try:
        base = a.resident_bytes()
        a.set_reserve(16)
        frames = [a.alloc1() for _ in range(5)]
        for f in frames:
            a.page(f)[:] = 7
        assert a.statistics()["frames_reserved"] == 11
        a.free(np.array(frames[:4], dtype=np.int64))
        assert a.statistics()["frames_reserved"] == 11  # a frame is still stored
        a.free(np.array(frames[4:], dtype=np.int64))
        st = a.statistics()  # the last one freed: the reserve is punched and free too
        assert st["frames_reserved"] == 0 and st["frames_in_use"] == 0
        assert st["frames_free"] == 16 and a.resident_bytes() == base
        _partition_ok(a, set())
        again = [a.alloc1() for _ in range(16)]  # the same frames, zeroed
        assert sorted(again) == list(range(1, 17))
        assert all(not a.page(f).any() for f in again)
        a.set_reserve(0)
        assert a.statistics()["frames_reserved"] == 0
        _partition_ok(a, set(again))
        assert a.alloc1() == 17 and a._res == []  # off: one frame at a time
    finally:
        a.close()


def test_reserve_is_off_on_restartable_arenas() -> None:
    """The journal checks (bump, nfree) per record and a replay must hand out the
    first run's frames: a memfd arena keeps alloc1's one-frame behaviour."""
    fd = os.memfd_create("test-reserve")
    a = Arena(segment_bytes=64 * PAGE_SIZE, memfd=fd)
    try:
        a.set_reserve(8)
        assert a.alloc1() == 1 and a._res == [] and a._bump == 2
    finally:
        a.close()
        os.close(fd)


def test_reserve_never_loses_or_double_uses_a_frame_under_the_populate_thread() -> None:
    """Random alloc1 / alloc / free with the reserve and the populate-ahead thread:
    handed-out frames are distinct and zeroed, keep their bytes, and every frame
    stays in exactly one place."""
    a = Arena(segment_bytes=1024 * PAGE_SIZE)
    try:
        a.start_populate_ahead(256 << 10, chunk_bytes=64 << 10)
        a.set_reserve(24)
        rng = np.random.default_rng(11)
        live: dict[int, int] = {}
        for round_ in range(60):
            k = int(rng.integers(1, 80))
            if round_ % 3:
                new = [a.alloc1() for _ in range(k)]
            else:
                new = a.alloc(k).tolist()
            for f in new:
                assert f not in live, f"frame {f} handed out twice"
                page = a.page(f)
                assert not page.any(), f"frame {f} not zero when handed out"
                page[:] = (f + round_) % 251 + 1
                live[f] = (f + round_) % 251 + 1
            if round_ % 4 == 3:  # sometimes everything: the reserve goes back too
                victims = list(live) if round_ % 8 == 7 else [
                    f for f in live if rng.random() < 0.5]
                if victims:
                    a.free(np.array(victims, dtype=np.int64))
                for f in victims:
                    del live[f]
                if not live:
                    assert a.statistics()["frames_reserved"] == 0
            for f, v in live.items():
                assert (a.page(f) == v).all(), f"frame {f} changed while handed out"
            _partition_ok(a, set(live))
    finally:
        a.close()
    assert a._free_ready == int(np.count_nonzero(a._pop & ~a._in_use))


def test_reserve_batch_across_a_free_run_and_fresh_space_is_handed_out_ascending() -> None:
    a = Arena(segment_bytes=64 * PAGE_SIZE)
    try:
        first = a.alloc(10)  # frames 1..10
        a.free(first[2:5])  # 3, 4, 5 back on the free list
        a.set_reserve(8)
        got = [a.alloc1() for _ in range(8)]
        assert got == [3, 4, 5, 11, 12, 13, 14, 15]
        _partition_ok(a, set(first.tolist()) - {3, 4, 5} | set(got))
        with pytest.raises(ValueError):  # 16 was never taken: not in use at all
            a.free(np.array([16], dtype=np.int64))
    finally:
        a.close()
