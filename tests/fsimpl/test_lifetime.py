"""Lookup counting and eviction: an inode lives while it has a name, a kernel
reference (nlookup) or an open handle; only then do its frames go back."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from fsimpl import FsError, ShmFs

from .conftest import ROOT

P = 4096


def test_every_entry_reply_bumps_nlookup(fs: ShmFs) -> None:
    f = fs.mknod(1, b"f", stat.S_IFREG | 0o644, 0, ROOT).ino  # 1
    fs.lookup(1, b"f")  # 2
    fs.link(f, 1, b"g")  # 3
    fs.remember(f)  # 4 (READDIRPLUS)
    fs.unlink(1, b"f")
    fs.unlink(1, b"g")
    fs.forget(f, 3)
    assert fs.getattr(f).nlink == 0  # one reference left: still there
    fs.forget(f, 1)
    with pytest.raises(FsError) as e:
        fs.getattr(f)
    assert e.value.errno == errno.ENOENT


def test_each_creator_counts(fs: ShmFs) -> None:
    made = [
        fs.mkdir(1, b"d", 0o755, ROOT).ino,
        fs.symlink(1, b"l", b"t", ROOT).ino,
        fs.mknod(1, b"p", stat.S_IFIFO | 0o644, 0, ROOT).ino,
    ]
    a, fh = fs.create(1, b"c", 0o644, os.O_RDWR, ROOT)
    fs.release(a.ino, fh)
    made.append(a.ino)
    fs.rmdir(1, b"d")
    for n in (b"l", b"p", b"c"):
        fs.unlink(1, n)
    for ino in made:
        fs.getattr(ino)  # alive: the kernel still holds one reference each
        fs.forget(ino, 1)
        with pytest.raises(FsError):
            fs.getattr(ino)
    assert fs.statistics()["inodes"] == 1


def test_unlinked_open_file_lives_until_release(fs: ShmFs, arena) -> None:
    used0 = arena.statistics()["frames_in_use"]
    a, fh = fs.create(1, b"f", 0o644, os.O_RDWR, ROOT)
    fs.write(a.ino, fh, 0, memoryview(b"q" * (5 * P)))
    assert arena.statistics()["frames_in_use"] == used0 + 5
    fs.unlink(1, b"f")
    fs.forget(a.ino, 1)  # the kernel may forget the name; the open file holds on
    # still readable and writable through the handle
    fs.write(a.ino, fh, 5 * P, memoryview(b"r"))
    assert b"".join(bytes(v) for v in fs.read(a.ino, fh, 5 * P - 1, 2)) == b"qr"
    assert fs.getattr(a.ino).nlink == 0
    assert fs.statistics()["inodes_unlinked_alive"] == 1
    assert fs.statistics()["used_pages"] == 6
    fs.release(a.ino, fh)
    assert fs.statistics()["used_pages"] == 0
    assert arena.statistics()["frames_in_use"] == used0
    assert arena.statistics()["frames_returned"] >= 6  # discarded: memory back to the host
    with pytest.raises(FsError):
        fs.getattr(a.ino)


def test_last_close_frees_space_before_forget(make_fs) -> None:
    """The kernel sends FORGET only after the asynchronous RELEASE was answered,
    while tmpfs frees an unlinked file at its last close: space and the inode
    slot come back at release; the inode and its pages stay until FORGET."""
    fs = make_fs(nr_inodes=4)
    a, fh = fs.create(1, b"f", 0o644, os.O_RDWR, ROOT)
    fs.write(a.ino, fh, 0, memoryview(b"x" * (3 * P)))
    fs.setxattr(a.ino, b"user.k", b"v" * 100, 0)
    fs.unlink(1, b"f")
    # ispace: 4096 - root 1024 - file 1024 - xattr (40 + 6 + 100) -> 1902 -> ffree 1
    assert fs.statistics()["used_pages"] == 3 and fs.statfs().ffree == 1
    fs.release(a.ino, fh)
    assert fs.statistics()["used_pages"] == 0 and fs.statfs().ffree == 3
    st = fs.getattr(a.ino)  # a GETATTR through a still-cached dentry
    assert (st.nlink, st.size, st.blocks) == (0, 3 * P, 3 * P // 512)
    assert fs.statistics()["inodes_awaiting_forget"] == 1
    fs.forget(a.ino, 1)
    assert fs.statfs().ffree == 3 and fs.statistics()["inodes"] == 1
    with pytest.raises(FsError):
        fs.getattr(a.ino)


def test_reopen_of_a_reclaimed_inode_reads_its_data_and_charges_again(make_fs) -> None:
    """An O_PATH descriptor (or an open racing an unlink) lets the kernel OPEN
    an inode after its last name and handle are gone; tmpfs still has the data
    (found by scripts/stress.py)."""
    fs = make_fs(size_bytes=16 * P)
    a, fh = fs.create(1, b"f", 0o644, os.O_RDWR, ROOT)
    fs.write(a.ino, fh, 0, memoryview(b"y" * (3 * P)))
    fs.unlink(1, b"f")
    fs.release(a.ino, fh)
    assert fs.statistics()["used_pages"] == 0
    fh2 = fs.open(a.ino, os.O_RDONLY)
    assert fs.statistics()["used_pages"] == 3
    assert b"".join(bytes(v) for v in fs.read(a.ino, fh2, 0, 3 * P)) == b"y" * (3 * P)
    fs.release(a.ino, fh2)
    fs.forget(a.ino, 1)
    assert fs.statistics()["used_pages"] == 0 and fs.statfs().bfree == 16


def test_unlink_of_closed_file_frees_at_once(fs: ShmFs) -> None:
    a, fh = fs.create(1, b"f", 0o644, os.O_RDWR, ROOT)
    fs.write(a.ino, fh, 0, memoryview(b"x"))
    fs.release(a.ino, fh)
    assert fs.statistics()["used_pages"] == 1
    fs.unlink(1, b"f")
    assert fs.statistics()["used_pages"] == 0  # as tmpfs: no name, no open file
    assert fs.getattr(a.ino).nlink == 0
    fs.forget(a.ino, 1)
    with pytest.raises(FsError):
        fs.getattr(a.ino)


def test_forget_of_linked_inode_keeps_it(fs: ShmFs) -> None:
    f = fs.mknod(1, b"f", stat.S_IFREG | 0o644, 0, ROOT).ino
    fs.forget(f, 1)
    assert fs.lookup(1, b"f").ino == f  # a name keeps it; same number again
    fs.forget(12345, 1)  # unknown: ignored
    fs.forget(1, 100)  # the root is never evicted
    assert fs.getattr(1).ino == 1


def test_rename_over_open_file(fs: ShmFs) -> None:
    a, fh = fs.create(1, b"a", 0o644, os.O_RDWR, ROOT)
    fs.write(a.ino, fh, 0, memoryview(b"old"))
    fs.mknod(1, b"b", stat.S_IFREG | 0o644, 0, ROOT)
    fs.rename(1, b"b", 1, b"a")
    fs.forget(a.ino, 1)
    assert b"".join(bytes(v) for v in fs.read(a.ino, fh, 0, 3)) == b"old"
    fs.release(a.ino, fh)
    with pytest.raises(FsError):
        fs.getattr(a.ino)


def test_open_dir_handle_pins_removed_dir(fs: ShmFs) -> None:
    d = fs.mkdir(1, b"d", 0o755, ROOT).ino
    fh = fs.opendir(d, 0)
    fs.rmdir(1, b"d")
    fs.forget(d, 1)
    assert [n for n, *_ in fs.readdir(d, fh, 0)] == [b".", b".."]
    fs.releasedir(d, fh)
    with pytest.raises(FsError):
        fs.getattr(d)


def test_events_hook_and_drain(fs: ShmFs) -> None:
    f = fs.mknod(1, b"f", stat.S_IFREG | 0o644, 0, ROOT).ino
    assert fs.drain_events() == []  # kernel-requested changes queue nothing
    fs.notify_data_changed(f, 4096, 8192)
    fs.notify_data_changed(999)  # unknown inode: nothing to invalidate
    fs.notify_entry_changed(1, b"f")
    from fsimpl import InvalEntry, InvalInode

    assert fs.drain_events() == [InvalInode(f, 4096, 8192), InvalEntry(1, b"f")]
    assert fs.drain_events() == []


# -- evictions a FORGET leaves for later (the session's defer_evictions) ----------------

def _dead_file(fs: ShmFs, name: bytes) -> int:
    """A written, closed, unlinked file the kernel still holds one lookup of."""
    a, fh = fs.create(1, name, 0o644, os.O_RDWR, ROOT)
    fs.write(a.ino, fh, 0, memoryview(b"x" * 3 * P))
    fs.release(a.ino, fh)
    fs.unlink(1, name)
    return a.ino


def test_deferred_eviction_frees_at_reap_and_never_before(fs: ShmFs) -> None:
    fs.defer_evictions = True
    arena = fs._backing.arena
    inos = [_dead_file(fs, b"f%d" % i) for i in range(3)]
    freed0 = arena.statistics()["frames_freed"]
    for ino in inos:
        fs.forget(ino, 1)
    assert len(fs.evict_later) == 3
    assert arena.statistics()["frames_freed"] == freed0  # the pages are still there
    assert fs.reap(2) == 2 and len(fs.evict_later) == 1
    assert arena.statistics()["frames_freed"] == freed0 + 6
    fs.forget(inos[2], 1)  # a duplicate FORGET queues it twice: evicted once
    assert fs.reap() == 1 and not fs.evict_later
    assert arena.statistics()["frames_freed"] == freed0 + 9
    for ino in inos:
        with pytest.raises(FsError):
            fs.getattr(ino)


def test_statistics_reap_first_and_the_queue_is_bounded(fs: ShmFs) -> None:
    from fsimpl.state import EVICT_LATER_MAX

    fs.defer_evictions = True
    inos = [fs.mknod(1, b"n%d" % i, stat.S_IFREG | 0o644, 0, ROOT).ino
            for i in range(EVICT_LATER_MAX + 10)]
    for i, ino in enumerate(inos):
        fs.unlink(1, b"n%d" % i)
        fs.forget(ino, 1)
    assert len(fs.evict_later) == EVICT_LATER_MAX  # the oldest were evicted inline
    st = fs.statistics()
    assert not fs.evict_later and st["inodes"] == 1  # only the root is left


def test_an_inode_that_still_has_a_reference_is_not_reaped(fs: ShmFs) -> None:
    fs.defer_evictions = True
    ino = _dead_file(fs, b"kept")
    fs.lookup(1, b"..")  # unrelated traffic
    fs.forget(ino, 1)
    fs._inodes[ino].nopen = 1  # reopened through /proc/self/fd before the reap
    assert fs.reap() == 0 and fs.getattr(ino).nlink == 0
