"""Operations: one decoded FUSE request -> calls on fsimpl's ShmFs -> reply buffers.

API (what the session uses)::

    config = OpsConfig(entry_timeout=86400.0, ...)   # every field has a default
    ops = Operations(fs, config)                      # fs: fsimpl ShmFs (or a fake of it)
    out = ops.handle(req)     # list of buffers for os.writev, or None: no reply
                              # (FORGET, BATCH_FORGET, NOTIFY_REPLY, INTERRUPT)
    ops.fs, ops.config, ops.proto_minor, ops.init_flags, ops.destroyed, ops.statistics()

``handle`` never raises. Errors are translated in exactly one place
(``handle``): FsError -> ``-errno``; any other exception is logged with its
traceback and answered EIO, so the session keeps serving. Handlers signal
"not supported" (ENOSYS, ENOTTY, ERANGE ...) by raising FsError too.

READ replies are ``[header, *memoryviews]`` straight from fsimpl.read (page data
is never copied); WRITE hands fsimpl a memoryview of the request buffer.

READDIRPLUS: the kernel links (and counts one lookup for) every entry of the
reply with a nonzero nodeid, except "." and ".." which it skips without a
FORGET. So an entry's ``fs.lookup`` is called only after we know its record
fits (``fs.remember(ino)``, or ``fs.lookup(parent, name)`` for a fs without
``remember``), and "." / ".." are sent with nodeid 0 (no reference taken).
Negotiation and cache policy are explained in docs/fuse-protocol.md.
"""

from __future__ import annotations

import errno as E
import logging
import os
import stat
import struct
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fsimpl.errors import FsError
from fsimpl.types import Ctx
from mount.server.creds import read_creds
from mount.wire import codec as C
from mount.wire import protocol as P
from mount.wire.codec import Request
from mount.wire.statx import statx_out

log = logging.getLogger("shmfs.ops")
O_TRUNC = 0o1000
O_APPEND = 0o2000

Reply = list[bytes | bytearray | memoryview] | None

# handle_fast: the header and the exact sizes of the requests it decodes itself
_IN_HEADER_SIZE = P.IN_HEADER.size
_unpack_header = P.IN_HEADER.unpack_from
_unpack_u64 = struct.Struct("<Q").unpack_from
_GETATTR, _LOOKUP, _FORGET = int(P.Opcode.GETATTR), int(P.Opcode.LOOKUP), int(P.Opcode.FORGET)
_UNLINK, _RELEASE = int(P.Opcode.UNLINK), int(P.Opcode.RELEASE)
_WRITE, _READ, _CREATE = int(P.Opcode.WRITE), int(P.Opcode.READ), int(P.Opcode.CREATE)
_unpack_write = P.WRITE_IN.unpack_from
_unpack_read = P.READ_IN.unpack_from
_unpack_create = P.CREATE_IN.unpack_from
_pack_out_header = P.OUT_HEADER.pack
_OUT_HEADER_SIZE = P.OUT_HEADER.size
_READ_SIZE = _IN_HEADER_SIZE + P.READ_IN.size
_CREATE_NAME = _IN_HEADER_SIZE + P.CREATE_IN.size
_WRITE_DATA = _IN_HEADER_SIZE + P.WRITE_IN.size
_GETATTR_SIZE = _IN_HEADER_SIZE + P.GETATTR_IN.size
_FORGET_SIZE = _IN_HEADER_SIZE + P.FORGET_IN.size
_RELEASE_SIZE = _IN_HEADER_SIZE + P.RELEASE_IN.size

# What shmfs implements; the reply carries (kernel's flags & WANTED).
INIT_WANTED = (
    P.FUSE_ASYNC_READ
    | P.FUSE_ATOMIC_O_TRUNC
    | P.FUSE_BIG_WRITES
    | P.FUSE_DO_READDIRPLUS
    | P.FUSE_READDIRPLUS_AUTO
    | P.FUSE_PARALLEL_DIROPS
    | P.FUSE_MAX_PAGES
    | P.FUSE_HAS_IOCTL_DIR  # window ioctls: STATS on the mount root (docs/windows.md)
    | P.FUSE_HANDLE_KILLPRIV_V2
    # POSIX ACLs (fsimpl/acl.py): the kernel checks permissions with them and
    # stores them through GETXATTR/SETXATTR; the daemon applies the umask
    # (DONT_MASK) because a directory's default ACL overrides it; SETXATTR_EXT
    # carries FUSE_SETXATTR_ACL_KILL_SGID, which needs the caller's groups.
    | P.FUSE_POSIX_ACL
    | P.FUSE_DONT_MASK
    | P.FUSE_SETXATTR_EXT
    # file handles (open_by_handle_at, NFS export) survive the kernel dropping
    # its inode: it then asks LOOKUP(nodeid, ".") / (dir, "..") (fsimpl lookup)
    | P.FUSE_EXPORT_SUPPORT
)


@dataclass(slots=True)
class OpsConfig:
    """Cache timeouts and INIT parameters (docs/fuse-protocol.md says why these defaults)."""

    entry_timeout: float = 86400.0  # every namespace change passes through the kernel
    attr_timeout: float = 86400.0  # ... or is announced with NOTIFY_INVAL_*
    negative_timeout: float = 0.0  # >0: cache "no such name" (LOOKUP answers nodeid 0)
    keep_cache: bool = True  # FOPEN_KEEP_CACHE on OPEN/CREATE
    cache_symlinks: bool = True  # FUSE_CACHE_SYMLINKS: tmpfs symlinks never change
    writeback_cache: bool = False  # FUSE_WRITEBACK_CACHE (ARCHITECTURE decision 5: off)
    uring: bool = False  # ask for FUSE_OVER_IO_URING (set by mount/server/uring_fuse.py)
    max_write: int = 1 << 20
    max_pages: int = 256  # 1 MiB READ/WRITE requests
    max_readahead: int = 1 << 20  # upper bound; the kernel's own value wins if smaller
    max_background: int = 64
    congestion_threshold: int = 48
    generation: int | None = None  # fuse_entry_out.generation; None: random per mount


class Operations:
    """Maps each opcode to ShmFs calls and builds the reply (see the module docstring)."""

    def __init__(self, fs: Any, config: OpsConfig | None = None) -> None:
        self.fs = fs
        self.config = config or OpsConfig()
        self.proto_minor = 0  # negotiated in INIT
        self.init_flags = 0  # flags granted in INIT (bits 32.. = flags2)
        self.destroyed = False
        # fuse_entry_out.generation: node ids are never reused within a mount,
        # so one random number per mount is enough to make a file handle from
        # an earlier mount (same node id, another file) ESTALE, as tmpfs's
        # random i_generation does. The root keeps 0 (the kernel makes it so).
        gen = self.config.generation
        self.generation = int.from_bytes(os.urandom(4), "little") | 1 if gen is None else gen
        self._errors: Counter[int] = Counter()
        self._unexpected = 0
        # The IOCTL path's modules, imported with the daemon instead of by the first
        # ioctl: that import took 40-80 ms inside the first STATS (or inside the
        # TCGETS every Python open() sends), docs/performance.md change 11.
        from fsimpl.windows import windows_of
        from mount.server import fileattr, ioctl

        self._windows_of = windows_of
        self._ioctl_mod = ioctl
        self._fileattr_mod = fileattr
        op = P.Opcode
        self._handlers: dict[int, Callable[[Request], Reply]] = {
            op.INIT: self._init, op.DESTROY: self._destroy, op.LOOKUP: self._lookup,
            op.FORGET: self._forget, op.BATCH_FORGET: self._batch_forget,
            op.GETATTR: self._getattr, op.SETATTR: self._setattr, op.READLINK: self._readlink,
            op.SYMLINK: self._symlink, op.MKNOD: self._mknod, op.MKDIR: self._mkdir,
            op.UNLINK: self._unlink, op.RMDIR: self._rmdir, op.RENAME: self._rename,
            op.RENAME2: self._rename, op.LINK: self._link, op.OPEN: self._open,
            op.CREATE: self._create, op.READ: self._read, op.WRITE: self._write,
            op.FLUSH: self._flush, op.RELEASE: self._release, op.FSYNC: self._fsync,
            op.OPENDIR: self._opendir, op.READDIR: self._readdir,
            op.READDIRPLUS: self._readdir, op.RELEASEDIR: self._releasedir,
            op.FSYNCDIR: self._fsyncdir, op.STATFS: self._statfs, op.SETXATTR: self._setxattr,
            op.GETXATTR: self._getxattr, op.LISTXATTR: self._listxattr,
            op.REMOVEXATTR: self._removexattr, op.ACCESS: self._access,
            op.FALLOCATE: self._fallocate, op.LSEEK: self._lseek,
            op.INTERRUPT: self._no_reply, op.NOTIFY_REPLY: self._no_reply,
            op.IOCTL: self._ioctl, op.TMPFILE: self._tmpfile, op.STATX: self._statx,
            op.COPY_FILE_RANGE: self._copy_file_range,
            op.COPY_FILE_RANGE_64: self._copy_file_range,
        }

    # --- the one translation point ------------------------------------------------------------

    def handle(self, req: Request) -> Reply:
        """Answer one request; never raises. None means: send nothing."""
        handler = self._handlers.get(req.opcode, self._enosys)
        try:
            return handler(req)
        except Exception as e:  # every failure becomes an errno reply
            return self._failed(req.opcode, req.unique, req.nodeid, e)

    def handle_fast(self, msg: memoryview) -> tuple[int, Reply] | None:
        """(opcode, reply) for a well-formed GETATTR, LOOKUP, FORGET, UNLINK,
        RELEASE, CREATE, READ or WRITE, straight from the message bytes; None sends the message down
        the generic path (parse_request + handle), which must then answer it
        from scratch.

        Why: these are most of the requests of a metadata workload (a create is
        LOOKUP, CREATE, GETATTR of the directory and RELEASE; an unlink is
        UNLINK, GETATTR and a FORGET the kernel reads first), and decoding them
        into Request objects was a third of their cost. The replies are the same
        bytes as the generic path's (tests/mount/test_fastpath.py checks). The
        session sends READ and WRITE down the generic path while NOTIFY_STOREs are
        queued (Session._cancel_stores needs the decoded request)."""
        n = len(msg)
        if n < _IN_HEADER_SIZE:
            return None
        length, opcode, unique, nodeid, uid, gid, pid, extlen, _ = _unpack_header(msg)
        if length != n or extlen:
            return None
        try:
            if opcode == _READ:
                # 4 KiB random reads are one READ each: the reply is the header and
                # views of the arena (or of the zero page), as _read builds it
                if n != _READ_SIZE:
                    return None
                fh, off, size, _rf, _lo, _fl, _ = _unpack_read(msg, _IN_HEADER_SIZE)
                views = self.fs.read(nodeid, fh, off, size)
                total = _OUT_HEADER_SIZE
                for v in views:
                    total += v.nbytes
                return opcode, [_pack_out_header(total, 0, unique), *views]
            if opcode == _WRITE:
                # small writes are one request each (appends, 4 KiB random I/O):
                # parse_request + Request + WriteIn cost ~1.6 us of ~15
                if n < _WRITE_DATA:
                    return None
                fh, off, size, write_flags, _lo, _fl, _ = _unpack_write(msg, _IN_HEADER_SIZE)
                if n - _WRITE_DATA != size:
                    return None
                written = self.fs.write(nodeid, fh, off, msg[_WRITE_DATA:], write_flags,
                                        Ctx(uid, gid, pid, 0, read_creds))
                return opcode, [C.reply(unique, C.write_out(written))]
            if opcode == _GETATTR:
                if n != _GETATTR_SIZE:
                    return None
                attr = self.fs.getattr(nodeid)
                return opcode, [C.attr_reply(unique, attr, self.config.attr_timeout)]
            if opcode == _LOOKUP:
                name = C.plain_name(msg, _IN_HEADER_SIZE)
                if name is None:
                    return None
                return opcode, [self._lookup_reply(unique, nodeid, name)]
            if opcode == _FORGET:
                if n != _FORGET_SIZE:
                    return None
                self.fs.forget(nodeid, _unpack_u64(msg, _IN_HEADER_SIZE)[0])
                return opcode, None
            if opcode == _UNLINK:
                name = C.plain_name(msg, _IN_HEADER_SIZE)
                if name is None:
                    return None
                self.fs.unlink(nodeid, name)
                return opcode, [C.reply(unique)]
            if opcode == _RELEASE:
                if n != _RELEASE_SIZE:
                    return None
                self.fs.release(nodeid, _unpack_u64(msg, _IN_HEADER_SIZE)[0])
                return opcode, [C.reply(unique)]
            if opcode == _CREATE:
                if n <= _CREATE_NAME:
                    return None
                name = C.plain_name(msg, _CREATE_NAME)
                if name is None:
                    return None
                flags, mode, umask, _ = _unpack_create(msg, _IN_HEADER_SIZE)
                attr, fh = self.fs.create(nodeid, name, mode, self._handle_flags(flags),
                                          Ctx(uid, gid, pid, umask))
                return opcode, [self._create_reply(unique, attr, fh)]
        except Exception as e:  # as in handle()
            return opcode, self._failed(opcode, unique, nodeid, e)
        return None

    def _failed(self, opcode: int, unique: int, nodeid: int, e: Exception) -> Reply:
        """The one translation of a failure: FsError -> -errno, anything else is
        logged with its traceback (call from an except block) and answered EIO."""
        if isinstance(e, FsError):
            err = e.errno
            self._errors[err] += 1
        else:
            log.exception("unexpected error in %s (unique=%d nodeid=%d)",
                          _opname(opcode), unique, nodeid)
            self._unexpected += 1
            err = E.EIO
        if opcode in P.NO_REPLY_OPCODES:
            return None
        return [C.reply_error(unique, err)]

    def statistics(self) -> dict[str, Any]:
        """Error replies by errno name, and how many requests hit an unexpected exception."""
        return {
            "errors": {E.errorcode.get(k, str(k)): v for k, v in self._errors.items()},
            "unexpected": self._unexpected,
            "proto_minor": self.proto_minor,
            "init_flags": self.init_flags,
        }

    # --- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _ctx(req: Request, umask: int = 0) -> Ctx:
        return Ctx(req.uid, req.gid, req.pid, umask)

    @staticmethod
    def _cctx(req: Request) -> Ctx:
        """A Ctx that can tell the caller's supplementary groups and capabilities
        (read from /proc only if a set-id rule asks; mount/server/creds.py)."""
        return Ctx(req.uid, req.gid, req.pid, 0, read_creds)

    def _entry(self, attr: Any) -> bytes:
        return C.entry_out(attr, self.config.entry_timeout, self.config.attr_timeout,
                           self.generation)

    def _ok(self, req: Request, payload: bytes = b"") -> Reply:
        return [C.reply(req.unique, payload)]

    # --- session ------------------------------------------------------------------------------

    def _init(self, req: Request) -> Reply:
        a: P.InitIn = req.args
        cfg = self.config
        if a.major > P.FUSE_KERNEL_VERSION:
            # Newer major: answer ours and wait for the kernel's next INIT.
            return self._ok(req, C.init_out(
                major=P.FUSE_KERNEL_VERSION, minor=P.FUSE_KERNEL_MINOR_VERSION, max_readahead=0,
                flags=0, max_background=0, congestion_threshold=0, max_write=0, time_gran=0,
                max_pages=0))
        if a.major < P.FUSE_KERNEL_VERSION or a.minor < P.FUSE_MIN_KERNEL_MINOR:
            log.error("kernel FUSE %d.%d too old (need 7.%d)", a.major, a.minor,
                      P.FUSE_MIN_KERNEL_MINOR)
            raise FsError(E.EPROTO, "kernel protocol too old")
        wanted = INIT_WANTED
        if cfg.cache_symlinks:
            wanted |= P.FUSE_CACHE_SYMLINKS
        if cfg.writeback_cache:
            wanted |= P.FUSE_WRITEBACK_CACHE
        if cfg.uring:  # flags2 bit: the reply must carry FUSE_INIT_EXT for it to count
            wanted |= P.FUSE_OVER_IO_URING | P.FUSE_INIT_EXT
        self.init_flags = a.flags & wanted
        self.proto_minor = min(a.minor, P.FUSE_KERNEL_MINOR_VERSION)
        log.info("FUSE %d.%d, granted flags %#x", a.major, self.proto_minor, self.init_flags)
        return self._ok(req, C.init_out(
            major=P.FUSE_KERNEL_VERSION, minor=self.proto_minor,
            max_readahead=min(a.max_readahead, cfg.max_readahead), flags=self.init_flags,
            max_background=cfg.max_background, congestion_threshold=cfg.congestion_threshold,
            max_write=cfg.max_write, time_gran=1, max_pages=cfg.max_pages))

    def _destroy(self, req: Request) -> Reply:
        self.destroyed = True
        return self._ok(req)

    def _no_reply(self, req: Request) -> Reply:
        # INTERRUPT: requests are answered synchronously, in order, so the one being
        # interrupted has already been answered (or will be, in full) -- nothing to do.
        return None

    def _enosys(self, req: Request) -> Reply:
        raise FsError(E.ENOSYS, _opname(req.opcode))

    # --- names --------------------------------------------------------------------------------

    def _lookup(self, req: Request) -> Reply:
        return [self._lookup_reply(req.unique, req.nodeid, req.args.name)]

    def _lookup_reply(self, unique: int, parent: int, name: bytes) -> bytes:
        """LOOKUP's reply: the entry, or a negative entry when they are cached."""
        try:
            attr = self.fs.lookup(parent, name)
        except FsError as e:
            if e.errno != E.ENOENT or self.config.negative_timeout <= 0:
                raise
            return C.reply(unique, C.negative_entry_out(self.config.negative_timeout))
        cfg = self.config
        return C.entry_reply(unique, attr, cfg.entry_timeout, cfg.attr_timeout, self.generation)

    def _create_reply(self, unique: int, attr: Any, fh: int) -> bytes:
        """CREATE's reply: the entry and the open handle."""
        cfg = self.config
        return C.create_reply(unique, attr, cfg.entry_timeout, cfg.attr_timeout,
                              self.generation, fh, self._open_flags(attr.ino))

    def _forget(self, req: Request) -> Reply:
        self.fs.forget(req.nodeid, req.args.nlookup)
        return None

    def _batch_forget(self, req: Request) -> Reply:
        # Each forget on its own: one bad nodeid must not leak the others' lookups.
        for nodeid, nlookup in req.args.forgets:
            try:
                self.fs.forget(nodeid, nlookup)
            except Exception:
                log.exception("forget(%d, %d) failed", nodeid, nlookup)
                self._unexpected += 1
        return None

    def _getattr(self, req: Request) -> Reply:
        attr = self.fs.getattr(req.nodeid)
        return [C.attr_reply(req.unique, attr, self.config.attr_timeout)]

    def _setattr(self, req: Request) -> Reply:
        a: P.SetattrIn = req.args
        v = a.valid
        kw: dict[str, Any] = {}
        if v & P.FATTR_MODE:
            kw["mode"] = a.mode
        if v & P.FATTR_UID:
            kw["uid"] = a.uid
        if v & P.FATTR_GID:
            kw["gid"] = a.gid
        if v & P.FATTR_SIZE:
            kw["size"] = a.size
        # The kernel sets FATTR_ATIME together with FATTR_ATIME_NOW for UTIME_NOW.
        if v & P.FATTR_ATIME_NOW:
            kw["atime_now"] = True
        elif v & P.FATTR_ATIME:
            kw["atime_ns"] = a.atime_ns
        if v & P.FATTR_MTIME_NOW:
            kw["mtime_now"] = True
        elif v & P.FATTR_MTIME:
            kw["mtime_ns"] = a.mtime_ns
        if v & P.FATTR_CTIME:
            kw["ctime_ns"] = a.ctime_ns
        if v & P.FATTR_FH:
            kw["fh"] = a.fh
        # FATTR_LOCKOWNER: no locks here. With HANDLE_KILLPRIV_V2 the kernel asks
        # us to drop S_ISUID/S_ISGID (truncate by a caller without CAP_FSETID).
        if v & P.FATTR_KILL_SUIDGID:
            kw["kill_suidgid"] = True
        if not v & ~(P.FATTR_FH | P.FATTR_LOCKOWNER):
            # With HANDLE_KILLPRIV_V2 the kernel strips ATTR_KILL_* and sends an
            # empty SETATTR for chown(f, -1, -1), the only call that does; tmpfs
            # drops S_ISUID (and S_ISGID with group-exec) there as on any chown.
            kw["chown"] = True
        attr = self.fs.setattr(req.nodeid, self._cctx(req), **kw)
        return self._ok(req, C.attr_out(attr, self.config.attr_timeout))

    def _statx(self, req: Request) -> Reply:
        # statx(STATX_BTIME): the basic stats and the birth time (mount/wire/statx.py)
        attr = self.fs.getattr(req.nodeid)
        get_flags = getattr(self.fs, "get_flags", None)
        flags = get_flags(req.nodeid) if get_flags is not None else 0
        return self._ok(req, statx_out(attr, self.config.attr_timeout, flags))

    def _readlink(self, req: Request) -> Reply:
        return self._ok(req, self.fs.readlink(req.nodeid))

    def _symlink(self, req: Request) -> Reply:
        a: P.SymlinkIn = req.args
        return self._ok(req, self._entry(self.fs.symlink(req.nodeid, a.name, a.target,
                                                         self._ctx(req))))

    def _mknod(self, req: Request) -> Reply:
        a: P.MknodIn = req.args
        attr = self.fs.mknod(req.nodeid, a.name, a.mode, a.rdev, self._ctx(req, a.umask))
        return self._ok(req, self._entry(attr))

    def _mkdir(self, req: Request) -> Reply:
        a: P.MkdirIn = req.args
        # vfs_mkdir sends permission bits only; fsimpl gets a full st_mode.
        mode = stat.S_IFDIR | (a.mode & 0o7777)
        return self._ok(req, self._entry(self.fs.mkdir(req.nodeid, a.name, mode,
                                                       self._ctx(req, a.umask))))

    def _unlink(self, req: Request) -> Reply:
        self.fs.unlink(req.nodeid, req.args.name)
        return self._ok(req)

    def _rmdir(self, req: Request) -> Reply:
        self.fs.rmdir(req.nodeid, req.args.name)
        return self._ok(req)

    def _rename(self, req: Request) -> Reply:
        a: P.RenameIn = req.args
        self.fs.rename(req.nodeid, a.name, a.newdir, a.newname, a.flags)
        return self._ok(req)

    def _link(self, req: Request) -> Reply:
        a: P.LinkIn = req.args
        return self._ok(req, self._entry(self.fs.link(a.oldnodeid, req.nodeid, a.newname)))

    # --- files --------------------------------------------------------------------------------

    def _open_flags(self, ino: int) -> int:
        # FOPEN_NOFLUSH: close(2) sends no FLUSH; tmpfs has nothing to flush and
        # locks are the kernel's own, so that round trip per close is pure cost.
        # The cache is kept unless the next read must move atime (noatime,
        # relatime, strictatime: fsimpl/atime.py), which a cached read cannot.
        flags = P.FOPEN_NOFLUSH
        if self.config.keep_cache and not self.fs.open_drops_cache(ino):
            flags |= P.FOPEN_KEEP_CACHE
        return flags

    def _handle_flags(self, flags: int) -> int:
        """Open flags as fsimpl keeps them for the handle. With the writeback cache
        the kernel resolves O_APPEND itself and sends each WRITE at its final
        offset (possibly from writeback, long after the write(2)), so the daemon
        must not move it to EOF again (docs/performance.md, writeback_cache)."""
        if self.init_flags & P.FUSE_WRITEBACK_CACHE:
            return flags & ~O_APPEND
        return flags

    def _open(self, req: Request) -> Reply:
        a: P.OpenIn = req.args
        fh = self.fs.open(req.nodeid, self._handle_flags(a.flags))
        if a.open_flags & P.FUSE_OPEN_KILL_SUIDGID and a.flags & O_TRUNC:
            # HANDLE_KILLPRIV_V2: O_TRUNC by a caller without CAP_FSETID
            self.fs.setattr(req.nodeid, self._cctx(req), kill_suidgid=True)
        return self._ok(req, C.open_out(fh, self._open_flags(req.nodeid)))

    def _create(self, req: Request) -> Reply:
        a: P.CreateIn = req.args
        attr, fh = self.fs.create(req.nodeid, a.name, a.mode, self._handle_flags(a.flags),
                                  self._ctx(req, a.umask))
        return [self._create_reply(req.unique, attr, fh)]

    def _tmpfile(self, req: Request) -> Reply:
        # ENOSYS makes the kernel remember (fc->no_tmpfile) and answer EOPNOTSUPP to
        # O_TMPFILE, on which UML falls back to mkstemp + unlink.
        tmpfile = getattr(self.fs, "tmpfile", None)
        if tmpfile is None:
            raise FsError(E.ENOSYS, "TMPFILE")
        a: P.CreateIn = req.args
        attr, fh = tmpfile(req.nodeid, a.mode, a.flags, self._ctx(req, a.umask))
        return self._ok(req, self._entry(attr) + C.open_out(fh, self._open_flags(attr.ino)))

    def _read(self, req: Request) -> Reply:
        a: P.ReadIn = req.args
        views: Sequence[memoryview] = self.fs.read(req.nodeid, a.fh, a.offset, a.size)
        return C.reply_iov(req.unique, views)

    def _write(self, req: Request) -> Reply:
        a: P.WriteIn = req.args
        n = self.fs.write(req.nodeid, a.fh, a.offset, a.data, a.write_flags, self._cctx(req))
        return self._ok(req, C.write_out(n))

    def _flush(self, req: Request) -> Reply:
        self.fs.flush(req.nodeid, req.args.fh)
        return self._ok(req)

    def _release(self, req: Request) -> Reply:
        self.fs.release(req.nodeid, req.args.fh)
        return self._ok(req)

    def _fsync(self, req: Request) -> Reply:
        a: P.FsyncIn = req.args
        self.fs.fsync(req.nodeid, a.fh, bool(a.fsync_flags & P.FUSE_FSYNC_FDATASYNC))
        return self._ok(req)

    def _fallocate(self, req: Request) -> Reply:
        a: P.FallocateIn = req.args
        self.fs.fallocate(req.nodeid, a.fh, a.mode, a.offset, a.length)
        return self._ok(req)

    def _lseek(self, req: Request) -> Reply:
        a: P.LseekIn = req.args
        if self.init_flags & P.FUSE_WRITEBACK_CACHE:
            # The kernel does not write its dirty pages back before FUSE_LSEEK (fuse_lseek),
            # so SEEK_DATA/SEEK_HOLE here would miss data not yet written back: ENXIO for
            # a file full of it. ENOSYS makes the kernel remember (fc->no_lseek) and answer
            # from its own i_size, the whole file as data (docs/decisions.md, verify).
            raise FsError(E.ENOSYS, "LSEEK with writeback_cache")
        return self._ok(req, C.lseek_out(self.fs.lseek(req.nodeid, a.fh, a.offset, a.whence)))

    def _copy_file_range(self, req: Request) -> Reply:
        # COPY_FILE_RANGE answers in fuse_write_out's 32-bit size: at most
        # UINT_MAX & PAGE_MASK per request (the kernel loops); _64 in a u64.
        copy = getattr(self.fs, "copy_file_range", None)
        if copy is None:  # ENOSYS: the kernel remembers it and copies through READ/WRITE
            raise FsError(E.ENOSYS, "COPY_FILE_RANGE")
        a: P.CopyFileRangeIn = req.args
        wide = req.opcode == P.Opcode.COPY_FILE_RANGE_64
        length = a.length if wide else min(a.length, P.COPY_FILE_RANGE_MAX32)
        n = copy(req.nodeid, a.fh_in, a.off_in, a.nodeid_out, a.fh_out, a.off_out, length,
                 a.flags)
        return self._ok(req, C.copy_file_range_out(n) if wide else C.write_out(n))

    def _ioctl(self, req: Request) -> Reply:
        # chattr flags (mount/server/fileattr.py), then the shmfs window ioctls
        # (docs/windows.md); any other command is "not a tty".
        fileattr, ioctl = self._fileattr_mod, self._ioctl_mod
        if self.init_flags & P.FUSE_WRITEBACK_CACHE and ioctl.is_attach(req.args.cmd):
            # the kernel may hold dirty pages of any file that no window could see
            # (docs/performance.md, writeback_cache): no windows on such a mount
            raise FsError(E.EOPNOTSUPP, "windows are not available with -o writeback_cache")
        if req.args.cmd & 0xFFFFFFFF in fileattr.COMMANDS and hasattr(self.fs, "get_flags"):
            return fileattr.serve(self, req, self._cctx(req))  # chattr / lsattr
        try:
            return ioctl.serve(self, req, self._windows_of(self.fs))
        except ioctl.AbiError as e:
            raise FsError(e.errno, str(e)) from e

    # --- directories --------------------------------------------------------------------------

    def _opendir(self, req: Request) -> Reply:
        fh = self.fs.opendir(req.nodeid, req.args.flags)
        return self._ok(req, C.open_out(fh, 0))

    def _readdir(self, req: Request) -> Reply:
        a: P.ReadIn = req.args
        plus = req.opcode == P.Opcode.READDIRPLUS
        buf = C.DirentBuffer(a.size, plus)
        for name, ino, d_type, next_off in self.fs.readdir(req.nodeid, a.fh, a.offset):
            if not buf.fits(name):
                break  # resumes here: the previous record's next_off points at this one
            entry = b""
            if plus:
                entry = self._plus_entry(req.nodeid, name, ino)
            buf.add(name, ino, d_type, next_off, entry)
        return self._ok(req, buf.getvalue())

    def _plus_entry(self, parent: int, name: bytes, ino: int) -> bytes:
        """fuse_entry_out for one READDIRPLUS record; nodeid 0 = no lookup reference."""
        if name in (b".", b".."):
            return bytes(P.ENTRY_OUT_SIZE)
        try:
            remember = getattr(self.fs, "remember", None)
            attr = remember(ino) if remember is not None else self.fs.lookup(parent, name)
        except FsError:
            return bytes(P.ENTRY_OUT_SIZE)  # vanished: a plain dirent, no reference taken
        return self._entry(attr)

    def _releasedir(self, req: Request) -> Reply:
        self.fs.releasedir(req.nodeid, req.args.fh)
        return self._ok(req)

    def _fsyncdir(self, req: Request) -> Reply:
        a: P.FsyncIn = req.args
        self.fs.fsyncdir(req.nodeid, a.fh, bool(a.fsync_flags & P.FUSE_FSYNC_FDATASYNC))
        return self._ok(req)

    # --- misc ---------------------------------------------------------------------------------

    def _statfs(self, req: Request) -> Reply:
        return self._ok(req, C.statfs_out(self.fs.statfs()))

    def _access(self, req: Request) -> Reply:
        self.fs.access(req.nodeid, req.args.mask, self._ctx(req))
        return self._ok(req)

    def _setxattr(self, req: Request) -> Reply:
        a: P.SetxattrIn = req.args
        kill_sgid = bool(a.setxattr_flags & P.FUSE_SETXATTR_ACL_KILL_SGID)
        self.fs.setxattr(req.nodeid, a.name, a.value, a.flags, kill_sgid=kill_sgid)
        return self._ok(req)

    def _getxattr(self, req: Request) -> Reply:
        a: P.GetxattrIn = req.args
        return self._sized(req, self.fs.getxattr(req.nodeid, a.name), a.size)

    def _listxattr(self, req: Request) -> Reply:
        names = self.fs.listxattr(req.nodeid, self._ctx(req))
        return self._sized(req, b"".join(n + b"\0" for n in names), req.args.size)

    def _sized(self, req: Request, value: bytes, size: int) -> Reply:
        """getxattr/listxattr protocol: size 0 probes the length; too small is ERANGE."""
        if size == 0:
            return self._ok(req, C.getxattr_out(len(value)))
        if len(value) > size:
            raise FsError(E.ERANGE, f"{len(value)} bytes > buffer {size}")
        return self._ok(req, value)

    def _removexattr(self, req: Request) -> Reply:
        self.fs.removexattr(req.nodeid, req.args.name, self._cctx(req))
        return self._ok(req)


def _opname(opcode: int) -> str:
    try:
        return P.Opcode(opcode).name
    except ValueError:
        return f"opcode {opcode}"
