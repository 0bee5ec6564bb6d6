"""The rows a :class:`~tdrl.data.replay_buffers.dedup.DedupNextStorage` keeps apart.

:class:`KeptRows` holds one preallocated tensor per key (in memory on a device, or
memory-mapped files in a folder) whose rows are handed out and given back by slot number
through a stack of free slots, so that taking or releasing ``k`` slots costs ``O(k)``. When
no slot is free the columns grow (twice as many rows, up to a limit), copying what they
held. Rows are written already checked: the owner validated the values against the columns'
dtypes and shapes before anything was stored.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import MemoryMappedTensor

from tdrl.data.replay_buffers._storage_base import _NUMPY_DTYPES

__all__ = ["KeptRows"]

_INITIAL_ROWS = 256  # first capacity: this, or 1/256 of the limit, whichever is smaller (16 at least)


class KeptRows:
    """Columns of rows addressed by slot, with a free-slot stack.

    Args:
        shapes: per-row shape of each column.
        dtypes: dtype of each column.
        limit: the most rows the columns may ever need.
        device: where in-memory columns live.
        folder: where to put memory-mapped columns (a subfolder per capacity); ``None``:
            in memory.

    Examples:
        >>> import torch
        >>> rows = KeptRows([torch.Size([2])], [torch.float32], limit=1000, device=torch.device("cpu"))
        >>> slots = rows.allocate(2)
        >>> rows.write(slots, [torch.tensor([[1.0, 2.0], [3.0, 4.0]])])
        >>> rows.take(0, slots[::-1])
        tensor([[3., 4.],
                [1., 2.]])
        >>> rows.release(slots[:1]); rows.used
        1
    """

    def __init__(
        self,
        shapes: list[torch.Size],
        dtypes: list[torch.dtype],
        limit: int,
        device: torch.device,
        folder: Path | None = None,
    ) -> None:
        self.shapes, self.dtypes, self.limit, self.device, self.folder = shapes, dtypes, limit, device, folder
        self.capacity = 0
        self._columns: list[torch.Tensor] = []
        self._arrays: list[np.ndarray | None] = []
        self._dir: Path | None = None  # the folder of the current memory-mapped columns
        self._free = np.empty(0, dtype=np.int64)  # free slots; the top of the stack is the end
        self._nfree = 0

    @property
    def used(self) -> int:
        """How many slots are handed out."""
        return self.capacity - self._nfree

    # ------------------------------------------------------------------ slots
    def allocate(self, count: int) -> np.ndarray:
        """``count`` free slots (the lowest first), growing the columns when needed."""
        if count > self._nfree:
            self._grow(self.used + count)
        self._nfree -= count
        return self._free[self._nfree : self._nfree + count][::-1].copy()

    def release(self, slots: np.ndarray) -> None:
        """Gives ``slots`` back (their rows are left as they are)."""
        count = slots.size
        if count:
            self._free[self._nfree : self._nfree + count] = slots
            self._nfree += count

    def clear(self) -> None:
        """Every slot free again."""
        self._free[: self.capacity] = np.arange(self.capacity - 1, -1, -1)
        self._nfree = self.capacity

    # ------------------------------------------------------------------ rows
    def write(self, slots: np.ndarray, values: list[torch.Tensor]) -> None:
        """Writes one ``[len(slots), *shape]`` tensor per column (cast to its dtype)."""
        index = torch.from_numpy(slots)
        for column, value in zip(self._columns, values):
            column.index_copy_(0, index.to(column.device), value.to(device=column.device, dtype=column.dtype))

    def take(self, position: int, slots: np.ndarray) -> torch.Tensor:
        """The rows at ``slots`` of column ``position`` (a fresh tensor)."""
        array = self._arrays[position]
        if array is not None:
            return torch.from_numpy(array.take(slots, axis=0))
        column = self._columns[position]
        return column.index_select(0, torch.from_numpy(slots).to(column.device))

    # ------------------------------------------------------------------ growth
    def _grow(self, needed: int) -> None:
        capacity = max(self.capacity, min(self.limit, max(16, min(_INITIAL_ROWS, self.limit // 256))))
        while capacity < needed:
            capacity *= 2
        capacity = min(capacity, self.limit)
        if capacity < needed:
            raise RuntimeError(f"{needed} kept rows asked for, but no more than {self.limit} can be needed")
        previous, old = self._dir, self._columns
        self._columns, self._dir = self._new_columns(capacity)
        for new, column in zip(self._columns, old):
            new[: self.capacity].copy_(column)
        self._arrays = [
            c.numpy() if c.device.type == "cpu" and c.dtype in _NUMPY_DTYPES else None for c in self._columns
        ]
        free = np.empty(capacity, dtype=np.int64)
        added = np.arange(capacity - 1, self.capacity - 1, -1)  # below the free slots already there
        free[: added.size] = added
        free[added.size : added.size + self._nfree] = self._free[: self._nfree]
        self._free, self._nfree, self.capacity = free, self._nfree + added.size, capacity
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)

    def _new_columns(self, capacity: int) -> tuple[list[torch.Tensor], Path | None]:
        if self.folder is None:
            return [
                torch.empty((capacity, *shape), dtype=dtype, device=self.device)
                for shape, dtype in zip(self.shapes, self.dtypes)
            ], None
        folder = self.folder / f"next_kept_{capacity}"
        folder.mkdir(parents=True, exist_ok=True)
        columns = []
        for i, (shape, dtype) in enumerate(zip(self.shapes, self.dtypes)):
            path = folder / f"column_{i}.memmap"
            if path.is_symlink() or path.exists():
                path.unlink()  # never write through what was there
            if torch.Size((capacity, *shape)).numel() == 0:  # nothing to map
                columns.append(torch.empty((capacity, *shape), dtype=dtype))
                continue
            mapped = MemoryMappedTensor.empty((capacity, *shape), dtype=dtype, filename=str(path))
            columns.append(mapped.as_subclass(torch.Tensor))
        return columns, folder

    # ------------------------------------------------------------------ pickle
    def __getstate__(self) -> dict[str, Any]:
        """The rows by value, in memory: a copy never writes the files of the original."""
        return dict(self.__dict__, _columns=[c.clone() for c in self._columns], _arrays=[], _dir=None, folder=None)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._arrays = [
            c.numpy() if c.device.type == "cpu" and c.dtype in _NUMPY_DTYPES else None for c in self._columns
        ]
