"""Items as rows of preallocated tensors: :class:`TensorStorage` and :class:`LazyTensorStorage`."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey

from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._layout import TensorLayout
from tdrl.data.replay_buffers._pages import advise_huge_pages
from tdrl.data.replay_buffers._storage_base import (
    _NUMPY_DTYPES,
    EMPTY_STORAGE_ERROR,
    Index,
    Storage,
    _as_index_tensor,
)


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
