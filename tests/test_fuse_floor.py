"""scripts/fuse_floor.c against a real mount: its answers are right and it leaves cleanly.

The floor server is a measuring instrument (docs/performance.md, "The floor of
one FUSE request on this VM"): its figures mean something only if the kernel
really sends it the requests a filesystem would get and it answers them
correctly. These tests mount it as the runner does and check: a READ returns
the bytes asked (zeros, up to end of file, the data written being discarded);
create/lookup/unlink keep a consistent namespace; the window-step ioctl's
NOTIFY_STORE makes the stored page visible through a MAP_SHARED mapping
without a READ (a minor fault); unknown ioctls are ENOTTY; each system call
costs the requests expected; and the server exits 0 when unmounted, leaving no
mount and no process behind, in both reader modes. No timing assertions.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mounts import leftovers

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import fuse_floor as ff  # noqa: E402
import fuse_floor_mount as ffm  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")

PAGE = 4096


@pytest.fixture(scope="module")
def exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ffm.build(tmp_path_factory.mktemp("fuse-floor-build"))


@pytest.fixture
def floor(exe: Path, tmp_path: Path) -> Iterator[ffm.FloorMount]:
    with ffm.floor_mount(exe, "block", parent=tmp_path) as fm:
        yield fm
    assert fm.returncode == 0
    assert leftovers(tmp_path) == []


def _counts(root: Path) -> dict[str, int]:
    got = ffm.request_counts(root)
    assert got is not None
    return {ff._opname(i): n for i, n in enumerate(got) if n}


def test_read_returns_the_bytes_asked_up_to_eof(floor: ffm.FloorMount) -> None:
    path = floor.path / "data"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        assert os.write(fd, b"\x5a" * 10000) == 10000
        assert os.fstat(fd).st_size == 10000
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # next read is a READ
        reads = _counts(floor.path).get("READ", 0)
        got = os.pread(fd, 8192, 4096)
        assert _counts(floor.path).get("READ", 0) > reads
        # the size WRITE gave, the data the server never kept: zeros to EOF
        assert got == bytes(10000 - 4096)
        assert os.pread(fd, 100, 20000) == b""
    finally:
        os.close(fd)
    st = os.stat(path)
    assert (st.st_mode & 0o7777, st.st_size, st.st_uid) == (0o640, 10000, os.getuid())


def test_namespace_create_lookup_unlink(floor: ffm.FloorMount) -> None:
    a = floor.path / "a"
    os.close(os.open(a, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with pytest.raises(FileExistsError):
        os.open(a, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    ino = os.stat(a).st_ino
    os.close(os.open(floor.path / "b", os.O_WRONLY | os.O_CREAT, 0o600))
    assert os.stat(floor.path / "b").st_ino != ino
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")  # the kernel forgets the dentries: the next stat is a LOOKUP
    assert os.stat(a).st_ino == ino
    os.unlink(a)
    with pytest.raises(FileNotFoundError):
        os.stat(a)
    with pytest.raises(FileNotFoundError):
        os.unlink(a)
    with pytest.raises(OSError) as e:
        os.mkdir(floor.path / "d")
    assert e.value.errno == errno.ENOSYS


def test_step_ioctl_stores_the_page_without_a_read(floor: ffm.FloorMount) -> None:
    path = floor.path / "win"
    path.touch()
    os.truncate(path, 4 * PAGE)
    fd = os.open(path, os.O_RDONLY)
    try:
        m = mmap.mmap(fd, 4 * PAGE, mmap.MAP_SHARED, mmap.PROT_READ)
        try:
            assert m[2 * PAGE:2 * PAGE + 8] == bytes(8)  # faulted in by a READ: zeros
            arg = (7 << 32) | 2
            assert ffm.libc.ioctl(fd, ffm.FLOOR_IOC_STEP, arg) == 0
            reads = _counts(floor.path).get("READ", 0)
            assert struct.unpack_from("<Q", m, 2 * PAGE)[0] == arg
            assert m[2 * PAGE + 8:3 * PAGE] == bytes(PAGE - 8)
            # the store, not a READ, made the page: the load was a minor fault
            assert _counts(floor.path).get("READ", 0) == reads
            assert ffm.libc.ioctl(fd, ffm.FLOOR_IOC_STEP, (8 << 32) | 2) == 0
            assert struct.unpack_from("<Q", m, 2 * PAGE)[0] == (8 << 32) | 2
            assert m[PAGE:PAGE + 8] == bytes(8)  # another page: untouched
        finally:
            m.close()
        # a page beyond the end of the file: refused, not stored
        assert ffm.libc.ioctl(fd, ffm.FLOOR_IOC_STEP, 4) == -1
        assert ctypes.get_errno() == errno.EINVAL
        assert ffm.libc.ioctl(fd, ffm.FLOOR_IOC_NOP, 0) == 0
        assert ffm.libc.ioctl(fd, ffm.TCGETS, 0) == -1
        assert ctypes.get_errno() == errno.ENOTTY
    finally:
        os.close(fd)


def test_each_call_costs_the_requests_expected(floor: ffm.FloorMount, exe: Path) -> None:
    # the per-operation request record of the runner: what the docs table quotes
    work = ff.Workloads(exe, ff.CEngine.build(), ff.Sizes.quick())
    work.sizes.meta_n = 200
    work.sizes.ioctl_n = work.sizes.step_n = 300
    got = work.run("block", floor.path, {"meta", "ioctl", "step", "append_4k"})
    assert set(got) == {"create_close", "stat_expired", "unlink", "ioctl", "step", "step_py",
                        "append_4k"}
    assert all(v > 0 for v in got.values())
    req = work.requests
    assert req["stat_expired"] == {"LOOKUP": 1.0}
    assert req["create_close"] == {"LOOKUP": 1.0, "CREATE": 1.0, "GETATTR": 1.0,
                                   "RELEASE": 1.0}
    assert (req["unlink"]["UNLINK"], req["unlink"]["GETATTR"]) == (1.0, 1.0)
    assert req["ioctl"] == {"IOCTL": 1.0}
    assert req["step"] == {"IOCTL": 1.0}  # the load after it is no request at all
    assert req["append_4k"]["WRITE"] == 1.0


@pytest.mark.parametrize("config", ["block", "poll+lat0"])
def test_unmount_ends_the_server_cleanly(exe: Path, tmp_path: Path, config: str) -> None:
    with ffm.floor_mount(exe, config, parent=tmp_path) as fm:
        assert ffm.mount_fstype(fm.path) == ffm.FSTYPE
        (fm.path / "x").write_bytes(b"abc")
        assert (fm.path / "x").stat().st_size == 3
        pid = fm.proc.pid
    assert fm.returncode == 0
    assert fm.unmounted_cleanly
    assert not fm.path.exists()
    assert not os.path.exists(f"/proc/{pid}")  # reaped
    assert leftovers(tmp_path) == []


def test_a_failing_workload_still_unmounts(exe: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), ffm.floor_mount(exe, "block", parent=tmp_path) as fm:
        os.stat(fm.path / "missing")
    assert fm.returncode == 0
    assert leftovers(tmp_path) == []


def test_runner_prints_a_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "floor.json"
    (tmp_path / "tmp").mkdir()
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fuse_floor.py"), "--quick", "--rounds", "1",
         "--configs", "block,poll", "--no-shmfs", "--only", "ioctl,append_512",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False, cwd=REPO,
        env=dict(os.environ, TMPDIR=str(tmp_path / "tmp")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| 512 B append | 8.5 | " in proc.stdout
    assert "load (/proc/loadavg)" in proc.stdout
    doc = json.loads(out.read_text())
    for target in ("block", "poll", "tmpfs"):
        assert set(doc["results"][target]) == {"ioctl", "append_512"}
    assert doc["requests_per_op"]["block"]["append_512"] == {"WRITE": 1.0}
    assert leftovers(tmp_path / "tmp") == []
