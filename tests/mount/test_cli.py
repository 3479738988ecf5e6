"""The ``shmfs`` command as a new user meets it: every mistake answered with one clear
line and a non-zero status, never a traceback, and the kernel tmpfs as the oracle
where tmpfs defines the behaviour (option values, remount refusals).

Each test runs the real command in another process (``python -m mount.cli``)
against real mounts; the mounts and the processes are taken down by the fixtures of
tests/support, also when a test fails.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import pytest

from mount.mounting.kernel import mount_fstype
from mount.mounting.options import FLAG, OPTIONAL, OPTIONS, VALUE
from mount.winapi.client import Window
from tests.support.mounts import shmfs_mount, tmpfs_mount
from tests.windows.helpers import make_object, shmfs_cli

pytestmark = pytest.mark.mount

_libc = ctypes.CDLL(None, use_errno=True)
SYS_FSPICK, SYS_FSCONFIG = 433, 431  # x86_64 and the asm-generic table alike
FSPICK_CLOEXEC = 1
FSCONFIG_SET_STRING, FSCONFIG_CMD_RECONFIGURE = 1, 7


def _one_line_error(r: subprocess.CompletedProcess[str], status: int = 1) -> str:
    """The command failed with ``status`` and said so in exactly one line, no traceback."""
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shmfs"), r.stderr
    return lines[0]


def tmpfs_remount_says(mnt: Path, key: str, value: str) -> str | None:
    """What the kernel says to ``mount -o remount,KEY=VALUE`` of the tmpfs at ``mnt``
    (fspick + fsconfig RECONFIGURE: its own message, read from the context), or None
    if it accepts it. Root only."""
    fd = _libc.syscall(SYS_FSPICK, -100, os.fsencode(mnt), FSPICK_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"fspick({mnt})")
    try:
        if _libc.syscall(SYS_FSCONFIG, fd, FSCONFIG_SET_STRING, key.encode(), value.encode(),
                         0) != 0:
            raise OSError(ctypes.get_errno(), f"fsconfig {key}={value}")
        if _libc.syscall(SYS_FSCONFIG, fd, FSCONFIG_CMD_RECONFIGURE, None, None, 0) == 0:
            return None
        msg = os.read(fd, 4096).decode().strip()
        return msg.split(": ", 1)[1] if ": " in msg else msg
    finally:
        os.close(fd)


def _fill(mnt: Path) -> None:
    """3 MiB in one file and 9 more inodes: enough use for every refusal below."""
    (mnt / "data").write_bytes(b"d" * (3 << 20))
    for i in range(8):
        (mnt / f"f{i}").touch()
    (mnt / "d").mkdir()


@pytest.mark.parametrize(("options", "key", "value"), [
    ("size=20m,nr_inodes=100", "size", "1m"),      # Too small a size for current use
    ("size=0,nr_inodes=100", "size", "1m"),        # Cannot retroactively limit size
    ("size=20m,nr_inodes=100", "nr_inodes", "5"),  # Too few inodes for current use
    ("size=20m,nr_inodes=0", "nr_inodes", "5"),    # Cannot retroactively limit inodes
])
def test_remount_refusals_say_what_tmpfs_says(options: str, key: str, value: str) -> None:
    """A remount below current use, or limiting an unlimited mount: refused with the
    kernel tmpfs's own words for that case (it was one message for all four), and the
    limits unchanged."""
    with shmfs_mount(options) as s, tmpfs_mount(options) as t:
        _fill(s)
        _fill(t)
        said = tmpfs_remount_says(t, key, value)
        assert said is not None
        before = os.statvfs(s)
        line = _one_line_error(shmfs_cli("remount", str(s), "-o", f"{key}={value}"))
        assert line.startswith(f"shmfs: remount {s}: {said}"), (line, said)
        # mount(8)'s way in (mount.fuse3 runs "shmfs SOURCE MNT -o remount,...")
        line = _one_line_error(shmfs_cli("shmfs", str(s), "-o", f"remount,{key}={value}"))
        assert said in line
        after = os.statvfs(s)
        assert (after.f_blocks, after.f_files) == (before.f_blocks, before.f_files)


def test_stat_of_a_path_not_on_shmfs_says_so() -> None:
    with tmpfs_mount() as t:
        line = _one_line_error(shmfs_cli("stat", str(t)))
        assert line == f"shmfs stat: {t}: not on a shmfs mount"
    line = _one_line_error(shmfs_cli("stat", "/nonexistent-shmfs-path"))
    assert "ENOENT" in line


def test_window_destroy_removes_only_windows() -> None:
    """``window destroy`` of an ordinary file is refused and the file stays (it was
    unlinked: a typo lost data); of a window it removes the window."""
    with shmfs_mount("size=16m") as mnt:
        make_object(mnt / "obj", 4)
        line = _one_line_error(shmfs_cli("window", "destroy", str(mnt / "obj")))
        assert line.startswith(f"shmfs window destroy: {mnt / 'obj'}: not a window"), line
        assert (mnt / "obj").stat().st_size == 4 * 4096
        Window.create(mnt / "win", mnt / "obj", 2).close()
        assert shmfs_cli("window", "destroy", str(mnt / "win")).returncode == 0
        assert sorted(os.listdir(mnt)) == ["obj"]
        line = _one_line_error(shmfs_cli("window", "destroy", str(mnt / "win")))
        assert line == f"shmfs window destroy: {mnt / 'win'}: ENOENT (No such file or directory)"


def test_window_errors_name_the_path_and_what_it_is() -> None:
    with shmfs_mount("size=16m") as mnt, tmpfs_mount() as t:
        make_object(mnt / "obj", 4)
        make_object(t / "obj", 4)
        for path in (mnt / "obj", t / "obj"):  # an ordinary shmfs file; not shmfs at all
            for args in (("remap", str(path), "0", "1", "0"), ("query", str(path)),
                         ("madvise", str(path), "0", "1", "remove")):
                line = _one_line_error(shmfs_cli("window", *args))
                assert line.startswith(f"shmfs window {args[0]}: {path}: not a window"), line
        assert shmfs_cli("window", "create", str(mnt / "win"), str(mnt / "obj"),
                         "--pages", "2").returncode == 0
        line = _one_line_error(shmfs_cli("window", "create", str(mnt / "win"), str(mnt / "obj"),
                                         "--pages", "2"))
        assert line == f"shmfs window create: {mnt / 'win'}: EEXIST (File exists)"
        line = _one_line_error(shmfs_cli("window", "remap", str(mnt / "win"), "9", "1", "0"))
        assert line.startswith(f"shmfs window remap: {mnt / 'win'}: EINVAL"), line


def test_unmount_of_a_busy_mount_says_busy_and_keeps_it() -> None:
    """As umount(8) on a busy tmpfs: refused, still mounted; the message says why and
    what to do instead of the system call's bare words."""
    with shmfs_mount("size=16m") as mnt:
        holder = subprocess.Popen(["sleep", "600"], cwd=mnt)
        try:
            line = _one_line_error(shmfs_cli("unmount", str(mnt)))
            assert line.startswith(f"shmfs: unmount {mnt}: target is busy"), line
            assert "shmfs unmount -z" in line
            assert mount_fstype(mnt) == "fuse.shmfs"
        finally:
            holder.kill()
            holder.wait()


def test_help_names_every_option() -> None:
    """``shmfs --help`` names every -o option the parser takes (pt_size, readers, uring
    and writeback_cache were missing)."""
    r = shmfs_cli("--help")
    assert r.returncode == 0 and "Traceback" not in r.stderr
    text = " ".join(r.stdout.split())
    missing = [k for k, (kind, _h) in OPTIONS.items()
               if kind in (VALUE, FLAG, OPTIONAL) and k not in ("remount", "inode64")
               and k not in text]
    assert missing == []


@pytest.mark.parametrize("options", [
    "size=0", "size=1", "size=1k", "size=2m", "size=1g", "size=50%", "nr_blocks=10",
    "nr_inodes=0", "nr_inodes=1k", "mode=755", "mode=0700", "mode=01777", "uid=12,gid=13",
])
def test_option_values_as_tmpfs(options: str) -> None:
    """The documented values mean what they mean on tmpfs: statfs's limits and the
    root's mode and owner are the kernel's for the same -o string."""
    with shmfs_mount(options) as s, tmpfs_mount(options) as t:
        def seen(m: Path) -> tuple[int, ...]:
            st, vfs = os.stat(m), os.statvfs(m)
            return (vfs.f_blocks * vfs.f_frsize, vfs.f_files, st.st_mode, st.st_uid,
                    st.st_gid)
        assert seen(s) == seen(t)


@pytest.mark.parametrize(("args", "status", "said"), [
    (("-o", "bogus"), 2, "shmfs: Unknown parameter 'bogus'"),
    (("-o", "size=garbage"), 2, "shmfs: Bad value for 'size'"),
    (("-o", "mode=9999"), 2, "shmfs: Bad value for 'mode'"),
    (("-o", "huge=always"), 2, "shmfs: option 'huge' of tmpfs is not supported"),
])
def test_bad_mounts_are_one_line_and_mount_nothing(tmp_path: Path, args: tuple[str, ...],
                                                   status: int, said: str) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    line = _one_line_error(shmfs_cli(str(mnt), *args), status)
    assert line.startswith(said), line
    assert mount_fstype(mnt) is None


def test_mountpoint_problems_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    line = _one_line_error(shmfs_cli(str(tmp_path / "missing")), 2)
    assert line == f"shmfs: mountpoint {tmp_path / 'missing'}: No such file or directory"
    line = _one_line_error(shmfs_cli(str(tmp_path / "file")), 2)
    assert line == f"shmfs: mountpoint {tmp_path / 'file'} is not a directory"


@pytest.mark.parametrize(("flags", "said"), [
    (("--log", "{tmp}/no/such/dir/log"), "shmfs: --log {tmp}/no/such/dir/log: No such file"),
    (("-f", "--log", "{tmp}/no/such/dir/log"), "shmfs: --log {tmp}/no/such/dir/log: No such "),
    (("--log", "{tmp}"), "shmfs: --log {tmp}: Is a directory"),
    (("--pidfile", "{tmp}/no/such/dir/pid"), "shmfs: --pidfile {tmp}/no/such/dir/pid: No such "
                                             "directory"),
    (("--pidfile", "{tmp}"), "shmfs: --pidfile {tmp}: Is a directory"),
])
def test_unwritable_log_or_pidfile_is_refused_before_mounting(
        tmp_path: Path, flags: tuple[str, ...], said: str) -> None:
    """Found only after the mount, these killed the daemon: a traceback with -f, "the
    daemon exited before the mount was ready" for --log, and for --pidfile a dead
    mount left behind ("Transport endpoint is not connected")."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    args = [f.format(tmp=tmp_path) for f in flags]
    try:
        line = _one_line_error(shmfs_cli(str(mnt), *args, "-o", "size=1m"), 2)
        assert line.startswith(said.format(tmp=tmp_path)), line
        assert mount_fstype(mnt) is None
    finally:
        if mount_fstype(mnt) is not None:  # a failure above must not leave it mounted
            subprocess.run(["umount", "-l", str(mnt)], check=False)
