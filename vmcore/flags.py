"""Kernel flag vocabulary for the fault path (2.6.23+ column of kernel-semantics.md §1).

FaultFlags are the FAULT_FLAG_* bits a caller passes in ``VmFault.flags``;
VmFaultResult is the VM_FAULT_* bit mask ``fault()`` returns.  The values are
the kernel's so that traces read like the kernel's.  PageFlags are the two
page-cache bits the pager tracks per page (PG_uptodate, PG_dirty).
"""

from __future__ import annotations

import enum


class FaultFlags(enum.IntFlag):
    """FAULT_FLAG_*: what kind of access caused the fault."""

    WRITE = 0x01
    NONLINEAR = 0x02  # the fault came through a nonlinear (file PTE) entry
    MKWRITE = 0x04  # write-notify refault of a present read-only PTE
    PREFAULT = 0x08  # populate / MAP_POPULATE / WILLNEED / readahead (not a user access)


class VmFaultResult(enum.IntFlag):
    """VM_FAULT_*: outcome of a fault (a bit mask; MINOR is the empty mask)."""

    MINOR = 0x0000
    OOM = 0x0001
    SIGBUS = 0x0002
    MAJOR = 0x0004
    WRITE = 0x0008
    SIGSEGV = 0x0040
    NOPAGE = 0x0100
    LOCKED = 0x0200
    RETRY = 0x0400
    ERROR = OOM | SIGBUS | SIGSEGV


class PageFlags(enum.IntFlag):
    """Per-page bits kept in the page cache's uint8 flags chunks."""

    UPTODATE = 0x01  # PG_uptodate: contents valid (fallocated pages are not)
    DIRTY = 0x02  # PG_dirty: written since allocation


#: numpy-friendly plain ints of the page bits (IntFlag arithmetic is slow in hot loops)
PG_UPTODATE = int(PageFlags.UPTODATE)
PG_DIRTY = int(PageFlags.DIRTY)
