"""The C hot path of regular-file READ, WRITE, GETATTR, LOOKUP, OPEN, RELEASE, CREATE,
UNLINK, and of MKDIR, RMDIR and FORGET (native/hotpath.c, native/hotmeta.c).

``engine(fs, config)`` builds a ``mount.server._hotpath.Engine`` over a ShmFs, or
returns None when the extension is missing (a checkout built without a C
compiler: the daemon logs a warning once and serves everything in Python) or
``SHMFS_HOTPATH=0`` is set (A/B measurements, the twin tests' Python side).

The session calls ``Engine.handle(msg, fd, ordered)`` before its own fast path:
the engine answers a READ, WRITE, GETATTR, LOOKUP (hit or miss), OPEN, RELEASE, CREATE
(of a new regular file), UNLINK (of a regular file's name), MKDIR, RMDIR (of an empty
directory), FORGET or BATCH_FORGET in the common state entirely in C (the last six:
native/hotmeta.c),
changing the same Python objects the Python path changes, and writes the reply
to ``fd``; anything else it declines (None) untouched. ``Engine.answer(msg,
ordered)`` returns the reply bytes instead (tests). ``Engine.serve(...)`` is the
first reader's loop in C (native/hotloop.c): it reads the device and answers these
requests itself until one needs Python (docs/decisions.md, "The first reader's loop
in C"; ``SHMFS_CLOOP=0`` in the session keeps the Python loop). Where the engine is not
used at all (--debug, -o uring, -o restartable) and why: docs/decisions.md,
"The regular-file hot path in C".
"""

from __future__ import annotations

import logging
import os
from typing import Any

from mount.server import native

log = logging.getLogger("shmfs.hotpath")


def available() -> bool:
    """Whether the compiled extension can be imported."""
    return native.available("_hotpath")


def enabled() -> bool:
    """False when SHMFS_HOTPATH=0 asks for the Python path only."""
    return os.environ.get("SHMFS_HOTPATH", "1") != "0"


def replaced_methods(fs: Any) -> list[str]:
    """The ShmFs methods the engine stands in for that are not fsimpl's own on ``fs``
    (another class, or one patched on the class or the instance: a fault-injection
    test, tests/live/test_daemon_errors.py). The engine would bypass them."""
    from fsimpl.attrs import AttrOps
    from fsimpl.files import FileOps
    from fsimpl.fs import ShmFs
    from fsimpl.namespace import NamespaceOps
    from fsimpl.state import FsCore

    if type(fs) is not ShmFs:
        return [type(fs).__name__]
    own = {"read": FileOps.__dict__["read"], "write": FileOps.__dict__["write"],
           "getattr": AttrOps.__dict__["getattr"], "lookup": NamespaceOps.__dict__["lookup"],
           "release": FileOps.__dict__["release"], "open": FileOps.__dict__["open"],
           "open_drops_cache": FsCore.__dict__["open_drops_cache"],
           "create": FileOps.__dict__["create"], "unlink": NamespaceOps.__dict__["unlink"],
           "_alloc_inode": FsCore.__dict__["_alloc_inode"],
           "_new_child": FsCore.__dict__["_new_child"], "_reclaim": FsCore.__dict__["_reclaim"],
           "_new_handle": FsCore.__dict__["_new_handle"],
           "_link_child": NamespaceOps.__dict__["_link_child"],
           "_drop_link": NamespaceOps.__dict__["_drop_link"],
           "forget": AttrOps.__dict__["forget"], "_maybe_evict": FsCore.__dict__["_maybe_evict"],
           "mkdir": NamespaceOps.__dict__["mkdir"], "rmdir": NamespaceOps.__dict__["rmdir"],
           "_prepare_new": NamespaceOps.__dict__["_prepare_new"],
           "reap": FsCore.__dict__["reap"], "_drop": FsCore.__dict__["_drop"],
           "_evict": FsCore.__dict__["_evict"]}
    inst = getattr(fs, "__dict__", {})
    return [name for name, fn in own.items() if getattr(ShmFs, name) is not fn or name in inst]


def engine(fs: Any, attr_timeout: float, entry_timeout: float = 86400.0,
           generation: int = 0, negative_timeout: float = 0.0,
           errors: dict[int, int] | None = None, keep_cache: bool = True) -> Any:
    """An Engine for ``fs`` answering GETATTR and LOOKUP with these timeouts and
    fuse_entry_out.generation (Operations.generation), or None: also when one of the
    methods it stands in for is not fsimpl's own (replaced_methods)."""
    if not enabled():
        return None
    replaced = replaced_methods(fs)
    if replaced:
        log.info("regular-file hot path off: %s not fsimpl's own", ", ".join(replaced))
        return None
    _hotpath = native.load("_hotpath", log, "the regular-file hot path (READ/WRITE/GETATTR)")
    if _hotpath is None:
        return None
    from fsimpl.directory import Directory
    from fsimpl.inode import Inode
    from fsimpl.state import Handle
    from fsimpl.types import BOGO_DIRENT_SIZE, MAX_FILE_SIZE, RELATIME_WINDOW_NS
    from mount.server.mountflags import MountFlagsWatch
    from mount.wire.codec import _split_timeout
    from vmcore.arena import Arena
    from vmcore.budget import Budget
    from vmcore.fault import FAULT_STATS
    from vmcore.mapping import Mapping
    from vmcore.pagecache import PageCache
    from vmcore.stats import FaultStats

    a_s, a_n = _split_timeout(attr_timeout)
    e_s, e_n = _split_timeout(entry_timeout)
    types = (Inode, Handle, Mapping, PageCache, Budget, Arena, FaultStats)
    # A LOOKUP miss is answered as Operations._lookup_reply does: a negative entry
    # cached for negative_timeout when that is positive, else -ENOENT counted in
    # `errors` (Operations._errors, what `shmfs stat` reports); without `errors` such
    # misses are declined to Python. keep_cache is OpsConfig.keep_cache (OPEN's
    # FOPEN_KEEP_CACHE).
    n_s, n_n = _split_timeout(negative_timeout) if negative_timeout > 0 else (-1, 0)
    return _hotpath.Engine(fs, types, FAULT_STATS, a_s, a_n, RELATIME_WINDOW_NS // 10**9,
                           BOGO_DIRENT_SIZE, MAX_FILE_SIZE, MountFlagsWatch, Directory, e_s, e_n,
                           generation, errors, n_s, n_n, keep_cache)
