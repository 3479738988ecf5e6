"""The lower layer fsimpl stands on: one Budget and one Arena per filesystem,
one vmcore Mapping (address_space) per regular file.

Kept behind a small class so unit tests can substitute a fake (the contract is
section 1 of internal-api.md; ``MappingLike`` lists the part fsimpl uses).
"""

from __future__ import annotations

from typing import Protocol

from vmcore.arena import Arena
from vmcore.budget import Budget
from vmcore.mapping import Mapping


class MappingLike(Protocol):
    """The subset of vmcore.mapping.Mapping fsimpl calls."""

    size: int

    def read(self, off: int, length: int) -> list[memoryview]: ...
    def write(self, off: int, data: memoryview) -> int: ...
    def truncate(self, new_size: int) -> None: ...
    def punch_hole(self, off: int, length: int) -> None: ...
    def fallocate(self, off: int, length: int, keep_size: bool) -> None: ...
    def seek_data(self, off: int) -> int: ...
    def seek_hole(self, off: int) -> int: ...
    def blocks(self) -> int: ...
    def release(self) -> None: ...
    def copy_from(self, src: MappingLike, src_off: int, off: int, length: int) -> int: ...


class Backing:
    """Arena + Budget of one mount, and the factory of per-file Mappings."""

    def __init__(self, max_pages: int, arena: Arena | None = None) -> None:
        self.budget = Budget(max_pages)
        self.arena = arena if arena is not None else Arena()

    def new_mapping(self) -> MappingLike:
        return Mapping(self.arena, self.budget)
