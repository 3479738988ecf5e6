"""``shmfs window ...`` and ``shmfs stat``: the window ABI from the command line.

    shmfs window create PATH OBJECT --pages N [--pgoff P] [--prot rw|r|none]
    shmfs window remap PATH INDEX NPAGES PGOFF [--prot rw|r|none] [--populate] [--nonblock]
    shmfs window remapv PATH INDEX:NPAGES:PGOFF... [--populate]   (one REMAPV per 511)
    shmfs window protect PATH INDEX NPAGES rw|r|none [--vma]
    shmfs window madvise PATH INDEX NPAGES remove|dontneed|willneed|normal
    shmfs window query PATH [INDEX [COUNT]] [--json]
    shmfs window destroy PATH
    shmfs stat MOUNTPOINT [--json]

Every subcommand is one client call (mount.winapi.client), so the CLI uses exactly
the ABI of docs/windows.md.  Errors print the errno name and exit with 1; a bad
argument (negative, or too large for the ABI's 64-bit fields) is refused before any
call with a usage message and exit status 2, as argparse does.

``window create`` opens OBJECT itself (read-only, or read-write for ``--prot rw``), so
the kernel checks that the caller may open it, and asks the daemon for an attach
token on that descriptor (docs/windows.md, access rules); an OBJECT on another
filesystem is refused with a message, and a failed create leaves no file behind.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from mount.winapi.abi import page_flags_text, prot_text
from mount.winapi.client import (
    MADV_DONTNEED,
    MADV_NORMAL,
    MADV_REMOVE,
    MADV_WILLNEED,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    Window,
    grant,
    mount_stats,
    open_object,
)

U64 = 1 << 64
U32 = 1 << 32
PAGE_SIZE = 4096


def _count(limit: int, unit: int = 1, *, positive: bool = False) -> Callable[[str], int]:
    """An argparse type: a decimal integer n with 0 <= n * unit < limit (n > 0 if positive)."""

    def parse(text: str) -> int:
        try:
            n = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if n < 0 or (positive and n == 0):
            raise argparse.ArgumentTypeError(
                f"{n} must be {'positive' if positive else 'zero or positive'}")
        if n * unit >= limit:
            raise argparse.ArgumentTypeError(
                f"{n} is too large (must be below {limit // unit:,})")
        return n

    return parse


PAGES = _count(U64, PAGE_SIZE)  # a page count or index: bytes must fit in 64 bits
PGOFF = _count(U64)  # an object page number (64-bit field)
PROTS = {"rw": PROT_READ | PROT_WRITE, "r": PROT_READ, "none": PROT_NONE}
ADVICE = {"remove": MADV_REMOVE, "dontneed": MADV_DONTNEED, "willneed": MADV_WILLNEED,
          "normal": MADV_NORMAL}


def _window_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shmfs window",
                                description="Create and drive shmfs window files.")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create", help="create PATH as a window over OBJECT")
    c.add_argument("path")
    c.add_argument("object")
    c.add_argument("--pages", type=_count(U64, PAGE_SIZE, positive=True), required=True,
                   help="window size in pages")
    c.add_argument("--pgoff", type=PGOFF, default=0, help="object page shown by window page 0")
    c.add_argument("--prot", choices=PROTS, default="rw")
    r = sub.add_parser("remap", help="window pages INDEX.. show object pages PGOFF..")
    r.add_argument("path")
    r.add_argument("index", type=PAGES)
    r.add_argument("npages", type=PAGES)
    r.add_argument("pgoff", type=PGOFF)
    r.add_argument("--prot", choices=PROTS, help="also give the pages this protection")
    r.add_argument("--populate", action="store_true", help="prefault the object pages")
    r.add_argument("--nonblock", action="store_true", help="MAP_NONBLOCK")
    v = sub.add_parser("remapv", help="many remaps in one SHMFS_IOC_WIN_REMAPV")
    v.add_argument("path")
    v.add_argument("entries", nargs="+", type=_vec_entry, metavar="INDEX:NPAGES:PGOFF")
    v.add_argument("--populate", action="store_true", help="prefault and push the pages")
    m = sub.add_parser("protect", help="per-page protection of window pages")
    m.add_argument("path")
    m.add_argument("index", type=PAGES)
    m.add_argument("npages", type=PAGES)
    m.add_argument("prot", choices=PROTS)
    m.add_argument("--vma", action="store_true", help="mprotect(2) of the VMA (splits it)")
    a = sub.add_parser("madvise", help="madvise(2) window pages")
    a.add_argument("path")
    a.add_argument("index", type=PAGES)
    a.add_argument("npages", type=PAGES)
    a.add_argument("advice", choices=ADVICE)
    q = sub.add_parser("query", help="what window pages show")
    q.add_argument("path")
    q.add_argument("index", type=PGOFF, nargs="?", default=0)
    q.add_argument("count", type=_count(U64), nargs="?")
    q.add_argument("--json", action="store_true")
    d = sub.add_parser("destroy", help="unlink the window (gone at its last close)")
    d.add_argument("path")
    return p


def _fail(what: str, e: OSError, context: str = "") -> int:
    name = errno.errorcode.get(e.errno or 0, str(e.errno))
    where = f"{context}: " if context else ""
    print(f"shmfs window {what}: {where}{name} ({e.strerror})", file=sys.stderr)
    return 1


# what an errno of a window ioctl means, in words a user can act on (docs/windows.md)
_HINTS = {
    errno.ENOTTY: "not a window (a file made by 'shmfs window create' on a shmfs mount)",
    errno.ENOMEM: "beyond the window, or the mount's page tables would pass its pt_size= "
                  "limit",
}


def window_main(argv: list[str]) -> int:
    """``shmfs window ...``: one line on stderr and status 1 for an error, naming the
    path and the errno, and what it means where that is not obvious."""
    ns = _window_parser().parse_args(argv)
    try:
        return _COMMANDS[ns.cmd](ns)
    except OSError as e:
        hint = _HINTS.get(e.errno or 0)
        if hint and not (ns.cmd == "create" and e.errno == errno.ENOTTY):
            return _fail(ns.cmd, e, f"{ns.path}: {hint}")
        return _fail(ns.cmd, e, ns.path)


def _create(ns: argparse.Namespace) -> int:
    prot = PROTS[ns.prot]
    try:
        objfd = open_object(ns.object, prot)
    except OSError as e:
        return _fail("create", e, f"cannot open object {ns.object}")
    try:
        here = os.stat(os.path.dirname(os.path.abspath(ns.path))).st_dev
        if os.fstat(objfd).st_dev != here:
            print(f"shmfs window create: {ns.object} is not on the filesystem of {ns.path}: "
                  "a window shows a file of its own shmfs mount", file=sys.stderr)
            return 1
        try:
            token = grant(objfd, prot)
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                return _fail("create", e, f"{ns.object} is not a regular file on a shmfs mount"
                             if e.errno != errno.EINVAL else f"{ns.object} cannot be an object")
            return _fail("create", e, f"cannot use {ns.object}")
        Window.create(ns.path, token, ns.pages, prot, ns.pgoff).close()
    finally:
        os.close(objfd)
    return 0


def _remap(ns: argparse.Namespace) -> int:
    with Window.open(ns.path) as w:
        w.remap(ns.index, ns.npages, ns.pgoff, prot=None if ns.prot is None else PROTS[ns.prot],
                populate=ns.populate, nonblock=ns.nonblock)
    return 0


def _vec_entry(text: str) -> tuple[int, int, int]:
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: want INDEX:NPAGES:PGOFF")
    try:
        i, n, p = (int(x) for x in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not integers") from None
    return i, n, p


def _remapv(ns: argparse.Namespace) -> int:
    with Window.open(ns.path) as w:
        w.remapv(ns.entries, populate=ns.populate)
    return 0


def _protect(ns: argparse.Namespace) -> int:
    with Window.open(ns.path) as w:
        w.protect(ns.index, ns.npages, PROTS[ns.prot], vma=ns.vma)
    return 0


def _madvise(ns: argparse.Namespace) -> int:
    writable = ADVICE[ns.advice] not in (MADV_WILLNEED, MADV_NORMAL)
    with Window.open(ns.path, writable=writable) as w:
        w.madvise(ns.index, ns.npages, ADVICE[ns.advice])
    return 0


def _query(ns: argparse.Namespace) -> int:
    with Window.open(ns.path, writable=False) as w:
        info = w.info()
        pages = w.query(ns.index, ns.count)
    if ns.json:
        print(json.dumps({
            "object_ino": info.object_ino, "size": info.size, "pgoff": info.pgoff,
            "object_size": info.object_size, "prot": info.prot, "flags": info.flags,
            "nr_vmas": info.nr_vmas,
            "pages": [{"index": p.index, "pgoff": p.pgoff, "flags": p.flags, "prot": p.prot}
                      for p in pages]}, indent=1))
        return 0
    kind = "nonlinear" if info.flags & 1 else "linear"
    print(f"{ns.path}: {info.npages} pages over inode {info.object_ino} "
          f"({info.object_size} bytes), {prot_text(info.prot)}, {kind}, {info.nr_vmas} vma(s)")
    print("flags: P present, F file pte, D dirty, O own prot, E beyond EOF, R resident, "
          "C kernel-cached")
    print(f"{'page':>8} {'pgoff':>12} flags   prot")
    for p in pages:
        print(f"{p.index:>8} {p.pgoff:>12} {page_flags_text(p.flags)} {prot_text(p.prot)}")
    return 0


def _destroy(ns: argparse.Namespace) -> int:
    """Unlink the window -- only a window: INFO first, so that a typo or a wrong path
    never removes an ordinary file (it fails with ENOTTY and nothing is removed)."""
    with Window.open(ns.path, writable=False) as w:
        w.info()
    os.unlink(ns.path)
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "create": _create, "remap": _remap, "remapv": _remapv, "protect": _protect,
    "madvise": _madvise,
    "query": _query, "destroy": _destroy,
}


# ----------------------------------------------------------------------------- stat
def stat_main(argv: list[str]) -> int:
    """``shmfs stat MOUNTPOINT [--json]``"""
    p = argparse.ArgumentParser(prog="shmfs stat",
                                description="Statistics of a mounted shmfs (pager, fs, "
                                            "windows, FUSE session).")
    p.add_argument("mountpoint")
    p.add_argument("--json", action="store_true")
    ns = p.parse_args(argv)
    try:
        doc = mount_stats(ns.mountpoint)
    except OSError as e:
        name = errno.errorcode.get(e.errno or 0, str(e.errno))
        why = ("not on a shmfs mount" if e.errno == errno.ENOTTY
               else f"{name} ({e.strerror})")
        print(f"shmfs stat: {ns.mountpoint}: {why}", file=sys.stderr)
        return 1
    if ns.json:
        print(json.dumps(doc, indent=1, sort_keys=True))
    else:
        print(format_stats(doc))
    return 0


def format_stats(doc: dict[str, Any]) -> str:
    """The human-readable ``shmfs stat`` report."""
    lines: list[str] = []
    fs = doc.get("fs", {})
    arena = doc.get("arena", {})
    faults = doc.get("faults", {})
    win = doc.get("windows", {})
    sess = doc.get("session", {})
    lines.append("memory")
    lines.append(f"  resident pages      {fs.get('used_pages', 0):>12,}"
                 f"   (limit {fs.get('max_pages', 0) or 'none'})")
    lines.append(f"  frames in use       {arena.get('frames_in_use', 0):>12,}")
    lines.append(f"  frames returned     {arena.get('frames_returned', 0):>12,}   (to the host)")
    lines.append(f"  arena resident      {arena.get('bytes_resident', 0):>12,} bytes")
    lines.append("faults")
    for k in ("faults", "read", "write", "mkwrite", "prefault", "via_vma", "minor", "major",
              "sigbus", "enospc", "pages_allocated", "zero_pages"):
        lines.append(f"  {k:<19} {faults.get(k, 0):>12,}")
    lines.append("filesystem")
    lines.append(f"  inodes              {fs.get('inodes', 0):>12,}")
    lines.append(f"  open handles        {fs.get('open_handles', 0):>12,}")
    pager = win.get("pager", {})
    counters = win.get("counters", {})
    lines.append("windows")
    lines.append(f"  windows             {win.get('windows', 0):>12,}")
    lines.append(f"  window pages        {win.get('window_pages', 0):>12,}")
    lines.append(f"  resident (ptes)     {pager.get('resident_pages', 0):>12,}")
    lines.append(f"  dirty (ptes)        {pager.get('dirty_pages', 0):>12,}")
    lines.append(f"  remaps              {counters.get('remaps', 0):>12,}")
    lines.append(f"  zaps                {pager.get('zaps', 0):>12,}")
    lines.append(f"  invalidations       {counters.get('inval_events', 0):>12,}"
                 f"   ({counters.get('inval_pages', 0):,} pages)")
    lines.append("session")
    lines.append(f"  notifications sent  {sess.get('notifications', 0):>12,}")
    qos = sess.get("cpu_latency", {})
    if qos.get("available"):
        lines.append(f"  cpu latency holds   {qos.get('engagements', 0):>12,}"
                     f"   ({qos.get('latency_us')} us while busy)")
    else:
        lines.append("  cpu latency hold             off")
    ring = sess.get("uring", {})
    if ring.get("active"):  # -o uring (mount/server/uring_fuse.py)
        lines.append(f"  io_uring requests   {ring.get('ring_requests', 0):>12,}"
                     f"   ({ring.get('queues')} queues, {ring.get('transport')} transport;"
                     f" {ring.get('dev_requests', 0):,} from /dev/fuse)")
    reqs = sess.get("requests", {})
    if reqs:
        lines.append(f"  {'opcode':<14} {'count':>12} {'mean us':>10}")
        for op, v in sorted(reqs.items(), key=lambda kv: -kv[1]["count"]):
            lines.append(f"  {op:<14} {v['count']:>12,} {v['mean_us']:>10.1f}")
    errs = doc.get("ops", {}).get("errors", {})
    if errs:
        lines.append("error replies  " + ", ".join(f"{k} {v}" for k, v in sorted(errs.items())))
    return "\n".join(lines)
