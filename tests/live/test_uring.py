"""``-o uring``: FUSE over io_uring (mount/server/uring_fuse.py).

The fuse module's ``enable_uring`` parameter is off on a stock kernel and is
machine-wide, so the daemon never touches it; these tests (root) turn it on for
their duration and restore it (``uring_param``). What they prove:

- requests really are served from ring entries (the STATS counters move with
  the work done, for both transports: the C extension and the Python one);
- the live data, namespace, mmap and window suites pass with the ring serving
  (a representative subset of those modules, imported below and run with this
  module's ``shmfs`` / ``wmount`` fixtures, which mount with ``uring=on``);
- the ordering rules hold on the ring: the window write-back reproducer does
  not hang, invalidations reach other processes' mappings;
- ``uring=on`` where the kernel does not allow it fails the mount with the
  reason, ``uring=auto`` falls back to /dev/fuse with one log line, and
  ``readers=2`` is refused with ``uring=on``;
- unmount and abort while requests are in flight, and a daemon killed while
  its entries are registered (with a request delivered to it), leave no client
  hanging;
- malformed entries (sizes that do not add up) and replies too large for an
  entry are answered EIO by the transport, never a dead daemon.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from mount.mounting.kernel import abort_connection
from mount.mounting.managed import MountFailed
from mount.mounting.options import OptionError, parse_options
from mount.server import uring_fuse as U
from mount.server.ops import OpsConfig
from mount.winapi.client import mount_stats
from mount.wire import protocol as P
from tests.live.helpers import check_truncate_reaches_mapping
from tests.live.test_data import (  # noqa: F401 -- collected again here, over the ring
    test_holes_fallocate_truncate_like_tmpfs,
    test_random_io_matches_model,
    test_tools_like_tmpfs,
)
from tests.live.test_mmap import (  # noqa: F401
    test_mmap_and_write_coherent_in_one_process,
    test_punch_seen_by_other_process_mapping,
    test_shared_store_reaches_the_daemon_on_msync,
    test_truncate_gives_sigbus_then_zeros,
)
from tests.live.test_namespace import (  # noqa: F401
    test_name_too_long_and_huge_offsets_like_tmpfs,
    test_names_links_xattrs_like_tmpfs,
)
from tests.support.mounts import daemon, daemon_pid, shmfs_mount
from tests.support.procs import exited
from tests.windows.helpers import dir_for_test
from tests.windows.test_coherence import (  # noqa: F401
    test_object_write_is_seen_through_every_window,
    test_punch_and_truncate_of_the_object_reach_window_mappings,
    test_store_through_one_window_is_seen_through_another,
)
from tests.windows.test_notify_store import (  # noqa: F401
    test_touch_after_a_populating_remap_needs_no_read,
)

pytestmark = pytest.mark.mount

PARAM = U.ENABLE_PARAM


def _set_param(value: str) -> str:
    old = PARAM.read_text().strip()
    PARAM.write_text(value)
    return old


@pytest.fixture(scope="module")
def uring_param() -> Iterator[None]:
    """The module parameter on for this module's mounts, restored afterwards."""
    if not PARAM.exists():
        pytest.skip(f"this kernel has no FUSE over io_uring ({PARAM})")
    old = _set_param("Y")
    try:
        yield
    finally:
        PARAM.write_text(old)


@pytest.fixture
def param_off(uring_param: None) -> Iterator[None]:
    """The parameter off for one test (as on a stock kernel), on again after it."""
    _set_param("N")
    try:
        yield
    finally:
        _set_param("Y")


def _ring(mnt: Path) -> dict:
    return mount_stats(mnt)["session"]["uring"]


@pytest.fixture
def shmfs(uring_param: None) -> Iterator[Path]:
    """The imported suites' fixture: a fresh shmfs served by the ring."""
    with shmfs_mount("uring=on") as mnt:
        assert _ring(mnt)["active"]
        before = _ring(mnt)["ring_requests"]
        yield mnt
        assert _ring(mnt)["ring_requests"] > before  # the test's requests took the ring


@pytest.fixture(scope="module")
def wmount(uring_param: None) -> Iterator[Path]:
    """The imported window tests' fixture (tests/windows/conftest.py), over the ring."""
    with shmfs_mount("size=256m,uring=on") as mnt:
        assert _ring(mnt)["active"]
        yield mnt


@pytest.fixture
def wdir(wmount: Path, request: pytest.FixtureRequest) -> Path:
    return dir_for_test(wmount, request.node.name)


# --- the option -----------------------------------------------------------------------------

def test_the_option() -> None:
    assert parse_options("").uring == "off"
    assert parse_options("uring").uring == "on"
    for v in ("on", "off", "auto"):
        assert parse_options(f"uring={v}").uring == v
    with pytest.raises(OptionError, match="uring"):
        parse_options("uring=yes")


def test_on_fails_the_mount_with_the_reason_when_the_kernel_disallows_it(
        param_off: None) -> None:
    with pytest.raises(MountFailed, match="enable_uring is N"), shmfs_mount("uring=on"):
        pass
    assert PARAM.read_text().strip() == "N"  # the daemon never flips it


def test_auto_falls_back_to_dev_fuse_with_one_log_line(param_off: None) -> None:
    with shmfs_mount("uring=auto") as mnt:
        (mnt / "f").write_bytes(b"data")
        assert (mnt / "f").read_bytes() == b"data"
        assert _ring(mnt) == {"active": False}
        lines = [ln for ln in daemon(mnt).read_log().splitlines() if "uring" in ln]
        assert len(lines) == 1 and "uring=auto: serving /dev/fuse" in lines[0], lines


def test_auto_uses_the_ring_where_the_kernel_allows_it(uring_param: None) -> None:
    with shmfs_mount("uring=auto") as mnt:
        (mnt / "f").write_bytes(b"data")
        assert _ring(mnt)["active"]


def test_on_refuses_readers_2(uring_param: None) -> None:
    with pytest.raises(MountFailed, match="readers=2"), shmfs_mount("uring=on,readers=2"):
        pass


# --- served by the ring -----------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["native", "python"])
def test_requests_are_served_by_the_ring(uring_param: None, transport: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(U.BACKEND_ENV, transport)
    with shmfs_mount("uring=on") as mnt:
        r0 = _ring(mnt)
        assert r0["active"] and r0["transport"] == transport
        assert r0["queues"] == U.possible_cpus() and r0["entries_alive"] == r0["queues"] * 2
        (mnt / "f").write_bytes(b"x")
        n = 300
        for _ in range(n):  # GETXATTR always reaches the daemon (nothing caches a miss)
            with pytest.raises(OSError) as e:
                os.getxattr(mnt / "f", "user.missing")
            assert e.value.errno == errno.ENODATA
        # a maximal WRITE and READ (1 MiB payloads: exactly an entry's buffer)
        data = os.urandom(4 << 20)
        fd = os.open(mnt / "big", os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
        try:
            buf = mmap.mmap(-1, 4 << 20)
            buf[:] = data
            assert os.pwrite(fd, buf, 0) == len(data)
            buf[:] = bytes(len(data))
            assert os.preadv(fd, [buf], 0) == len(data)
            assert bytes(buf) == data
        finally:
            os.close(fd)
        r1 = _ring(mnt)
        assert r1["ring_requests"] - r0["ring_requests"] >= n + 8
        assert r1["malformed"] == 0
        assert mount_stats(mnt)["session"]["requests"]["GETXATTR"]["count"] >= n
        out = subprocess.run([sys.executable, "-m", "mount.cli", "stat", str(mnt)],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        assert re.search(rf"io_uring requests +[\d,]+ +\({r1['queues']} queues, {transport}",
                         out), out


def test_dev_fuse_still_serves_forget(uring_param: None) -> None:
    """FORGET goes to /dev/fuse even when the ring serves: the loop answers both."""
    with shmfs_mount("uring=on") as mnt:
        for i in range(200):
            (mnt / f"f{i}").write_bytes(b"x")
            os.unlink(mnt / f"f{i}")
        subprocess.run(["sh", "-c", "echo 2 > /proc/sys/vm/drop_caches"], check=True)
        before = _ring(mnt)["dev_requests"]
        # the unlinked inodes' FORGETs arrive on /dev/fuse; any request after them
        # is answered, so the loop did not stall on the device
        deadline = time.monotonic() + 30
        while _ring(mnt)["dev_requests"] == before and time.monotonic() < deadline:
            os.stat(mnt)  # a request through the ring while waiting (not a sleep)
        assert _ring(mnt)["dev_requests"] > 0


@pytest.mark.parametrize("name", [
    "test_data_matches_tmpfs_from_the_cache_and_from_the_daemon",
    "test_enospc_is_reported_at_fsync_and_at_close_not_at_write",
    "test_another_process_reads_data_not_yet_written_back",
    "test_windows_are_refused",
])
def test_writeback_cache_over_the_ring(uring_param: None, monkeypatch: pytest.MonkeyPatch,
                                       name: str) -> None:
    """tests/live/test_writeback_cache.py's cases with the ring serving: the kernel's
    background write-back WRITEs come through ring entries too."""
    import tests.live.test_writeback_cache as wb

    plain = wb.shmfs_mount
    seen: list[dict] = []

    @contextlib.contextmanager
    def over_the_ring(options: str = "", **kw: object) -> Iterator[Path]:
        with plain(options + ",uring=on", **kw) as mnt:  # type: ignore[arg-type]
            yield mnt
            seen.append(_ring(mnt))

    monkeypatch.setattr(wb, "shmfs_mount", over_the_ring)
    getattr(wb, name)()
    assert seen and all(r["active"] and r["ring_requests"] > 0 for r in seen), seen


# --- ordering on the ring --------------------------------------------------------------------

def test_window_writebacks_do_not_hang_on_the_ring(uring_param: None) -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "windows" / "repro_write_deadlock.py"
    spec = importlib.util.spec_from_file_location("repro_write_deadlock_uring", script)
    assert spec is not None and spec.loader is not None
    repro = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(repro)
    with shmfs_mount("uring=on") as mnt:
        repro.make_windows(mnt)
        status, message = repro.run(mnt, 10.0)
        assert status == 0, message
        r = _ring(mnt)
        print("ring after the reproducer:", r)
        assert r["ring_requests"] > 0 and r["deferred_replies"] > 0


def test_truncate_invalidates_another_process_mapping(uring_param: None) -> None:
    """NOTIFY_INVAL_INODE (written to /dev/fuse by the writer thread) after a SETATTR
    answered through the ring: the other process's mapping sees the new size."""
    with shmfs_mount("uring=on") as mnt:
        check_truncate_reaches_mapping(mnt)
        assert _ring(mnt)["ring_requests"] > 0


# --- unmount, abort and death with requests in flight -----------------------------------------

_STREAMER = r"""
import os, sys
d, tag = sys.argv[1], sys.argv[2]
print("started", flush=True)
try:
    i = 0
    while True:
        p = os.path.join(d, f"{tag}{i % 50}")
        fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        os.write(fd, b"s" * (1 << 20))
        os.close(fd)
        os.stat(p)
        i += 1
except OSError as e:
    print("error", e.errno, flush=True)
    sys.exit(3)
"""


def _streamers(mnt: Path, n: int = 3) -> list[subprocess.Popen[str]]:
    procs = [subprocess.Popen([sys.executable, "-c", _STREAMER, str(mnt), f"t{k}_"],
                              stdout=subprocess.PIPE, text=True) for k in range(n)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "started\n"
    return procs


def _all_fail_fast(procs: list[subprocess.Popen[str]], errnos: set[int]) -> None:
    try:
        for p in procs:
            out, _ = p.communicate(timeout=60)  # a hung client fails here
            assert p.returncode == 3, out
            got = int(out.split()[-1])
            assert got in errnos, out
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_abort_with_requests_in_flight(uring_param: None) -> None:
    with shmfs_mount("uring=on", allow_errors=r"") as mnt:
        pid = daemon_pid(mnt)
        procs = _streamers(mnt)
        assert _ring(mnt)["ring_requests"] > 0
        abort_connection(mnt)
        _all_fail_fast(procs, {errno.ECONNABORTED, errno.ENOTCONN})
        assert exited(pid, 30)  # the ring's loop saw its entries torn down and ended


def test_lazy_unmount_with_requests_in_flight_keeps_serving_open_files(
        uring_param: None) -> None:
    with shmfs_mount("uring=on") as mnt:
        pid = daemon_pid(mnt)
        data = os.urandom(3 << 20)
        (mnt / "keep").write_bytes(data)
        fd = os.open(mnt / "keep", os.O_RDWR)
        stop = threading.Event()
        seen: list[bytes] = []

        def reader() -> None:
            while not stop.is_set():
                seen.append(os.pread(fd, 1 << 20, 1 << 20))

        t = threading.Thread(target=reader)
        t.start()
        try:
            while not seen:
                os.pread(fd, 1, 0)  # a request through the ring until the reader runs
            subprocess.run(["umount", "-l", str(mnt)], check=True, timeout=60)
            assert os.pread(fd, len(data), 0) == data  # still served, by the ring
            assert os.pwrite(fd, b"late", 0) == 4
        finally:
            stop.set()
            t.join(60)
        assert not t.is_alive()
        assert all(s == data[1 << 20:2 << 20] or s[:4] for s in seen)
        os.close(fd)
        assert exited(pid, 30)  # the last close ended the session


def test_daemon_killed_with_a_request_delivered_leaves_no_client_hanging(
        uring_param: None) -> None:
    with shmfs_mount("uring=on") as mnt:
        (mnt / "f").write_bytes(b"x")
        pid = daemon_pid(mnt)
        procs = _streamers(mnt, 2)
        os.kill(pid, signal.SIGSTOP)  # requests now sit in ring entries or queues
        probe = subprocess.Popen([sys.executable, "-c",
                                  "import os,sys\ntry:\n os.getxattr(sys.argv[1], 'user.x')\n"
                                  "except OSError as e:\n print(e.errno)", str(mnt / "f")],
                                 stdout=subprocess.PIPE, text=True)
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
        assert exited(pid, 30)
        # ECANCELED: a request the kernel was handing to a ring entry of the dead
        # daemon (fs/fuse/dev_uring.c, IO_URING_F_TASK_DEAD); over /dev/fuse ENOTCONN
        dead = {errno.ENOTCONN, errno.ECONNABORTED, errno.ECANCELED}
        out, _ = probe.communicate(timeout=60)
        assert int(out) in dead, out
        _all_fail_fast(procs, dead)
        with pytest.raises(OSError) as exc:
            os.stat(mnt / "f")
        assert exc.value.errno == errno.ENOTCONN


# --- malformed requests and oversized replies (the transports, without a kernel) ----------------

def _fake_session() -> SimpleNamespace:
    return SimpleNamespace(ops=SimpleNamespace(config=OpsConfig()), fd=-1,
                           stats=SimpleNamespace(codec_errors=0))


@pytest.mark.parametrize("transport", ["native", "python"])
def test_transport_lays_out_requests_and_refuses_bad_sizes(
        transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(U.BACKEND_ENV, transport)
    ring = U.FuseRing(_fake_session(), depth=1, queues=1)  # type: ignore[arg-type]
    try:
        assert ring.backend == transport
        t = ring.t
        hdr = t.headers(0)
        name = b"some-name\0"
        # a LOOKUP as the kernel writes it: in_header, no op header, the name as payload
        hdr[0:40] = P.IN_HEADER.pack(40 + len(name), P.Opcode.LOOKUP, 77, 1, 0, 0, 0, 0, 0)
        U.ENT.pack_into(hdr, U.ENT_IN_OUT, 0, 77, len(name), 0)
        t.payload_view(0)[:len(name)] = name
        msg = t.request(0)
        assert bytes(msg) == bytes(hdr[0:40]) + name and t.unique(0) == 77
        # a WRITE: in_header, fuse_write_in (40 bytes) in op_in, the data as payload
        data = os.urandom(5000)
        hdr[0:40] = P.IN_HEADER.pack(80 + len(data), P.Opcode.WRITE, 78, 2, 0, 0, 0, 0, 0)
        hdr[128:168] = bytes(range(40))
        U.ENT.pack_into(hdr, U.ENT_IN_OUT, 0, 78, len(data), 0)
        t.payload_view(0)[:len(data)] = data
        assert bytes(t.request(0)) == bytes(hdr[0:40]) + bytes(range(40)) + data
        # sizes that do not add up: the op header would be negative or > 128 bytes,
        # or the payload larger than the buffer
        for length, psz in ((40, 100), (40 + 129, 0), (40, ring.payload + 1)):
            hdr[0:4] = length.to_bytes(4, "little")
            U.ENT.pack_into(hdr, U.ENT_IN_OUT, 0, 79, psz, 0)
            assert t.request(0) is None and t.unique(0) == 79
        # a reply larger than the entry: refused, nothing staged
        with pytest.raises(OverflowError):
            t.commit(0, [P.OUT_HEADER.pack(16, 0, 79), bytes(ring.payload + 1)])
        assert t.pending == 0
        # FuseRing answers both with EIO (the daemon goes on)
        ring._serve_entry(0)
        assert ring.malformed == 1 and t.pending == 1
        assert P.OUT_HEADER.unpack(bytes(hdr[0:16])) == (16, -errno.EIO, 79)
    finally:
        ring.close()
