"""vmcore: the userspace pager (page arena, page cache, mappings, fault()).

Pure Python + numpy; no I/O beyond the arena's memory.  See docs/vmcore.md and
the design essay at the top of vmcore/fault.py.
"""

# numpy imports numpy.ma lazily on the first np.unique/np.isin (~30-40 ms): pay it when
# the daemon starts, not inside the first request that frees pages (docs/performance.md)
import numpy.ma  # noqa: F401

from .arena import PAGE_SHIFT, PAGE_SIZE, Arena
from .budget import Budget
from .errors import NoSpace, Sigbus, Sigsegv, VmError
from .fault import FAULT_STATS, VmFault, falloc_pages, fault
from .fault import statistics as fault_statistics
from .flags import FaultFlags, PageFlags, VmFaultResult
from .mapping import Mapping
from .pagecache import PageCache
from .stats import FaultStats

ZERO_FRAME = Arena.ZERO_FRAME

__all__ = [
    "FAULT_STATS",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "ZERO_FRAME",
    "Arena",
    "Budget",
    "FaultFlags",
    "FaultStats",
    "Mapping",
    "NoSpace",
    "PageCache",
    "PageFlags",
    "Sigbus",
    "Sigsegv",
    "VmError",
    "VmFault",
    "VmFaultResult",
    "falloc_pages",
    "fault",
    "fault_statistics",
]
