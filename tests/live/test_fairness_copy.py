"""Issue 15 (holcopy): a large WRITE's copy into the arena runs with the fs lock let go
(fairness.py ``_copy_unlock``), small requests served meanwhile. What could go wrong
is a frame being copied into that is freed, reused or read meanwhile; these races put
exactly those requests next to 1 MiB write(2)s of the same file, with a kernel tmpfs
as the oracle (the same roles, the same checks on both):

- a writer rewrites ``f`` (1 MiB of one byte value per round, values 1..200);
- a racer on the same file: ``ftruncate`` to 0, a FALLOCATE punch, a reader, or
  ``unlink`` (the writer then reopens ``f`` every few rounds, so the unlinked inode is
  evicted, its frames freed, while the other writes go on);
- a reader reads ``f`` whole (page cache dropped first): never a byte that no write
  put there (zero only where a truncate or punch may have left it);
- a bystander rewrites its own file ``g`` (byte 0xEE) and reads it back each round:
  a frame of ``f`` freed and handed to ``g`` during a copy, or ours copied into one
  of ``g``'s, shows there;
- a creator creates and closes files meanwhile: the small requests that take the
  lock during the copies.

At the end ``f`` is written once more (nothing racing) and must read back exactly.
No timing: counts and bytes. On shmfs every large WRITE is chunked
(``SHMFS_CHUNK_WINDOW_MS=-1``) and the test fails unless copies were made unlocked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mount.winapi.client import mount_stats
from tests.support.mounts import shmfs_mount, tmpfs_mount

pytestmark = pytest.mark.mount

ROUNDS = 120
MB = 1 << 20

_ROLE = r"""
import ctypes, os, sys
role, d, stop = sys.argv[1], sys.argv[2], sys.argv[3]
MB = 1 << 20
f, g = os.path.join(d, "f"), os.path.join(d, "g")
bad = n = 0

def stopped():
    return os.path.exists(stop)

if role == "writer":  # argv[4]: rounds, argv[5]: the racer (unlink: reopen, read back)
    fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
    for i in range(int(sys.argv[4])):
        v = bytes([1 + i % 200]) * MB
        assert os.pwrite(fd, v, 0) == MB
        if sys.argv[5] == "unlink":
            bad += os.pread(fd, MB, 0) != v
            if i % 8 == 7:  # the unlinked inode is evicted at this close
                os.close(fd)
                fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
        n += 1
    os.close(fd)
elif role == "bystander":
    fd = os.open(g, os.O_RDWR | os.O_CREAT, 0o644)
    v = b"\xee" * MB
    print("up", flush=True)
    while not stopped():
        assert os.pwrite(fd, v, 0) == MB
        bad += os.pread(fd, MB, 0) != v
        n += 1
    os.close(fd)
elif role == "reader":  # argv[4]: "1" if zeros may be seen (truncate, punch)
    allowed = bytes(range(1, 201)) + (b"\0" if sys.argv[4] == "1" else b"")
    print("up", flush=True)
    while not stopped():
        try:
            with open(f, "rb") as fh:
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                data = fh.read()
        except FileNotFoundError:
            continue
        bad += len(data) > MB or bool(data.translate(None, allowed))
        n += 1
elif role == "creator":
    sub = os.path.join(d, "c")
    os.makedirs(sub, exist_ok=True)
    print("up", flush=True)
    while not stopped():
        os.close(os.open(os.path.join(sub, str(n % 64)), os.O_WRONLY | os.O_CREAT, 0o644))
        n += 1
else:  # the racer on f
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    print("up", flush=True)
    while not stopped():
        if role == "unlink":
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass
        else:
            try:
                fd = os.open(f, os.O_WRONLY)
            except FileNotFoundError:
                continue
            if role == "truncate":
                os.ftruncate(fd, 0)
            else:  # punch: PUNCH_HOLE | KEEP_SIZE over 64 KiB, somewhere in the first MiB
                off = (n * 12288) % (MB - (64 << 10))
                if libc.fallocate(fd, 3, off, 64 << 10) != 0:
                    bad += 1
            os.close(fd)
        n += 1
print(n, bad)
"""


def _start(role: str, d: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _ROLE, role, str(d), str(d / "stop"),
                             *args], stdout=subprocess.PIPE, text=True)


def _race(d: Path, racer: str) -> dict[str, tuple[int, int]]:
    """The roles in ``d``: (rounds, bad) of each; the final exact rewrite of ``f``."""
    (d / "f").write_bytes(b"")
    others = {"bystander": _start("bystander", d), "creator": _start("creator", d),
              "reader": _start("reader", d, "1" if racer in ("truncate", "punch") else "0"),
              # "read": a second reader, with the same check
              racer: _start("reader", d, "0") if racer == "read" else _start(racer, d)}
    out: dict[str, tuple[int, int]] = {}
    try:
        for p in others.values():
            assert p.stdout is not None and p.stdout.readline() == "up\n"
        w = _start("writer", d, str(ROUNDS), racer)
        o, _ = w.communicate(timeout=600)
        assert w.returncode == 0
        out["writer"] = tuple(map(int, o.split()))  # type: ignore[assignment]
    finally:
        (d / "stop").write_bytes(b"")
        for role, p in others.items():
            o, _ = p.communicate(timeout=600)
            assert p.returncode == 0, role
            out[role] = tuple(map(int, o.split()))  # type: ignore[assignment]
    final = b"\xfe" * MB
    with open(d / "f", "wb") as fh:
        fh.write(final)
    with open(d / "f", "rb") as fh:
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert fh.read() == final
    assert (d / "g").read_bytes() == b"\xee" * MB
    return out


def _check(r: dict[str, tuple[int, int]], racer: str) -> None:
    assert r["writer"] == (ROUNDS, 0), r
    for role in ("bystander", "reader", racer):
        assert r[role][1] == 0, (role, r)  # nothing torn, foreign or failed
    assert r[racer][0] > 1 and r["bystander"][0] > 0, r
    if racer != "unlink":  # there the path is mostly gone: the reader may never open it
        assert r["reader"][0] > 0, r


RACERS = ["truncate", "punch", "read", "unlink"]


@pytest.mark.parametrize("racer", RACERS)
def test_copy_races_on_tmpfs(tmp_path: Path, racer: str) -> None:
    """The oracle: these checks hold on the kernel's tmpfs."""
    with tmpfs_mount("size=64m", parent=tmp_path) as d:
        r = _race(d, racer)
    _check(r, racer)


@pytest.mark.parametrize("racer", RACERS)
def test_copy_races_on_shmfs(monkeypatch: pytest.MonkeyPatch, racer: str) -> None:
    """The same on shmfs, every 1 MiB WRITE chunked and each chunk's copy made with the
    fs lock let go (hotpath ``copies_unlocked``)."""
    monkeypatch.setenv("SHMFS_CHUNK_WINDOW_MS", "-1")
    with shmfs_mount("size=256m") as mnt:
        r = _race(mnt, racer)
        s = mount_stats(mnt)["session"]
    _check(r, racer)
    assert s["write_chunks"] >= 4 * ROUNDS, s
    assert s["hotpath"]["copies_unlocked"] >= ROUNDS, s["hotpath"]


_FILLER = r"""
import os, sys
path, tag = sys.argv[1], int(sys.argv[2])
pat = bytes((tag * 31 + i * 7) & 0xFF or 1 for i in range(509)) * (2100)
pat = pat[: 1 << 20]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
done, short, err = 0, 0, 0
while True:
    try:
        n = os.write(fd, pat)
    except OSError as e:
        err = e.errno
        break
    done += n
    if n < len(pat):
        short += 1
        pat = pat[n:] + pat[:n]  # the next write continues the pattern exactly
os.close(fd)
print(done, short, err)
"""


def _fill(d: Path) -> list[tuple[int, int, int]]:
    """Two writers fill the fs with 1 MiB writes (a creator alongside): each one's
    (bytes written, short writes, final errno); every byte it was told it wrote must
    be in its file, exactly."""
    (d / "stop").unlink(missing_ok=True)
    creator = _start("creator", d)
    try:
        assert creator.stdout is not None and creator.stdout.readline() == "up\n"
        ws = [subprocess.Popen([sys.executable, "-c", _FILLER, str(d / f"w{t}"), str(t)],
                               stdout=subprocess.PIPE, text=True) for t in (1, 2)]
        res = []
        for w in ws:
            o, _ = w.communicate(timeout=600)
            assert w.returncode == 0
            res.append(tuple(map(int, o.split())))
    finally:
        (d / "stop").write_bytes(b"")
        creator.communicate(timeout=600)
    for t, (done, _short, _err) in zip((1, 2), res, strict=True):
        pat = bytes((t * 31 + i * 7) & 0xFF or 1 for i in range(509)) * 2100
        pat = pat[: 1 << 20]
        data = (d / f"w{t}").read_bytes()
        assert len(data) == done == os.stat(d / f"w{t}").st_size
        assert data == (pat * (done // len(pat) + 1))[:done]
    return res  # type: ignore[return-value]


def test_enospc_mid_stream_on_tmpfs(tmp_path: Path) -> None:
    d = tmp_path / "tmpfs"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "none", str(d)], check=True)
    try:
        res = _fill(d)
    finally:
        subprocess.run(["umount", str(d)], check=True)
    assert all(err == 28 for _, _, err in res), res  # ENOSPC ends both
    assert sum(done for done, _, _ in res) > 20 << 20, res


def test_enospc_mid_stream_on_shmfs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Filling the fs while the copies run unlocked: no byte reported written is lost,
    both writers end at ENOSPC, as on tmpfs."""
    monkeypatch.setenv("SHMFS_CHUNK_WINDOW_MS", "-1")
    with shmfs_mount("size=24m") as mnt:
        res = _fill(mnt)
        s = mount_stats(mnt)["session"]
    assert all(err == 28 for _, _, err in res), res
    assert sum(done for done, _, _ in res) > 20 << 20, res
    assert s["hotpath"]["copies_unlocked"] > 0, s["hotpath"]


def test_a_lone_writer_keeps_the_old_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not mixed traffic (one process, its own small requests only, the default time
    window): no chunks, so no copy leaves the lock -- the quiet path is the old one."""
    monkeypatch.delenv("SHMFS_CHUNK_WINDOW_MS", raising=False)
    script = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
for i in range(32):
    assert os.write(fd, bytes([1 + i]) * (1 << 20)) == 1 << 20
os.close(fd)
"""
    with shmfs_mount("size=64m") as mnt:
        subprocess.run([sys.executable, "-c", script, str(mnt / "f")], check=True)
        s = mount_stats(mnt)["session"]
        data = (mnt / "f").read_bytes()
    assert data == b"".join(bytes([1 + i]) * MB for i in range(32))
    assert s["hotpath"]["gil_released"] >= 32, s["hotpath"]  # the C WRITE took them
    assert s["write_chunks"] == 0 and s["hotpath"]["copies_unlocked"] == 0, s
