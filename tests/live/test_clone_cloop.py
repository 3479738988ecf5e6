"""Clone readers' small requests served in C (native/hotclone.c; docs/decisions.md,
"Clone readers' small requests in C") on a real mount, while two 1 MiB writers stream
(mixed traffic always: ``SHMFS_CHUNK_WINDOW_MS=-1``, so the clone readers are up):

- creates, stats, reads, renames, unlinks, O_TRUNC opens, mkdir/rmdir and their errors
  give exactly what the kernel tmpfs gives (the oracle), and the clone loop in C
  really answered some of them;
- small files written while the streams fill the fs: ENOSPC is reported, and every
  byte a write(2) reported written is there;
- an unprivileged user's requests get exactly what open(2) grants on tmpfs, repeated
  while clones read some of them;
- no deadlock (fs lock against GIL): three readers, streams, small requests from
  several threads and window IOCTLs, for rounds, each with a bounded wait.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mount.winapi.client import Window, mount_stats
from tests.live.helpers import as_user
from tests.support.mounts import shmfs_mount, tmpfs_mount
from tests.windows.helpers import P, make_object, page_of

pytestmark = pytest.mark.mount

NOBODY = 65534
JOIN_S = 300.0  # the bounded wait of every worker: only a hang gets near it

_STREAM = r"""
import os, sys
path, tag = sys.argv[1], int(sys.argv[2])
stop = path + ".stop"
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
r = 0
while not os.path.exists(stop):
    rec = bytes([tag * 16 + r % 16]) * (1 << 20)
    assert os.pwrite(fd, rec, (r % 8) << 20) == 1 << 20
    r += 1
os.close(fd)
print(r)
"""


@pytest.fixture(autouse=True)
def _always_mixed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemons started here count all traffic as mixed: the clone readers stay up
    from the first large WRITE on, whatever the timing."""
    monkeypatch.setenv("SHMFS_CHUNK_WINDOW_MS", "-1")


@contextmanager
def streams(d: Path) -> Iterator[None]:
    """Two processes writing 1 MiB records into d/s1, d/s2 until the block ends."""
    ps = [subprocess.Popen([sys.executable, "-c", _STREAM, str(d / f"s{t}"), str(t)],
                           stdout=subprocess.PIPE, text=True) for t in (1, 2)]
    try:
        yield
    finally:
        for t in (1, 2):
            (d / f"s{t}.stop").write_bytes(b"")
        for p in ps:
            p.communicate(timeout=JOIN_S)
        for t in (1, 2):
            (d / f"s{t}.stop").unlink()
    for p in ps:
        assert p.returncode == 0


def _errno(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except OSError as e:
        return errno.errorcode[e.errno]


def _namespace_work(d: Path, rounds: int) -> list[object]:
    """Small requests of every kind the clone loop takes, and their errors: a
    transcript that holds no inode numbers or times."""
    out: list[object] = []
    w = d / "w"
    w.mkdir()
    for i in range(rounds):
        p = w / f"n{i}"
        data = bytes([i & 0xFF]) * (100 + i * 37 % 5000)
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o640)
        os.write(fd, data)
        os.close(fd)
        st = os.stat(p)
        out.append((i, st.st_size, oct(st.st_mode), st.st_nlink))
        out.append(_errno(lambda p=p: os.open(p, os.O_CREAT | os.O_EXCL | os.O_RDWR)))
        out.append(p.read_bytes() == data)
        os.rename(p, w / f"m{i}")
        out.append((p.exists(), (w / f"m{i}").exists()))
        if i % 3 == 0:
            os.unlink(w / f"m{i}")
            out.append(_errno(lambda i=i: os.stat(w / f"m{i}")))
            out.append(_errno(lambda i=i: os.unlink(w / f"m{i}")))
        elif i % 3 == 1:
            fd = os.open(w / f"m{i}", os.O_RDWR | os.O_TRUNC)
            os.close(fd)
            out.append(os.stat(w / f"m{i}").st_size)
        if i % 5 == 0:
            os.mkdir(w / f"d{i}")
            out.append(_errno(lambda i=i: os.rename(w / f"m{i - 1}", w / f"d{i}")
                              if i else None))
            out.append(_errno(lambda i=i: os.rmdir(w / f"d{i}")))
            out.append(_errno(lambda i=i: os.rmdir(w / f"d{i}")))
    out.append(sorted(os.listdir(w)))
    return out


@pytest.mark.parametrize("spin_us", ["", "50"])
def test_namespace_work_beside_streams_is_tmpfs(tmp_path: Path, spin_us: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """... also with the clone spin (SHMFS_CLONE_SPIN_US), which the clone loop runs
    itself (hotclone.c CC_CSPIN) between the requests it answers."""
    monkeypatch.setenv("SHMFS_CLONE_SPIN_US", spin_us or "0")
    with tmpfs_mount("size=256m") as t, streams(t):
        want = _namespace_work(t, 400)
    with shmfs_mount("size=256m") as mnt:
        with streams(mnt):
            before = mount_stats(mnt)["session"]["hotpath"]["clone_loop_served"]
            got = _namespace_work(mnt, 400)
            s = mount_stats(mnt)["session"]
    assert got == want
    assert s["readers"] == 3 and s["write_chunks"] > 0, s
    assert s["hotpath"]["clone_loop_served"] > before, s["hotpath"]
    assert s["hotpath"]["errors"] == 0 and s["write_errors"] == 0, s
    spins = s["hotpath"]["clone_loop_spins"]
    assert (spins > 0 and s["clone_spins"] >= spins) if spin_us else spins == 0, s


_FILL = r"""
import os, sys
path = sys.argv[1]
pat = bytes(range(1, 256)) * 4200
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
done, err = 0, 0
while True:
    try:
        n = os.write(fd, pat[done % 255:done % 255 + (1 << 20)])
    except OSError as e:
        err = e.errno
        break
    done += n
os.close(fd)
print(done, err)
"""


def _small_files_until_enospc(d: Path) -> tuple[list[tuple[int, int]], int]:
    """Two fillers stream 1 MiB writes into the fs while this process writes 8 KiB
    files until a create or write fails: what each file got, and that errno. Every
    byte a write reported written must be in its file; the fillers' too."""
    ws = [subprocess.Popen([sys.executable, "-c", _FILL, str(d / f"f{t}")],
                           stdout=subprocess.PIPE, text=True) for t in (1, 2)]
    files: list[tuple[int, int]] = []
    err = 0
    try:
        for i in range(100_000):
            try:
                fd = os.open(d / f"c{i}", os.O_CREAT | os.O_WRONLY, 0o644)
            except OSError as e:
                err = e.errno
                break
            try:
                n = os.write(fd, bytes([i % 251 + 1]) * 8192)
            except OSError as e:
                err, n = e.errno, 0
            finally:
                os.close(fd)
            files.append((i, n))
            if err:
                break
    finally:
        res = [w.communicate(timeout=JOIN_S)[0] for w in ws]
    for t, o in zip((1, 2), res, strict=True):
        done, ferr = map(int, o.split())
        assert ferr == errno.ENOSPC
        data = (d / f"f{t}").read_bytes()
        pat = bytes(range(1, 256)) * 4200
        assert len(data) == done and data == (pat * (done // len(pat) + 2))[:done]
    for i, n in files:
        assert (d / f"c{i}").read_bytes() == bytes([i % 251 + 1]) * n, i
    return files, err


def test_enospc_for_small_files_beside_streams() -> None:
    with shmfs_mount("size=48m") as mnt:
        files, err = _small_files_until_enospc(mnt)
        s = mount_stats(mnt)["session"]
    assert err == errno.ENOSPC, (err, len(files))
    assert len(files) > 0
    assert s["hotpath"]["clone_loop_served"] > 0, s["hotpath"]


def test_enospc_for_small_files_beside_streams_on_tmpfs() -> None:
    with tmpfs_mount("size=48m") as t:
        files, err = _small_files_until_enospc(t)
    assert err == errno.ENOSPC and len(files) > 0


def _setup_perms(d: Path) -> None:
    (d / "priv").mkdir(mode=0o700)
    (d / "priv" / "x").write_bytes(b"private")
    (d / "pub").mkdir(mode=0o755)
    (d / "pub" / "ro").write_bytes(b"readable")
    (d / "pub" / "ro").chmod(0o644)
    (d / "pub" / "secret").write_bytes(b"secret")
    (d / "pub" / "secret").chmod(0o600)
    (d / "sticky").mkdir()
    (d / "sticky").chmod(0o1777)
    (d / "sticky" / "roots").write_bytes(b"root's")


def _attacks(d: Path, times: int) -> list[object]:
    """What an unprivileged user gets, each attack repeated; the distinct outcomes."""
    def once() -> tuple:
        def rd(p: Path, flags: int = os.O_RDONLY) -> object:
            fd = os.open(p, flags)
            try:
                return os.read(fd, 64)
            finally:
                os.close(fd)

        def mine() -> object:
            p = d / "sticky" / f"mine{os.getpid()}"
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.write(fd, b"m")
            os.close(fd)
            os.unlink(p)
            return "ok"
        return (
            _errno(lambda: os.stat(d / "priv" / "x").st_size),
            _errno(lambda: rd(d / "priv" / "x")),
            _errno(lambda: rd(d / "pub" / "secret")),
            _errno(lambda: rd(d / "pub" / "ro")),
            _errno(lambda: rd(d / "pub" / "ro", os.O_WRONLY)),
            _errno(lambda: rd(d / "pub" / "ro", os.O_RDWR | os.O_TRUNC)),
            _errno(lambda: os.open(d / "pub" / "new", os.O_CREAT | os.O_WRONLY, 0o644)),
            _errno(lambda: os.unlink(d / "pub" / "ro")),
            _errno(lambda: os.unlink(d / "sticky" / "roots")),
            _errno(lambda: os.rename(d / "pub" / "ro", d / "sticky" / "r")),
            _errno(lambda: os.mkdir(d / "pub" / "dd")),
            _errno(lambda: os.rmdir(d / "priv")),
            _errno(mine),
        )
    seen: list[object] = []
    for _ in range(times):
        o = once()
        if o not in seen:
            seen.append(o)
    return seen


def test_an_unprivileged_user_through_clones_gets_what_open_grants() -> None:
    with tmpfs_mount() as t:
        _setup_perms(t)
        want = as_user(NOBODY, NOBODY, lambda: _attacks(t, 3))
    assert want[0] == "ok" and len(want[1]) == 1, want  # type: ignore[index]
    with shmfs_mount("allow_other,size=256m") as mnt:
        _setup_perms(mnt)
        with streams(mnt):
            before = mount_stats(mnt)["session"]["hotpath"]["clone_loop_served"]
            got = as_user(NOBODY, NOBODY, lambda: _attacks(mnt, 150))
            s = mount_stats(mnt)["session"]
    assert got == want
    assert s["hotpath"]["clone_loop_served"] > before, s["hotpath"]


def test_no_deadlock_with_readers_streams_small_requests_and_windows() -> None:
    """Three readers; two streams; three threads of small requests (each its own
    files); a thread remapping window pages and checking them through a mapping. Each
    round of every worker must end within JOIN_S."""
    rounds = 6
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # reported by the test below
                errors.append(e)
        return run

    with shmfs_mount("size=256m") as mnt:
        obj = mnt / "obj"
        make_object(obj, 64)
        with Window.create(mnt / "win", obj, 8) as w, streams(mnt):
            import mmap

            def windows() -> None:
                with open(mnt / "win", "r+b") as f:
                    m = mmap.mmap(f.fileno(), 8 * P, mmap.MAP_SHARED)
                    try:
                        for k in range(150):
                            pg = 2 + k % 62
                            w.remap(k % 8, 1, pg, populate=True)
                            assert m[(k % 8) * P:(k % 8) * P + 16] == page_of(pg)[:16]
                    finally:
                        m.close()

            def small(tag: int) -> Callable[[], None]:
                def run() -> None:
                    d = mnt / f"t{tag}"
                    d.mkdir(exist_ok=True)
                    for k in range(150):
                        p = d / f"f{k}"
                        p.write_bytes(b"x" * (k % 9000))
                        assert os.stat(p).st_size == k % 9000
                        os.rename(p, d / "g")
                        os.unlink(d / "g")
                return run

            for r in range(rounds):
                ts = [threading.Thread(target=guarded(fn), daemon=True)
                      for fn in (windows, small(1), small(2), small(3))]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join(JOIN_S)
                    assert not t.is_alive(), f"round {r}: a worker hung"
                assert not errors, errors
            s = mount_stats(mnt)["session"]
    assert s["hotpath"]["clone_loop_served"] > 0, s["hotpath"]
    assert s["hotpath"]["errors"] == 0, s["hotpath"]
