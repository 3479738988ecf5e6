"""The C hot path (native/hotpath.c) against the Python path, on twin filesystems.

Two ShmFs are built by the same steps; every request goes to the C engine first on
one twin (its Python path when the engine declines) and to the Python path only on
the other. Every reply must be the same bytes and, after every step, the state the
same: each inode's attributes and times, i_size, the page cache (frames, flags,
per-chunk counts, ``gen``, nrpages), every resident page's bytes, the Budget, the
arena's allocator, the ops Counter, each mapping's fault counters and the global
FAULT_STATS delta. The clocks are counters, so the twins must also ask the clock the
same number of times. Declined cases (set-id bits, chattr flags, shared frames,
ENOSPC, bad handles, lookup misses, "." and "..", malformed messages) are in the
generated sequences too. So are RELEASEs (of the files' handles, of extra opens, of
unknown handles, of the last open of an unlinked file, of a handle holding window
grant tokens) and LOOKUP misses with and without a negative-entry timeout; the
state includes the open handles and each inode's nopen.

CREATE and UNLINK (native/hotmeta.c) too: new names, existing ones (EEXIST with O_EXCL,
else the open of the file), "." / ".." / "/" / 255- and 256-byte names, O_APPEND,
set-gid and default-ACL directories, chattr flags, a removed directory, nr_inodes
running out (ENOSPC), hard links, names of directories, symlinks and FIFOs, missing
names, the last name of a closed file (the reclaim) and of a forgotten one (the
eviction). The state then also covers every directory's entries with their cookies,
the ispace pool, the inode and handle counters, the reclaims and each mapping's Budget.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import astuple
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsimpl import FsOptions, ShmFs
from fsimpl.atime import AtimeMode
from fsimpl.types import Ctx
from fsimpl.windows import windows_of
from mount.server import hotpath
from mount.server.ops import Operations, OpsConfig
from mount.wire.codec import CodecError, parse_request, reply_error
from vmcore.fault import FAULT_STATS

pytestmark = pytest.mark.skipif(not hotpath.available(), reason="_hotpath not built")

LOOKUP, FORGET, GETATTR, UNLINK, OPEN, READ, WRITE, RELEASE = 1, 2, 3, 10, 14, 15, 16, 18
MKDIR, RMDIR, CREATE, BATCH_FORGET = 9, 11, 35, 42
CTX = Ctx(0, 0, 1, 0o022)
KILL = 4  # FUSE_WRITE_KILL_SUIDGID
NFILES = 3


class Clock:
    """A deterministic clock: every call one microsecond later."""

    def __init__(self) -> None:
        self.t = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        self.t += 1000
        return self.t


def msg(opcode: int, body: bytes, *, nodeid: int, unique: int = 9, length: int | None = None,
        extlen: int = 0) -> bytes:
    n = 40 + len(body) if length is None else length
    return struct.pack("<IIQQIIIHH", n, opcode, unique, nodeid, 1000, 1000, 1, extlen, 0) + body


def read_msg(nodeid: int, fh: int, off: int, size: int) -> bytes:
    return msg(READ, struct.pack("<QQIIQII", fh, off, size, 0, 0, os.O_RDONLY, 0), nodeid=nodeid)


def write_msg(nodeid: int, fh: int, off: int, data: bytes, flags: int = 0) -> bytes:
    return msg(WRITE, struct.pack("<QQIIQII", fh, off, len(data), flags, 0, os.O_WRONLY, 0)
               + data, nodeid=nodeid)


def getattr_msg(nodeid: int) -> bytes:
    return msg(GETATTR, struct.pack("<IIQ", 0, 0, 0), nodeid=nodeid)


def lookup_msg(parent: int, name: bytes) -> bytes:
    return msg(LOOKUP, name + b"\0", nodeid=parent)


def open_msg(nodeid: int, flags: int, open_flags: int = 0) -> bytes:
    return msg(OPEN, struct.pack("<II", flags, open_flags), nodeid=nodeid)


def release_msg(nodeid: int, fh: int) -> bytes:
    return msg(RELEASE, struct.pack("<QIIQ", fh, os.O_RDWR, 0, 0), nodeid=nodeid)


def create_msg(parent: int, name: bytes, flags: int = os.O_WRONLY | os.O_CREAT,
               mode: int = 0o100644, umask: int = 0o022, open_flags: int = 0) -> bytes:
    return msg(CREATE, struct.pack("<IIII", flags, mode, umask, open_flags) + name + b"\0",
               nodeid=parent)


def unlink_msg(parent: int, name: bytes) -> bytes:
    return msg(UNLINK, name + b"\0", nodeid=parent)


def mkdir_msg(parent: int, name: bytes, mode: int = 0o755, umask: int = 0o022) -> bytes:
    return msg(MKDIR, struct.pack("<II", mode, umask) + name + b"\0", nodeid=parent)


def rmdir_msg(parent: int, name: bytes) -> bytes:
    return msg(RMDIR, name + b"\0", nodeid=parent)


def forget_msg(nodeid: int, nlookup: int) -> bytes:
    return msg(FORGET, struct.pack("<Q", nlookup), nodeid=nodeid)


def batch_forget_msg(pairs: list[tuple[int, int]], extra: int = 0) -> bytes:
    body = struct.pack("<II", len(pairs) + extra, 0)
    return msg(BATCH_FORGET, body + b"".join(struct.pack("<QQ", *p) for p in pairs), nodeid=0)


class Twin:
    """One filesystem with its Operations, and (c=True) the C engine in front."""

    def __init__(self, c: bool, size_pages: int, mode: AtimeMode,
                 negative_timeout: float = 0.0, keep_cache: bool = True,
                 ahead: int = 0, nr_inodes: int = 100, reserve: int = 0) -> None:
        self.fs = ShmFs(FsOptions(size_bytes=size_pages * 4096, nr_inodes=nr_inodes,
                                  mode=0o1777), clock=Clock())
        # alloc1's reserve (the session sets it): the engine pops it in C, Python in
        # alloc1; both must hand out the same frames and refill at the same moments
        self.fs._backing.arena.set_reserve(reserve)
        self.fs.atime_mode = lambda: mode
        self.ops = Operations(self.fs, OpsConfig(generation=7, keep_cache=keep_cache,
                                                 negative_timeout=negative_timeout))
        cfg = self.ops.config
        self.engine = hotpath.engine(self.fs, cfg.attr_timeout, cfg.entry_timeout,
                                     self.ops.generation, cfg.negative_timeout,
                                     self.ops._errors, cfg.keep_cache) if c else None
        if ahead:  # populate-ahead's bookkeeping without its thread (deterministic):
            arena = self.fs._backing.arena  # `ahead` frames past the bump are "ready"
            arena._ahead, arena._ahead_chunk = 16, 8
            arena._ready = arena._bump + ahead
        self.taken = 0
        self.extra: list[tuple[int, int]] = []  # (ino, fh) of the "open" steps
        self.files: list[tuple[int, int, int]] = []  # (ino, fh, append fh)
        for i in range(NFILES):
            a, fh = self.fs.create(1, b"f%d" % i, 0o100666, os.O_RDWR, CTX)
            afh = self.fs.open(a.ino, os.O_WRONLY | os.O_APPEND)
            self.files.append((a.ino, fh, afh))
        self.fs.mkdir(1, b"d", 0o755, CTX)
        self.fs.symlink(1, b"ln", b"f0", CTX)
        self.fs.symlink(1, b"long", b"t" * 200, CTX)  # its target lives in a page
        self.fs.mknod(1, b"fifo", stat.S_IFIFO | 0o644, 0, CTX)

    def request(self, m: bytes) -> bytes | None:
        if self.engine is not None:
            out = self.engine.answer(m, True)
            if out is not None:
                self.taken += 1
                return out or None  # b"": a FORGET taken (no reply)
        view = memoryview(m)
        fast = self.ops.handle_fast(view)
        if fast is not None:
            reply = fast[1]
        else:
            try:
                reply = self.ops.handle(parse_request(view))
            except CodecError as e:
                reply = [reply_error(e.unique, e.errno)] if e.unique else None
        return None if reply is None else b"".join(bytes(b) for b in reply)

    def state(self) -> Any:
        fs = self.fs
        arena = fs._backing.arena
        inodes = {}
        for ino, inode in sorted(fs._inodes.items()):
            rec: list[Any] = [astuple(inode.attr()), inode.fsflags, inode.nlookup,
                              inode.nopen]
            m = inode.mapping
            if m is not None:
                pc = m.pages
                chunks = {k: (pc._frames[k].tolist(), pc._flags[k].tolist(), pc._count[k])
                          for k in pc._keys}
                data = {}
                for k in pc._keys:
                    for i, f in enumerate(pc._frames[k].tolist()):
                        if f >= 0:
                            data[(k << 9) + i] = bytes(arena.view(f))
                st = m._fstats
                rec += [m.size, pc.gen, pc.nrpages, chunks, data, m.budget.used_pages,
                        None if st is None else st.as_dict()]
            rec += [inode.reclaimed, inode.xattr_space, inode.acl_access, inode.acl_default,
                    None if m is None else m.budget is fs.budget]
            d = inode.dir
            if d is not None:  # the entries with their cookies (readdir's offsets)
                rec += [dict(d._names), dict(d._by_cookie), list(d._cookies), d._dead,
                        d._next_cookie]
            inodes[ino] = rec
        handles = sorted((fh, astuple(h)) for fh, h in fs._handles.items())
        w = fs._windows
        grants = None if w is None else sorted(w.grants._by_fh)
        return (inodes, handles, grants, dict(fs._ops), fs.budget.used_pages,
                fs.free_ispace, fs._next_ino, fs._next_fh, fs._reclaimed, fs._evicted,
                [i.ino for i in fs.evict_later],
                arena.frames_allocated,
                arena._bump, list(arena._free_runs), arena.nshared, fs._clock.t,
                arena._nfree, arena._in_use.nonzero()[0].tolist(), arena._free_ready,
                arena._pop.nonzero()[0].tolist(), arena._limit, list(arena._res),
                arena.frames_freed, arena.frames_returned, arena.punch_calls,
                self.ops.statistics()["errors"])


def step(c: Twin, py: Twin, m: bytes) -> None:
    before = FAULT_STATS.as_dict()
    rc = c.request(m)
    mid = FAULT_STATS.as_dict()
    rp = py.request(m)
    after = FAULT_STATS.as_dict()
    assert rc == rp, m[:64]
    assert {k: mid[k] - before[k] for k in before} == {k: after[k] - mid[k] for k in mid}
    assert c.state() == py.state()


# --- the operations of a generated sequence -------------------------------------------------

offsets = st.one_of(st.integers(0, 20000),
                   st.sampled_from([0, 4095, 4096, 8191, 2 << 20, (1 << 63) - 5, (1 << 63) - 1]))
sizes = st.one_of(st.integers(0, 9000), st.sampled_from([4096, 65536, 1 << 20]))

op_read = st.tuples(st.just("read"), st.integers(0, NFILES - 1), offsets, sizes)
op_write = st.tuples(st.just("write"), st.integers(0, NFILES - 1), offsets,
                     st.integers(1, 70000), st.sampled_from([0, 0, 0, KILL, 1, 2]))
op_append = st.tuples(st.just("append"), st.integers(0, NFILES - 1), st.integers(1, 9000))
op_getattr = st.tuples(st.just("getattr"), st.integers(0, NFILES + 6))
op_lookup = st.tuples(st.just("lookup"), st.integers(1, 3),
                      st.sampled_from([b"f0", b"f1", b"f2", b"d", b"ln", b"long", b"fifo",
                                       b"nope", b".", b"..", b"x" * 256, b"f0\0junk"]))
op_truncate = st.tuples(st.just("truncate"), st.integers(0, NFILES - 1), st.integers(0, 30000))
op_chmod = st.tuples(st.just("chmod"), st.integers(0, NFILES - 1),
                     st.sampled_from([0o666, 0o4755, 0o2775, 0o6777, 0o2666]))
op_fsflags = st.tuples(st.just("fsflags"), st.integers(0, NFILES - 1),
                       st.sampled_from([0, 0x80, 0x20]))
op_share = st.tuples(st.just("share"), st.integers(0, NFILES - 1), st.integers(0, NFILES - 1))
op_falloc = st.tuples(st.just("falloc"), st.integers(0, NFILES - 1), st.integers(0, 20000),
                      st.integers(1, 20000))
op_windows = st.tuples(st.just("windows"), st.integers(0, NFILES - 1))  # an empty table
op_bad = st.tuples(st.just("bad"), st.integers(0, 10), st.integers(0, NFILES - 1))
op_open = st.tuples(st.just("open"), st.integers(0, NFILES - 1))
op_unlink = st.tuples(st.just("unlink"), st.integers(0, NFILES - 1))
op_grant = st.tuples(st.just("grant"), st.integers(0, NFILES - 1))  # a token on the fh
# which: the file's fh, its O_APPEND fh, the last extra open, an unknown fh, another
# file's node id with this fh (_drop_handle goes by the fh alone)
op_release = st.tuples(st.just("release"), st.integers(0, NFILES - 1), st.integers(0, 4))
# OPEN of a file, the root, the dir, a symlink, the fifo, a missing node; plain flags,
# O_TRUNC, O_APPEND, O_LARGEFILE|O_NOATIME bits, FUSE_OPEN_KILL_SUIDGID
op_openmsg = st.tuples(st.just("openmsg"), st.sampled_from([0, 1, 2, -1, -2, -3, -4, -9]),
                       st.sampled_from([os.O_RDONLY, os.O_WRONLY, os.O_RDWR,
                                        os.O_RDWR | os.O_TRUNC, os.O_WRONLY | os.O_APPEND,
                                        os.O_RDONLY | 0o100000 | 0o1000000]),
                       st.sampled_from([0, 0, 0, 1]))
op_sleep = st.tuples(st.just("sleep"), st.sampled_from([1, 3, 86400 * 2]))  # clock jumps (s)
DIR = NFILES + 2  # the directory "d"
NAMES = [b"n0", b"n1", b"n2", b"f0", b"f1", b"h0", b"d", b"ln", b"fifo", b".", b"..", b"a/b",
         b"x" * 255, b"y" * 256]
# CREATE in the root, in "d", in a file (ENOTDIR), in a missing node; plain, O_EXCL,
# O_TRUNC, O_APPEND, O_LARGEFILE; set-id and plain modes; umasks; open_flags ignored
op_createmsg = st.tuples(st.just("createmsg"), st.sampled_from([1, 1, DIR, 2, 99]),
                         st.sampled_from(NAMES[:3] * 4 + NAMES),
                         st.sampled_from([os.O_WRONLY | os.O_CREAT,
                                          os.O_RDWR | os.O_CREAT | os.O_EXCL,
                                          os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                          os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                          os.O_RDONLY | os.O_CREAT | 0o100000]),
                         st.sampled_from([0o100644, 0o104755, 0o2777, 0o060644]),
                         st.sampled_from([0o022, 0, 0o777]), st.sampled_from([0, 0, 1]))
op_unlinkmsg = st.tuples(st.just("unlinkmsg"), st.sampled_from([1, 1, 1, DIR, 2, 99]),
                         st.sampled_from(NAMES[:5] * 3 + NAMES + [b"f2", b"nope"]))
# Python-side changes the CREATE/UNLINK checks look at: a set-gid or default-ACL
# directory, chattr flags on it, a hard link, a FORGET of every lookup, rmdir of "d"
op_meta = st.tuples(st.just("meta"), st.sampled_from(["sgid", "acl", "immutable", "append",
                                                      "plain", "link", "forget", "rmdir"]),
                    st.sampled_from([1, DIR]), st.integers(0, NFILES - 1))
# FORGET / BATCH_FORGET of files, created files, the root, missing nodes; a batch with
# a node twice, a batch whose count says one more than it holds
op_forget = st.tuples(st.just("forget"),
                      st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, 9, 10, 11, 12, 99]),
                                         st.sampled_from([1, 1, 2, 1 << 40])),
                               min_size=1, max_size=4),
                      st.booleans(), st.sampled_from([0, 0, 0, 1]), st.booleans())
# MKDIR (modes with set-id and sticky bits, umasks) and RMDIR (empty, not empty, files,
# ".", "..", missing) in the root, in "d", in a file, in a missing node
op_mkdirmsg = st.tuples(st.just("mkdirmsg"), st.sampled_from([1, 1, DIR, 2, 99]),
                        st.sampled_from(NAMES[:3] * 3 + NAMES),
                        st.sampled_from([0o755, 0o7777, 0o2775, 0o40700]),
                        st.sampled_from([0o022, 0, 0o777]))
op_rmdirmsg = st.tuples(st.just("rmdirmsg"), st.sampled_from([1, 1, DIR, 2, 99]),
                        st.sampled_from(NAMES[:3] * 3 + NAMES))
ops_st = st.lists(st.one_of(op_mkdirmsg, op_rmdirmsg, op_forget, op_forget, op_createmsg,
                            op_createmsg, op_createmsg,
                            op_unlinkmsg, op_unlinkmsg, op_unlinkmsg, op_meta, op_read, op_write,
                            op_append, op_getattr, op_lookup, op_truncate, op_chmod,
                            op_fsflags, op_share, op_falloc, op_windows, op_bad, op_open,
                            op_unlink, op_grant, op_release, op_release, op_openmsg,
                            op_openmsg, op_sleep), max_size=25)


def meta(t: Twin, what: str, dino: int, i: int) -> None:
    """One Python-side change of op_meta on one twin."""
    from fsimpl.acl import ACL_GROUP_OBJ, ACL_OTHER, ACL_UNDEFINED_ID, ACL_USER_OBJ

    fs = t.fs
    if what == "sgid":
        fs.setattr(dino, CTX, mode=0o2777)
    elif what == "acl":
        fs._inodes[dino].acl_default = ((ACL_USER_OBJ, 7, ACL_UNDEFINED_ID),
                                        (ACL_GROUP_OBJ, 5, ACL_UNDEFINED_ID),
                                        (ACL_OTHER, 4, ACL_UNDEFINED_ID))
    elif what in ("immutable", "append", "plain"):
        fs._inodes[dino].fsflags = {"immutable": 0x10, "append": 0x20, "plain": 0}[what]
    elif what == "link":
        fs.link(t.files[i][0], dino, b"h%d" % i)
    elif what == "forget":
        fs.forget(t.files[i][0], 1 << 30)
    else:
        fs.rmdir(1, b"d")


def apply(c: Twin, py: Twin, op: tuple) -> None:
    kind = op[0]
    if kind == "meta":
        for t in (c, py):
            try:
                meta(t, *op[1:])
            except Exception as e:  # the same failure on both
                t.last_error = type(e).__name__  # type: ignore[attr-defined]
        return
    if kind == "forget":
        _, pairs, batch, extra, defer = op
        for t in (c, py):
            t.fs.defer_evictions = defer
        step(c, py, batch_forget_msg(pairs, extra) if batch or extra else
             forget_msg(*pairs[0]))
        return
    if kind in ("createmsg", "unlinkmsg", "mkdirmsg", "rmdirmsg"):
        fhs = (c.fs._next_fh, py.fs._next_fh)
        m = {"createmsg": create_msg, "unlinkmsg": unlink_msg, "mkdirmsg": mkdir_msg,
             "rmdirmsg": rmdir_msg}[kind](*op[1:])
        step(c, py, m)
        for t, fh0 in zip((c, py), fhs, strict=True):
            if t.fs._next_fh != fh0:  # a new handle: the "release" steps may close it
                t.extra.append((t.fs._handles[fh0].ino, fh0))
        return
    if kind == "sleep":
        for t in (c, py):
            t.fs._clock.t += op[1] * 10**9
        return
    if kind == "openmsg":
        nodeid = {-1: 1, -2: NFILES + 2, -3: NFILES + 3, -4: NFILES + 5, -9: 99}.get(op[1])
        if nodeid is None:
            nodeid = c.files[op[1]][0]
        fhs = (c.fs._next_fh, py.fs._next_fh)
        step(c, py, open_msg(nodeid, op[2], op[3]))
        for t, fh0 in zip((c, py), fhs, strict=True):
            if t.fs._next_fh != fh0:
                t.extra.append((nodeid, fh0))
        return
    if kind in ("truncate", "chmod", "fsflags", "share", "falloc", "windows", "open", "unlink",
                "grant"):
        for t in (c, py):  # the same Python call on both twins
            ino, fh, _ = t.files[op[1]]
            try:
                if kind == "open":
                    t.extra.append((ino, t.fs.open(ino, os.O_RDONLY)))
                elif kind == "unlink":
                    t.fs.unlink(1, b"f%d" % op[1])
                elif kind == "grant":  # an ATTACH token tied to the handle
                    windows_of(t.fs).grants.mint(ino, fh, 0, 1)
                elif kind == "truncate":
                    t.fs.setattr(ino, CTX, size=op[2])
                elif kind == "chmod":
                    t.fs.setattr(ino, CTX, mode=op[2])
                elif kind == "windows":  # the STATS ioctl makes the table, no window
                    windows_of(t.fs)
                elif kind == "fsflags":
                    t.fs._inodes[ino].fsflags = op[2]
                elif kind == "share":  # copy_file_range shares whole pages (cow)
                    dst, dfh, _ = t.files[op[2]]
                    t.fs.copy_file_range(ino, fh, 0, dst, dfh, 8192, 16384)
                else:
                    t.fs.fallocate(ino, fh, 0, op[2], op[3])
            except Exception as e:  # the same failure on both
                t.last_error = type(e).__name__  # type: ignore[attr-defined]
        return
    ino, fh, afh = c.files[op[1] % NFILES] if kind not in ("getattr", "lookup") else (0, 0, 0)
    if kind == "read":
        m = read_msg(ino, fh, op[2], op[3])
    elif kind == "write":
        m = write_msg(ino, fh, op[2], bytes([op[3] % 251]) * op[3], op[4])
    elif kind == "append":
        m = write_msg(ino, afh, 0, bytes([op[2] % 249 + 1]) * op[2])
    elif kind == "getattr":
        m = getattr_msg(op[1] + 1)  # the root, files, dir, symlinks, fifo, one that is not
    elif kind == "lookup":
        m = lookup_msg(op[1], op[2])  # in the root, or in a file (ENOTDIR)
    elif kind == "release":
        which = op[2]
        if which == 2 and c.extra:
            ino, fh = c.extra[-1]
        m = release_msg(c.files[(op[1] + 1) % NFILES][0] if which == 4 else ino,
                        (fh, afh, fh, fh + 1000, fh)[which])
    else:
        m = bad_msg(op[1], ino, fh)
    step(c, py, m)


def bad_msg(kind: int, ino: int, fh: int) -> bytes:
    """Malformed or refused requests: each must get the Python path's answer."""
    if kind == 0:
        return read_msg(ino, fh + 100, 0, 4096)  # unknown handle: EBADF
    if kind == 1:
        return read_msg(ino + 50, fh, 0, 4096)  # unknown node: ENOENT
    if kind == 2:
        return read_msg(ino, fh, 0, 4096)[:-8]  # short body, length field true
    if kind == 3:
        m = write_msg(ino, fh, 0, b"x" * 100)
        return m[:4] + struct.pack("<I", WRITE) + m[8:-10]  # length field says 10 more
    if kind == 4:
        return write_msg(ino, fh, 0, b"")  # empty write
    if kind == 5:
        return msg(WRITE, struct.pack("<QQIIQII", fh, 0, 500, 0, 0, 1, 0) + b"y" * 100,
                   nodeid=ino)  # size field larger than the data
    if kind == 6:
        return write_msg(1, fh, 0, b"dir")  # the root directory: not a regular file
    if kind == 7:
        return msg(LOOKUP, b"f0", nodeid=1)  # no NUL
    if kind == 9:
        return release_msg(ino, fh)[:-8]  # a short RELEASE
    if kind == 10:
        return release_msg(1, fh)  # the fh with the root's node id
    return getattr_msg(ino)[:-4]  # short GETATTR


@settings(max_examples=int(os.environ.get("HOTPATH_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_st, size_pages=st.sampled_from([0, 12, 40]),
       mode=st.sampled_from([AtimeMode(), AtimeMode(noatime=True), AtimeMode(relatime=False)]),
       negative=st.sampled_from([0.0, 1.5]), keep=st.booleans(),
       ahead=st.sampled_from([0, 0, 12, 5000]), reserve=st.sampled_from([0, 0, 3, 64]))
def test_c_and_python_agree(ops: list[tuple], size_pages: int, mode: AtimeMode,
                            negative: float, keep: bool, ahead: int, reserve: int) -> None:
    c = Twin(True, size_pages, mode, negative, keep, ahead, reserve=reserve)
    py = Twin(False, size_pages, mode, negative, keep, ahead, reserve=reserve)
    assert c.state() == py.state()
    for op in ops:
        apply(c, py, op)


def test_engine_takes_the_common_cases() -> None:
    """Not a vacuous twin: the plain cases are answered by C (reply and state as Python)."""
    c, py = Twin(True, 0, AtimeMode()), Twin(False, 0, AtimeMode())
    ino, fh, afh = c.files[0]
    cases = [write_msg(ino, fh, 0, b"a" * 4096), write_msg(ino, afh, 0, b"b" * 512),
             write_msg(ino, fh, 100, b"c" * 200_000), read_msg(ino, fh, 0, 4096),
             read_msg(ino, fh, 4000, 300_000), read_msg(ino, fh, 1 << 30, 4096),
             getattr_msg(ino), getattr_msg(1), write_msg(ino, fh, 9 << 20, b"d" * 10),
             read_msg(ino, fh, 5 << 20, 8192), lookup_msg(1, b"f1"), lookup_msg(1, b"d"),
             lookup_msg(1, b"ln"), lookup_msg(1, b"long"), lookup_msg(1, b"fifo")]
    for i, m in enumerate(cases):
        taken = c.taken
        step(c, py, m)
        assert c.taken == taken + 1, f"case {i} declined"
    assert c.engine.statistics()["write"] == 4


@pytest.mark.parametrize("size_pages", [0, 5])
def test_appends_pop_the_reserve_in_c_and_refill_through_alloc1(size_pages: int) -> None:
    """The engine's new page comes from the arena's reserve without a call to
    Python (alloc1 only when the reserve is empty, to refill it); frames, counters
    and replies as Python's -- up to the size= limit, where both answer ENOSPC
    alike and the reserve's frames are not charged to the budget."""
    c, py = (Twin(x, size_pages, AtimeMode(), reserve=3) for x in (True, False))
    calls = []
    arena = c.fs._backing.arena
    real = arena.alloc1

    def counted() -> int:
        calls.append(1)
        return real()

    arena.alloc1 = counted  # the engine calls the instance's method
    ino, _, afh = c.files[0]
    used0 = c.fs.budget.used_pages - arena.statistics()["frames_in_use"]
    sizes = [4096] * 3 + [512] * 8 + [4096] * 3  # 7 new pages, each a one-page WRITE
    for i, n in enumerate(sizes):
        step(c, py, write_msg(ino, afh, 0, bytes([i + 1]) * n))
    st = c.engine.statistics()
    assert len(calls) == 2 + (size_pages == 0)  # refills at new pages 1, 4 (and 7)
    if size_pages:  # the symlink's page and 4 new ones: the fifth is ENOSPC (Python)
        assert used0 == 1 and c.fs.budget.used_pages == py.fs.budget.used_pages == 5
        assert c.fs.getattr(ino).size == 4 * 4096
        assert st["write"] == 3 + 8 and st["reserve_pops"] == 2
    else:
        assert st["write"] == len(sizes) and st["reserve_pops"] == 4
    assert arena.statistics()["frames_in_use"] == c.fs.budget.used_pages - used0


def test_engine_declines_before_changing_anything() -> None:
    """ENOSPC, set-id bits, shared frames and chattr flags: declined, and the Python path
    on the same twin then gives Python's answer (checked by step)."""
    c, py = Twin(True, 4, AtimeMode()), Twin(False, 4, AtimeMode())
    ino, fh, _ = c.files[0]
    step(c, py, write_msg(ino, fh, 0, b"z" * 4096 * 3))
    taken = c.taken
    step(c, py, write_msg(ino, fh, 4096 * 3, b"z" * 8192))  # 2 pages, 1 left: short
    step(c, py, write_msg(ino, fh, 4096 * 5, b"z" * 10))  # nothing left: ENOSPC
    assert c.taken == taken
    for t in (c, py):
        t.fs.setattr(ino, CTX, mode=stat.S_ISUID | 0o755)
    step(c, py, write_msg(ino, fh, 0, b"k" * 10, KILL))
    assert c.taken == taken
    assert c.fs.getattr(ino).mode & stat.S_ISUID == 0


@pytest.mark.parametrize("initial", [AtimeMode(), AtimeMode(relatime=False),
                                     AtimeMode(noatime=True)])
def test_the_daemons_atime_source_is_read_as_python_reads_it(initial: AtimeMode) -> None:
    """The daemon's atime_mode is a MountFlagsWatch (a POLLPRI poll of mountinfo, then
    its mode); the engine reads it without the call: the same atime either way."""
    from pathlib import Path

    from mount.server.mountflags import MountFlagsWatch

    c, py = Twin(True, 0, initial), Twin(False, 0, initial)
    watches = [MountFlagsWatch(Path("/"), initial) for _ in (c, py)]
    try:
        for t, w in zip((c, py), watches, strict=True):
            t.fs.atime_mode = w
        ino, fh, _ = c.files[0]
        step(c, py, write_msg(ino, fh, 0, b"q" * 5000))
        for off in (0, 4096, 0, 100):
            taken = c.taken
            step(c, py, read_msg(ino, fh, off, 4096))
            assert c.taken == taken + 1
    finally:
        for w in watches:
            w.close()


def test_getattr_and_lookup_wait_their_turn_behind_queued_notifications() -> None:
    """ordered=False (the session has notifications queued that such a reply must
    follow): GETATTR and LOOKUP are declined, READ and WRITE (never ordered) taken."""
    c = Twin(True, 0, AtimeMode())
    ino, fh, _ = c.files[0]
    assert c.engine.answer(getattr_msg(ino), False) is None
    assert c.engine.answer(lookup_msg(1, b"f0"), False) is None
    assert c.engine.answer(write_msg(ino, fh, 0, b"w"), False) is not None
    assert c.engine.answer(read_msg(ino, fh, 0, 1), False) is not None


@pytest.mark.parametrize("negative", [0.0, 1.5])
def test_lookup_misses_and_releases_are_taken(negative: float) -> None:
    """A miss (ENOENT counted in Operations' errors, or a negative entry) and the RELEASE
    of a regular file's handle are answered by C, with Python's bytes and state."""
    c, py = Twin(True, 0, AtimeMode(), negative), Twin(False, 0, AtimeMode(), negative)
    ino, fh, afh = c.files[0]
    cases = [lookup_msg(1, b"nope"), lookup_msg(1, b"x" * 255), release_msg(ino, afh),
             release_msg(c.files[2][0], fh)]  # another node id: _drop_handle goes by fh
    for i, m in enumerate(cases):
        taken = c.taken
        step(c, py, m)
        assert c.taken == taken + 1, f"case {i} declined"
    st_ = c.engine.statistics()
    assert (st_["lookup_miss"], st_["release"]) == (2, 2)
    assert fh not in c.fs._handles and c.fs._inodes[ino].nopen == 0
    errors = c.ops.statistics()["errors"]
    assert errors == ({} if negative else {"ENOENT": 2})


def test_releases_that_python_must_do_are_declined() -> None:
    """The last close of an unlinked file (reclaim), a handle with grant tokens, an
    unknown fh, a short message: declined, and Python's answer given (step)."""
    c, py = Twin(True, 0, AtimeMode()), Twin(False, 0, AtimeMode())
    ino, fh, afh = c.files[0]
    ino1, fh1, _ = c.files[1]
    for t in (c, py):
        t.fs.unlink(1, b"f0")
        windows_of(t.fs).grants.mint(ino1, fh1, 0, 1)
    taken = c.taken
    step(c, py, release_msg(ino, fh))  # nopen 2 -> 1 of an unlinked file: C
    assert c.taken == taken + 1
    for m in (release_msg(ino, afh), release_msg(ino1, fh1), release_msg(ino, 999),
              release_msg(ino1, c.files[2][1])[:-8]):
        step(c, py, m)
    assert c.taken == taken + 1
    assert c.fs._inodes[ino].nopen == 0 and c.fs._inodes[ino].reclaimed
    # the grant's handle is gone, its tokens with it, on both twins
    assert fh1 not in c.fs._handles and not windows_of(c.fs).grants._by_fh
    # and after the window table exists, a plain release is still taken
    step(c, py, release_msg(c.files[2][0], c.files[2][1]))
    assert c.taken == taken + 2


@pytest.mark.parametrize("mode", [AtimeMode(), AtimeMode(relatime=False),
                                  AtimeMode(noatime=True)])
def test_opens_are_taken_with_pythons_keep_cache_decision(mode: AtimeMode) -> None:
    """OPEN of a regular file: the new handle, nopen and FOPEN_KEEP_CACHE exactly as
    Operations._open, through a write (mtime >= atime), a read (atime moves), a day
    later (relatime's window) -- and O_TRUNC, O_APPEND, KILL_SUIDGID, chattr flags
    declined."""
    c, py = Twin(True, 0, mode), Twin(False, 0, mode)
    ino, fh, _ = c.files[0]
    taken = c.taken
    flags = []
    for m in (open_msg(ino, os.O_RDONLY), write_msg(ino, fh, 0, b"w" * 10),
              open_msg(ino, os.O_RDWR), read_msg(ino, fh, 0, 10), open_msg(ino, os.O_WRONLY),
              "day", open_msg(ino, os.O_RDONLY)):
        if m == "day":
            for t in (c, py):
                t.fs._clock.t += 2 * 86400 * 10**9
            continue
        step(c, py, m)
        if m[4] == OPEN:
            flags.append(c.request(m)[24:28])  # again, to see the flags (state compared)
            py.request(m)
    assert c.taken == taken + 10  # 8 opens, the write, the read
    assert c.engine.statistics()["open"] == 8
    keep = {b"\x22\0\0\0": "keep", b"\x20\0\0\0": "drop"}
    got = [keep[f] for f in flags]
    # relatime keeps the cache until atime is a day old; strictatime always drops it
    # (the next read moves atime); noatime always keeps it
    want = (["keep"] * 4 if mode.noatime else ["keep", "keep", "keep", "drop"]
            if mode.relatime else ["drop"] * 4)
    assert got == want
    taken = c.taken
    for t in (c, py):
        t.fs._inodes[c.files[1][0]].fsflags = 0x20  # chattr +a
    for m in (open_msg(ino, os.O_RDWR | os.O_TRUNC), open_msg(ino, os.O_WRONLY | os.O_APPEND),
              open_msg(ino, os.O_RDONLY, 1), open_msg(c.files[1][0], os.O_RDONLY),
              open_msg(1, os.O_RDONLY), open_msg(99, os.O_RDONLY),
              open_msg(ino, os.O_RDONLY)[:-4]):
        step(c, py, m)
    assert c.taken == taken
    assert c.state() == py.state()



def _taken(c: Twin, py: Twin, m: bytes) -> bool:
    """step(), and whether the C engine answered it."""
    before = c.taken
    step(c, py, m)
    return c.taken == before + 1


@pytest.mark.parametrize("keep", [True, False])
def test_creates_and_unlinks_are_taken(keep: bool) -> None:
    """CREATE of new names (root and a subdirectory, umasks, O_EXCL, O_TRUNC, set-id mode
    bits the umask does not strip) and UNLINK of an open file, of a closed file with
    pages (the reclaim: size= and nr_inodes given back), of one name of two (its ispace
    slot back): all in C, with Python's bytes and whole state."""
    c, py = Twin(True, 40, AtimeMode(), keep_cache=keep), Twin(False, 40, AtimeMode(),
                                                                  keep_cache=keep)
    creates = [create_msg(1, b"a"), create_msg(DIR, b"b", os.O_RDWR | os.O_CREAT | os.O_EXCL),
               create_msg(1, b"c", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o104755, 0),
               create_msg(1, b"z" * 255, mode=0o100777, umask=0o777),
               create_msg(DIR, b"e", open_flags=1)]
    for i, m in enumerate(creates):
        assert _taken(c, py, m), f"create {i} declined"
    ino_a = c.fs._inodes[1].dir.get(b"a")
    fh_a = max(fh for fh, h in c.fs._handles.items() if h.ino == ino_a)
    step(c, py, write_msg(ino_a, fh_a, 0, b"p" * 10000))  # 3 pages charged
    used = c.fs.budget.used_pages
    assert _taken(c, py, release_msg(ino_a, fh_a))
    free = c.fs.free_ispace
    assert _taken(c, py, unlink_msg(1, b"a"))  # closed, 3 pages: reclaimed
    assert c.fs.budget.used_pages == used - 3 and c.fs.free_ispace == free + 1024
    assert c.fs._inodes[ino_a].reclaimed and c.fs._inodes[ino_a].nlink == 0
    assert _taken(c, py, unlink_msg(1, b"c"))  # still open: nlink 0, not reclaimed
    for t in (c, py):
        t.fs.link(t.files[1][0], DIR, b"second")
    free = c.fs.free_ispace
    assert _taken(c, py, unlink_msg(1, b"f1"))  # one name of two: its slot back
    assert c.fs.free_ispace == free + 1024
    assert _taken(c, py, unlink_msg(DIR, b"second"))  # the last, the file still open
    st_ = c.engine.statistics()
    assert (st_["create"], st_["unlink"]) == (5, 4)
    assert c.fs._ops["create"] == py.fs._ops["create"] == 5 + NFILES


def test_creates_and_unlinks_python_must_do_are_declined() -> None:
    """Existing names (EEXIST, the open of the file), names the codec or _check_name
    refuse, O_APPEND, set-gid, default-ACL, immutable and removed directories; unlinks of
    missing names, directories, symlinks, FIFOs, chattr'd files or directories and of a
    forgotten file (its eviction): declined, Python's answer (step compares)."""
    c, py = Twin(True, 0, AtimeMode()), Twin(False, 0, AtimeMode())
    for m in (create_msg(1, b"f0", os.O_RDWR | os.O_CREAT | os.O_EXCL), create_msg(1, b"f0"),
              create_msg(1, b"d"), create_msg(1, b"y" * 256), create_msg(1, b"."),
              create_msg(1, b".."), create_msg(1, b"a/b"), create_msg(2, b"x"),
              create_msg(99, b"x"), create_msg(1, b"ap", os.O_WRONLY | os.O_CREAT | os.O_APPEND),
              create_msg(1, b"short")[:-1],
              unlink_msg(1, b"nope"), unlink_msg(1, b"d"), unlink_msg(1, b"ln"),
              unlink_msg(1, b"long"), unlink_msg(1, b"fifo"), unlink_msg(2, b"x"),
              unlink_msg(1, b"y" * 256), unlink_msg(99, b"f0")):
        assert not _taken(c, py, m), m
    for what in ("sgid", "acl", "immutable", "append", "rmdir"):
        fresh_c, fresh_py = Twin(True, 0, AtimeMode()), Twin(False, 0, AtimeMode())
        for t in (fresh_c, fresh_py):
            meta(t, what, DIR, 0)
        assert not _taken(fresh_c, fresh_py, create_msg(DIR, b"new")), what
        if what == "append":  # nothing leaves an append-only directory
            for t in (fresh_c, fresh_py):
                t.fs._inodes[DIR].fsflags = 0
                t.fs.create(DIR, b"in", 0o100644, os.O_RDONLY, CTX)
                t.fs._inodes[DIR].fsflags = 0x20
            assert not _taken(fresh_c, fresh_py, unlink_msg(DIR, b"in"))
    for t in (c, py):
        t.fs._inodes[t.files[0][0]].fsflags = 0x10  # chattr +i: EPERM
        t.fs.release(t.files[2][0], t.files[2][1])
        t.fs.release(t.files[2][0], t.files[2][2])
        t.fs.forget(t.files[2][0], 1)  # closed, no lookup: the unlink evicts it
    assert not _taken(c, py, unlink_msg(1, b"f0"))
    assert not _taken(c, py, unlink_msg(1, b"f2"))
    assert c.files[2][0] not in c.fs._inodes  # evicted by Python, on both (state equal)


def test_create_declines_enospc_and_takes_again_after_an_unlink() -> None:
    """nr_inodes: the creates that fit are C's, the one that does not is Python's ENOSPC;
    the unlink of a closed file gives its slot back (in C) and the next create fits."""
    # root, 3 files, d, ln, long, fifo: 8 inodes; nr_inodes=10 leaves two
    c, py = Twin(True, 0, AtimeMode(), nr_inodes=10), Twin(False, 0, AtimeMode(), nr_inodes=10)
    assert _taken(c, py, create_msg(1, b"n0"))
    assert _taken(c, py, create_msg(1, b"n1"))
    assert not _taken(c, py, create_msg(1, b"n2"))
    assert c.request(create_msg(1, b"n2"))[4:8] == struct.pack("<i", -28)  # ENOSPC
    py.request(create_msg(1, b"n2"))
    ino = c.fs._inodes[1].dir.get(b"n0")
    fh = max(fh for fh, h in c.fs._handles.items() if h.ino == ino)
    assert _taken(c, py, release_msg(ino, fh))
    assert _taken(c, py, unlink_msg(1, b"n0"))
    assert _taken(c, py, create_msg(1, b"n2"))
    assert c.ops.statistics()["errors"] == {"ENOSPC": 2}


def test_create_and_unlink_wait_their_turn_behind_queued_notifications() -> None:
    """ordered=False: CREATE and UNLINK are declined (their replies follow the queue)."""
    c = Twin(True, 0, AtimeMode())
    assert c.engine.answer(create_msg(1, b"n0"), False) is None
    assert c.engine.answer(unlink_msg(1, b"f0"), False) is None
    assert b"n0" not in c.fs._inodes[1].dir and c.fs._inodes[1].dir.get(b"f0") is not None


def test_forgets_are_taken_and_evictions_left_for_later() -> None:
    """FORGET and BATCH_FORGET: nlookup lowered in C, an unlinked closed file appended to
    evict_later (reaped by the session later, as after Python); an eviction now (no
    defer_evictions), a full evict_later, the root, a node twice in one batch and a
    count larger than the message: declined, with Python's outcome."""
    c, py = Twin(True, 0, AtimeMode()), Twin(False, 0, AtimeMode())
    for t in (c, py):
        t.fs.defer_evictions = True
        t.fs.lookup(1, b"f1")  # nlookup 2
    ino0, ino1, ino2 = (f[0] for f in c.files)
    assert _taken(c, py, forget_msg(ino1, 1))
    assert _taken(c, py, forget_msg(99, 1))  # no such node: only counted
    assert _taken(c, py, create_msg(1, b"n0"))
    n0 = c.fs._inodes[1].dir.get(b"n0")
    fh = max(c.fs._handles)
    for m in (release_msg(n0, fh), unlink_msg(1, b"n0")):
        assert _taken(c, py, m)
    assert _taken(c, py, batch_forget_msg([(n0, 1), (ino1, 5)]))
    assert [i.ino for i in c.fs.evict_later] == [n0] and c.fs._inodes[ino1].nlookup == 0
    assert c.fs.reap() == py.fs.reap() == 1 and n0 not in c.fs._inodes
    for m in (forget_msg(1, 1), batch_forget_msg([(ino0, 1), (ino0, 1)]),
              batch_forget_msg([(ino0, 1)], extra=1), forget_msg(ino0, 1)[:-1]):
        assert not _taken(c, py, m)
    for t in (c, py):
        f = t.files[2]
        t.fs.release(f[0], f[1])
        t.fs.release(f[0], f[2])
        t.fs.unlink(1, b"f2")
        t.fs.evict_later.extend([t.fs._inodes[1]] * 256)  # full (reap skips the root)
    assert not _taken(c, py, forget_msg(ino2, 1))  # Python appends, then reaps at once
    assert ino2 not in c.fs._inodes and not c.fs.evict_later
    assert _taken(c, py, create_msg(1, b"n1"))
    n1 = c.fs._inodes[1].dir.get(b"n1")
    for m in (release_msg(n1, max(c.fs._handles)), unlink_msg(1, b"n1")):
        assert _taken(c, py, m)
    for t in (c, py):
        t.fs.defer_evictions = False
    assert not _taken(c, py, forget_msg(n1, 1))  # evicted now, by Python
    assert n1 not in c.fs._inodes
    assert c.engine.statistics()["forget"] == 4


def test_mkdirs_and_rmdirs_are_taken_and_the_odd_ones_declined() -> None:
    """MKDIR (umasks, set-id and sticky bits kept as Python keeps them) and RMDIR of an
    empty directory, closed (reclaimed) or still open, in C; EEXIST, set-gid parents,
    ENOTEMPTY, ENOTDIR, ".", "..", a forgotten directory (its eviction): Python's."""
    c, py = Twin(True, 0, AtimeMode()), Twin(False, 0, AtimeMode())
    for i, m in enumerate((mkdir_msg(1, b"a"), mkdir_msg(DIR, b"b", 0o7777, 0),
                           mkdir_msg(1, b"c", 0o777, 0o077), mkdir_msg(1, b"e"))):
        assert _taken(c, py, m), f"mkdir {i} declined"
    a = c.fs._inodes[1].dir.get(b"a")
    assert c.fs._inodes[a].nlink == 2 and c.fs._inodes[a].parent == 1
    for t in (c, py):
        t.fs.create(a, b"inside", 0o100644, os.O_RDONLY, CTX)
        t.fs.opendir(t.fs._inodes[1].dir.get(b"e"), os.O_RDONLY)  # held open
    for m in (mkdir_msg(1, b"a"), mkdir_msg(1, b"f0"), rmdir_msg(1, b"a"), rmdir_msg(1, b"f0"),
              rmdir_msg(1, b"."), rmdir_msg(1, b".."), rmdir_msg(1, b"nope"),
              rmdir_msg(2, b"x"), mkdir_msg(2, b"x"), mkdir_msg(1, b"y" * 256)):
        assert not _taken(c, py, m), m
    free = c.fs.free_ispace
    assert _taken(c, py, rmdir_msg(1, b"c"))  # closed: reclaimed
    assert c.fs.free_ispace == free + 1024
    assert _taken(c, py, rmdir_msg(1, b"e"))  # open: not yet
    assert _taken(c, py, rmdir_msg(DIR, b"b"))
    for t in (c, py):
        meta(t, "sgid", DIR, 0)
        t.fs.mkdir(1, b"gone", 0o755, CTX)
        t.fs.forget(t.fs._inodes[1].dir.get(b"gone"), 1)
    assert not _taken(c, py, mkdir_msg(DIR, b"g"))
    assert not _taken(c, py, rmdir_msg(1, b"gone"))  # evicted now, by Python
    st_ = c.engine.statistics()
    assert (st_["mkdir"], st_["rmdir"]) == (4, 3)


def test_the_largest_batch_forget_is_taken_and_a_larger_one_declined() -> None:
    """BATCH_FORGET of 32 files (the engine's limit: it keeps one reference per entry)
    in C, of 33 in Python; the same nlookups either way."""
    c, py = Twin(True, 0, AtimeMode()), Twin(False, 0, AtimeMode())
    for t in (c, py):
        for i in range(40):
            t.fs.create(1, b"b%d" % i, 0o100644, os.O_RDONLY, CTX)
    inos = [c.fs._inodes[1].dir.get(b"b%d" % i) for i in range(40)]
    assert _taken(c, py, batch_forget_msg([(i, 1) for i in inos[:32]]))
    assert not _taken(c, py, batch_forget_msg([(i, 1) for i in inos[7:40]]))
    assert c.engine.statistics()["forget"] == 32 and c.engine.statistics()["errors"] == 0


def _left_for_later(t: Twin, name: bytes, data: bytes = b"", xattr: bool = False) -> int:
    """A file created, (written,) closed, unlinked and forgotten with deferred
    evictions: what an unlink leaves in evict_later. Its inode number."""
    t.fs.defer_evictions = True
    a, fh = t.fs.create(1, name, 0o100644, os.O_RDWR, CTX)
    if data:
        t.fs.write(a.ino, fh, 0, data)
    if xattr:
        t.fs.setxattr(a.ino, b"user.k", b"v" * 40, 0)
    t.fs.release(a.ino, fh)
    t.fs.unlink(1, name)
    t.fs.forget(a.ino, 1)
    return a.ino


def _reap_step(c: Twin, py: Twin) -> int:
    """Engine.reap on c, FsCore.reap(1) on py: same state after; when C declines,
    nothing changed and Python's reap on c gives the same state again. C's answer."""
    heads = [t.fs.evict_later[0] if t.fs.evict_later else None for t in (c, py)]
    before = c.state(), _evicted_fields(heads[0])
    took = c.engine.reap()
    py.fs.reap(1)
    if not took:
        assert (c.state(), _evicted_fields(heads[0])) == before  # declined untouched
        c.fs.reap(1)
    assert c.state() == py.state()
    # the evicted inode is out of the table (state() no longer sees it): its own fields
    assert _evicted_fields(heads[0]) == _evicted_fields(heads[1])
    return took


def _evicted_fields(inode: Any) -> Any:
    """What _evict changes on the inode object itself."""
    if inode is None:
        return None
    m = inode.mapping
    pc = None if m is None else m.pages
    return (inode.ino, inode.linkable, dict(inode.xattrs), inode.xattr_space,
            inode.symlink_pages, inode.acl_access, inode.acl_default, inode.reclaimed,
            None if m is None else (m.nr_unmaps, pc.gen, pc.nrpages, m.frames_freed,
                                    m.budget.used_pages, type(pc._frames).__name__,
                                    type(pc._keys).__name__, len(pc._keys)))


def test_reap_in_c_evicts_as_python_and_declines_the_rest() -> None:
    """Engine.reap (the C loop's reap on an empty read): an unlinked empty file, also
    one with xattrs, and one with pages, evicted in C with Python's whole state (the
    inode gone, _evicted, its xattrs and ACLs, the mapping's unmap count and
    generation, its frames back on the arena's free list); the root at the head
    (Python skips it), a stale entry and an empty evict_later: declined with nothing
    changed."""
    c, py = Twin(True, 40, AtimeMode()), Twin(False, 40, AtimeMode())
    for t in (c, py):
        _left_for_later(t, b"e0")
        _left_for_later(t, b"e1", xattr=True)
        _left_for_later(t, b"p0", data=b"x" * 5000)
        t.fs.evict_later.append(t.fs._inodes[1])
    e0 = c.fs.evict_later[0].ino
    assert _reap_step(c, py) == 1 and e0 not in c.fs._inodes
    assert _reap_step(c, py) == 1  # xattrs: cleared, their space already back
    assert _reap_step(c, py) == 1  # pages: freed in C (test_reap_in_c_frees_pages...)
    assert _reap_step(c, py) == 0 and not c.fs.evict_later  # the root: skipped by Python
    assert _reap_step(c, py) == 0  # nothing left
    for t in (c, py):
        ino = _left_for_later(t, b"s0")
        t.fs.evict_later.append(t.fs.evict_later[0])  # twice: the second is stale
        assert t.fs.reap(1) == 1 and ino not in t.fs._inodes
    assert _reap_step(c, py) == 0  # stale: Python drops it from the deque
    assert c.engine.statistics()["reap"] == 3
    assert c.fs._evicted == py.fs._evicted


def test_a_forget_past_a_full_evict_later_reaps_its_head_in_c() -> None:
    """A FORGET that makes evict_later longer than EVICT_LATER_MAX (a long unlink burst
    whose device never emptied): _maybe_evict appends and reaps the head at once; the
    engine reaps the head in C first (an unlinked empty file), also for a BATCH_FORGET
    of two, with Python's state after. A head it cannot reap (pages in more runs than
    one madvise each: Python's batch): declined, nothing changed, and Python's forget
    reaps it."""
    c = Twin(True, 40, AtimeMode(), nr_inodes=1000)
    py = Twin(False, 40, AtimeMode(), nr_inodes=1000)
    fresh: list[int] = []
    for t in (c, py):
        inos = []
        for i in range(260):
            a, fh = t.fs.create(1, b"u%d" % i, 0o100644, os.O_WRONLY, CTX)
            t.fs.release(a.ino, fh)
            t.fs.unlink(1, b"u%d" % i)
            inos.append(a.ino)
        t.fs.defer_evictions = True
        for ino in inos[:256]:
            t.fs.forget(ino, 1)
        assert len(t.fs.evict_later) == 256
        fresh = inos[256:]
    evicted = c.fs._evicted
    assert _taken(c, py, forget_msg(fresh[0], 1))
    assert len(c.fs.evict_later) == 256 and c.fs._evicted == evicted + 1
    assert _taken(c, py, batch_forget_msg([(fresh[1], 1), (fresh[2], 1)]))
    assert c.fs._evicted == evicted + 3 and c.engine.statistics()["reap"] == 3
    for t in (c, py):  # a file with pages appended (Python reaps one head) ...
        ino = _scattered_left_for_later(t, b"pages", BATCH_RUNS)
        t.fs.evict_later.rotate(1)  # ... and moved to the head
        assert t.fs.evict_later[0].ino == ino and len(t.fs.evict_later) == 256
    before = c.state()
    assert c.engine.answer(forget_msg(fresh[3], 1), True) is None  # head with pages
    assert c.state() == before
    assert not _taken(c, py, forget_msg(fresh[3], 1))  # Python: append, reap the head
    assert len(c.fs.evict_later) == 256


BATCH_RUNS = 16  # vmcore.arena._BATCH_DISCARD_MIN: so many runs are freed in one batch


def _scattered_left_for_later(t: Twin, name: bytes, runs: int) -> int:
    """_left_for_later of a file of ``runs`` pages whose frames are not contiguous (a
    second file's pages were allocated between them): freed as ``runs`` runs."""
    t.fs.defer_evictions = True
    a, fh = t.fs.create(1, name, 0o100644, os.O_RDWR, CTX)
    b, gh = t.fs.create(1, name + b".gap", 0o100644, os.O_RDWR, CTX)
    for i in range(runs):
        t.fs.write(a.ino, fh, i * 4096, b"a" * 4096)
        t.fs.write(b.ino, gh, i * 4096, b"b" * 4096)
    t.fs.release(a.ino, fh)
    t.fs.release(b.ino, gh)
    t.fs.unlink(1, name)
    t.fs.forget(a.ino, 1)
    return a.ino


@pytest.mark.parametrize("reserve", [0, 8])
def test_reap_in_c_frees_pages_as_python(reserve: int) -> None:
    """Engine.reap of files with pages (an unlink of a file with data, its FORGET):
    Mapping.release's work in C -- the page cache emptied (its shared empty stand-ins
    back), the frames discarded and on the arena's free list in Python's runs, the
    arena's and the mapping's counters, the private Budget uncharged -- with Python's
    state after each step: one page, two, pages in two chunks and far apart (a sparse
    file), fallocated (!UPTODATE) pages, a file truncated to a hole, fifteen runs (one
    madvise each), with and without the reserve; the populate thread's bookkeeping
    (its flags of populated free frames) kept as _put_back keeps it."""
    size = 2000
    c = Twin(True, size, AtimeMode(), nr_inodes=1000, reserve=reserve)
    py = Twin(False, size, AtimeMode(), nr_inodes=1000, reserve=reserve)
    for t in (c, py):  # frames that stay in use: the reserve is never released here
        a, fh = t.fs.create(1, b"keep", 0o100644, os.O_RDWR, CTX)
        t.fs.write(a.ino, fh, 0, b"k" * 4096)
    for name, data, off in [(b"one", b"x" * 10, 0), (b"two", b"y" * 5000, 0),
                            (b"chunks", b"z" * 8192, 510 * 4096),
                            (b"sparse", b"s" * 3, 1 << 30)]:
        for t in (c, py):
            t.fs.defer_evictions = True
            a, fh = t.fs.create(1, name, 0o100644, os.O_RDWR, CTX)
            t.fs.write(a.ino, fh, off, data)
            t.fs.write(a.ino, fh, 0, b"head")
            t.fs.release(a.ino, fh)
            t.fs.unlink(1, name)
            t.fs.forget(a.ino, 1)
        assert _reap_step(c, py) == 1
    for t in (c, py):  # fallocated pages, and a file truncated after its pages went
        t.fs.defer_evictions = True
        a, fh = t.fs.create(1, b"falloc", 0o100644, os.O_RDWR, CTX)
        t.fs.fallocate(a.ino, fh, 0, 4096, 3 * 4096)
        t.fs.write(a.ino, fh, 0, b"w")
        t.fs.release(a.ino, fh)
        t.fs.unlink(1, b"falloc")
        t.fs.forget(a.ino, 1)
    assert _reap_step(c, py) == 1
    for t in (c, py):
        _scattered_left_for_later(t, b"runs", BATCH_RUNS - 1)
        arena = t.fs._backing.arena  # the populate thread's flags, without its thread
        arena._thread = object()
        arena._pop[arena._in_use.nonzero()[0][-6:]] = True  # (stale flags: uncounted)
        arena._free_ready = 6
    assert _reap_step(c, py) == 1
    for t in (c, py):
        assert t.fs._backing.arena._free_ready == 6 - 6 + sum(
            1 for f in t.fs._backing.arena._pop.nonzero()[0])
        t.fs._backing.arena._thread = None
    st = c.engine.statistics()
    assert st["reap"] == 6 and st["reap_pages"] == 1 + 2 + 3 + 2 + 4 + BATCH_RUNS - 1
    assert c.fs.budget.used_pages == py.fs.budget.used_pages


def test_reap_in_c_declines_pages_python_must_free() -> None:
    """Files with pages Engine.reap leaves to Python, untouched: sixteen runs or more
    (Python's process_madvise batch), frames shared copy-on-write (copy_file_range),
    the populate thread's lock held or its range overlapping the frames (_wait_not_busy
    would wait), the last frames in use while the reserve holds frames (Python gives the
    reserve back then)."""
    c = Twin(True, 2000, AtimeMode(), nr_inodes=1000, reserve=8)
    py = Twin(False, 2000, AtimeMode(), nr_inodes=1000, reserve=8)
    for t in (c, py):  # the only frames in use: their eviction gives the reserve back
        _left_for_later(t, b"last", data=b"l" * 4096)
    assert _reap_step(c, py) == 0
    assert not c.fs._backing.arena._res  # Python's release_reserve ran
    for t in (c, py):
        _scattered_left_for_later(t, b"batch", BATCH_RUNS)
    assert _reap_step(c, py) == 0
    for t in (c, py):
        t.fs.defer_evictions = True
        a, fh = t.fs.create(1, b"src", 0o100644, os.O_RDWR, CTX)
        t.fs.write(a.ino, fh, 0, b"s" * 8192)
        b, gh = t.fs.create(1, b"dst", 0o100644, os.O_RDWR, CTX)
        assert t.fs.copy_file_range(a.ino, fh, 0, b.ino, gh, 0, 8192) == 8192
        assert t.fs._backing.arena.nshared
        for ino, h, name in ((b.ino, gh, b"dst"), (a.ino, fh, b"src")):
            t.fs.release(ino, h)
            t.fs.unlink(1, name)
            t.fs.forget(ino, 1)
    assert _reap_step(c, py) == 0  # shared frames: Python's refcounts
    assert _reap_step(c, py) == 1  # the source: its own again (refs dropped), freed in C
    for t in (c, py):
        _left_for_later(t, b"locked", data=b"x" * 4096)
    arena = c.fs._backing.arena
    arena._thread = object()  # the populate thread's path, without the thread
    before = c.state()
    with arena._cond:  # the thread holds its lock: C does not wait for it
        assert c.engine.reap() == 0
    frame = int(c.fs.evict_later[0].mapping.pages._frames[0][0])
    arena._busy = (frame, frame + 1)  # ... or is populating this frame
    assert c.engine.reap() == 0
    arena._busy = (frame + 1, frame + 5)  # a range next to it: no wait
    assert c.state() == before
    assert c.engine.reap() == 1
    arena._thread = arena._busy = None
    py.fs.reap(1)
    assert c.state() == py.state()


def _slots(obj: Any, twin: Twin) -> dict[str, Any]:
    """Every __slots__ field of obj as a comparable value: the twin's own shared objects
    (its arena, budget, the page cache's empty stand-ins) by name, containers by value,
    the rest by type where identity is all there is."""
    fs = twin.fs
    from vmcore import pagecache

    named = {id(fs._backing.arena): "arena", id(fs.budget): "budget",
             id(pagecache._NO_CHUNKS): "_NO_CHUNKS", id(pagecache._NO_KEYS): "_NO_KEYS"}
    out: dict[str, Any] = {}
    for name in type(obj).__slots__:
        if not hasattr(obj, name):
            out[name] = "<unset>"
            continue
        v = getattr(obj, name)
        if id(v) in named:
            out[name] = named[id(v)]
        elif isinstance(v, (int, bytes, str, bool, type(None), dict, list, tuple)):
            out[name] = (type(v).__name__, v)
        else:
            out[name] = type(v).__name__
    return out


def test_a_creates_objects_made_in_c_are_pythons_slot_for_slot() -> None:
    """CREATE makes the new file's Inode, Mapping, PageCache and Handle in C by filling
    their __slots__ (native/hotmeta.c fn_*): every field of each, set or unset, equal to
    what the Python constructors give (Inode.__init__, Backing.new_mapping, PageCache(),
    Handle); then the file is written, read, truncated and unlinked through both paths
    with the same state (the objects work as Python's do). A class whose __slots__ differ
    from the engine's list would be made by its constructor instead (fn_type_ok)."""
    c, py = Twin(True, 40, AtimeMode()), Twin(False, 40, AtimeMode())
    assert _taken(c, py, create_msg(1, b"new", os.O_RDWR | os.O_CREAT, 0o100640, 0o027))
    assert c.engine.statistics()["create_objects_in_c"] == 1
    objs = []
    for t in (c, py):
        inode = t.fs._inodes[t.fs._inodes[1].dir.get(b"new")]
        fh = max(fh for fh, h in t.fs._handles.items() if h.ino == inode.ino)
        m = inode.mapping
        objs.append((inode.ino, fh, [_slots(inode, t), _slots(m, t), _slots(m.pages, t),
                                     _slots(t.fs._handles[fh], t)]))
    assert objs[0] == objs[1]
    ino, fh, _ = objs[0]
    for m in (write_msg(ino, fh, 4090, b"w" * 20), read_msg(ino, fh, 0, 8192),
              getattr_msg(ino), release_msg(ino, fh), unlink_msg(1, b"new")):
        step(c, py, m)
    inode = c.fs._inodes[ino]  # reclaimed: its two pages held (until the eviction) ...
    assert inode.reclaimed and inode.mapping.nrpages == 2
    assert inode.mapping.budget is not c.fs.budget  # ... by a private Budget
