"""A kill of the serving child inside each kind of state-changing request (issue 17 b).

The first serving child of a ``-o restartable`` mount SIGKILLs itself at one
request (``SHMFS_TEST_KILL``, mount/server/restart.py), at one of three points:

* ``before_record``: read from /dev/fuse, nothing journalled, nothing applied;
* ``after_record``: ``persist.begin`` done, the handler not run (for requests
  with a reply the durable record is the commit, so this too is "nothing");
* ``after_commit``: applied and committed (the journal holds the reply), the
  reply not written -- the worst moment: the effect exists, the caller has
  not been told.

The kernel keeps the caller blocked; the supervisor starts a new child, which
recovers, sends FUSE_NOTIFY_RESEND, and gets the request again with bit 63 of
``unique`` set. Expected outcome, the same for every point: **done exactly
once**. The caller's syscall succeeds, and the operations chosen would fail
if they ran twice (O_EXCL create -> EEXIST, rename -> ENOENT, XATTR_CREATE ->
EEXIST) or would leave a trace if they ran half (the data of a write, a punch,
a remap are checked byte for byte). The before/after_record kills must be
re-executed (the session counts ``resent_handled``), the after_commit ones
answered from the journal without running again (``resent_replayed``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mount.winapi import abi
from mount.winapi.client import Window, mount_stats
from tests.restart.restartable import RestartableMount, restartable_mount
from tests.support.procs import exited

P = 4096
POINTS = ("before_record", "after_record", "after_commit")
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2


def pattern(tag: int, n: int) -> bytes:
    return bytes((tag * 31 + i * 7) & 0xFF for i in range(n))


def punch(fd: int, off: int, length: int) -> None:
    if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# Each case: (kill spec prefix, nth, setup(mnt) -> state, act(mnt, state), check(mnt, state)).
# The setup sends exactly nth-1 requests of the kind the hook counts.

def _write_setup(m: Path) -> dict:
    (m / "bystander").write_bytes(pattern(9, 3 * P))  # WRITE #1
    fd = os.open(m / "f", os.O_RDWR | os.O_CREAT, 0o644)
    return {"fd": fd}


def _write_act(m: Path, st: dict) -> None:
    assert os.pwrite(st["fd"], pattern(1, 2 * P + 100), P - 50) == 2 * P + 100  # WRITE #2


def _write_check(m: Path, st: dict) -> None:
    os.close(st["fd"])
    data = (m / "f").read_bytes()
    assert data == bytes(P - 50) + pattern(1, 2 * P + 100)
    assert (m / "bystander").read_bytes() == pattern(9, 3 * P)


def _create_setup(m: Path) -> dict:
    return {}


def _create_act(m: Path, st: dict) -> None:
    # O_EXCL: run twice it would fail with EEXIST
    st["fd"] = os.open(m / "new", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)


def _create_check(m: Path, st: dict) -> None:
    fd = st["fd"]
    assert os.write(fd, b"through the recorded handle") == 27  # the fh of the reply is valid
    os.close(fd)
    assert (m / "new").read_bytes() == b"through the recorded handle"
    assert os.stat(m / "new").st_mode & 0o7777 == 0o640
    assert sorted(os.listdir(m)) == ["new"]


def _rename_setup(m: Path) -> dict:
    (m / "a").write_bytes(b"A" * 5000)
    (m / "b").write_bytes(b"B" * 10)
    return {"ino": os.stat(m / "a").st_ino}


def _rename_act(m: Path, st: dict) -> None:
    os.rename(m / "a", m / "b")  # run twice: ENOENT


def _rename_check(m: Path, st: dict) -> None:
    assert sorted(os.listdir(m)) == ["b"]
    assert os.stat(m / "b").st_ino == st["ino"]
    assert (m / "b").read_bytes() == b"A" * 5000


def _setxattr_setup(m: Path) -> dict:
    (m / "x").write_bytes(b"x")
    return {}


def _setxattr_act(m: Path, st: dict) -> None:
    os.setxattr(m / "x", "user.once", b"v" * 300, os.XATTR_CREATE)  # run twice: EEXIST


def _setxattr_check(m: Path, st: dict) -> None:
    assert os.getxattr(m / "x", "user.once") == b"v" * 300
    assert os.listxattr(m / "x") == ["user.once"]
    with pytest.raises(OSError) as e:
        os.setxattr(m / "x", "user.once", b"w", os.XATTR_CREATE)
    assert e.value.errno == errno.EEXIST


def _punch_setup(m: Path) -> dict:
    fd = os.open(m / "p", os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, pattern(3, 8 * P), 0)
    return {"fd": fd, "blocks": os.fstat(fd).st_blocks}


def _punch_act(m: Path, st: dict) -> None:
    punch(st["fd"], 2 * P, 3 * P)


def _punch_check(m: Path, st: dict) -> None:
    fd = st["fd"]
    os.close(fd)
    want = bytearray(pattern(3, 8 * P))
    want[2 * P:5 * P] = bytes(3 * P)
    assert (m / "p").read_bytes() == want
    st_ = os.stat(m / "p")
    assert st_.st_size == 8 * P
    assert st_.st_blocks == st["blocks"] - 3 * P // 512


def _remap_setup(m: Path) -> dict:
    obj = m / "obj"
    obj.write_bytes(b"".join(pattern(10 + i, P) for i in range(8)))
    w = Window.create(m / "win", obj, 4)  # GRANT and ATTACH are other ioctls
    assert w.pread(0, P) == pattern(10, P)
    return {"w": w}


def _remap_act(m: Path, st: dict) -> None:
    st["w"].remap(1, 2, 5)  # window pages 1, 2 show object pages 5, 6


def _remap_check(m: Path, st: dict) -> None:
    w = st["w"]
    assert [w.pread(i * P, P) for i in range(4)] == [
        pattern(10, P), pattern(15, P), pattern(16, P), pattern(13, P)]
    pages = w.query(0, 4)
    assert [p.pgoff for p in pages] == [0, 5, 6, 3]
    # stores through the window reach the object pages it now shows
    w.pwrite(P, b"Z" * 16)
    assert (m / "obj").read_bytes()[5 * P:5 * P + 16] == b"Z" * 16
    w.close()


def _remap_mmap_setup(m: Path) -> dict:
    """The worst moment for a REMAP: the pages it moves are cached by the kernel, one
    of them dirty in a MAP_SHARED mapping of the window (its write-back must land in
    the object page the store was made to, not the one the window shows after), and
    the remap populates (its NOTIFY_STOREs are queued when the kill comes)."""
    st = _remap_setup(m)
    w = st["w"]
    st["map"] = mm = mmap.mmap(w.fd, 4 * P, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    assert mm[2 * P:3 * P] == pattern(12, P)  # cached, clean
    mm[P:P + 16] = b"M" * 16  # cached, dirty: a store to object page 1
    return st


def _remap_mmap_act(m: Path, st: dict) -> None:
    st["w"].remap(1, 2, 5, populate=True)


def _remap_mmap_check(m: Path, st: dict) -> None:
    mm, w = st["map"], st["w"]
    # done once: the mapping shows what the remap says, page by page
    assert [mm[i * P:(i + 1) * P] for i in range(4)] == [
        pattern(10, P), pattern(15, P), pattern(16, P), pattern(13, P)]
    assert [p.pgoff for p in w.query(0, 4)] == [0, 5, 6, 3]
    # the store made before the remap is in object page 1, nowhere else
    mm.close()
    obj = (m / "obj").read_bytes()
    assert obj[P:2 * P] == b"M" * 16 + pattern(11, P)[16:]
    assert obj[5 * P:7 * P] == pattern(15, P) + pattern(16, P)
    w.close()


def _attach_setup(m: Path) -> dict:
    obj = m / "obj"
    obj.write_bytes(b"".join(pattern(20 + i, P) for i in range(6)))
    return {}


def _attach_act(m: Path, st: dict) -> None:
    st["w"] = Window.create(m / "win", m / "obj", 4, pgoff=2)


def _attach_check(m: Path, st: dict) -> None:
    w = st["w"]
    assert os.fstat(w.fd).st_size == 4 * P
    assert [w.pread(i * P, P) for i in range(4)] == [pattern(22 + i, P) for i in range(4)]
    w.close()


CASES: dict[str, tuple[str, int, Callable, Callable, Callable]] = {
    "attach": (f"IOCTL:{abi.SHMFS_IOC_WIN_ATTACH:#x}", 1, _attach_setup, _attach_act,
               _attach_check),
    "write": ("WRITE", 2, _write_setup, _write_act, _write_check),
    "create": ("CREATE", 1, _create_setup, _create_act, _create_check),
    "rename": ("RENAME", 1, _rename_setup, _rename_act, _rename_check),
    "setxattr": ("SETXATTR", 1, _setxattr_setup, _setxattr_act, _setxattr_check),
    "punch": ("FALLOCATE", 1, _punch_setup, _punch_act, _punch_check),
    "remap": (f"IOCTL:{abi.SHMFS_IOC_WIN_REMAP:#x}", 1, _remap_setup, _remap_act, _remap_check),
    "remap_mmap": (f"IOCTL:{abi.SHMFS_IOC_WIN_REMAP:#x}", 1, _remap_mmap_setup, _remap_mmap_act,
                   _remap_mmap_check),
}


def _restart_counters(m: RestartableMount) -> dict:
    return mount_stats(m.path)["session"]["restart"]


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("kind", sorted(CASES))
def test_kill_inside_a_request_is_done_exactly_once(kind: str, point: str) -> None:
    op, nth, setup, act, check = CASES[kind]
    with restartable_mount("size=64m", kill=f"{op}:{point}:{nth}") as m:
        first, gen = m.serving()
        assert gen == 0
        st = setup(m.path)
        assert m.serving() == (first, 0), "the hook fired during the setup"
        act(m.path, st)  # blocks across the kill and the restart, then succeeds
        assert exited(first, 30), "the first child should have killed itself"
        pid, gen = m.serving()
        assert gen == 1 and pid != first
        check(m.path, st)
        counters = _restart_counters(m)
        if point == "after_commit":
            assert counters["resent_replayed"] >= 1, (counters, m.managed.read_log())
        else:
            assert counters["resent_handled"] >= 1, (counters, m.managed.read_log())
