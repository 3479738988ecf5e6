"""readdir cookies: '.' and '..' first, stable offsets across create/unlink."""

from __future__ import annotations

import stat

from hypothesis import given, settings
from hypothesis import strategies as st

from fsimpl import FsOptions, ShmFs
from fsimpl.backing import Backing

from .conftest import ROOT


def mk(fs: ShmFs, name: bytes) -> int:
    return fs.mknod(1, name, stat.S_IFREG | 0o644, 0, ROOT).ino


def test_dots_and_order(fs: ShmFs) -> None:
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    for n in (b"c", b"a", b"b"):
        fs.mknod(d, n, stat.S_IFREG | 0o644, 0, ROOT)
    fh = fs.opendir(d, 0)
    out = list(fs.readdir(d, fh, 0))
    assert [(n, i) for n, i, _t, _o in out[:2]] == [(b".", d), (b"..", 1)]
    assert [n for n, *_ in out[2:]] == [b"c", b"a", b"b"]  # insertion order
    offs = [o for *_x, o in out]
    assert offs == sorted(offs) and len(set(offs)) == len(offs)
    # resuming at each offset gives exactly the rest
    for k, (*_x, off) in enumerate(out):
        assert list(fs.readdir(d, fh, off)) == out[k + 1 :]


def test_resume_survives_unlink_and_create(fs: ShmFs) -> None:
    for i in range(10):
        mk(fs, b"f%d" % i)
    fh = fs.opendir(1, 0)
    it = fs.readdir(1, fh, 0)
    first = [next(it) for _ in range(6)]  # '.', '..', f0..f3
    resume = first[-1][3]
    fs.unlink(1, b"f2")  # already seen
    fs.unlink(1, b"f5")  # not yet seen: must not appear
    mk(fs, b"new")  # after the listing began: past its end (libfs offset dirs)
    rest = [n for n, *_ in fs.readdir(1, fh, resume)]
    assert rest == [b"f4", b"f6", b"f7", b"f8", b"f9"]
    # a live generator sees the same changes
    assert [n for n, *_ in it] == rest


def test_exchange_keeps_cookies(fs: ShmFs) -> None:
    a, b = mk(fs, b"a"), mk(fs, b"b")
    fh = fs.opendir(1, 0)
    before = {n: o for n, _i, _t, o in fs.readdir(1, fh, 0)}
    fs.rename(1, b"a", 1, b"b", 2)
    after = {n: (i, o) for n, i, _t, o in fs.readdir(1, fh, 0)}
    assert after[b"a"] == (b, before[b"a"]) and after[b"b"] == (a, before[b"b"])


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=120),
    cut=st.integers(0, 60),
)
def test_no_repeat_no_skip(ops: list[tuple[bool, int]], cut: int) -> None:
    """Read part of the directory, mutate it, resume: entries that existed
    throughout appear exactly once, removed ones never after removal."""
    fs = ShmFs(FsOptions(), backing=_BACKING)
    live: set[bytes] = set()
    for i in range(30):
        mk(fs, b"e%d" % i)
        live.add(b"e%d" % i)
    fh = fs.opendir(1, 0)
    seen: list[bytes] = []
    off = 0
    for name, _i, _t, nxt in fs.readdir(1, fh, 0):
        if len(seen) >= cut:
            break
        seen.append(name)
        off = nxt
    stable = set(live)
    removed_after: set[bytes] = set()
    for create, k in ops:
        name = b"e%d" % k
        if create and name not in live:
            mk(fs, name)
            live.add(name)
            stable.discard(name)
        elif not create and name in live:
            fs.unlink(1, name)
            live.discard(name)
            stable.discard(name)
            removed_after.add(name)
    rest = [n for n, *_ in fs.readdir(1, fh, off) if n not in (b".", b"..")]
    seen = [n for n in seen if n not in (b".", b"..")]
    everything = seen + rest
    for name in stable:
        assert everything.count(name) == 1, name
    assert len(rest) == len(set(rest))
    assert not set(rest) & (removed_after - live)
    assert set(rest) <= live


_BACKING: Backing | None = None


def setup_module() -> None:
    global _BACKING
    _BACKING = Backing(0)


def teardown_module() -> None:
    if _BACKING is not None:
        _BACKING.arena.close()


def test_listing_ends_where_the_directory_was(fs: ShmFs) -> None:
    """Issue 13 item 3: a name renamed away and back while listed gets a new
    cookie past the listing's end, so the listing neither repeats it nor runs
    on; READDIR at offset 0 (rewinddir) moves the end to the present."""
    for i in range(50):
        mk(fs, b"f%d" % i)
    other = fs.mkdir(1, b"other", 0o755, ROOT).ino
    fh = fs.opendir(1, 0)
    seen: list[bytes] = []
    off = 0
    while True:
        batch = list(fs.readdir(1, fh, off))[:3]  # a small reply buffer
        if not batch:
            break
        for name, _ino, _t, nxt in batch:
            seen.append(name)
            off = nxt
            if name.startswith(b"f"):
                fs.rename(1, name, other, name, 0)
                fs.rename(other, name, 1, name, 0)
    assert len(seen) == len(set(seen)) == 53  # '.', '..', 'other', f0..f49
    mk(fs, b"late")
    assert b"late" not in [n for n, *_ in fs.readdir(1, fh, off)]
    assert b"late" in [n for n, *_ in fs.readdir(1, fh, 0)]
