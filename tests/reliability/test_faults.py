"""Faults on a live shmfs: killed clients, a killed daemon, SIGTERM and unmount with
open files, the size limit under concurrent writers, the daemon's memory,
interrupted requests.

"Acknowledged" means: the client's syscall returned (pwrite returned its count,
msync(MS_SYNC) returned) and the client then told the test so through a pipe.
What was acknowledged before a SIGKILL must be there afterwards; whatever
landed past it must be the client's own bytes, never garbage; other files must
not change; the daemon must keep serving.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mount.winapi.client import mount_stats
from tests.live.helpers import PAGE, read_from_daemon
from tests.support.mounts import daemon_pid, shmfs_mount
from tests.support.procs import exited

pytestmark = pytest.mark.mount

REPO = Path(__file__).resolve().parents[2]
CHUNK = 64 * 1024


def pattern(seed: int, off: int, n: int) -> bytes:
    """Bytes that say where they belong: 8-byte words (seed << 48 | word index)."""
    first = off // 8
    words = range(first, (off + n + 7) // 8 + 1)
    raw = b"".join(((seed << 48) | w).to_bytes(8, "little") for w in words)
    return raw[off - first * 8:off - first * 8 + n]


def _spawn(code: str, *args: str) -> subprocess.Popen[bytes]:
    prelude = ("import os, sys, mmap\n"
               f"sys.path.insert(0, {str(REPO)!r})\n"
               "from tests.reliability.test_faults import pattern\n")
    return subprocess.Popen([sys.executable, "-c", prelude + code, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _acks_until(proc: subprocess.Popen[bytes], threshold: int, timeout: float = 60) -> int:
    """Read the child's acknowledged offsets (one per line) until one >= threshold."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf, last = b"", 0
    while last < threshold:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"child made no progress; stderr: {proc.stderr.read() if proc.stderr else ''}"
        chunk = os.read(fd, 65536)
        assert chunk, f"child exited early ({proc.wait()})"
        buf += chunk
        *lines, buf = buf.split(b"\n")
        if lines:
            last = int(lines[-1])
    return last


def _kill_and_drain(proc: subprocess.Popen[bytes], last: int) -> int:
    """SIGKILL the child, then read every ack it still managed to send; the
    highest ack, ``last`` (what _acks_until saw) if none came after it."""
    proc.kill()
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    lines = [ln for ln in out.split(b"\n") if ln.strip() and ln != b"done"]
    return max(last, int(lines[-1])) if lines else last


def _bystander(mnt: Path) -> bytes:
    data = os.urandom(3 * PAGE + 17)
    (mnt / "bystander").write_bytes(data)
    return data


def _still_serving(mnt: Path) -> None:
    p = mnt / "after-fault"
    p.write_bytes(b"alive" * 1000)
    assert p.read_bytes() == b"alive" * 1000
    p.unlink()


WRITER = """
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
off = 0
while True:
    data = pattern(7, off, CHUNK)
    assert os.pwrite(fd, data, off) == len(data)
    off += len(data)
    os.write(1, b"%d\\n" % off)
""".replace("CHUNK", str(CHUNK))


def test_sigkill_in_a_write_loop_keeps_what_was_acknowledged(shmfs: Path) -> None:
    keep = _bystander(shmfs)
    target = shmfs / "written"
    proc = _spawn(WRITER, str(target))
    acked = _kill_and_drain(proc, _acks_until(proc, 8 << 20))
    assert acked >= 8 << 20
    data = read_from_daemon(target)  # what the daemon holds, not pages the kernel kept
    assert len(data) >= acked
    assert data[:acked] == pattern(7, 0, acked)
    # a write that completed after the last ack is whole and correct too
    assert data[acked:] == pattern(7, acked, len(data) - acked)
    assert len(data) % CHUNK == 0  # no torn chunk: each WRITE is all or nothing here
    assert (shmfs / "bystander").read_bytes() == keep
    _still_serving(shmfs)


MMAP_STORER = """
npages = int(sys.argv[2])
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, npages * 4096)
m = mmap.mmap(fd, npages * 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
for i in range(npages):
    m[i * 4096:(i + 1) * 4096] = pattern(9, i * 4096, 4096)
    m.flush(i * 4096, 4096)
    os.write(1, b"%d\\n" % (i + 1))
os.write(1, b"done\\n")
import time
time.sleep(3600)
"""


def test_sigkill_in_an_mmap_store_loop_keeps_what_was_msynced(shmfs: Path) -> None:
    keep = _bystander(shmfs)
    target = shmfs / "mapped"
    npages = 4096
    proc = _spawn(MMAP_STORER, str(target), str(npages))
    acked = _kill_and_drain(proc, _acks_until(proc, 600))
    assert acked >= 600
    data = read_from_daemon(target)  # what the daemon holds, not pages the kernel kept
    assert len(data) == npages * PAGE
    assert data[:acked * PAGE] == pattern(9, 0, acked * PAGE)
    for i in range(acked, npages):  # stored but not msynced: the store or the hole, nothing else
        page = data[i * PAGE:(i + 1) * PAGE]
        assert page in (bytes(PAGE), pattern(9, i * PAGE, PAGE)), f"page {i} is garbage"
    assert (shmfs / "bystander").read_bytes() == keep
    _still_serving(shmfs)


def _reads(mnt: Path) -> int:
    return mount_stats(mnt)["session"]["requests"].get("READ", {"count": 0})["count"]


def test_o_direct_reads_reach_the_daemon(shmfs: Path) -> None:
    """read_from_daemon is what the data-survival checks rely on: after a
    full-page write the pages are in the kernel's cache (FOPEN_KEEP_CACHE), a
    buffered read needs no READ, and an O_DIRECT read must still send them."""
    data = pattern(5, 0, 16 * PAGE)
    (shmfs / "cached").write_bytes(data)
    before = _reads(shmfs)
    assert (shmfs / "cached").read_bytes() == data
    cached = _reads(shmfs)
    assert cached == before  # the premise: a buffered read is served from the cache
    assert read_from_daemon(shmfs / "cached") == data
    direct = _reads(shmfs)
    # 16 pages in READs of at most max_pages each: at least one READ, whatever the size
    assert direct > cached, (before, cached, direct)


def _wait_exit(pid: int, timeout: float = 30) -> None:
    assert exited(pid, timeout), f"process {pid} did not exit"


def _mounted(mnt: Path) -> bool:
    target = os.fsencode(os.path.realpath(mnt))
    with open("/proc/self/mountinfo", "rb") as f:
        return any(line.split()[4] == target for line in f)


def test_daemon_sigkill_gives_enotconn_and_unmount_clears_it() -> None:
    with shmfs_mount() as mnt:
        (mnt / "f").write_bytes(b"x")
        pid = daemon_pid(mnt)
        os.kill(pid, signal.SIGKILL)
        _wait_exit(pid)
        with pytest.raises(OSError) as exc:
            os.stat(mnt / "f")
        assert exc.value.errno == errno.ENOTCONN
        with pytest.raises(OSError) as exc:
            os.stat(mnt)
        assert exc.value.errno == errno.ENOTCONN
        r = subprocess.run([sys.executable, "-m", "mount.cli", "unmount", "-z", str(mnt)],
                           cwd=REPO, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert not _mounted(mnt)
        assert os.path.isdir(mnt) and os.listdir(mnt) == []  # the plain directory again


def test_mounting_over_a_dead_mount_says_how_to_clear_it() -> None:
    with shmfs_mount() as mnt:
        pid = daemon_pid(mnt)
        os.kill(pid, signal.SIGKILL)
        _wait_exit(pid)
        r = subprocess.run([sys.executable, "-m", "mount.cli", str(mnt)], cwd=REPO,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr, r.stderr
        assert "unmount" in r.stderr and str(mnt) in r.stderr, r.stderr


def _wait_unmounted(mnt: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _mounted(mnt):
        assert time.monotonic() < deadline, "still mounted"
        time.sleep(0.05)  # polling mountinfo for a state change, not synchronising on time


def test_sigterm_with_open_files_detaches_and_serves_them_until_closed() -> None:
    with shmfs_mount() as mnt:
        data = os.urandom(5 * PAGE)
        (mnt / "open").write_bytes(data)
        fd = os.open(mnt / "open", os.O_RDWR)
        pid = daemon_pid(mnt)
        os.kill(pid, signal.SIGTERM)
        _wait_unmounted(mnt)  # EBUSY, so the daemon detached it lazily
        assert os.pread(fd, len(data), 0) == data  # the open file is still served
        assert os.pwrite(fd, b"late", 0) == 4
        assert os.pread(fd, 4, 0) == b"late"
        os.close(fd)
        _wait_exit(pid)


def test_unmount_with_open_files_then_close_ends_the_daemon() -> None:
    with shmfs_mount() as mnt:
        (mnt / "a").write_bytes(b"abc" * 1000)
        fd = os.open(mnt / "a", os.O_RDONLY)
        pid = daemon_pid(mnt)
        r = subprocess.run(["umount", str(mnt)], capture_output=True, text=True)
        assert r.returncode != 0 and "busy" in r.stderr
        assert subprocess.run(["umount", "-l", str(mnt)]).returncode == 0
        assert not _mounted(mnt)
        assert os.pread(fd, 3, 2997) == b"abc"
        os.close(fd)
        _wait_exit(pid)


FILLER = """
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
seed = int(sys.argv[2])
off = 0
while True:
    data = pattern(seed, off, 12288)
    try:
        n = os.pwrite(fd, data, off)
    except OSError as e:
        os.write(1, b"%d errno %d\\n" % (off, e.errno))
        break
    off += n
os.close(fd)
"""


def test_concurrent_writers_at_the_size_limit_all_get_enospc_and_nothing_changes() -> None:
    with shmfs_mount("size=4m") as mnt:
        keep = os.urandom(PAGE * 64 + 5)
        (mnt / "keep").write_bytes(keep)
        procs = [_spawn(FILLER, str(mnt / f"w{i}"), str(i + 1)) for i in range(4)]
        results = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            off, _, code = out.split()
            results.append((int(off), int(code)))
        assert all(code == errno.ENOSPC for _, code in results), results
        for i, (acked, _) in enumerate(results):
            got = (mnt / f"w{i}").read_bytes()
            assert got[:acked] == pattern(i + 1, 0, acked)
            assert len(got) == acked  # a refused write left nothing behind
        assert (mnt / "keep").read_bytes() == keep
        st = os.statvfs(mnt)
        assert st.f_bfree * st.f_frsize < 64 * PAGE  # it really is full
        for i in range(len(procs)):  # (one writer may have lost every race: free them all)
            (mnt / f"w{i}").unlink()
        _still_serving(mnt)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# What the daemon may hold beyond the data itself (docs/reliability.md): page index
# chunks, inode records and Python's own heap growth while serving.
RSS_OVERHEAD_KIB = 24 * 1024


def test_daemon_rss_stays_below_the_limit_plus_overhead_and_comes_back() -> None:
    size_mib = 64
    with shmfs_mount(f"size={size_mib}m") as mnt:
        pid = daemon_pid(mnt)
        base = _rss_kib(pid)
        i = 0
        chunk = os.urandom(1 << 20)
        with pytest.raises(OSError) as exc:
            while True:
                with open(mnt / f"f{i}", "wb") as f:
                    for _ in range(4):
                        f.write(chunk)
                i += 1
        assert exc.value.errno == errno.ENOSPC
        full = _rss_kib(pid)
        assert full - base <= size_mib * 1024 + RSS_OVERHEAD_KIB, (base, full)
        for p in mnt.iterdir():
            p.unlink()
        _until_frames_are_freed(mnt)
        freed = _rss_kib(pid)
        assert freed - base <= RSS_OVERHEAD_KIB, (base, full, freed)  # frames went back


def _until_frames_are_freed(mnt: Path) -> None:
    """The pages of an unlinked file go at its FORGET, which the kernel sends once
    the background RELEASE is answered, and the daemon evicts in the gaps between
    requests: RSS read right after unlink(2) raced with both (it failed under
    load). Ask the daemon (each STATS is a request) until it holds no frame."""
    deadline = time.monotonic() + 30
    while (used := mount_stats(mnt)["arena"]["frames_in_use"]) != 0:
        assert time.monotonic() < deadline, f"{used} frames still in use after every unlink"
        os.statvfs(mnt)


INTERRUPTED_READER = """
import signal
path, rounds = sys.argv[1], int(sys.argv[2])
hits = 0
def on_alarm(signum, frame):
    global hits
    hits += 1
signal.signal(signal.SIGALRM, on_alarm)
want = pattern(3, 0, 8 << 20)
fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 8 << 20)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
for r in range(rounds):
    n = os.preadv(fd, [buf], 0)
    assert n == len(want), n
    assert buf[:n] == want, "round %d: wrong data" % r
signal.setitimer(signal.ITIMER_REAL, 0, 0)
print(hits)
"""


def test_reads_interrupted_by_signals_return_right_data_and_daemon_serves(shmfs: Path) -> None:
    (shmfs / "big").write_bytes(pattern(3, 0, 8 << 20))
    proc = _spawn(INTERRUPTED_READER, str(shmfs / "big"), "150")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert int(out) > 0  # signals really arrived during the reads
    _still_serving(shmfs)
    assert (shmfs / "big").read_bytes()[:4096] == pattern(3, 0, 4096)


def _reopen_unlinked(d: Path) -> tuple[bytes, bytes]:
    """O_PATH keeps a reference to the inode but opens no file (no FUSE OPEN); after
    unlink, reopening it through /proc/self/fd sends an OPEN for a name-less inode --
    the same request an open(2) racing an unlink(2) sends."""
    import mmap

    data = os.urandom(3 * PAGE + 123)
    (d / "victim").write_bytes(data)
    h = os.open(d / "victim", os.O_PATH)
    try:
        os.unlink(d / "victim")
        # O_DIRECT: the READ goes to the filesystem, not to pages the kernel kept
        fd = os.open(f"/proc/self/fd/{h}", os.O_RDONLY | os.O_DIRECT)
        try:
            buf = mmap.mmap(-1, 4 * PAGE)
            n = os.preadv(fd, [buf], 0)
            return data, bytes(buf[:n])
        finally:
            os.close(fd)
    finally:
        os.close(h)


def test_tmpfs_reopen_of_an_unlinked_but_referenced_inode_keeps_its_data(tmpfs: Path) -> None:
    data, got = _reopen_unlinked(tmpfs)
    assert got == data


def test_reopen_of_an_unlinked_but_referenced_inode_keeps_its_data(shmfs: Path) -> None:
    # Found by scripts/stress.py (shared reads saw zeros): fsimpl freed the pages at
    # nlink == 0 and nopen == 0 although the kernel could still OPEN the inode.
    data, got = _reopen_unlinked(shmfs)
    assert got == data
