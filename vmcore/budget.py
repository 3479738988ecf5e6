"""Block accounting shared by every mapping of one filesystem (shmem_sb_info).

tmpfs charges one block per page actually allocated (written or fallocated),
never per byte of i_size.  ``charge`` is partial on purpose: a multi-page
write fault serves as many pages as fit and write(2) returns short.
"""

from __future__ import annotations


class Budget:
    """max_pages == 0 means unlimited (tmpfs ``size=0``)."""

    def __init__(self, max_pages: int = 0) -> None:
        if max_pages < 0:
            raise ValueError("max_pages must be >= 0")
        self.max_pages = max_pages
        self.used_pages = 0

    def charge(self, n: int) -> int:
        """Charge up to n pages; return how many were charged (0..n)."""
        if n <= 0:
            return 0
        if self.max_pages:
            n = min(n, max(self.max_pages - self.used_pages, 0))
        self.used_pages += n
        return n

    def uncharge(self, n: int) -> None:
        """Give back n pages charged earlier."""
        if n < 0 or n > self.used_pages:
            raise ValueError(f"uncharge({n}) with {self.used_pages} pages charged")
        self.used_pages -= n

    def resize(self, max_pages: int) -> None:
        """remount size=: refuse to shrink below what is in use (ValueError)."""
        if max_pages < 0:
            raise ValueError("max_pages must be >= 0")
        if max_pages and max_pages < self.used_pages:
            raise ValueError(f"cannot resize to {max_pages} pages: {self.used_pages} in use")
        self.max_pages = max_pages

    @property
    def free_pages(self) -> int | None:
        """Pages still chargeable, None when unlimited."""
        return None if not self.max_pages else self.max_pages - self.used_pages

    def statistics(self) -> dict[str, int]:
        return {"max_pages": self.max_pages, "used_pages": self.used_pages}
