"""Writers: where a replay buffer puts new items.

- :class:`RoundRobinWriter`: a ring; once full, the oldest item is overwritten.
- :class:`TensorDictRoundRobinWriter`: the same, and writes each item's position under
  ``"index"`` in the TensorDict before storing it.
- :class:`TensorDictMaxValueWriter`: keeps the ``max_size`` items with the largest
  value of a rank key (e.g. the best episodes), discarding the rest.

A writer validates nothing itself: :meth:`Storage.set` checks the data before any
write, and the writer updates its cursor only after the storage accepted the data, so a
rejected batch leaves the buffer as it was.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, cast

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey, unravel_key

from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._checkpoint import as_json, load_into, save_state
from tdrl.data.replay_buffers._layout import key_str
from tdrl.data.replay_buffers.storages import Storage

__all__ = ["Writer", "RoundRobinWriter", "TensorDictRoundRobinWriter", "TensorDictMaxValueWriter"]

_INDEX_KEY = "index"


def _batch_len(data: Any) -> int:
    if isinstance(data, TensorDictBase):
        if data.batch_dims == 0:
            raise ValueError("extend() needs a batch: got a TensorDict with batch_size=[]; use add() for one item")
        return data.batch_size[0]
    if isinstance(data, torch.Tensor):
        if data.ndim == 0:
            raise ValueError("extend() needs a batch: got a 0-dim tensor; use add() for one item")
        return data.shape[0]
    if isinstance(data, (list, tuple)):
        return len(data)
    raise TypeError(f"extend() takes a TensorDict, a tensor or a list, got {type(data).__name__}")


def _expand_index(index: torch.Tensor, data: TensorDictBase) -> torch.Tensor:
    """Broadcasts per-item positions over the items' own batch dimensions."""
    extra = data.batch_dims - index.ndim
    if extra <= 0:
        return index.to(data.device) if data.device is not None else index
    out = index.reshape(*index.shape, *([1] * extra)).expand(data.batch_size)
    return out.to(data.device) if data.device is not None else out


class Writer(ABC):
    """Base class of writers: decides the storage positions of new items."""

    def __init__(self) -> None:
        self._storage: Storage | None = None
        self._cursor = 0
        self._write_count = 0

    def register_storage(self, storage: Storage) -> None:
        """Attaches the storage this writer writes into."""
        self._storage = storage

    def _require_storage(self) -> Storage:
        if self._storage is None:
            raise RuntimeError(f"{type(self).__name__} has no storage: call register_storage() first")
        return self._storage

    @property
    def write_count(self) -> int:
        """Items written since creation (or the last ``empty()``)."""
        return self._write_count

    @abstractmethod
    def add(self, data: Any) -> int:
        """Writes one item; returns its position."""

    @abstractmethod
    def extend(self, data: Any) -> torch.Tensor:
        """Writes a batch; returns the position of each item."""

    def _empty(self, empty_write_count: bool = True) -> None:
        self._cursor = 0
        if empty_write_count:
            self._write_count = 0

    def _sync_with_storage(self) -> None:
        """Resumes after the items already in the storage (e.g. one re-opened from disk)."""

    # ------------------------------------------------------------------ state
    def _config(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Configuration, cursor and write count."""
        return {
            "type": type(self).__name__,
            "config": self._config(),
            "cursor": self._cursor,
            "write_count": self._write_count,
        }

    def _check_state_dict(self, state: dict[str, Any]) -> None:
        """Raises if ``state`` was written by another kind or configuration of writer, or if its
        cursor or count is out of place; changes nothing."""
        if not isinstance(state, dict) or state.get("type") != type(self).__name__:
            found = state.get("type") if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"the checkpoint holds the state of a {found}, this buffer writes with a "
                f"{type(self).__name__}; build the buffer with the same writer"
            )
        mine = as_json(self._config())
        if as_json(checks.entry(state, "config")) != mine:
            raise ValueError(
                f"the checkpoint's {type(self).__name__} was configured with {state['config']}, this one with {mine}"
            )
        checks.integer(state, "cursor", low=0, high=None if self._storage is None else self._storage.max_size - 1)
        checks.integer(state, "write_count", low=0)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict` (raises, changing nothing, on mismatch)."""
        self._check_state_dict(state)
        self._cursor = int(state["cursor"])
        self._write_count = int(state["write_count"])

    def dumps(self, path: str | os.PathLike) -> None:
        """Saves the writer's state as the folder ``path/writer``, crash-safe (no pickle)."""
        save_state(self.state_dict(), path, "writer")

    def loads(self, path: str | os.PathLike) -> None:
        """Restores what :meth:`dumps` wrote (checked first)."""
        load_into(path, "writer", self.load_state_dict)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cursor={self._cursor}, write_count={self._write_count})"


class RoundRobinWriter(Writer):
    """Writes at a cursor that wraps around: once full, the oldest items go first.

    Examples:
        >>> import torch
        >>> from tdrl.data.replay_buffers.storages import LazyTensorStorage
        >>> writer = RoundRobinWriter()
        >>> writer.register_storage(LazyTensorStorage(4))
        >>> writer.extend(torch.zeros(3, 2)).tolist(), writer.extend(torch.ones(3, 2)).tolist()
        ([0, 1, 2], [3, 0, 1])
    """

    def add(self, data: Any) -> int:
        storage = self._require_storage()
        index = self._cursor
        self._before_write(data, torch.tensor(index))
        storage.set(index, data)
        self._cursor = (index + 1) % storage.max_size
        self._write_count += 1
        return index

    def extend(self, data: Any) -> torch.Tensor:
        storage = self._require_storage()
        count = _batch_len(data)
        if count == 0:
            return torch.zeros(0, dtype=torch.long)
        max_size = storage.max_size
        start = self._cursor
        index = torch.arange(start, start + count)
        wraps = start + count > max_size
        if wraps:
            index %= max_size
        self._before_write(data, index)
        if count > max_size:
            # only the newest max_size items can survive: write just those
            skip = count - max_size
            storage.set(index[skip:], data[skip:])
        elif wraps:
            storage.set(index, data)
        else:
            storage.set(slice(start, start + count), data)
        self._cursor = (start + count) % max_size
        self._write_count += count
        return index

    def _before_write(self, data: Any, index: torch.Tensor) -> None:
        """Hook run before the storage write (see :class:`TensorDictRoundRobinWriter`)."""

    def _sync_with_storage(self) -> None:
        storage = self._require_storage()
        if self._write_count == 0 and len(storage):
            last = storage._last_cursor
            self._cursor = ((last + 1) if last is not None else len(storage)) % storage.max_size
            self._write_count = len(storage)


class TensorDictRoundRobinWriter(RoundRobinWriter):
    """A :class:`RoundRobinWriter` that also writes each item's position under ``"index"``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data.replay_buffers.storages import LazyTensorStorage
        >>> writer = TensorDictRoundRobinWriter()
        >>> writer.register_storage(LazyTensorStorage(10))
        >>> data = TensorDict({"obs": torch.zeros(3)}, [3])
        >>> _ = writer.extend(data)
        >>> data["index"]
        tensor([0, 1, 2])
    """

    def _before_write(self, data: Any, index: torch.Tensor) -> None:
        if isinstance(data, TensorDictBase):
            data.set(_INDEX_KEY, _expand_index(index, data))


class TensorDictMaxValueWriter(Writer):
    """Keeps the ``max_size`` items with the largest rank; the others are not stored.

    A new item enters while there is room, or when its rank is strictly larger than the
    smallest kept rank (whose slot it takes). A batch is handled at once, with the same
    outcome as items arriving one by one. Positions of items not kept are ``-1``.

    Args:
        rank_key: the entry to rank by (default ``("next", "reward")``).
        reduction: how a multi-element rank is reduced per item: ``"sum"``, ``"max"``,
            ``"min"``, ``"mean"`` or ``"median"``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data.replay_buffers.storages import LazyTensorStorage
        >>> writer = TensorDictMaxValueWriter(rank_key="score")
        >>> writer.register_storage(LazyTensorStorage(2))
        >>> writer.extend(TensorDict({"score": torch.tensor([1.0, 5.0, 3.0])}, [3])).tolist()
        [-1, 0, 1]
    """

    _REDUCTIONS = ("sum", "max", "min", "mean", "median")

    def __init__(self, rank_key: NestedKey | None = None, reduction: str = "sum") -> None:
        super().__init__()
        if reduction not in self._REDUCTIONS:
            raise ValueError(f"reduction must be one of {self._REDUCTIONS}, got {reduction!r}")
        self._rank_key = ("next", "reward") if rank_key is None else unravel_key(rank_key)
        self._reduction = reduction
        self._values: torch.Tensor | None = None
        self._count = 0

    def _config(self) -> dict[str, Any]:
        return {"rank_key": self._rank_key, "reduction": self._reduction}

    def register_storage(self, storage: Storage) -> None:
        if storage.max_size > 2**31:
            raise ValueError(
                "TensorDictMaxValueWriter needs a storage with a finite max_size, e.g. LazyTensorStorage(1000)"
            )
        super().register_storage(storage)
        self._values = torch.full((storage.max_size,), -float("inf"), dtype=torch.float64)
        self._count = 0

    def _ranks(self, data: Any) -> torch.Tensor:
        if not isinstance(data, TensorDictBase):
            raise TypeError(f"TensorDictMaxValueWriter ranks TensorDicts, got {type(data).__name__}")
        rank = data.get(self._rank_key, None)
        if rank is None:
            raise KeyError(
                f"rank key {key_str(self._rank_key)} not found in the data, which has keys "
                f"{list(data.keys(include_nested=True, leaves_only=True))}"
            )
        rank = rank.detach().reshape(data.batch_size[0], -1).to("cpu", torch.float64)
        if rank.shape[1] == 1:
            rank = rank[:, 0]
        elif self._reduction in ("max", "min", "median"):
            rank = getattr(rank, self._reduction)(dim=1).values
        else:
            rank = getattr(rank, self._reduction)(dim=1)
        if torch.isnan(rank).any():
            raise ValueError(f"rank key {key_str(self._rank_key)} holds NaN values, which cannot be ranked")
        return rank

    def add(self, data: Any) -> int:
        if not isinstance(data, TensorDictBase):
            raise TypeError(f"TensorDictMaxValueWriter ranks TensorDicts, got {type(data).__name__}")
        return int(self.extend(data.unsqueeze(0))[0])

    def extend(self, data: Any) -> torch.Tensor:
        storage = self._require_storage()
        count = _batch_len(data)
        ranks = self._ranks(data)
        layout = getattr(storage, "layout", None)
        if layout is not None:
            layout.leaves_of(data, batched=True)  # reject a bad structure even if nothing is kept
        values = self._values
        assert values is not None
        filled, max_size = self._count, storage.max_size
        candidates = torch.cat([values[:filled], ranks])
        top = torch.sort(candidates, descending=True, stable=True).indices[: min(max_size, filled + count)]
        kept_new = torch.sort(top[top >= filled] - filled).values
        out = torch.full((count,), -1, dtype=torch.long)
        if kept_new.numel() == 0:
            return out
        kept_old = torch.zeros(filled, dtype=torch.bool)
        kept_old[top[top < filled]] = True
        evicted = (~kept_old).nonzero().squeeze(-1)
        evicted = evicted[torch.sort(values[evicted], stable=True).indices]  # smallest rank first
        free = torch.arange(filled, min(max_size, filled + count))
        slots = torch.cat([free, evicted])[: kept_new.numel()]
        storage.set(slots, data[kept_new])
        values[slots] = ranks[kept_new]
        self._count = min(max_size, filled + count)
        self._cursor = self._count % max_size
        self._write_count += kept_new.numel()
        out[kept_new] = slots
        return out

    def _empty(self, empty_write_count: bool = True) -> None:
        super()._empty(empty_write_count)
        if self._values is not None:
            self._values.fill_(-float("inf"))
        self._count = 0

    def _sync_with_storage(self) -> None:
        storage = self._require_storage()
        if self._count == 0 and len(storage) and hasattr(storage, "_leaf"):
            stored = storage._leaf(self._rank_key)
            values = cast(torch.Tensor, self._values)  # allocated by register_storage
            values[: len(storage)] = self._ranks(TensorDict({self._rank_key: stored}, [len(storage)]))
            self._count = len(storage)
            self._cursor = self._count % storage.max_size
            self._write_count = self._count

    def state_dict(self) -> dict[str, Any]:
        values = self._values[: self._count] if self._values is not None else torch.zeros(0)
        return {**super().state_dict(), "values": values, "count": self._count}

    def _check_state_dict(self, state: dict[str, Any]) -> None:
        super()._check_state_dict(state)
        count = checks.integer(state, "count", low=0)
        if self._values is None or count > self._values.shape[0]:
            raise ValueError(
                f"the checkpoint's TensorDictMaxValueWriter kept {count} items, which this buffer's storage cannot hold"
            )
        ranks = checks.tensor(state, "values", shape=(count,), floating=True)
        assert ranks is not None
        if bool(torch.isnan(ranks).any()):
            raise checks.StateError("values", "holds NaN ranks, which TensorDictMaxValueWriter never keeps")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state_dict(state)
        count = int(state["count"])
        super().load_state_dict(state)
        values = cast(torch.Tensor, self._values)  # _check_state_dict refused a writer without them
        values.fill_(-float("inf"))
        values[:count] = state["values"]
        self._count = count

    def __repr__(self) -> str:
        return (
            f"TensorDictMaxValueWriter(rank_key={self._rank_key!r}, reduction={self._reduction!r}, kept={self._count})"
        )
