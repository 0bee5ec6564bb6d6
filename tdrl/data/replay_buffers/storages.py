"""Storages: where a replay buffer's items live.

A storage is a fixed-capacity array of items addressed ``0 .. max_size - 1``. It knows how
to write items at positions a writer chose (:meth:`Storage.set`) and to read the items at
positions a sampler chose (:meth:`Storage.get`); it knows nothing of sampling or eviction.

- :class:`ListStorage`: a Python list of arbitrary objects.
- :class:`TensorStorage`: one preallocated tensor per leaf of a TensorDict (or one tensor).
- :class:`LazyTensorStorage`: the same, allocated on the first write from that data's
  structure, on any device.
- :class:`LazyMemmapStorage`: the same, in memory-mapped files under a ``scratch_dir``;
  a crashed process's storage can be re-opened with :meth:`LazyMemmapStorage.open`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from tensordict import MemoryMappedTensor, TensorDictBase
from tensordict.utils import NestedKey

from tdrl.data.replay_buffers import _memmap_files as memmap_files
from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._checkpoint import load_into, save_state
from tdrl.data.replay_buffers._layout import TensorLayout
from tdrl.data.replay_buffers._pages import advise_huge_pages, release_pages

__all__ = [
    "Storage",
    "ListStorage",
    "TensorStorage",
    "LazyTensorStorage",
    "LazyMemmapStorage",
]

Index = int | slice | torch.Tensor | Sequence[int]

EMPTY_STORAGE_ERROR = "cannot read from an empty storage: add data with extend() or add() first"

# numpy's take is ~2x cheaper than torch.index_select for the small gathers of a sample;
# it is used for CPU leaves of these dtypes.
_NUMPY_DTYPES = {
    torch.float64,
    torch.float32,
    torch.float16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
    torch.complex64,
    torch.complex128,
}


def _check_max_size(max_size: Any) -> int:
    if isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer)) or max_size < 1:
        raise ValueError(f"max_size must be a positive integer, got {max_size!r}")
    return int(max_size)


def _as_index_tensor(index: Any) -> torch.Tensor:
    out = torch.as_tensor(index)
    if out.dtype == torch.bool or out.is_floating_point():
        raise TypeError(f"storage indices must be integers, got a {out.dtype} tensor")
    return out.to(torch.long).reshape(-1)


class Storage(ABC):
    """Base class of storages: ``max_size`` items, of which ``len(storage)`` are written.

    Subclasses implement :meth:`set`, :meth:`get`, :meth:`state_dict`,
    :meth:`load_state_dict` and ``_empty``. Every write bumps ``_writes`` (samplers
    cache per-version views of the data) and records ``_last_cursor`` (the last position
    written, from which the time order of a full circular buffer follows).
    """

    ndim = 1

    def __init__(self, max_size: int) -> None:
        self.max_size = _check_max_size(max_size)
        self._len = 0
        self._last_cursor: int | None = None
        self._writes = 0

    def __len__(self) -> int:
        return self._len

    @property
    def shape(self) -> torch.Size:
        """``torch.Size([len(self)])``."""
        return torch.Size([self._len])

    @property
    def _is_full(self) -> bool:
        return self._len >= self.max_size

    @abstractmethod
    def set(self, cursor: Index, data: Any) -> None:
        """Writes one item at an ``int`` cursor, or a batch at a slice / index tensor."""

    @abstractmethod
    def get(self, index: Index) -> Any:
        """Reads the item(s) at ``index``."""

    def __getitem__(self, index: Index) -> Any:
        return self.get(index)

    def __setitem__(self, index: Index, value: Any) -> None:
        self.set(index, value)

    @abstractmethod
    def _empty(self) -> None:
        """Forgets every item (``len`` becomes 0)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The storage content and bookkeeping (tensors are not copied)."""

    @abstractmethod
    def _check_state_dict(self, state: dict[str, Any]) -> None:
        """Raises if ``state`` cannot be loaded here (checking every field); changes nothing."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict`; checks every field first, and on a mismatch or a
        damaged state raises, leaving the storage as it was."""

    def dumps(self, path: str | os.PathLike) -> None:
        """Saves the storage as the folder ``path/storage``, crash-safe (no pickle)."""
        save_state(self.state_dict(), path, "storage")

    def loads(self, path: str | os.PathLike) -> None:
        """Restores what :meth:`dumps` wrote under ``path`` (checked first: see :meth:`load_state_dict`)."""
        load_into(path, "storage", self.load_state_dict)

    def _bookkeeping(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "max_size": self.max_size,
            "len": self._len,
            "last_cursor": self._last_cursor,
        }

    def _check_common(self, state: Any, family: str) -> int:
        """Checks the bookkeeping every storage state has; returns the stored length."""
        if not isinstance(state, dict) or state.get("family") != family:
            found = state.get("type") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"the checkpoint holds a {found} state, which a {type(self).__name__} cannot load")
        max_size = checks.integer(state, "max_size", low=1)
        if max_size != self.max_size:
            raise ValueError(
                f"the checkpoint was written for a storage with max_size={max_size}, "
                f"this {type(self).__name__} has max_size={self.max_size}; build the storage "
                "with the checkpoint's max_size"
            )
        length = checks.integer(state, "len", low=0, high=max_size)
        last = checks.optional_integer(state, "last_cursor", low=0, high=max(length - 1, 0))
        if (last is None) != (length == 0):
            raise checks.StateError(
                "last_cursor", f"is {last} for a storage holding {length} items (null exactly when it is empty)"
            )
        return length

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_size={self.max_size}, len={self._len})"


# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
class TensorStorage(Storage):
    """Items stored as rows of preallocated tensors: one per leaf of a TensorDict.

    Sampling gathers each leaf with one indexing call and packs the rows into a new
    TensorDict; writes check the data's structure once per batch (keys, shapes, dtypes)
    and copy each leaf with one call. Reads return copies, never views of the storage.

    Each leaf keeps the dtype of the first data written. Later data of another dtype is
    stored only without losing information: ``torch.can_cast`` must allow the cast (a float
    is never stored in an integer leaf), and every value must fit: in an integer leaf,
    inside its range (300 in an ``int8`` leaf raises rather than becoming 44); in a floating
    leaf, without overflowing to infinity (values are rounded to its precision, as by any
    cast). The range is checked only when the incoming dtype can exceed the leaf's.

    Args:
        storage: the TensorDict (or tensor) to store into; its first dimension is the
            capacity, and it counts as full.
        max_size: capacity; must match ``storage`` when both are given.
        device: where the storage lives. ``None``: the device of ``storage``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> storage = TensorStorage(TensorDict({"obs": torch.arange(10.0)}, [10]))
        >>> storage.get(torch.tensor([2, 7]))["obs"]
        tensor([2., 7.])
    """

    def __init__(
        self,
        storage: TensorDictBase | torch.Tensor | None,
        max_size: int | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> None:
        if storage is None:
            if max_size is None:
                raise ValueError("TensorStorage needs a storage tensor/TensorDict or a max_size")
            super().__init__(max_size)
        else:
            size = storage.shape[0] if storage.ndim else 0
            if max_size is not None and max_size != size:
                raise ValueError(f"max_size={max_size} does not match the storage's first dimension {size}")
            super().__init__(size)
        if device is not None:
            self.device: torch.device | str = "auto" if device == "auto" else torch.device(device)
        elif storage is not None and storage.device is not None:
            self.device = storage.device
        else:
            self.device = torch.device("cpu")
        self._layout: TensorLayout | None = None
        self._storage: TensorDictBase | torch.Tensor | None = None
        self._leaves: list[torch.Tensor] = []
        self._numpy: list[np.ndarray | None] = []
        self._all_numpy = False
        if storage is not None:
            if self.device == "auto":
                self.device = storage.device if storage.device is not None else torch.device("cpu")
            if storage.device != self.device:
                storage = storage.to(self.device)
            self._attach(TensorLayout.from_data(storage, batched=True), storage)
            self._len = self.max_size
            self._last_cursor = self.max_size - 1

    @property
    def initialized(self) -> bool:
        """Whether the tensors are allocated."""
        return self._layout is not None

    @property
    def layout(self) -> TensorLayout | None:
        """The structure of the stored items (``None`` before the first write)."""
        return self._layout

    # ------------------------------------------------------------------ allocation
    def _attach(self, layout: TensorLayout, container: TensorDictBase | torch.Tensor) -> None:
        self._layout = layout
        self._storage = container
        if layout.keys is None:
            leaves = [container]
        else:
            # a layout with keys was built from (and allocates) a TensorDict
            leaves = [cast(TensorDictBase, container).get(key) for key in layout.keys]
        self._leaves = [leaf.as_subclass(torch.Tensor) if type(leaf) is not torch.Tensor else leaf for leaf in leaves]
        self._numpy = [
            leaf.numpy() if leaf.device.type == "cpu" and leaf.dtype in _NUMPY_DTYPES else None for leaf in self._leaves
        ]
        self._all_numpy = all(a is not None for a in self._numpy)

    def _allocate(self, layout: TensorLayout) -> None:
        raise RuntimeError(f"{type(self).__name__} was built around existing data; it cannot be re-allocated")

    def _leaf_tensors(self, layout: TensorLayout, device: torch.device) -> list[torch.Tensor]:
        leaves = [
            torch.empty((self.max_size, *shape), dtype=dtype, device=device)
            for shape, dtype in zip(layout.shapes, layout.dtypes)
        ]
        if device.type == "cpu":
            for leaf in leaves:
                advise_huge_pages(leaf)
        return leaves

    # ------------------------------------------------------------------ writes
    def set(self, cursor: Index, data: TensorDictBase | torch.Tensor) -> None:
        if not isinstance(data, (TensorDictBase, torch.Tensor)):
            raise TypeError(
                f"a tensor storage holds TensorDicts or tensors, got {type(data).__name__}; "
                "use ListStorage for arbitrary Python objects"
            )
        max_size = self.max_size
        # positions first, so that a refused write does not even allocate
        if isinstance(cursor, (int, np.integer)):
            batched = False
            pos = int(cursor)
            if not 0 <= pos < max_size:
                raise IndexError(f"cursor {pos} is out of range for a storage of max_size {max_size}")
        else:
            batched = True
            if data.ndim == 0:
                raise ValueError("extend() needs a batch: got data without a batch dimension; use add() for one item")
            count = data.shape[0]
            if isinstance(cursor, slice):
                start, stop, step = cursor.indices(max_size)
                if step != 1 or stop - start != count:
                    raise ValueError(
                        f"cannot write a batch of {count} items at {cursor} of a storage of max_size {max_size}"
                    )
            else:
                index = _as_index_tensor(cursor)
                if index.numel() != count:
                    raise ValueError(f"got a batch of {count} items for {index.numel()} positions")
                if count == 0:
                    return
                low, high = int(index.min()), int(index.max())
                if low < 0 or high >= max_size:
                    raise IndexError(f"positions {low}..{high} are out of range for a storage of max_size {max_size}")
        if self._layout is None:
            self._allocate(TensorLayout.from_data(data, batched=batched))
        layout = self._layout
        assert layout is not None  # allocated above
        sources = layout.leaves_of(data, batched=batched)
        if not batched:
            self._overwriting(pos, pos + 1)
            for dst, src in zip(self._leaves, sources):
                dst[pos].copy_(src)
            self._written(pos, pos + 1, pos)
        elif isinstance(cursor, slice):
            self._overwriting(start, stop)
            for dst, src in zip(self._leaves, sources):
                dst[start:stop].copy_(src)
            self._written(start, stop, stop - 1)
        else:
            self._overwriting(low, high + 1)
            for dst, src in zip(self._leaves, sources):
                dst.index_copy_(0, index.to(dst.device), src.to(device=dst.device, dtype=dst.dtype))
            self._written(low, high + 1, int(index[-1]))

    def _overwriting(self, low: int, high: int) -> None:
        """Hook run after a write was checked, before rows ``low .. high - 1`` change."""

    def _written(self, low: int, high: int, last: int) -> None:
        """Bookkeeping after rows ``low .. high - 1`` were written, ``last`` the newest."""
        if high > self._len:
            self._len = high
        self._last_cursor = last
        self._writes += 1

    # ------------------------------------------------------------------ reads
    def get(self, index: Index) -> TensorDictBase | torch.Tensor:
        layout = self._layout
        if layout is None or self._len == 0:
            raise RuntimeError(EMPTY_STORAGE_ERROR)
        if isinstance(index, (int, np.integer)):
            pos = int(index)
            if not -self._len <= pos < self._len:
                raise IndexError(f"index {pos} is out of range for a storage holding {self._len} items")
            pos %= self._len
            return layout.build([leaf[pos].clone() for leaf in self._leaves], layout.item_batch, self._out_device)
        if isinstance(index, slice):
            rows = range(*index.indices(self._len))
            index = torch.arange(rows.start, rows.stop, rows.step, dtype=torch.long)
        elif not (isinstance(index, torch.Tensor) and index.dtype == torch.long and index.ndim == 1):
            index = _as_index_tensor(index)
        return self._gather(index)

    @property
    def _out_device(self) -> torch.device | None:
        return self.device if isinstance(self.device, torch.device) else None

    def _gather(self, index: torch.Tensor) -> TensorDictBase | torch.Tensor:
        """Rows at ``index`` (a 1-D long tensor of valid positions), as a fresh TensorDict."""
        layout = self._layout
        assert layout is not None
        return layout.build(self._gather_leaves(index), (index.shape[0], *layout.item_batch), self._out_device)

    def _gather_leaves(self, index: torch.Tensor) -> list[torch.Tensor]:
        """Rows at ``index`` of every leaf, in storage order (fresh tensors)."""
        positions: np.ndarray | None
        if self._all_numpy and index.device.type == "cpu":
            positions = index.numpy()
            arrays = cast("list[np.ndarray]", self._numpy)  # _all_numpy: no leaf lacks its array
            out = [torch.from_numpy(a.take(positions, axis=0)) for a in arrays]
        else:
            positions = index.numpy() if index.device.type == "cpu" else None
            out = []
            for leaf, array in zip(self._leaves, self._numpy):
                if array is not None and positions is not None:
                    out.append(torch.from_numpy(array.take(positions, axis=0)))
                else:
                    out.append(leaf.index_select(0, index.to(leaf.device)))
        return out

    def _take(self, key: NestedKey, index: torch.Tensor) -> torch.Tensor:
        """Rows at ``index`` (a 1-D long tensor of valid positions) of one leaf (a fresh tensor)."""
        if self._layout is None:
            raise RuntimeError(EMPTY_STORAGE_ERROR)
        pos = self._layout.position(key)
        array = self._numpy[pos]
        if array is not None and index.device.type == "cpu":
            return torch.from_numpy(array.take(index.numpy(), axis=0))
        leaf = self._leaves[pos]
        return leaf.index_select(0, index.to(leaf.device))

    def _leaf(self, key: NestedKey) -> torch.Tensor:
        """The stored rows ``[0, len)`` of one leaf (a view; for samplers)."""
        if self._layout is None:
            raise RuntimeError(EMPTY_STORAGE_ERROR)
        return self._leaves[self._layout.position(key)][: self._len]

    def _has_key(self, key: NestedKey) -> bool:
        return self._layout is not None and key in self._layout

    # ------------------------------------------------------------------ state
    def _empty(self) -> None:
        self._len = 0
        self._last_cursor = None
        self._writes += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._bookkeeping(),
            "family": "tensor",
            "layout": None if self._layout is None else self._layout.to_json(),
            "leaves": [leaf[: self._len] for leaf in self._leaves],
        }

    def _check_state_dict(self, state: dict[str, Any]) -> None:
        length = self._check_common(state, "tensor")
        described = checks.entry(state, "layout")
        leaves = checks.entry(state, "leaves")
        if not isinstance(leaves, list):
            raise checks.StateError("leaves", f"must be a list of tensors, got {type(leaves).__name__}")
        if described is None:
            if length or leaves:
                raise checks.StateError("layout", f"is missing for a storage holding {length} items")
            return
        try:
            layout = TensorLayout.from_json(described)
        except ValueError as err:
            raise checks.StateError("layout", str(err)) from None
        if self._layout is not None:
            problem = self._layout.mismatch(layout)
            if problem is not None:
                raise ValueError(
                    f"the checkpoint was written for another structure: {problem}; load it into "
                    "a fresh storage, or one that holds the same keys, shapes and dtypes"
                )
        if len(leaves) != len(layout.shapes):
            raise checks.StateError("leaves", f"holds {len(leaves)} tensors for the {len(layout.shapes)} of its layout")
        for i, (leaf, shape, dtype) in enumerate(zip(leaves, layout.shapes, layout.dtypes)):
            checks.tensor_value(leaf, f"leaves[{i}]", shape=(length, *shape), dtype=dtype)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state_dict(state)
        if state["layout"] is None:
            self._empty()
            return
        layout = TensorLayout.from_json(state["layout"])
        if self._layout is None:
            self._allocate(layout)
        count = state["len"]
        self._overwriting(0, count)
        for key, src in zip(layout.keys or [None], state["leaves"]):
            pos = 0 if key is None else cast(TensorLayout, self._layout).position(key)  # allocated above
            self._leaves[pos][:count].copy_(src)
        self._len = 0
        self._written(0, count, 0)
        self._last_cursor = state["last_cursor"]
        self._after_restore()

    def _after_restore(self) -> None:
        """Hook for storages that persist their bookkeeping."""

    def __getstate__(self) -> dict[str, Any]:
        # views of the container (and numpy views of them) are rebuilt after unpickling, so
        # that they share memory with it again rather than being copies of their own
        return dict(self.__dict__, _leaves=[], _numpy=[], _all_numpy=False)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._leaves, self._numpy, self._all_numpy = [], [], False
        if self._layout is not None and self._storage is not None:
            self._attach(self._layout, self._storage)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_size={self.max_size}, len={self._len}, "
            f"device={self.device}, layout={self._layout})"
        )


class LazyTensorStorage(TensorStorage):
    """A :class:`TensorStorage` allocated on the first write, from that data's structure.

    Args:
        max_size: capacity, in items.
        device: where the tensors live (``"auto"``: the device of the first data).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> storage = LazyTensorStorage(100)
        >>> storage.set(slice(0, 4), TensorDict({"obs": torch.ones(4, 3)}, [4]))
        >>> len(storage), storage.get(torch.tensor([0, 3]))["obs"].shape
        (4, torch.Size([2, 3]))
    """

    def __init__(self, max_size: int, *, device: torch.device | str = "cpu") -> None:
        super().__init__(None, max_size, device=device)

    def _allocate(self, layout: TensorLayout, data_device: torch.device | None = None) -> None:
        if self.device == "auto":
            self.device = torch.device("cpu")
        device = self.device
        assert isinstance(device, torch.device)
        leaves = self._leaf_tensors(layout, device)
        self._attach(layout, layout.build(leaves, (self.max_size, *layout.item_batch), device))

    def set(self, cursor: Index, data: TensorDictBase | torch.Tensor) -> None:
        if self._layout is None and self.device == "auto":
            device = getattr(data, "device", None)
            self.device = torch.device(device) if device is not None else torch.device("cpu")
        super().set(cursor, data)


# ---------------------------------------------------------------------------------------
class LazyMemmapStorage(LazyTensorStorage):
    """A :class:`LazyTensorStorage` whose tensors are memory-mapped files.

    Each leaf is one file ``leaf_<i>.memmap`` under ``scratch_dir`` (opened through
    :class:`tensordict.MemoryMappedTensor`), next to ``tdrl_storage.json`` (the structure)
    and ``tdrl_state.bin`` (the length and last write position, updated after every
    write). Written pages are handed back to the page cache, so a 1M-transition buffer
    lives on disk, not in the process's resident memory. After a crash,
    :meth:`LazyMemmapStorage.open` re-opens the folder with everything written before.

    A process killed during a write loses that write only: the length and position are
    recorded after the data, in a record that an interrupted update cannot corrupt. If the
    write was overwriting stored items (a full ring), :meth:`open` refuses the folder and
    names those items, which may mix old and new data.

    Args:
        max_size: capacity, in items.
        scratch_dir: folder for the files (a path or a ``tempfile.TemporaryDirectory``).
            ``None``: a temporary folder, deleted with the storage.
        device: must be ``"cpu"``.
        existsok: overwrite a storage already present in ``scratch_dir`` (otherwise
            that is an error: re-open it with :meth:`open` instead).

    Examples:
        >>> import tempfile, torch
        >>> from tensordict import TensorDict
        >>> folder = tempfile.mkdtemp()
        >>> storage = LazyMemmapStorage(1000, scratch_dir=folder)
        >>> storage.set(slice(0, 3), TensorDict({"obs": torch.arange(3.0)}, [3]))
        >>> reopened = LazyMemmapStorage.open(folder)
        >>> len(reopened), reopened.get(torch.tensor([2]))["obs"]
        (3, tensor([2.]))
    """

    def __init__(
        self,
        max_size: int,
        *,
        scratch_dir: str | os.PathLike | tempfile.TemporaryDirectory | None = None,
        device: torch.device | str = "cpu",
        existsok: bool = False,
    ) -> None:
        if torch.device(device if device != "auto" else "cpu").type != "cpu":
            raise ValueError(
                f"LazyMemmapStorage lives on the CPU, got device={device!r}; move samples with a "
                "transform instead, e.g. buffer.append_transform(lambda td: td.to('cuda'))"
            )
        super().__init__(max_size, device="cpu")
        self.existsok = existsok
        self._temporary = scratch_dir is None
        if isinstance(scratch_dir, tempfile.TemporaryDirectory):  # as TorchRL's tutorial passes it
            scratch_dir = scratch_dir.name
        self.scratch_dir: Path | None = None if scratch_dir is None else Path(cast(str, scratch_dir))
        if self.scratch_dir is not None and (self.scratch_dir / memmap_files.META_FILE).exists() and not existsok:
            raise FileExistsError(
                f"{self.scratch_dir} already holds a LazyMemmapStorage; re-open it with "
                f"LazyMemmapStorage.open({str(self.scratch_dir)!r}), or pass existsok=True to overwrite it"
            )
        self._files: list[torch.Tensor] = []  # memory-mapped, or a plain empty tensor for a zero-size leaf
        self._record: memmap_files.StateRecord | None = None

    # ------------------------------------------------------------------ files
    def _allocate(self, layout: TensorLayout, data_device: torch.device | None = None) -> None:
        if self.scratch_dir is None:
            self.scratch_dir = Path(tempfile.mkdtemp(prefix="tdrl-memmap-"))
            weakref.finalize(self, shutil.rmtree, str(self.scratch_dir), True)
        folder = self.scratch_dir
        folder.mkdir(parents=True, exist_ok=True)
        meta = folder / memmap_files.META_FILE
        if meta.exists():
            if not self.existsok:
                raise FileExistsError(f"{folder} already holds a LazyMemmapStorage (pass existsok=True to overwrite)")
            meta.unlink()  # first: until the new description is written, the folder holds no storage
        names = [f"leaf_{i}.memmap" for i in range(len(layout.shapes))]
        paths = []
        for name, shape, dtype in zip(names, layout.shapes, layout.dtypes):
            path = folder / name
            if path.is_symlink() or path.exists():
                path.unlink()  # never write through what was there (a symlink could point anywhere)
            with open(path, "xb") as file:
                file.truncate(memmap_files.leaf_bytes(self.max_size, shape, dtype))  # sparse until written
            memmap_files.sync_file(path)
            paths.append(path)
        state = folder / memmap_files.STATE_FILE
        if state.is_symlink():
            state.unlink()
        memmap_files.StateRecord.create(state)
        memmap_files.write_description(folder, self.max_size, layout, names)  # last, crash-safe
        self._open_files(layout, paths)

    def _open_files(self, layout: TensorLayout, paths: Sequence[Path]) -> None:
        files = []
        for path, shape, dtype in zip(paths, layout.shapes, layout.dtypes):
            if not os.access(path, os.W_OK):
                raise PermissionError(f"{path} is not writable; a LazyMemmapStorage needs write access")
            full = torch.Size((self.max_size, *shape))
            if full.numel() == 0:
                files.append(torch.empty(full, dtype=dtype))
            else:
                files.append(MemoryMappedTensor.from_filename(str(path), dtype=dtype, shape=full))
        folder = cast(Path, self.scratch_dir)  # set before any file is opened
        self._files = files
        if self._record is None:
            self._record = memmap_files.StateRecord(folder / memmap_files.STATE_FILE)
        leaves = [f.as_subclass(torch.Tensor) for f in files]
        self._attach(layout, layout.build(leaves, (self.max_size, *layout.item_batch), torch.device("cpu")))

    @classmethod
    def open(cls, scratch_dir: str | os.PathLike) -> LazyMemmapStorage:
        """Re-opens the storage kept in ``scratch_dir`` (e.g. after a crash).

        Everything read is checked first: leaf file names are plain names inside the folder,
        each leaf file has the size of ``max_size`` rows, and the length and last position
        lie inside the storage.

        Returns:
            A storage holding every item written before, with its length and last write
            position; a :class:`ReplayBuffer` built on it resumes writing after that position.

        Raises:
            FileNotFoundError: when ``scratch_dir`` holds no storage.
            ValueError: when its description is not one this version reads, names a file
                outside the folder, or does not match the files (a truncated leaf file, a
                length larger than the storage), naming the file; or when the process
                writing it was killed while overwriting stored items (naming them).
        """
        folder = Path(scratch_dir)
        description = memmap_files.read_description(folder)
        record, length, last = memmap_files.open_state(folder, description.max_size)
        if description.version == 1:  # tdrl 0.1's description, now with the state record beside it
            memmap_files.write_description(folder, description.max_size, description.layout, description.names)
        storage = cls(description.max_size, scratch_dir=folder, existsok=True)
        storage._record = record
        storage._open_files(description.layout, description.paths)
        storage._len = length
        storage._last_cursor = last
        return storage

    # ------------------------------------------------------------------ bookkeeping
    def _overwriting(self, low: int, high: int) -> None:
        if low < self._len and self._record is not None:
            # rows low..high-1 are about to change: a kill before _written marks them torn
            self._record.write(self._len, self._last_cursor, (low, min(high, self._len)))

    def _written(self, low: int, high: int, last: int) -> None:
        super()._written(low, high, last)
        for leaf in self._leaves:
            release_pages(leaf, low, high)
        self._persist()

    def _persist(self) -> None:
        # after the data: a kill before this loses the bookkeeping of the last write only,
        # never data that the bookkeeping claims
        if self._record is not None:
            self._record.write(self._len, self._last_cursor)

    def _after_restore(self) -> None:
        self._persist()

    def _empty(self) -> None:
        super()._empty()
        self._persist()

    # ------------------------------------------------------------------ pickle
    def __getstate__(self) -> dict[str, Any]:
        """The storage by value: its stored rows, not its files.

        The copy that ``pickle.loads`` / ``torch.load`` builds lives in a new temporary
        folder, so two storages never write the same files; to reopen the files
        themselves, use :meth:`open`.
        """
        rows = [leaf[: self._len].clone() for leaf in self._leaves]
        return {
            "state": dict(self.__dict__, _leaves=[], _numpy=[], _storage=None, _files=[], _record=None),
            "rows": rows,
        }

    def __setstate__(self, pickled: dict[str, Any]) -> None:
        state, rows = pickled["state"], pickled["rows"]
        self.__dict__.update(state)
        layout, length = self._layout, self._len
        self.scratch_dir, self._temporary = None, True
        self._leaves, self._numpy, self._all_numpy = [], [], False
        self._storage, self._files, self._record, self._layout = None, [], None, None
        if layout is not None:
            self._allocate(layout)
            for leaf, src in zip(self._leaves, rows):
                leaf[:length].copy_(src)
            self._persist()

    def __repr__(self) -> str:
        return (
            f"LazyMemmapStorage(max_size={self.max_size}, len={self._len}, "
            f"scratch_dir={str(self.scratch_dir)!r}, layout={self._layout})"
        )
