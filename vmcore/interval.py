"""An interval index: the model's ``i_mmap`` (the kernel's prio tree, later an
interval tree).

Linear VMAs of one Mapping are indexed by the page offsets they map,
``[vm_pgoff, vm_pgoff + npages)``.  ``unmap_mapping_range`` and the reverse
lookups ask "which VMAs map any of pgoffs ``[first, last]``?", and with a
thousand windows over one object that question must not cost a scan of all of
them per page.

The structure is a treap (binary search tree by ``(start, seq)`` with random
heap priorities, so it stays balanced in expectation) whose nodes are augmented
with the largest ``end`` in their subtree.  A stabbing/overlap query descends
only into subtrees whose ``max_end`` reaches the query, so it costs
O(log n + k) for k answers; insert and remove are O(log n).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Node(Generic[T]):
    __slots__ = ("end", "item", "key", "left", "max_end", "prio", "right", "start")

    def __init__(self, start: int, end: int, seq: int, item: T, prio: float) -> None:
        self.start = start
        self.end = end
        self.key = (start, seq)
        self.item = item
        self.prio = prio
        self.max_end = end
        self.left: _Node[T] | None = None
        self.right: _Node[T] | None = None

    def fix(self) -> None:
        m = self.end
        if self.left is not None and self.left.max_end > m:
            m = self.left.max_end
        if self.right is not None and self.right.max_end > m:
            m = self.right.max_end
        self.max_end = m


def _split(node: _Node[T] | None, key: tuple[int, int]) -> tuple[_Node[T] | None, _Node[T] | None]:
    """Split into (keys < key, keys >= key)."""
    if node is None:
        return None, None
    if node.key < key:
        lo, hi = _split(node.right, key)
        node.right = lo
        node.fix()
        return node, hi
    lo, hi = _split(node.left, key)
    node.left = hi
    node.fix()
    return lo, node


def _merge(a: _Node[T] | None, b: _Node[T] | None) -> _Node[T] | None:
    """Join two treaps where every key of ``a`` is below every key of ``b``."""
    if a is None:
        return b
    if b is None:
        return a
    if a.prio > b.prio:
        a.right = _merge(a.right, b)
        a.fix()
        return a
    b.left = _merge(a, b.left)
    b.fix()
    return b


class IntervalIndex(Generic[T]):
    """Half-open integer intervals ``[start, end)`` each carrying an item.

    Items are identified by object identity; an item may be indexed once.
    """

    def __init__(self, seed: int = 0x5EED) -> None:
        self._root: _Node[T] | None = None
        self._keys: dict[int, tuple[int, int, int]] = {}  # id(item) -> (start, seq, end)
        self._seq = 0
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self._keys)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled (a restartable mount's snapshot, docs/restart-design.md): the
        items are new objects, so their identity keys are made again from the tree."""
        self.__dict__.update(state)
        keys: dict[int, tuple[int, int, int]] = {}
        stack = [self._root] if self._root is not None else []
        while stack:
            n = stack.pop()
            keys[id(n.item)] = (n.start, n.key[1], n.end)
            stack.extend(c for c in (n.left, n.right) if c is not None)
        self._keys = keys

    def __contains__(self, item: object) -> bool:
        return id(item) in self._keys

    def add(self, start: int, end: int, item: T) -> None:
        """Index ``item`` over ``[start, end)``; O(log n)."""
        if end <= start:
            raise ValueError(f"empty interval [{start}, {end})")
        if id(item) in self._keys:
            raise ValueError("item already indexed")
        self._seq += 1
        node = _Node(start, end, self._seq, item, self._rng.random())
        lo, hi = _split(self._root, node.key)
        self._root = _merge(_merge(lo, node), hi)
        self._keys[id(item)] = (start, self._seq, end)

    def remove(self, item: T) -> None:
        """Drop ``item``; O(log n).  KeyError if it is not indexed."""
        start, seq, _end = self._keys.pop(id(item))
        lo, rest = _split(self._root, (start, seq))
        _mid, hi = _split(rest, (start, seq + 1))
        self._root = _merge(lo, hi)

    def overlapping(self, lo: int, hi: int) -> list[T]:
        """Items whose interval meets ``[lo, hi)``, in start order; O(log n + k)."""
        out: list[T] = []
        stack: list[_Node[T]] = []
        node = self._root
        # iterative in-order walk with pruning on max_end (left) and start (right)
        while stack or node is not None:
            while node is not None and node.max_end > lo:
                stack.append(node)
                node = node.left
            if not stack:
                break
            node = stack.pop()
            if node.start >= hi:
                break  # this and everything after it in key order starts too late
            if node.end > lo:
                out.append(node.item)
            node = node.right
        return out

    def __iter__(self) -> Iterator[T]:
        return iter(self.overlapping(-(1 << 80), 1 << 80))

    def interval_of(self, item: T) -> tuple[int, int]:
        start, _seq, end = self._keys[id(item)]
        return start, end
