"""Fault-path counters (trio-style ``statistics()``): kept once globally and
once per Mapping, as plain ints so the hot path stays cheap."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(slots=True)
class FaultStats:
    """Counts fault() calls by kind and outcome, and pages by fate.

    A fault over nr_pages counts once in ``faults`` and its kind/outcome
    fields, and nr_done times in ``pages``.  ``major`` = the call allocated at
    least one page; ``minor`` = it served everything from the page cache (or
    from the zero frame).
    """

    faults: int = 0
    read: int = 0
    write: int = 0
    mkwrite: int = 0
    prefault: int = 0
    via_vma: int = 0
    minor: int = 0
    major: int = 0
    sigbus: int = 0
    nopage: int = 0
    enospc: int = 0
    pages: int = 0  # pages served (sum of nr_done)
    pages_allocated: int = 0
    zero_pages: int = 0  # hole / !uptodate pages served from the zero frame

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)
