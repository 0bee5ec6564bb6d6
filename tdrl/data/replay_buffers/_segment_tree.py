"""A vectorized sum/min segment tree over priorities, in numpy.

The slots are the leaves of a flat binary heap of float64 nodes (``P`` = capacity rounded
up to a power of two; leaf ``i`` is node ``P + i``; node ``k`` has children ``2k`` and
``2k + 1``). Only the bottom of the heap is kept, up to a level of at most 4096 *block*
nodes: above it, one ``cumsum`` over the blocks plus ``searchsorted`` replaces a dozen
levels of descent, and a sum over the blocks gives the total. A batch of updates or
searches walks the remaining levels for all its indices at once (a handful of numpy
calls per level), and parents are recomputed from their children, never adjusted by
differences, so rounding errors do not accumulate.
"""

from __future__ import annotations

import numpy as np
import torch

from tdrl.data.replay_buffers._pages import advise_huge_pages

__all__ = ["SumMinTree"]

_MAX_BLOCKS = 4096


def _huge_array(size: int, fill: float) -> np.ndarray:
    """A float64 array backed by huge pages when it is large (random walks miss the TLB less)."""
    tensor = torch.empty(size, dtype=torch.float64)
    advise_huge_pages(tensor)
    array = tensor.numpy()
    array.fill(fill)
    return array


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
        >>> tree.find(np.array([0.1, 0.25, 0.99])).tolist()  # fractions of the total
        [0, 3, 3]
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        size = 1
        while size < capacity:
            size *= 2
        blocks = min(size, _MAX_BLOCKS)
        self.capacity = int(capacity)
        self._size = size
        self._blocks = blocks  # the block level is nodes blocks .. 2 * blocks - 1
        self._levels = size.bit_length() - blocks.bit_length()  # levels between leaves and blocks
        self._sum = _huge_array(2 * size, 0.0)
        self._min = _huge_array(2 * size, np.inf)
        self._sum_pairs = self._sum.reshape(size, 2)
        self._min_pairs = self._min.reshape(size, 2)

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
        # children of node k are 2k and 2k + 1: row k of the (size, 2) views
        total_pairs, low_pairs = self._sum_pairs, self._min_pairs
        for _ in range(self._levels):
            node >>= 1
            children = total_pairs.take(node, axis=0)
            total[node] = children[:, 0] + children[:, 1]
            children = low_pairs.take(node, axis=0)
            low[node] = np.minimum(children[:, 0], children[:, 1])

    def assign(self, value: np.ndarray) -> None:
        """Replaces all slots at once (``value`` has ``capacity`` entries) and rebuilds."""
        value = np.asarray(value, dtype=np.float64).reshape(-1)
        if value.shape[0] != self.capacity:
            raise ValueError(f"expected {self.capacity} values, got {value.shape[0]}")
        self.clear()
        size = self._size
        self._sum[size : size + self.capacity] = value
        self._min[size : size + self.capacity] = np.where(value > 0, value, np.inf)
        width = size
        for _ in range(self._levels):
            half = width // 2
            self._sum[half:width] = self._sum_pairs[half:width].sum(axis=1)
            self._min[half:width] = self._min_pairs[half:width].min(axis=1)
            width = half

    def clear(self) -> None:
        """Sets every slot to 0."""
        self._sum[:] = 0.0
        self._min[:] = np.inf

    # ------------------------------------------------------------------ reads
    def total(self) -> float:
        """Sum over all slots."""
        return float(self._sum[self._blocks : 2 * self._blocks].sum())

    def min(self) -> float:
        """Smallest positive value (``inf`` when every slot is 0)."""
        return float(self._min[self._blocks : 2 * self._blocks].min())

    def values(self, index: np.ndarray | None = None) -> np.ndarray:
        """Slot values (all of them, or at ``index``); a view when ``index`` is None."""
        leaves = self._sum[self._size : self._size + self.capacity]
        return leaves if index is None else leaves[index]

    def find(self, fraction: np.ndarray) -> np.ndarray:
        """For each ``u`` in ``[0, 1)``, the slot ``i`` whose interval ``[sum(v[:i]),
        sum(v[:i+1]))`` contains ``u * total``: draws proportional to the values.

        The result always points at a slot with a positive value.

        Raises:
            RuntimeError: when every slot is 0.
        """
        blocks = self._sum[self._blocks : 2 * self._blocks]
        cumulative = torch.cumsum(torch.from_numpy(blocks), 0).numpy()  # ~3x numpy's cumsum
        if not cumulative[-1] > 0:
            raise RuntimeError("cannot sample: every priority is zero")
        mass = np.asarray(fraction, dtype=np.float64).reshape(-1) * cumulative[-1]
        block = np.minimum(np.searchsorted(cumulative, mass, side="right"), self._blocks - 1)
        mass -= cumulative.take(block) - blocks.take(block)
        node = block + self._blocks
        total = self._sum
        for _ in range(self._levels):
            node <<= 1
            left = total.take(node)
            right = mass >= left
            np.subtract(mass, left, out=mass, where=right)
            node += right
        node -= self._size
        picked = self.values(np.minimum(node, self.capacity - 1))
        bad = (node >= self.capacity) | ~(picked > 0)
        if bad.any():
            # rounding pushed a draw past the last positive slot of its block (rare)
            node[bad] = self._nearest_positive(node[bad])
        return node

    def _nearest_positive(self, node: np.ndarray) -> np.ndarray:
        # the closest positive slot at or before the one the walk reached (else after it)
        positive = np.flatnonzero(self.values() > 0)
        where = np.searchsorted(positive, np.minimum(node, self.capacity - 1), side="right") - 1
        return positive[np.maximum(where, 0)]
