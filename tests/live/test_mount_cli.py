"""shmfs mounted the way Linux mounts things (issue 14 part 1), the CLI's
edges (issue 11: unmount only shmfs, exact option errors, no traceback) and
the mount's default flags beside a kernel tmpfs (issue 13 item 8).

mount(8) -t fuse.shmfs runs mount.fuse3, which runs ``shmfs SOURCE MNT -o
OPTS`` from its fixed PATH: the ``helper`` fixture makes sure the
/usr/local/bin/shmfs that scripts/bootstrap.sh installs runs this checkout.
Every mount here is on a fresh temporary directory; teardown unmounts it
without touching it and ends the daemons found by that unique path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mount.mounting.kernel import abort_connection, is_mounted, mount_entry
from tests.live.test_user_mount import NOBODY, _dev_fuse_mode, _traversable
from tests.support.mounts import ROOT, tmpfs_mount
from tests.support.procs import exited

pytestmark = pytest.mark.mount

WRAPPER = Path("/usr/local/bin/shmfs")
OLD_A = 1_000_000_000 * 10**9  # an atime long past: relatime updates it, noatime does not


def _run(*args: str, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False,
                       **kw)  # type: ignore[call-overload]
    if check:
        assert r.returncode == 0, f"{args}: rc={r.returncode} {r.stderr}"
    return r


def _shmfs(*args: str) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, "-m", "mount.cli", *args, check=False, cwd=ROOT)


@pytest.fixture(scope="module")
def helper() -> Path:
    """/usr/local/bin/shmfs, installed by bootstrap.sh as root, running this checkout."""
    _run(str(ROOT / "scripts" / "bootstrap.sh"))
    text = WRAPPER.read_text()
    assert str(ROOT) in text, f"{WRAPPER} runs another checkout:\n{text}"
    return WRAPPER


def _pids_naming(path: Path) -> list[int]:
    """Processes whose command line names path (the daemon of a mount there)."""
    found = []
    needle = os.fsencode(path)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
    return found


def _wait_exit(pids: list[int], timeout: float = 30.0) -> list[int]:
    """Wait (pidfd, no sleeps) for pids to exit; those still alive after timeout."""
    return [pid for pid in pids if not exited(pid, timeout)]


@contextlib.contextmanager
def _mountpoint(owner: int | None = None) -> Iterator[Path]:
    """A fresh directory; afterwards nothing mounted on it and no daemon naming it."""
    base = Path(tempfile.mkdtemp(prefix="shmfs-mountcli-"))
    base.chmod(0o755)
    mnt = base / "mnt"
    mnt.mkdir()
    if owner is not None:
        os.chown(mnt, owner, owner)
    try:
        yield mnt
    finally:
        pids = _pids_naming(mnt)
        if is_mounted(mnt):
            subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
        if is_mounted(mnt):
            abort_connection(mnt)
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
        for pid in _wait_exit(pids, 20):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


def _daemon(mnt: Path) -> int:
    pids = [p for p in _pids_naming(mnt)
            if b"mount.cli" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(pids) == 1, pids
    return pids[0]


# -- mount(8), fstab, systemd ---------------------------------------------------------

def test_version() -> None:
    r = _shmfs("--version")
    assert r.returncode == 0 and r.stdout.strip() == "shmfs 0.1.0"


def test_mount_t_fuse_shmfs_as_root(helper: Path) -> None:
    with _mountpoint() as mnt, tmpfs_mount("size=1m,mode=0750") as t:
        _run("mount", "-t", "fuse.shmfs", "my-label", str(mnt), "-o", "size=1m,mode=0750")
        e = mount_entry(mnt)
        assert e is not None and e.fstype == "fuse.shmfs" and e.source == "my-label"
        assert "my-label " + str(mnt) in Path("/proc/mounts").read_text()
        # tmpfs's defaults: no implicit nosuid,nodev (issue 13 item 8)
        assert e.mount_options == mount_entry(t).mount_options == {"rw", "relatime"}
        assert os.statvfs(mnt).f_blocks == os.statvfs(t).f_blocks == 256
        assert os.stat(mnt).st_mode & 0o7777 == 0o750
        (mnt / "f").write_bytes(b"through mount(8)")
        assert (mnt / "f").read_bytes() == b"through mount(8)"
        daemon = _daemon(mnt)
        _run("umount", str(mnt))
        assert not is_mounted(mnt)
        assert _wait_exit([daemon]) == []  # no daemon left behind


def test_mount_flags_as_tmpfs(helper: Path) -> None:
    """The VFS flags mount(8) passes are honoured as a kernel tmpfs honours them."""
    opts = "nosuid,nodev,noexec,noatime,nodiratime,lazytime"
    with _mountpoint() as mnt, tmpfs_mount(opts) as t:
        _run("mount", "-t", "fuse.shmfs", "shmfs", str(mnt), "-o", opts)
        e, te = mount_entry(mnt), mount_entry(t)
        assert e.mount_options == te.mount_options == {
            "rw", "nosuid", "nodev", "noexec", "noatime", "nodiratime"}
        assert "lazytime" in e.super_options and "lazytime" in te.super_options
        script = mnt / "x.sh"
        script.write_text("#!/bin/sh\necho ran\n")
        script.chmod(0o755)
        with pytest.raises(PermissionError):  # noexec, enforced by the kernel
            subprocess.run([str(script)], check=False)


def test_remount_through_mount8_changes_atime_and_limits(helper: Path) -> None:
    with _mountpoint() as mnt:
        _run("mount", "-t", "fuse.shmfs", "shmfs", str(mnt), "-o", "size=1m")
        f = mnt / "f"
        f.write_bytes(b"data")
        os.utime(f, ns=(OLD_A, OLD_A))  # an old atime: relatime would update it
        _run("mount", "-o", "remount,noatime", str(mnt))
        assert "noatime" in mount_entry(mnt).mount_options
        f.read_bytes()
        assert f.stat().st_atime_ns == OLD_A  # noatime: the daemon left it
        _run("mount", "-o", "remount,relatime,size=2m", str(mnt))
        assert os.statvfs(mnt).f_blocks == 512
        f.read_bytes()
        assert f.stat().st_atime_ns > OLD_A
        # shmfs remount does the same without mount(8); other flags are kept
        r = _shmfs("remount", str(mnt), "-o", "strictatime,nosuid")
        assert r.returncode == 0, r.stderr
        assert mount_entry(mnt).mount_options == {"rw", "nosuid"}  # strictatime shows nothing
        r = _shmfs("remount", str(mnt), "-o", "noatime")
        assert r.returncode == 0, r.stderr
        assert mount_entry(mnt).mount_options == {"rw", "nosuid", "noatime"}


def test_fstab_line_through_mount_T(helper: Path, tmp_path: Path) -> None:
    with _mountpoint() as mnt:
        fstab = tmp_path / "fstab"
        fstab.write_text(f"fstab-shm {mnt} fuse.shmfs size=2m,mode=0700,noauto,nofail,"
                         "_netdev,x-systemd.after=network.target,comment=test,defaults 0 0\n")
        _run("mount", "-T", str(fstab), str(mnt))
        e = mount_entry(mnt)
        assert e.source == "fstab-shm" and e.fstype == "fuse.shmfs"
        assert os.statvfs(mnt).f_blocks == 512 and os.stat(mnt).st_mode & 0o7777 == 0o700
        daemon = _daemon(mnt)
        _run("umount", str(mnt))
        assert _wait_exit([daemon]) == []


def test_user_fstab_entry_mounted_by_a_normal_user(helper: Path, tmp_path: Path) -> None:
    """A ``user`` fstab entry, mounted and unmounted by uid 65534 with mount(8)
    and umount(8): mount.fuse3 runs shmfs as that user, which mounts through
    fusermount3. In a private mount namespace with its own /etc/fstab."""
    site = Path(sysconfig.get_paths()["purelib"])
    interp = Path(os.path.realpath(sys.executable))
    with _mountpoint(owner=NOBODY) as mnt, _dev_fuse_mode(0o666), \
            _traversable(ROOT, site, interp.parent):
        fstab = tmp_path / "fstab"
        fstab.write_text(f"usershm {mnt} fuse.shmfs user,noauto,size=1m 0 0\n")
        fstab.chmod(0o644)
        user = f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups"
        script = f"""set -e
mount --bind {fstab} /etc/fstab
{user} mount {mnt}
grep " {mnt} " /proc/self/mountinfo
{user} sh -c 'echo hi > {mnt}/f && cat {mnt}/f && stat -c %u {mnt}/f'
{user} umount {mnt}
grep -c " {mnt} " /proc/self/mountinfo || true
"""
        r = _run("unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                 check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        info = lines[0]
        assert " - fuse.shmfs usershm " in info and f"user_id={NOBODY}" in info
        # a fusermount3 mount gets nosuid,nodev (and user implies noexec)
        assert "nosuid" in info and "nodev" in info and "noexec" in info
        assert lines[1:] == ["hi", str(NOBODY), "0"]


def test_systemd_mount_unit(helper: Path, tmp_path: Path) -> None:
    """The README's .mount unit. systemd is not PID 1 here, so the unit cannot
    be started: systemd-analyze verify checks it, and what it would run --
    mount(8) with its What/Where/Type/Options -- is run by hand."""
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd)")
    with _mountpoint() as mnt:
        name = subprocess.run(["systemd-escape", "--path", "--suffix=mount", str(mnt)],
                              capture_output=True, text=True, check=True).stdout.strip()
        unit = tmp_path / name
        unit.write_text(f"""[Unit]
Description=shmfs on {mnt}

[Mount]
What=shmfs
Where={mnt}
Type=fuse.shmfs
Options=size=2m,mode=1777,nosuid,nodev

[Install]
WantedBy=multi-user.target
""")
        r = _run(verify, "verify", str(unit), check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        misnamed = tmp_path / "misnamed.mount"  # the check is real: a bad unit fails it
        misnamed.write_text(unit.read_text())
        assert _run(verify, "verify", str(misnamed), check=False).returncode != 0
        # what systemd runs for it: /bin/mount What Where -t Type -o Options
        _run("mount", "shmfs", str(mnt), "-t", "fuse.shmfs", "-o", "size=2m,mode=1777,"
             "nosuid,nodev")
        assert os.statvfs(mnt).f_blocks == 512
        daemon = _daemon(mnt)
        _run("umount", str(mnt))  # systemctl stop: umount(8) of Where
        assert _wait_exit([daemon]) == []


# -- the CLI's edges --------------------------------------------------------------------

@pytest.mark.parametrize(("item", "said"), [
    ("uid=4294967296", "Bad value for 'uid'"), ("uid=4294968297", "Bad value for 'uid'"),
    ("gid=4294967295", "Invalid gid '4294967295'"),
    ("nr_inodes=99999999999999999999", "Bad value for 'nr_inodes'"),
    ("nosuid=0", "Unknown parameter 'nosuid'"),
    ("allow_other=1", "Unexpected value for 'allow_other'"),
    ("nr_inodes=abc", "Bad value for 'nr_inodes'"),
])
def test_bad_options_refused_up_front(item: str, said: str) -> None:
    with _mountpoint() as mnt:
        r = _shmfs(str(mnt), "-o", item)
        assert r.returncode == 2 and r.stderr == f"shmfs: {said}\n"
        assert not is_mounted(mnt)


def test_remount_option_errors(shmfs: Path) -> None:
    for item, said in [("bogus=1", "Unknown parameter 'bogus'"),
                       ("nr_inodes=99999999999999999999", "Bad value for 'nr_inodes'"),
                       ("size=", "Bad value for 'size'")]:
        r = _shmfs("remount", str(shmfs), "-o", item)
        assert (r.returncode, r.stderr) == (2, f"shmfs: {said}\n")
    # memparse wraps modulo 2^64 on both: the same (huge) limit, no traceback
    r = _shmfs("remount", str(shmfs), "-o", "size=99999999999999999999")
    assert r.returncode == 0, r.stderr
    with tmpfs_mount() as t:
        _run("mount", "-o", "remount,size=99999999999999999999", str(t))
        assert os.statvfs(shmfs).f_blocks == os.statvfs(t).f_blocks


def test_unmount_refuses_what_is_not_shmfs(tmp_path: Path) -> None:
    with tmpfs_mount() as t:
        (t / "keep").write_bytes(b"tmpfs data")
        r = _shmfs("unmount", str(t))
        assert r.returncode == 1 and "not a shmfs mount (it is tmpfs)" in r.stderr
        r = _shmfs("unmount", "-z", str(t))
        assert r.returncode == 1
        assert is_mounted(t) and (t / "keep").read_bytes() == b"tmpfs data"
    r = _shmfs("unmount", "/proc")
    assert r.returncode == 1 and "(it is proc)" in r.stderr
    assert os.path.ismount("/proc")
    r = _shmfs("unmount", str(tmp_path))
    assert r.returncode == 1 and "not a mount point" in r.stderr


def test_unmount_z_clears_a_dead_shmfs() -> None:
    with _mountpoint() as mnt:
        r = _shmfs(str(mnt))
        assert r.returncode == 0, r.stderr
        daemon = _daemon(mnt)
        os.kill(daemon, signal.SIGKILL)
        assert _wait_exit([daemon]) == []
        with pytest.raises(OSError):  # ENOTCONN
            os.stat(mnt)
        r = _shmfs("unmount", "-z", str(mnt))
        assert r.returncode == 0, r.stderr
        assert not is_mounted(mnt)


# -- oom_score_adj (issue 17 part 1) -------------------------------------------------

def _has_cap_sys_resource() -> bool:
    with open("/proc/self/status") as f:
        eff = next(int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:"))
    return bool(eff & (1 << 24))


def _oom(pid: int) -> tuple[int, int]:
    adj = int(Path(f"/proc/{pid}/oom_score_adj").read_text())
    return adj, int(Path(f"/proc/{pid}/oom_score").read_text())


HOG = """
import sys
buf = bytearray(int(sys.argv[1]))
for i in range(0, len(buf), 4096):
    buf[i] = 1
print("ready", flush=True)
sys.stdin.read()
"""


def test_daemon_is_not_the_oom_victim() -> None:
    """As root the daemon sets oom_score_adj=-900; with 64 MiB written it must
    score below a process that has touched 32 MiB. Where root lacks
    CAP_SYS_RESOURCE (a container may drop it) the kernel refuses any lowering:
    then the daemon must say so in its log and still mount, and an explicit
    oom_score_adj= below the current value must be refused up front."""
    with _mountpoint() as mnt:
        log = mnt.parent / "log"
        r = _shmfs(str(mnt), "-o", "size=128m", "--log", str(log))
        assert r.returncode == 0, r.stderr
        daemon = _daemon(mnt)
        with open(mnt / "data", "wb") as f:
            for _ in range(64):
                f.write(os.urandom(1 << 20))
        with subprocess.Popen([sys.executable, "-c", HOG, str(32 << 20)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as hog:
            try:
                assert hog.stdout is not None and hog.stdout.readline() == "ready\n"
                d_adj, d_score = _oom(daemon)
                h_score = _oom(hog.pid)[1]
            finally:
                hog.kill()
        if _has_cap_sys_resource():
            assert d_adj == -900
            assert d_score < h_score, (d_score, h_score)
        else:
            assert d_adj == 0 and "cannot set oom_score_adj=-900" in log.read_text()
    with _mountpoint() as mnt:
        if not _has_cap_sys_resource():
            r = _shmfs(str(mnt), "-o", "oom_score_adj=-500")
            assert r.returncode == 1 and "cannot set oom_score_adj=-500" in r.stderr
            assert not is_mounted(mnt)
        r = _shmfs(str(mnt), "-o", "oom_score_adj=300")  # raising: anyone may
        assert r.returncode == 0, r.stderr
        assert _oom(_daemon(mnt))[0] == 300


def test_normal_user_may_only_raise_oom_score_adj() -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    interp = Path(os.path.realpath(sys.executable))
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    with _mountpoint(owner=NOBODY) as mnt, _dev_fuse_mode(0o666), \
            _traversable(ROOT, site, interp.parent):
        cmd = [*as_nobody, sys.executable, "-m", "mount.cli", str(mnt)]
        r = _run(*cmd, "-o", "oom_score_adj=-1", check=False, cwd=ROOT)
        assert r.returncode == 1 and "CAP_SYS_RESOURCE" in r.stderr
        assert not is_mounted(mnt)
        r = _run(*cmd, "-o", "oom_score_adj=200", check=False, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        assert _oom(_daemon(mnt))[0] == 200


def test_largest_limits_statfs_as_tmpfs() -> None:
    """The largest nr_inodes tmpfs takes and a size= that memparse wraps: both
    mounts report the same totals (the daemon once answered df with EIO)."""
    opts = "nr_inodes=18014398509481983,size=99999999999999999999"
    with _mountpoint() as mnt, tmpfs_mount(opts) as t:
        r = _shmfs(str(mnt), "-o", opts)
        assert r.returncode == 0, r.stderr
        s, k = os.statvfs(mnt), os.statvfs(t)
        assert (s.f_blocks, s.f_bfree, s.f_files) == (k.f_blocks, k.f_bfree, k.f_files)


def test_fusermount3_path_flags() -> None:
    """Through fusermount3 (a normal user's way; SHMFS_FUSERMOUNT=1 takes it as
    root): the flags it knows are honoured, the atime flags it does not know
    (3.14: strictatime, nodiratime, lazytime) are refused, never dropped."""
    env = dict(os.environ, SHMFS_FUSERMOUNT="1")
    with _mountpoint() as mnt:
        for opt in ("strictatime", "nodiratime", "lazytime"):
            r = _run(sys.executable, "-m", "mount.cli", str(mnt), "-o", opt, check=False,
                     cwd=ROOT, env=env)
            assert r.returncode == 1 and f"fusermount3 cannot set {opt}" in r.stderr
            assert not is_mounted(mnt)
        _run(sys.executable, "-m", "mount.cli", "lbl", str(mnt), "-o", "noatime,nodev",
             cwd=ROOT, env=env)
        e = mount_entry(mnt)
        assert e.source == "lbl" and e.mount_options == {"rw", "nodev", "noatime"}
        _run("fusermount3", "-u", str(mnt))
