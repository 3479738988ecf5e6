"""``-o`` option parsing with tmpfs(5)'s grammar and the kernel's own checks.

Every option is one row of ``OPTIONS``: its name, whether it takes a value,
and what it does to ``MountOptions``. Values are parsed as mm/shmem.c
(shmem_parse_one) and fs/fs_parser.c parse them -- memparse() for sizes,
kstrtouint() for ids and modes -- and a bad one is refused up front with the
kernel's own words ("Bad value for 'uid'", "Invalid gid '4294967295'",
"Unknown parameter 'bogus'"), prefixed ``shmfs:`` where tmpfs says ``tmpfs:``.

Three more kinds of option, because mount(8), mount.fuse3 and systemd hand
shmfs what they hand every filesystem:

* VFS mount flags the kernel honours for any mount (``suid``/``nosuid``,
  ``dev``/``nodev``, ``exec``/``noexec``, the atime options, ``rw``) set
  ``ms_flags`` for mount(2). Given a value (``nosuid=0``) they reach a kernel
  filesystem as a parameter it does not know, so they are refused as tmpfs
  refuses them: "Unknown parameter 'nosuid'".
* Options meant for mount(8) or systemd only (``defaults``, ``auto``,
  ``user``, ``_netdev``, ``nofail``, ``x-*``, ``comment=``...) are ignored.
* tmpfs options that shmfs does not implement are refused by name, so nobody
  believes they got a huge-page or NUMA policy they did not.

Nothing else is accepted silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from mount.mounting.kernel import (
    MS_LAZYTIME,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RELATIME,
    MS_STRICTATIME,
)

PAGE_SIZE = 4096
BOGO_INODE_SIZE = 1024  # mm/shmem.c: nr_inodes may not exceed ULONG_MAX / this
U32_MAX = 2**32 - 1
U64 = 2**64
LONG_MAX = 2**63 - 1
OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX = -1000, 1000

_SUFFIX = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}

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

# Options only mount(8), mount.fuse3 or systemd act on; a kernel mount never sees them.
IGNORED = frozenset({"defaults", "auto", "noauto", "user", "users", "nouser", "owner",
                     "noowner", "group", "nogroup", "_netdev", "nofail"})
IGNORED_PREFIXES = ("x-", "comment=")
# FUSE's own mount parameters as /proc/self/mountinfo shows them: mount(8)
# hands them back to the helper with -o remount, where they change nothing.
FUSE_SHOWN = frozenset({"fd", "rootmode", "user_id", "group_id", "default_permissions",
                        "max_read", "blksize"})


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
    # mount(2) flags; none by default, as for a tmpfs mounted by root (a
    # fusermount3 mount gets nosuid,nodev from fusermount3 whatever is asked)
    ms_flags: int = 0
    # PM QoS wake-up latency (µs) held while requests stream in; None = off
    # (mount/server/cpulatency.py). Not a tmpfs option: shmfs's own.
    cpu_latency_us: int | None = 0
    # the daemon's /proc/self/oom_score_adj; None = the default (daemon.py)
    oom_score_adj: int | None = None
    remount: bool = False  # "remount" among the options: mount -o remount through mount.fuse3
    given: list[str] = field(default_factory=list)  # option names, in order
    # FUSE_WRITEBACK_CACHE (opt-in; docs/performance.md "writeback_cache"): the kernel
    # batches small writes and reports ENOSPC at fsync/close instead of write(2)
    writeback_cache: bool = False
    # threads reading /dev/fuse (more than 1: the others on cloned fds, so small
    # requests do not wait behind large WRITEs; docs/performance.md changes 13, 23);
    # 0 = auto: 3, or 1 where a clone cannot serve (restartable, uring)
    readers: int = 0
    # FUSE over io_uring: off | auto (when the kernel allows) | on (or fail the mount);
    # mount/server/uring_fuse.py, docs/performance.md change 14
    uring: str = "off"
    extra: dict[str, str] = field(default_factory=dict)
    # page-table memory of all windows (fsimpl/ptbudget.py): None = size/64, >= 16 MiB;
    # 0 = unlimited. Not a tmpfs option: shmfs's own (docs/windows.md).
    pt_size_bytes: int | None = None
    # -o restartable (issue 17 part 2): a supervisor holds /dev/fuse and the memfds and
    # restarts the serving child when it dies (mount/server/supervisor.py)
    restartable: bool = False


def mem_total_bytes() -> int:
    """Physical RAM, the base of size=N% (totalram_pages() * PAGE_SIZE)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OptionError("cannot read MemTotal from /proc/meminfo")


def _bad(key: str) -> OptionError:
    return OptionError(f"Bad value for '{key}'")


def _strtoull(text: str) -> tuple[int, str]:
    """lib/vsprintf.c simple_strtoull(s, &rest, 0): base from the prefix (0x, 0),
    as many digits as there are, wrapping modulo 2^64 as the kernel's does."""
    base, i = 10, 0
    if text[:2].lower() == "0x" and len(text) > 2 and text[2] in "0123456789abcdefABCDEF":
        base, i = 16, 2
    elif text.startswith("0"):
        base = 8
    n = 0
    while i < len(text):
        try:
            d = int(text[i], base)
        except ValueError:
            break
        n = (n * base + d) % U64
        i += 1
    return n, text[i:]


def memparse(text: str) -> tuple[int, str]:
    """lib/cmdline.c memparse(): a number with an optional K/M/G/T/P/E suffix;
    returns (value mod 2^64, the unparsed rest)."""
    n, rest = _strtoull(text)
    if rest and rest[0].lower() in _SUFFIX:
        n = (n << _SUFFIX[rest[0].lower()]) % U64
        rest = rest[1:]
    return n, rest


def _kstrtouint(key: str, text: str, base: int = 0) -> int:
    """lib/kstrtox.c kstrtouint(): the whole string, one optional '+', a trailing
    newline at most; anything else, or more than 32 bits, is a bad value."""
    s = text[1:] if text.startswith("+") else text
    s = s[:-1] if s.endswith("\n") else s
    if base == 0:
        base = 16 if s[:2].lower() == "0x" else 8 if s.startswith("0") and len(s) > 1 else 10
        s = s[2:] if base == 16 else s
    if not s or not all(c in "0123456789abcdef"[:base] for c in s.lower()):
        raise _bad(key)
    n = int(s, base)
    if n > U32_MAX:
        raise _bad(key)
    return n


def parse_size(value: str, *, allow_percent: bool = True, key: str = "size") -> int:
    """shmem_parse_one's size=: memparse bytes, or N% of RAM; rounded up to pages."""
    n, rest = memparse(value) if value else (0, "!")
    if allow_percent and rest.startswith("%"):
        n = (n << 12) % U64 * (mem_total_bytes() // PAGE_SIZE) % U64 // 100
        rest = rest[1:]
    if rest:
        raise _bad(key)
    return -(-n // PAGE_SIZE) * PAGE_SIZE


def _memparse_max(key: str, value: str, limit: int) -> int:
    n, rest = memparse(value)
    if rest or not value or n > limit:
        raise _bad(key)
    return n


# --- one handler per option: (options, value) -> None ----------------------------------

Handler = Callable[[MountOptions, str], None]


def _size(o: MountOptions, v: str) -> None:
    o.size_bytes, o.size_given = parse_size(v), True


def _nr_blocks(o: MountOptions, v: str) -> None:
    o.size_bytes, o.size_given = _memparse_max("nr_blocks", v, LONG_MAX) * PAGE_SIZE, True


def _nr_inodes(o: MountOptions, v: str) -> None:
    o.nr_inodes = _memparse_max("nr_inodes", v, (U64 - 1) // BOGO_INODE_SIZE)
    o.nr_inodes_given = True


def _mode(o: MountOptions, v: str) -> None:
    o.mode = _kstrtouint("mode", v, 8) & 0o7777


def _id(key: str) -> Handler:
    def parse(o: MountOptions, v: str) -> None:
        n = _kstrtouint(key, v)
        if n == U32_MAX:  # (uid_t)-1 is INVALID_UID: make_kuid() fails
            raise OptionError(f"Invalid {key} '{v}'")
        setattr(o, key, n)
    return parse


def _cpu_latency(o: MountOptions, v: str) -> None:
    """cpu_latency=off or a number of microseconds (0 = idle CPUs poll)."""
    if v == "off":
        o.cpu_latency_us = None
        return
    try:
        n = int(v)
    except ValueError:
        raise OptionError(f"Bad value for 'cpu_latency': '{v}' (microseconds or 'off')") from None
    if not 0 <= n < 2_000_000_000:
        raise OptionError(f"Bad value for 'cpu_latency': '{v}'")
    o.cpu_latency_us = n


def _uring(o: MountOptions, v: str) -> None:
    """uring=off|auto|on; plain ``uring`` is ``uring=on``."""
    if v not in ("", "off", "auto", "on"):
        raise OptionError(f"Bad value for 'uring': '{v}' (off, auto or on)")
    o.uring = v or "on"


def _readers(o: MountOptions, v: str) -> None:
    """readers=1|2|3: threads reading /dev/fuse (docs/performance.md changes 13, 23)."""
    if v not in ("1", "2", "3"):
        raise _bad("readers")
    o.readers = int(v)


def _pt_size(o: MountOptions, v: str) -> None:
    """pt_size=: bytes (memparse, no %) of window page tables; 0 = unlimited."""
    o.pt_size_bytes = parse_size(v, allow_percent=False, key="pt_size")


def _oom_score_adj(o: MountOptions, v: str) -> None:
    try:
        n = int(v)
    except ValueError:
        raise _bad("oom_score_adj") from None
    if not OOM_SCORE_ADJ_MIN <= n <= OOM_SCORE_ADJ_MAX:
        raise _bad("oom_score_adj")
    o.oom_score_adj = n


def _flags(set_bits: int = 0, clear_bits: int = 0) -> Handler:
    def apply(o: MountOptions, _v: str) -> None:
        o.ms_flags = (o.ms_flags & ~clear_bits) | set_bits
    return apply


def _set(attr: str, value: object) -> Handler:
    def apply(o: MountOptions, _v: str) -> None:
        setattr(o, attr, value)
    return apply


def _nothing(_o: MountOptions, _v: str) -> None:
    return None


# name -> (takes a value, handler). A value given to a flag, or missing from a
# valued option, is refused before the handler runs. Kind "vfs" marks the
# mount(2) flags, which reach no filesystem as parameters (see the docstring).
VALUE, FLAG, VFS = "value", "flag", "vfs"
OPTIONAL = "optional"  # a flag that may also take a value (uring, uring=auto)
OPTIONS: dict[str, tuple[str, Handler]] = {
    "size": (VALUE, _size),
    "nr_blocks": (VALUE, _nr_blocks),
    "nr_inodes": (VALUE, _nr_inodes),
    "mode": (VALUE, _mode),
    "uid": (VALUE, _id("uid")),
    "gid": (VALUE, _id("gid")),
    "cpu_latency": (VALUE, _cpu_latency),
    "oom_score_adj": (VALUE, _oom_score_adj),
    "pt_size": (VALUE, _pt_size),
    "readers": (VALUE, _readers),
    "uring": (OPTIONAL, _uring),
    "writeback_cache": (FLAG, _set("writeback_cache", True)),
    "restartable": (FLAG, _set("restartable", True)),
    "allow_other": (FLAG, _set("allow_other", True)),
    "inode64": (FLAG, _nothing),
    "remount": (FLAG, _set("remount", True)),
    "rw": (VFS, _nothing),
    "suid": (VFS, _flags(clear_bits=MS_NOSUID)),
    "nosuid": (VFS, _flags(MS_NOSUID)),
    "dev": (VFS, _flags(clear_bits=MS_NODEV)),
    "nodev": (VFS, _flags(MS_NODEV)),
    "exec": (VFS, _flags(clear_bits=MS_NOEXEC)),
    "noexec": (VFS, _flags(MS_NOEXEC)),
    "atime": (VFS, _flags(clear_bits=MS_NOATIME)),
    "noatime": (VFS, _flags(MS_NOATIME)),
    "diratime": (VFS, _flags(clear_bits=MS_NODIRATIME)),
    "nodiratime": (VFS, _flags(MS_NODIRATIME)),
    "relatime": (VFS, _flags(MS_RELATIME)),
    "norelatime": (VFS, _flags(clear_bits=MS_RELATIME)),
    "strictatime": (VFS, _flags(MS_STRICTATIME)),
    "nostrictatime": (VFS, _flags(clear_bits=MS_STRICTATIME)),
    "lazytime": (VFS, _flags(MS_LAZYTIME)),
    "nolazytime": (VFS, _flags(clear_bits=MS_LAZYTIME)),
}


def parse_options(text: str, *, uid: int = 0, gid: int = 0) -> MountOptions:
    """Parse a comma-separated -o string (may be empty); OptionError on the first
    option that tmpfs or FUSE would refuse."""
    opts = MountOptions(uid=uid, gid=gid)
    items = [p.strip() for p in text.split(",") if p.strip()]
    remount = "remount" in items
    for item in items:
        key, eq, value = item.partition("=")
        if key in IGNORED or item.startswith(IGNORED_PREFIXES) or (remount and key in FUSE_SHOWN):
            continue
        if key in UNSUPPORTED:
            raise OptionError(f"option '{key}' of tmpfs is not supported by shmfs: "
                              f"{UNSUPPORTED[key]}")
        kind, handler = OPTIONS.get(key, ("", _nothing))
        if not kind or (kind == VFS and eq):
            raise OptionError(f"Unknown parameter '{key}'")
        if kind == FLAG and eq:
            raise OptionError(f"Unexpected value for '{key}'")
        if kind == VALUE and not eq:
            raise OptionError(f"Bad value for '{key}'")
        handler(opts, value)
        opts.given.append(key)
    return opts


def default_limits() -> tuple[int, int]:
    """tmpfs's defaults: half of RAM for size, and as many inodes as half of RAM's pages."""
    total = mem_total_bytes()
    pages = total // PAGE_SIZE
    return pages // 2 * PAGE_SIZE, pages // 2


def default_oom_score_adj() -> int | None:
    """What the daemon sets when oom_score_adj= is not given: -900 as root (see
    docs/decisions.md), nothing otherwise (lowering it needs CAP_SYS_RESOURCE)."""
    return -900 if os.geteuid() == 0 else None
