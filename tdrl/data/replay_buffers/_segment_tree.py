"""A vectorized sum/min segment tree over priorities, in numpy.

The tree is a flat binary heap of ``2 * P`` float64 nodes (``P`` = capacity rounded up to
a power of two; leaf ``i`` lives at node ``P + i``; node ``k`` has children ``2k`` and
``2k + 1``). Updates and prefix-sum searches touch one node per level for a whole batch
of indices at once, so a batch of 256 costs ~20 numpy calls per level-walk rather than
256 Python-level walks. Parents are recomputed from their children, never adjusted by
differences, so rounding errors do not accumulate.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SumMinTree"]


class SumMinTree:
    """Sums and minima of non-negative values over ``capacity`` slots.

    Empty slots hold 0 in the sum tree; in the min tree, zero values are ignored (held
    as ``inf``), so :meth:`min` is the smallest *positive* value.

    Args:
        capacity: number of slots.

    Examples:
        >>> import numpy as np
        >>> tree = SumMinTree(5)
        >>> tree.update(np.array([0, 3]), np.array([1.0, 3.0]))
        >>> tree.total(), tree.min()
        (4.0, 1.0)
        >>> tree.find(np.array([0.5, 1.0, 3.9])).tolist()
        [0, 3, 3]
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        size = 1
        while size < capacity:
            size *= 2
        self.capacity = int(capacity)
        self._size = size
        self._depth = size.bit_length() - 1
        self._sum = np.zeros(2 * size, dtype=np.float64)
        self._min = np.full(2 * size, np.inf, dtype=np.float64)

    # ------------------------------------------------------------------ writes
    def update(self, index: np.ndarray, value: np.ndarray) -> None:
        """Sets ``value[j]`` at slot ``index[j]`` (the last one wins for repeated slots)."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        value = np.broadcast_to(np.asarray(value, dtype=np.float64), index.shape)
        if index.size > 1:
            # keep the last write to each slot: numpy does not promise an order for
            # repeated indices in a fancy assignment
            rev_unique, rev_pos = np.unique(index[::-1], return_index=True)
            index, value = rev_unique, value[::-1][rev_pos]
        node = index + self._size
        total, low = self._sum, self._min
        total[node] = value
        low[node] = np.where(value > 0, value, np.inf)
        for _ in range(self._depth):
            node >>= 1
            left = node << 1
            total[node] = total[left] + total[left + 1]
            low[node] = np.minimum(low[left], low[left + 1])

    def assign(self, value: np.ndarray) -> None:
        """Replaces all slots at once (``value`` has ``capacity`` entries) and rebuilds."""
        value = np.asarray(value, dtype=np.float64).reshape(-1)
        if value.shape[0] != self.capacity:
            raise ValueError(f"expected {self.capacity} values, got {value.shape[0]}")
        size = self._size
        self._sum[:] = 0.0
        self._min[:] = np.inf
        self._sum[size : size + self.capacity] = value
        self._min[size : size + self.capacity] = np.where(value > 0, value, np.inf)
        width = size
        while width > 1:
            half = width // 2
            children = slice(width, 2 * width)
            self._sum[half:width] = self._sum[children][0::2] + self._sum[children][1::2]
            self._min[half:width] = np.minimum(self._min[children][0::2], self._min[children][1::2])
            width = half

    def clear(self) -> None:
        """Sets every slot to 0."""
        self._sum[:] = 0.0
        self._min[:] = np.inf

    # ------------------------------------------------------------------ reads
    def total(self) -> float:
        """Sum over all slots."""
        return float(self._sum[1])

    def min(self) -> float:
        """Smallest positive value (``inf`` when every slot is 0)."""
        return float(self._min[1])

    def values(self, index: np.ndarray | None = None) -> np.ndarray:
        """Slot values (all of them, or at ``index``); a view when ``index`` is None."""
        leaves = self._sum[self._size : self._size + self.capacity]
        return leaves if index is None else leaves[index]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each prefix mass ``m`` in ``[0, total)``, the slot ``i`` whose interval
        ``[sum(v[:i]), sum(v[:i+1]))`` contains ``m``: a draw proportional to the values.

        The result always points at a slot with a positive value.
        """
        mass = np.array(mass, dtype=np.float64).reshape(-1)
        total = self._sum
        node = np.ones(mass.shape, dtype=np.int64)
        for _ in range(self._depth):
            node <<= 1
            left = total.take(node)
            right = mass >= left
            np.subtract(mass, left, out=mass, where=right)
            node += right
        node -= self._size
        picked = self.values(np.minimum(node, self.capacity - 1))
        bad = (node >= self.capacity) | ~(picked > 0)
        if bad.any():
            # rounding pushed a draw past the last positive slot (rare)
            node[bad] = self._nearest_positive(node[bad])
        return node

    def _nearest_positive(self, node: np.ndarray) -> np.ndarray:
        # the closest positive slot at or before the one the walk reached
        positive = np.flatnonzero(self.values() > 0)
        if positive.size == 0:
            raise RuntimeError("cannot sample: every priority is zero")
        where = np.searchsorted(positive, np.minimum(node, self.capacity - 1), side="right") - 1
        return positive[np.maximum(where, 0)]
