"""Items of any kind in a Python list: :class:`ListStorage`."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._layout import TensorLayout
from tdrl.data.replay_buffers._storage_base import (
    EMPTY_STORAGE_ERROR,
    Index,
    Storage,
    _as_index_tensor,
)


class ListStorage(Storage):
    """Items of any kind in a Python list.

    Args:
        max_size: capacity (``None``: unbounded).

    Examples:
        >>> storage = ListStorage(max_size=3)
        >>> storage.set(slice(0, 2), ["a", {"b": 1}])
        >>> len(storage), storage.get(1)
        (2, {'b': 1})
    """

    def __init__(self, max_size: int | None = None) -> None:
        super().__init__(sys.maxsize if max_size is None else max_size)
        self._items: list[Any] = []

    def set(self, cursor: Index, data: Any) -> None:
        if isinstance(cursor, (int, np.integer)):
            positions, items = [int(cursor)], [data]
        else:
            if isinstance(cursor, slice):
                positions = list(range(*cursor.indices(self.max_size)))
            else:
                positions = _as_index_tensor(cursor).tolist()
            items = self._split(data, len(positions))
        size = len(self._items)
        for pos in positions:
            if not 0 <= pos < self.max_size:
                raise IndexError(f"cannot write at position {pos} of a ListStorage of max_size={self.max_size}")
        grown = max([size, *(pos + 1 for pos in positions)])
        if grown > size and not set(range(size, grown)) <= set(positions):
            gap = min(set(range(size, grown)) - set(positions))
            raise IndexError(
                f"cannot write at positions {positions} of a ListStorage holding {size} items "
                f"(max_size={self.max_size}): position {gap} would stay empty; positions must be written in order"
            )
        self._items.extend([None] * (grown - size))  # every new slot is assigned below
        for pos, item in zip(positions, items):
            self._items[pos] = item
        self._len = len(self._items)
        self._last_cursor = positions[-1] if positions else self._last_cursor
        self._writes += 1

    @staticmethod
    def _split(data: Any, count: int) -> list[Any]:
        if isinstance(data, (TensorDictBase, torch.Tensor)):
            items = list(data.unbind(0))
        elif isinstance(data, (list, tuple)):
            items = list(data)
        else:
            raise TypeError(
                f"extend() on a ListStorage takes a list, a tensor or a TensorDict, got {type(data).__name__}"
            )
        if len(items) != count:
            raise ValueError(f"got {len(items)} items for {count} positions")
        return items

    def get(self, index: Index) -> Any:
        if not self._items:
            raise RuntimeError(EMPTY_STORAGE_ERROR)
        if isinstance(index, (int, np.integer)):
            return self._items[int(index)]
        if isinstance(index, slice):
            return self._items[index]
        return [self._items[i] for i in _as_index_tensor(index).tolist()]

    def _empty(self) -> None:
        self._items = []
        self._len = 0
        self._last_cursor = None
        self._writes += 1

    def state_dict(self) -> dict[str, Any]:
        items: Any = list(self._items)
        stacked = _stackable(items)
        if stacked:  # one tensor per leaf rather than one per leaf and item
            items = torch.stack(items)
        return {**self._bookkeeping(), "family": "list", "stacked": stacked, "items": items}

    def _check_state_dict(self, state: dict[str, Any]) -> None:
        length = self._check_common(state, "list")
        items = checks.entry(state, "items")
        if checks.boolean(state, "stacked"):
            if not isinstance(items, (torch.Tensor, TensorDictBase)) or items.ndim == 0 or items.shape[0] != length:
                shape = list(items.shape) if isinstance(items, (torch.Tensor, TensorDictBase)) else type(items).__name__
                raise checks.StateError("items", f"must stack {length} items along dim 0, got {shape}")
        elif not isinstance(items, list) or len(items) != length:
            count = len(items) if isinstance(items, list) else type(items).__name__
            raise checks.StateError("items", f"must list {length} items (the storage length), got {count}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state_dict(state)
        if state["stacked"]:
            self._items = list(state["items"].clone().unbind(0))
        else:
            self._items = [_own(item) for item in state["items"]]
        self._len = len(self._items)
        self._last_cursor = state["last_cursor"]
        self._writes += 1


def _stackable(items: list[Any]) -> bool:
    """Whether ``items`` are tensors (or TensorDicts) of one shape and structure."""
    if not items:
        return False
    first = items[0]
    if isinstance(first, torch.Tensor) and type(first) is torch.Tensor:
        return all(type(i) is torch.Tensor and i.shape == first.shape and i.dtype == first.dtype for i in items)
    if isinstance(first, TensorDictBase):
        try:
            layout = TensorLayout.from_data(first, batched=False)
            return all(
                isinstance(item, TensorDictBase) and TensorLayout.from_data(item, batched=False) == layout
                for item in items[1:]
            )
        except (TypeError, KeyError, ValueError):
            return False
    return False


def _own(obj: Any) -> Any:
    """Copies tensors loaded from a checkpoint so they no longer map its files."""
    if isinstance(obj, (torch.Tensor, TensorDictBase)):
        return obj.clone()
    if isinstance(obj, list):
        return [_own(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _own(v) for k, v in obj.items()}
    return obj
