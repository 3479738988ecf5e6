"""The C fast path of window REMAPs (native/winfast.c), as the session uses it.

``engine(fd, fs, stores)`` builds a ``mount.server._winfast.Engine`` over the
filesystem's WindowTable, or returns None when the extension is missing (a
checkout built without a C compiler: the daemon logs a warning once and serves
every REMAP in Python) or ``SHMFS_WINFAST=0`` is set (A/B measurements, the
twin tests).  The engine answers a REMAP of one page in the common state
entirely in C and hands its notifications and reply to its own writer thread;
anything else it declines, untouched, to the Python path
(docs/decisions.md, "The window REMAP fast path in C").  ``Engine.write`` does
the same for a WRITE of a window: the launder of a remapped page
(native/winlaunder.c) and write(2)/write-backs through the page table
(native/winwrite.c); ``SHMFS_WINFAST_WRITE=0`` leaves those to Python.
``Engine.remap`` also takes MAP_CHGPROT remaps and per-page MPROTECTs
(native/winprot.c); ``SHMFS_WINFAST_PROT=0`` leaves those to Python.
``Engine.remap`` also answers window QUERYs, short REMAPVs (1-8 disjoint
entries) and the refault of an MPROTECT that leaves a cached page's protection
unchanged (native/winvec.c); ``SHMFS_WINFAST_VEC=0`` leaves those to Python.
The module also exports those entry points as C functions (the capsule
``_C_API``, native/winfast_api.h): the first reader's loop in C hands IOCTLs and
window READ/WRITEs to them without returning to Python (``SHMFS_CLOOP_IOCTL=0`` in
the session: it does not).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from mount.server import native

log = logging.getLogger("shmfs.winfast")


def available() -> bool:
    """Whether the compiled extension can be imported."""
    return native.available("_winfast")


def writes_enabled() -> bool:
    """Whether the session gives window WRITEs (launders, write(2), write-backs) to
    the engine too; ``SHMFS_WINFAST_WRITE=0`` keeps them in Python (A/B runs)."""
    return os.environ.get("SHMFS_WINFAST_WRITE", "1") != "0"


def prot_enabled() -> bool:
    """Whether the engine takes MAP_CHGPROT remaps and per-page MPROTECTs too
    (native/winprot.c); ``SHMFS_WINFAST_PROT=0`` keeps them in Python (A/B runs)."""
    return os.environ.get("SHMFS_WINFAST_PROT", "1") != "0"


def vec_enabled() -> bool:
    """Whether the engine answers window QUERYs, short REMAPVs and unchanged-protection
    MPROTECTs too (native/winvec.c); ``SHMFS_WINFAST_VEC=0`` keeps them in Python
    (A/B runs)."""
    return os.environ.get("SHMFS_WINFAST_VEC", "1") != "0"


def engine(fd: int, fs: Any, stores: dict) -> Any:
    """An Engine writing to ``fd`` for ``fs`` (its WindowTable), or None."""
    if os.environ.get("SHMFS_WINFAST", "1") == "0":
        return None
    _winfast = native.load("_winfast", log, "the window REMAP fast path")
    if _winfast is None:
        return None
    from fsimpl.windows import windows_of
    from vmcore.fault import FAULT_STATS

    return _winfast.Engine(fd, windows_of(fs), FAULT_STATS, stores, prot=prot_enabled(),
                           vec=vec_enabled())
