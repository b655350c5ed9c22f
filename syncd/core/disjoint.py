"""Disjoint sets (union-find): which items are linked, directly or through others. Pure.

Batching groups 1:1 pairs that share an instance, and moves group the moves that share a
replaced pair; both ask the same question of a different graph.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


class DisjointSets(Generic[T]):
    """Union-find with path compression; an item seen for the first time is its own set."""

    def __init__(self) -> None:
        self._parent: dict[T, T] = {}

    def find(self, item: T) -> T:
        """The representative of ``item``'s set."""
        parent = self._parent
        root = item
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[item] != root:
            parent[item], item = root, parent[item]
        return root

    def union(self, a: T, b: T) -> None:
        """Join the sets of ``a`` and ``b`` (``a``'s representative stays)."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[rb] = ra
