"""The storage interface, the index type and the checks every storage shares."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._checkpoint import load_into, save_state

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
