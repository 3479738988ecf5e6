"""``-o`` option parsing with tmpfs(5)'s grammar.

size= and nr_blocks= take k/m/g/t/p/e suffixes (size= also a percentage of
RAM), nr_inodes= takes k/m/g, mode= is octal; 0 means unlimited. Options that
tmpfs has but shmfs does not implement are refused by name rather than
ignored, so nobody believes they got a huge-page or NUMA policy they did not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mount.mounting.kernel import MS_NODEV, MS_NOEXEC, MS_NOSUID

PAGE_SIZE = 4096

_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}

# tmpfs options we deliberately do not implement, with the reason given to the user.
UNSUPPORTED = {
    "mpol": "NUMA memory policy has no meaning for a userspace page arena",
    "huge": "the arena uses 4 KiB frames only",
    "inode32": "inode numbers are 64-bit",
    "noswap": "the daemon's memory follows the host's swap policy",
    "quota": "quotas are not implemented",
    "usrquota": "quotas are not implemented",
    "grpquota": "quotas are not implemented",
    "usrquota_block_hardlimit": "quotas are not implemented",
    "usrquota_inode_hardlimit": "quotas are not implemented",
    "grpquota_block_hardlimit": "quotas are not implemented",
    "grpquota_inode_hardlimit": "quotas are not implemented",
    "ro": "a read-only empty memory filesystem is useless; not implemented",
}


class OptionError(ValueError):
    """An -o option that cannot be honoured; str() is the message for the user."""


@dataclass(slots=True)
class MountOptions:
    """Everything the CLI understood from -o."""

    size_bytes: int = 0
    size_given: bool = False
    nr_inodes: int = 0
    nr_inodes_given: bool = False
    mode: int = 0o1777
    uid: int = 0
    gid: int = 0
    allow_other: bool = False
    ms_flags: int = MS_NOSUID | MS_NODEV
    # PM QoS wake-up latency (µs) held while requests stream in; None = off
    # (mount/server/cpulatency.py). Not a tmpfs option: shmfs's own.
    cpu_latency_us: int | None = 0
    # FUSE_WRITEBACK_CACHE (opt-in; docs/performance.md "writeback_cache"): the kernel
    # batches small writes and reports ENOSPC at fsync/close instead of write(2)
    writeback_cache: bool = False
    # threads reading /dev/fuse (readers=2: a second one on a cloned fd, so small
    # requests do not wait behind large WRITEs; docs/performance.md change 13)
    readers: int = 1
    extra: dict[str, str] = field(default_factory=dict)


def mem_total_bytes() -> int:
    """Physical RAM, the base of size=N%."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OptionError("cannot read MemTotal from /proc/meminfo")


def parse_size(value: str, *, allow_percent: bool = True) -> int:
    """tmpfs's memparse: a number with an optional binary suffix, or N% of RAM."""
    v = value.strip().lower()
    if not v:
        raise OptionError("empty size")
    if v.endswith("%"):
        if not allow_percent:
            raise OptionError(f"'{value}': a percentage is not allowed here")
        try:
            pct = int(v[:-1])
        except ValueError:
            raise OptionError(f"bad percentage '{value}'") from None
        pages = mem_total_bytes() // PAGE_SIZE * pct // 100
        return pages * PAGE_SIZE
    mult = 1
    if v[-1] in _SUFFIX:
        mult = _SUFFIX[v[-1]]
        v = v[:-1]
    try:
        n = int(v, 0)
    except ValueError:
        raise OptionError(f"bad size '{value}'") from None
    if n < 0:
        raise OptionError(f"negative size '{value}'")
    return n * mult


def parse_options(text: str, *, uid: int = 0, gid: int = 0) -> MountOptions:
    """Parse a comma-separated -o string (may be empty)."""
    opts = MountOptions(uid=uid, gid=gid)
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = item.partition("=")
        if key in UNSUPPORTED:
            raise OptionError(f"option '{key}' of tmpfs is not supported by shmfs: "
                              f"{UNSUPPORTED[key]}")
        if key == "size":
            opts.size_bytes = _round_up_page(parse_size(value))
            opts.size_given = True
        elif key == "nr_blocks":
            opts.size_bytes = parse_size(value, allow_percent=False) * PAGE_SIZE
            opts.size_given = True
        elif key == "nr_inodes":
            opts.nr_inodes = parse_size(value, allow_percent=False)
            opts.nr_inodes_given = True
        elif key == "mode":
            try:
                opts.mode = int(value, 8) & 0o7777
            except ValueError:
                raise OptionError(f"bad mode '{value}' (octal expected)") from None
        elif key in ("uid", "gid"):
            try:
                n = int(value)
            except ValueError:
                raise OptionError(f"bad {key} '{value}' (a number expected)") from None
            if n < 0:
                raise OptionError(f"bad {key} '{value}'")
            setattr(opts, key, n)
        elif key == "cpu_latency":
            opts.cpu_latency_us = _parse_cpu_latency(value)
        elif key == "writeback_cache" and not value:
            opts.writeback_cache = True
        elif key == "readers":
            if value not in ("1", "2"):
                raise OptionError(f"bad readers '{value}' (1 or 2)")
            opts.readers = int(value)
        elif key == "allow_other":
            opts.allow_other = True
        elif key in ("rw", "defaults", "inode64", "suid", "dev", "exec", "nosuid", "nodev",
                     "noexec"):
            _apply_flag(opts, key)
        else:
            raise OptionError(f"unknown option '{item}'")
    return opts


def _parse_cpu_latency(value: str) -> int | None:
    """cpu_latency=off or a number of microseconds (0 = idle CPUs poll)."""
    if value == "off":
        return None
    try:
        n = int(value)
    except ValueError:
        raise OptionError(f"bad cpu_latency '{value}' (microseconds or 'off')") from None
    if not 0 <= n < 2_000_000_000:
        raise OptionError(f"bad cpu_latency '{value}'")
    return n


def _apply_flag(opts: MountOptions, key: str) -> None:
    flags = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
    if key in flags:
        opts.ms_flags |= flags[key]
    elif key in ("suid", "dev", "exec"):
        opts.ms_flags &= ~flags["no" + key]


def _round_up_page(n: int) -> int:
    return (n + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE


def default_limits() -> tuple[int, int]:
    """tmpfs's defaults: half of RAM for size, and as many inodes as half of RAM's pages."""
    total = mem_total_bytes()
    pages = total // PAGE_SIZE
    return pages // 2 * PAGE_SIZE, pages // 2
