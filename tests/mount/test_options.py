"""-o options are exact, as tmpfs's are (issue 11): every value the kernel's
tmpfs refuses, shmfs refuses with the kernel's words; every value it accepts,
shmfs reads the same way. The oracle is the kernel itself, asked through
fsopen/fsconfig (tests/support/fsconfig.py) without mounting anything."""

from __future__ import annotations

import os

import pytest

from mount.mounting import kernel
from mount.mounting.options import OptionError, mem_total_bytes, parse_options
from tests.support.fsconfig import kernel_says

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="fsopen needs CAP_SYS_ADMIN")


def _shmfs_says(item: str) -> str | None:
    try:
        parse_options(item)
    except OptionError as e:
        return str(e)
    return None


# (option as given to -o, the kernel filesystem that decides it)
REFUSED = [
    ("uid=4294967296", "tmpfs"), ("uid=4294968297", "tmpfs"), ("gid=4294967295", "tmpfs"),
    ("uid=4294967295", "tmpfs"), ("uid=-1", "tmpfs"), ("uid=abc", "tmpfs"), ("uid=", "tmpfs"),
    ("gid=1x", "tmpfs"), ("nr_inodes=99999999999999999999", "tmpfs"),
    ("nr_inodes=18014398509481984", "tmpfs"), ("nr_inodes=abc", "tmpfs"),
    ("nr_inodes=1%", "tmpfs"), ("nr_inodes=-1", "tmpfs"), ("nr_inodes=", "tmpfs"),
    ("nr_blocks=9223372036854775808", "tmpfs"), ("size=abc", "tmpfs"), ("size=-1", "tmpfs"),
    ("size=1q", "tmpfs"), ("size=", "tmpfs"), ("mode=999", "tmpfs"), ("mode=0x1ff", "tmpfs"),
    ("mode=", "tmpfs"), ("bogus=1", "tmpfs"), ("bogus", "tmpfs"),
    # VFS flags given a value reach the filesystem as parameters it does not know
    ("nosuid=0", "tmpfs"), ("nodev=1", "tmpfs"), ("noatime=1", "tmpfs"),
    # a FUSE flag given a value: fs_parse's "Unexpected value"
    ("allow_other=1", "fuse"),
]


@needs_root
@pytest.mark.parametrize(("item", "fstype"), REFUSED)
def test_refused_with_the_kernels_words(item: str, fstype: str) -> None:
    key, eq, value = item.partition("=")
    want = kernel_says(fstype, key, value if eq else None)
    assert want is not None, f"the kernel accepts {item}; the case is wrong"
    assert _shmfs_says(item) == want


ACCEPTED = [
    ("uid=4294967294", "uid", 4294967294), ("uid=0x10", "uid", 16), ("uid=010", "uid", 8),
    ("uid=+5", "uid", 5), ("gid=7", "gid", 7), ("mode=77777", "mode", 0o7777),
    ("mode=0700", "mode", 0o700), ("nr_inodes=0x10k", "nr_inodes", 16384),
    ("nr_inodes=1K", "nr_inodes", 1024),
    ("nr_inodes=18014398509481983", "nr_inodes", 18014398509481983),
    ("size=0x1000", "size_bytes", 4096), ("size=1", "size_bytes", 4096),
    ("size=3m", "size_bytes", 3 << 20),
    # memparse wraps modulo 2^64 and tmpfs mounts it (size=7584257452590080k in /proc/mounts)
    ("size=99999999999999999999", "size_bytes", 7584257452590080 * 1024),
    ("nr_blocks=9223372036854775807", "size_bytes", (2**63 - 1) * 4096),
]


@needs_root
@pytest.mark.parametrize(("item", "attr", "want"), ACCEPTED)
def test_accepted_values_read_as_the_kernel_reads_them(item: str, attr: str, want: int) -> None:
    key, _, value = item.partition("=")
    assert kernel_says("tmpfs", key, value) is None
    assert getattr(parse_options(item), attr) == want


def test_size_percent_is_shmem_arithmetic() -> None:
    """size=N%: (N << PAGE_SHIFT) * totalram_pages / 100, rounded up to a page."""
    pages = mem_total_bytes() // 4096
    for pct in (1, 50, 200):
        want = -(-((pct << 12) * pages // 100) // 4096) * 4096
        assert parse_options(f"size={pct}%").size_bytes == want


def test_mount_flags_and_ignored_options() -> None:
    o = parse_options("")
    assert o.ms_flags == 0  # as tmpfs by root: no implicit nosuid,nodev
    o = parse_options("nosuid,nodev,noexec,noatime,nodiratime,lazytime,rw")
    assert o.ms_flags == (kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC
                          | kernel.MS_NOATIME | kernel.MS_NODIRATIME | kernel.MS_LAZYTIME)
    o = parse_options("nosuid,suid,nodev,dev,noexec,exec,noatime,atime,strictatime")
    assert o.ms_flags == kernel.MS_STRICTATIME
    # what only mount(8), mount.fuse3 and systemd act on changes nothing
    ignored = ("defaults,auto,noauto,user,users,nouser,owner,group,_netdev,nofail,"
               "x-systemd.automount,x-gvfs-hide,comment=systemd.x")
    assert parse_options(ignored) == parse_options("")
    # FUSE's own parameters come back from mountinfo only with -o remount
    assert parse_options("remount,user_id=0,max_read=4096,noatime").remount
    assert _shmfs_says("user_id=0") == "Unknown parameter 'user_id'"


@pytest.mark.parametrize("item", ["ro", "huge=always", "mpol=local", "noswap", "quota"])
def test_unimplemented_tmpfs_options_refused_by_name(item: str) -> None:
    said = _shmfs_says(item)
    assert said is not None and f"'{item.split('=')[0]}' of tmpfs is not supported" in said


@pytest.mark.parametrize(("item", "want"), [("oom_score_adj=-1000", -1000),
                                            ("oom_score_adj=1000", 1000),
                                            ("oom_score_adj=0", 0)])
def test_oom_score_adj_option(item: str, want: int) -> None:
    assert parse_options(item).oom_score_adj == want


@pytest.mark.parametrize("item", ["oom_score_adj=-1001", "oom_score_adj=1001",
                                  "oom_score_adj=x", "oom_score_adj="])
def test_oom_score_adj_out_of_range(item: str) -> None:
    assert _shmfs_says(item) == "Bad value for 'oom_score_adj'"
