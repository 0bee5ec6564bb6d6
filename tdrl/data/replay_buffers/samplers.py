"""Samplers: which stored items a replay buffer returns.

A sampler turns ``(storage, batch_size)`` into storage positions plus an ``info`` dict
(importance weights, slice ends, ...). It is told about writes (:meth:`Sampler.extend`)
and, if prioritized, about new priorities (:meth:`Sampler.update_priority`).

- :class:`RandomSampler`: uniform, with replacement.
- :class:`SamplerWithoutReplacement`: every stored item once per epoch.
- :class:`PrioritizedSampler`: proportional to ``(priority + eps) ** alpha``, with
  importance weights ``(p_i / p_min) ** -beta`` (Schaul et al., 2015).
- :class:`SliceSampler` / :class:`SliceSamplerWithoutReplacement`: contiguous slices
  of stored trajectories, never crossing a trajectory boundary.

Randomness comes from the replay buffer's generator when it has one, else from torch's
global generator: ``torch.manual_seed`` makes sampling reproducible.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from abc import ABC, abstractmethod
from typing import Any, cast

import numpy as np
import torch
from tensordict.utils import NestedKey, unravel_key

from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._checkpoint import as_json, load_into, save_state
from tdrl.data.replay_buffers._segment_tree import SumMinTree
from tdrl.data.replay_buffers._trajectories import (
    resolve_traj_keys,
    slice_positions,
    trajectory_bounds,
)
from tdrl.data.replay_buffers.storages import EMPTY_STORAGE_ERROR, Storage, TensorStorage

__all__ = [
    "Sampler",
    "RandomSampler",
    "SamplerWithoutReplacement",
    "PrioritizedSampler",
    "SliceSampler",
    "SliceSamplerWithoutReplacement",
    "check_priorities",
]


def _index_device(storage: Storage) -> torch.device | None:
    device = getattr(storage, "device", None)
    return device if isinstance(device, torch.device) else None


def _check_empty(storage: Storage) -> int:
    count = len(storage)
    if count == 0:
        raise RuntimeError(EMPTY_STORAGE_ERROR)
    return count


class Sampler(ABC):
    """Base class of samplers.

    ``_rng`` is the generator set by the replay buffer (``None``: torch's global one).
    ``ran_out`` tells an iterating buffer that an epoch just ended.
    """

    _rng: torch.Generator | None = None
    _remaining_batches: int = sys.maxsize

    @abstractmethod
    def sample(self, storage: Storage, batch_size: int) -> tuple[torch.Tensor, dict[NestedKey, Any]]:
        """Returns the positions of ``batch_size`` items (or fewer, at an epoch's end) and info."""

    def add(self, index: int) -> None:
        """Called after one item was written at ``index``."""
        self.extend(torch.as_tensor([index]))

    def extend(self, index: torch.Tensor) -> None:
        """Called after items were written at ``index``."""

    def update_priority(self, index: Any, priority: Any, *, storage: Storage | None = None) -> None:
        """Only prioritized samplers use priorities; others warn and ignore them."""
        warnings.warn(
            f"update_priority() called on a {type(self).__name__}, which does not use priorities; "
            "use a PrioritizedSampler (or a PrioritizedReplayBuffer) to sample by priority",
            stacklevel=2,
        )

    @property
    def ran_out(self) -> bool:
        """Whether the last sample ended an epoch (never, for samplers with replacement)."""
        return False

    @ran_out.setter
    def ran_out(self, value: bool) -> None:
        pass

    def _empty(self) -> None:
        """Forgets any state tied to the stored items."""

    def _sync_with_storage(self, storage: Storage) -> None:
        """Adopts items already present in a storage (e.g. one re-opened from disk)."""

    # ------------------------------------------------------------------ state
    def _config(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Configuration and state (tensors are not copied)."""
        return {"type": type(self).__name__, "config": self._config()}

    def _check_state_dict(self, state: dict[str, Any]) -> None:
        """Raises if ``state`` was written by another kind or configuration of sampler, or if
        any field is out of place (subclasses check theirs); changes nothing."""
        if not isinstance(state, dict) or state.get("type") != type(self).__name__:
            found = state.get("type") if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"the checkpoint holds the state of a {found}, this buffer samples with a "
                f"{type(self).__name__}; build the buffer with the same sampler"
            )
        mine = as_json(self._config())
        if as_json(checks.entry(state, "config")) != mine:
            raise ValueError(
                f"the checkpoint's {type(self).__name__} was configured with {state['config']}, "
                f"this one with {mine}; build the sampler with the checkpoint's settings"
            )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict` (raises, changing nothing, on mismatch)."""
        self._check_state_dict(state)

    def dumps(self, path: str | os.PathLike) -> None:
        """Saves the sampler's state as the folder ``path/sampler``, crash-safe (no pickle)."""
        save_state(self.state_dict(), path, "sampler")

    def loads(self, path: str | os.PathLike) -> None:
        """Restores what :meth:`dumps` wrote (checked first)."""
        load_into(path, "sampler", self.load_state_dict)

    def __repr__(self) -> str:
        config = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({config})"


# ---------------------------------------------------------------------------------------
class RandomSampler(Sampler):
    """Uniform sampling with replacement: ``torch.randint(len(storage), (batch_size,))``.

    Examples:
        >>> import torch
        >>> from tdrl.data.replay_buffers.storages import ListStorage
        >>> storage = ListStorage(10)
        >>> storage.set(slice(0, 5), list("abcde"))
        >>> index, info = RandomSampler().sample(storage, 3)
        >>> index.shape, bool((index < 5).all())
        (torch.Size([3]), True)
    """

    def sample(self, storage: Storage, batch_size: int) -> tuple[torch.Tensor, dict[NestedKey, Any]]:
        count = _check_empty(storage)
        return torch.randint(0, count, (batch_size,), generator=self._rng, device=_index_device(storage)), {}


class SamplerWithoutReplacement(Sampler):
    """Every stored item exactly once per epoch, in a fresh random order each epoch.

    An epoch is a permutation of ``range(len(storage))``, drawn when the first batch is
    requested and again whenever the storage length changed since the previous draw or
    the epoch ends. Its last batch is shorter when ``batch_size`` does not divide the
    length, unless ``drop_last`` drops it.

    Args:
        drop_last: skip an epoch's last, incomplete batch.
        shuffle: ``False`` walks the items in storage order.

    Examples:
        >>> import torch
        >>> from tdrl.data.replay_buffers.storages import ListStorage
        >>> storage = ListStorage(10)
        >>> storage.set(slice(0, 5), list("abcde"))
        >>> sampler = SamplerWithoutReplacement()
        >>> first, _ = sampler.sample(storage, 3)
        >>> second, _ = sampler.sample(storage, 3)
        >>> sorted(torch.cat([first, second]).tolist()), sampler.ran_out
        ([0, 1, 2, 3, 4], True)
    """

    def __init__(self, drop_last: bool = False, shuffle: bool = True) -> None:
        self.drop_last = bool(drop_last)
        self.shuffle = bool(shuffle)
        self._perm: torch.Tensor | None = None
        self._pos = 0
        self.len_storage = 0
        self._ran_out = False

    def _config(self) -> dict[str, Any]:
        return {"drop_last": self.drop_last, "shuffle": self.shuffle}

    def _new_epoch(self, count: int, device: torch.device | None) -> None:
        if self.shuffle:
            self._perm = torch.randperm(count, generator=self._rng, device=device)
        else:
            self._perm = torch.arange(count, device=device)
        self._pos = 0

    def sample(self, storage: Storage, batch_size: int) -> tuple[torch.Tensor, dict[NestedKey, Any]]:
        count = _check_empty(storage)
        if self.drop_last and batch_size > count:
            raise ValueError(
                f"batch_size={batch_size} exceeds the {count} stored items, so with drop_last=True "
                "no batch can be drawn without repeating items; sample fewer, or pass drop_last=False"
            )
        if self._perm is None or count != self.len_storage:
            self._new_epoch(count, _index_device(storage))
            self.len_storage = count
        perm = self._perm
        assert perm is not None
        index = perm[self._pos : self._pos + batch_size].clone()
        self._pos += index.shape[0]
        left = count - self._pos
        if left == 0 or (self.drop_last and left < batch_size):
            self._ran_out = True
            self._new_epoch(count, perm.device)
            left = count
        else:
            self._ran_out = False
        self._remaining_batches = left // batch_size if self.drop_last else -(-left // batch_size)
        return index, {}

    @property
    def ran_out(self) -> bool:
        return self._ran_out

    @ran_out.setter
    def ran_out(self, value: bool) -> None:
        self._ran_out = bool(value)

    def _empty(self) -> None:
        self._perm = None
        self._pos = 0
        self.len_storage = 0
        self._ran_out = False

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "perm": self._perm,
            "pos": self._pos,
            "len_storage": self.len_storage,
            "ran_out": self._ran_out,
        }

    def _check_state_dict(self, state: dict[str, Any]) -> None:
        super()._check_state_dict(state)
        _check_epoch(state, checks.integer(state, "len_storage", low=0))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state_dict(state)
        perm = state["perm"]
        self._perm = None if perm is None else perm.clone()
        self._pos = int(state["pos"])
        self.len_storage = int(state["len_storage"])
        self._ran_out = bool(state["ran_out"])

    def __repr__(self) -> str:
        done = 0.0 if self._perm is None or not self.len_storage else 100 * self._pos / self.len_storage
        return (
            f"SamplerWithoutReplacement(drop_last={self.drop_last}, shuffle={self.shuffle}, "
            f"{done:.1f}% of the epoch sampled)"
        )


def _check_epoch(state: dict[str, Any], length: int) -> None:
    """Checks ``perm`` / ``pos`` / ``ran_out`` of a sampler state drawing epochs over ``length`` items."""
    checks.boolean(state, "ran_out")
    if checks.entry(state, "perm") is None:  # no epoch drawn yet (or emptied since)
        checks.integer(state, "pos", low=0, high=0)
        if length:
            raise checks.StateError("perm", f"is missing for an epoch over {length} items")
        return
    if length < 1:
        raise checks.StateError("perm", "is present for an epoch over no item")
    checks.permutation(state, "perm", length)
    checks.integer(state, "pos", low=0, high=length - 1)


# ---------------------------------------------------------------------------------------
def check_priorities(priority: Any, count: int, index: np.ndarray | None = None) -> np.ndarray:
    """Validates priorities for ``count`` items; returns them as a float64 numpy array.

    Raises:
        ValueError: for a negative, NaN or infinite priority, or a count mismatch.
    """
    values = torch.as_tensor(priority).detach().to("cpu", torch.float64)
    if values.numel() == 1:
        values = values.reshape(1).expand(count)
    elif values.numel() != count:
        raise ValueError(
            f"got {values.numel()} priorities (shape {list(values.shape)}) for {count} items: "
            "pass one priority, or one per item"
            + (
                f"; for one per agent (or per step), reduce them to one per item first (e.g. "
                f"td_error.amax(-1) for shape [{count}, n_agents]), or let a TensorDictPrioritizedReplayBuffer "
                "read them from the batch (priority_key=('agents', 'td_error')), which reduces with the "
                "sampler's reduction"
                if values.ndim > 1 and values.shape[0] == count
                else ""
            )
        )
    out = values.reshape(-1).numpy()
    bad = ~((out >= 0) & (out < np.inf))
    if bad.any():
        where = int(np.flatnonzero(bad)[0])
        at = f" for index {int(index[where])}" if index is not None else f" at position {where}"
        raise ValueError(f"priorities must be finite and >= 0, got {out[where]}{at}; pass e.g. the absolute TD error")
    return out


class PrioritizedSampler(Sampler):
    """Prioritized experience replay (Schaul et al., 2015).

    Item ``i`` is drawn with probability ``p_i / sum(p)``, where ``p_i = (priority_i +
    eps) ** alpha``; ``info["priority_weight"]`` holds the importance weights
    ``(p_i / min(p)) ** -beta`` (the largest weight is 1). New items get the largest
    priority seen so far, so each is likely to be replayed soon. Priorities live in a
    vectorized sum/min segment tree: sampling and updating a batch cost O(log N) numpy
    calls, not O(batch * log N) Python steps.

    Args:
        max_capacity: number of slots (the storage's ``max_size``).
        alpha: prioritization exponent (0: uniform).
        beta: importance-sampling exponent (0: no correction, 1: full correction).
        eps: added to every priority, so that none is exactly 0.
        dtype: dtype of the returned importance weights.
        reduction: how :class:`TensorDictReplayBuffer` reduces a multi-element priority
            per item: ``"max"``, ``"min"``, ``"mean"``, ``"median"`` or ``"sum"``.

    Examples:
        >>> import torch
        >>> from tdrl.data.replay_buffers.storages import ListStorage
        >>> storage = ListStorage(4)
        >>> storage.set(slice(0, 4), list("abcd"))
        >>> sampler = PrioritizedSampler(4, alpha=1.0, beta=1.0, eps=0.0)
        >>> sampler.update_priority(torch.arange(4), torch.tensor([0.0, 0.0, 0.0, 1.0]))
        >>> index, info = sampler.sample(storage, 5)
        >>> index.tolist(), info["priority_weight"].tolist()
        ([3, 3, 3, 3, 3], [1.0, 1.0, 1.0, 1.0, 1.0])
    """

    _REDUCTIONS = ("max", "min", "mean", "median", "sum")

    def __init__(
        self,
        max_capacity: int,
        alpha: float,
        beta: float,
        eps: float = 1e-8,
        dtype: torch.dtype = torch.float,
        reduction: str = "max",
    ) -> None:
        if isinstance(max_capacity, bool) or not isinstance(max_capacity, int) or max_capacity < 1:
            raise ValueError(f"max_capacity must be a positive integer, got {max_capacity!r}")
        for name, value in (("alpha", alpha), ("beta", beta), ("eps", eps)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if reduction not in self._REDUCTIONS:
            raise ValueError(f"reduction must be one of {self._REDUCTIONS}, got {reduction!r}")
        self._max_capacity = max_capacity
        self._alpha = float(alpha)
        self._beta = float(beta)
        self._eps = float(eps)
        self.dtype = dtype
        self.reduction = reduction
        self._tree = SumMinTree(max_capacity)
        self._max_priority: float | None = None

    @property
    def max_size(self) -> int:
        """Number of slots."""
        return self._max_capacity

    @property
    def alpha(self) -> float:
        """Prioritization exponent; fixed, as the stored priorities already carry it."""
        return self._alpha

    @property
    def beta(self) -> float:
        """Importance-sampling exponent; may be annealed during training."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"beta must be a finite number >= 0, got {value!r}")
        self._beta = float(value)

    @property
    def eps(self) -> float:
        """Added to every priority before the exponent."""
        return self._eps

    @property
    def default_priority(self) -> float:
        """The priority given to new items, i.e. the largest seen so far (1.0 at first)."""
        return 1.0 if self._max_priority is None else self._max_priority

    def _config(self) -> dict[str, Any]:
        return {"max_capacity": self._max_capacity, "alpha": self._alpha, "eps": self._eps}

    def sample(self, storage: Storage, batch_size: int) -> tuple[torch.Tensor, dict[NestedKey, Any]]:
        count = _check_empty(storage)
        if count > self._max_capacity:
            raise ValueError(
                f"the storage holds {count} items but this PrioritizedSampler has max_capacity="
                f"{self._max_capacity}; build it with the storage's max_size"
            )
        tree = self._tree
        draws = torch.rand(batch_size, generator=self._rng, dtype=torch.float64).numpy()
        try:
            slots = tree.find(draws)
        except RuntimeError:
            raise RuntimeError("cannot sample: every stored item has priority 0") from None
        weight = np.power(tree.values(slots) / tree.min(), -self._beta)
        index = torch.from_numpy(slots)
        device = _index_device(storage)
        if device is not None and device.type != "cpu":
            index = index.to(device)
        return index, {"priority_weight": torch.from_numpy(weight).to(self.dtype)}

    def extend(self, index: torch.Tensor) -> None:
        index = torch.as_tensor(index).reshape(-1)
        index = index[index >= 0] if index.numel() and bool((index < 0).any()) else index
        if index.numel():
            self._tree.update(index.cpu().numpy(), (self.default_priority + self._eps) ** self._alpha)

    def _sync_with_storage(self, storage: Storage) -> None:
        if len(storage) and self._tree.total() == 0:
            self.extend(torch.arange(min(len(storage), self._max_capacity)))

    @torch.no_grad()
    def update_priority(self, index: Any, priority: Any, *, storage: Storage | None = None) -> None:
        """Sets the priorities of the items at ``index``.

        Args:
            index: storage positions (negative ones, e.g. the ``-1`` of items a
                :class:`TensorDictMaxValueWriter` did not keep, are skipped).
            priority: one value, or one per position.
            storage: unused; for signature compatibility.

        Raises:
            ValueError: for a negative or NaN priority, a position out of range, or
                priorities that do not match the positions; nothing is changed then.
        """
        index_t = torch.as_tensor(index).detach().reshape(-1)
        if index_t.dtype == torch.bool or index_t.is_floating_point():
            raise TypeError(f"index must hold integers, got {index_t.dtype}")
        slots = index_t.to("cpu", torch.long).numpy()
        values = check_priorities(priority, slots.shape[0], slots)
        keep = slots >= 0
        if not keep.all():
            slots, values = slots[keep], values[keep]
        if slots.size == 0:
            return
        if int(slots.max()) >= self._max_capacity:
            raise ValueError(
                f"index {int(slots.max())} is out of range for a PrioritizedSampler of max_capacity "
                f"{self._max_capacity}"
            )
        top = float(values.max())
        if self._max_priority is None or top > self._max_priority:
            self._max_priority = top
        self._tree.update(slots, np.power(values + self._eps, self._alpha))

    def _empty(self) -> None:
        self._tree.clear()
        self._max_priority = None

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "beta": self._beta,
            "max_priority": self._max_priority,
            "priorities": torch.from_numpy(self._tree.values().copy()),
        }

    def _check_state_dict(self, state: dict[str, Any]) -> None:
        super()._check_state_dict(state)
        checks.number(state, "beta", low=0.0)
        checks.number(state, "max_priority", low=0.0, optional=True)
        priorities = checks.tensor(state, "priorities", shape=(self._max_capacity,), floating=True)
        assert priorities is not None
        bad = ~(torch.isfinite(priorities) & (priorities >= 0))
        if bool(bad.any()):
            slot = int(bad.nonzero()[0, 0])
            raise checks.StateError(
                "priorities", f"holds {float(priorities[slot])} for slot {slot}: priorities are finite and >= 0"
            )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state_dict(state)
        self._tree.assign(state["priorities"].numpy())
        self._beta = float(state["beta"])
        self._max_priority = None if state["max_priority"] is None else float(state["max_priority"])

    def __repr__(self) -> str:
        return (
            f"PrioritizedSampler(max_capacity={self._max_capacity}, alpha={self._alpha}, "
            f"beta={self._beta}, eps={self._eps})"
        )


# ---------------------------------------------------------------------------------------
def _replace_last(key: NestedKey, name: str) -> NestedKey:
    return name if isinstance(key, str) else (*key[:-1], name)


class SliceSampler(Sampler):
    """Contiguous slices of stored trajectories; a slice never crosses a boundary.

    A batch of ``batch_size`` items is made of ``num_slices`` slices of
    ``batch_size // num_slices`` steps (or of ``slice_len`` steps, ``batch_size //
    slice_len`` slices). Each slice picks a trajectory uniformly among those long
    enough, then a uniform start inside it. Trajectories are told apart by ``traj_key``
    (an id per item) or ``end_key`` (an end flag); without either, the sampler uses
    ``("collector", "traj_ids")`` or ``"episode"`` when stored, else ``("next", "done")``.
    ``info`` marks the last step of each slice as truncated (and done) under
    ``truncated_key``, so value estimators never bootstrap across slices.

    Args:
        num_slices: slices per batch (exclusive with ``slice_len``).
        slice_len: steps per slice (exclusive with ``num_slices``).
        end_key: key of the end-of-trajectory flag.
        traj_key: key of the trajectory id.
        cache_values: accepted for TorchRL compatibility; boundaries are always cached
            until the next write.
        truncated_key: where ``info`` marks slice ends (``None``: not at all).
        strict_length: skip trajectories shorter than a slice. ``False`` takes them
            whole, so a batch may hold fewer than ``batch_size`` items.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data.replay_buffers.storages import LazyTensorStorage
        >>> storage = LazyTensorStorage(100)
        >>> episode = torch.tensor([0] * 6 + [1] * 4)
        >>> storage.set(slice(0, 10), TensorDict({"episode": episode, "step": torch.arange(10)}, [10]))
        >>> index, info = SliceSampler(slice_len=4, traj_key="episode").sample(storage, 8)
        >>> rows = storage.get(index)["episode"].reshape(2, 4)
        >>> bool((rows == rows[:, :1]).all())
        True
    """

    def __init__(
        self,
        *,
        num_slices: int | None = None,
        slice_len: int | None = None,
        end_key: NestedKey | None = None,
        traj_key: NestedKey | None = None,
        cache_values: bool = False,
        truncated_key: NestedKey | None = ("next", "truncated"),
        strict_length: bool = True,
    ) -> None:
        if (num_slices is None) == (slice_len is None):
            raise TypeError(
                f"pass exactly one of num_slices and slice_len, got num_slices={num_slices} and slice_len={slice_len}"
            )
        for name, value in (("num_slices", num_slices), ("slice_len", slice_len)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if traj_key is not None and end_key is not None:
            raise TypeError("traj_key and end_key are exclusive: pass one way of marking trajectories")
        self.num_slices = num_slices
        self.slice_len = slice_len
        self.traj_key = None if traj_key is None else unravel_key(traj_key)
        self.end_key = None if end_key is None else unravel_key(end_key)
        self.truncated_key = None if truncated_key is None else unravel_key(truncated_key)
        self.strict_length = bool(strict_length)
        self.cache_values = cache_values
        self._cache: tuple[int, int, tuple[torch.Tensor, ...]] | None = None
        self._ranks: tuple[torch.Tensor, torch.Tensor] | None = None

    def _config(self) -> dict[str, Any]:
        return {
            "num_slices": self.num_slices,
            "slice_len": self.slice_len,
            "traj_key": self.traj_key,
            "end_key": self.end_key,
            "truncated_key": self.truncated_key,
            "strict_length": self.strict_length,
        }

    def _split(self, batch_size: int) -> tuple[int, int]:
        """``(steps per slice, slices per batch)`` for ``batch_size``."""
        parts = self.num_slices if self.num_slices is not None else self.slice_len
        assert parts is not None
        if batch_size % parts:
            what = "num_slices" if self.num_slices is not None else "slice_len"
            raise ValueError(f"batch_size={batch_size} is not divisible by {what}={parts}")
        if self.num_slices is not None:
            return batch_size // self.num_slices, self.num_slices
        return parts, batch_size // parts  # parts is slice_len here

    def _bounds(self, storage: Storage) -> tuple[torch.Tensor, ...]:
        token = (id(storage), storage._writes)
        if self._cache is not None and self._cache[:2] == token:
            return self._cache[2]
        traj_key, end_key = resolve_traj_keys(storage, self.traj_key, self.end_key)
        bounds = trajectory_bounds(storage, traj_key, end_key)
        self._cache = (*token, bounds)
        return bounds

    def _time_ranks(self, storage: Storage) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(order, rank, starts)``: the storage positions in time order, the time rank of
        each position, and the first rank of every trajectory (cached until the next write)."""
        order, starts, _ = self._bounds(storage)
        cached = self._ranks
        if cached is not None and cached[0] is order:
            return order, cached[1], starts
        rank = torch.empty_like(order)
        rank[order] = torch.arange(order.numel())
        self._ranks = (order, rank)
        return order, rank, starts

    def _eligible(self, lengths: torch.Tensor, slice_len: int) -> torch.Tensor:
        eligible = (lengths >= slice_len if self.strict_length else lengths > 0).nonzero().squeeze(-1)
        if eligible.numel() == 0:
            raise ValueError(
                f"no stored trajectory is at least {slice_len} steps long (the longest has "
                f"{int(lengths.max()) if lengths.numel() else 0}); sample shorter slices, or pass "
                "strict_length=False"
            )
        return eligible

    def sample(self, storage: Storage, batch_size: int) -> tuple[torch.Tensor, dict[NestedKey, Any]]:
        _check_empty(storage)
        slice_len, num_slices = self._split(batch_size)
        order, starts, lengths = self._bounds(storage)
        eligible = self._eligible(lengths, slice_len)
        chosen = eligible[torch.randint(0, eligible.numel(), (num_slices,), generator=self._rng)]
        return self._slices(storage, order, starts, lengths, chosen, slice_len)

    def _slices(
        self,
        storage: Storage,
        order: torch.Tensor,
        starts: torch.Tensor,
        lengths: torch.Tensor,
        chosen: torch.Tensor,
        slice_len: int,
    ) -> tuple[torch.Tensor, dict[NestedKey, Any]]:
        index, span = slice_positions(order, starts, lengths, chosen, slice_len, self.strict_length, self._rng)
        info: dict[NestedKey, Any] = {}
        if self.truncated_key is not None:
            info.update(self._end_marks(storage, index, span))
        device = _index_device(storage)
        if device is not None and device.type != "cpu":
            index = index.to(device)
        return index, info

    def _end_marks(self, storage: Storage, index: torch.Tensor, span: torch.Tensor) -> dict[NestedKey, torch.Tensor]:
        key = self.truncated_key
        assert key is not None
        done_key, terminated_key = _replace_last(key, "done"), _replace_last(key, "terminated")
        has = getattr(storage, "_has_key", lambda k: False)
        leaves = cast(TensorStorage, storage)  # only a storage of tensors has keys, so has() guards each read
        total = index.shape[0]
        feature = leaves._leaf(key).shape[1:] if has(key) else torch.Size([1])
        truncated = torch.zeros((total, *feature), dtype=torch.bool)
        truncated[torch.cumsum(span, 0) - 1] = True
        stored = leaves._leaf(done_key).cpu() if has(done_key) else None
        done = truncated.clone() if stored is None else stored[index].reshape(truncated.shape).bool() | truncated
        stored = leaves._leaf(terminated_key).cpu() if has(terminated_key) else None
        terminated = torch.zeros_like(truncated) if stored is None else stored[index].reshape(truncated.shape).bool()
        return {key: truncated, done_key: done, terminated_key: terminated}

    def _empty(self) -> None:
        self._cache = None
        self._ranks = None

    def __getstate__(self) -> dict[str, Any]:
        # the caches are keyed by the storage's identity, which a copy does not keep
        return dict(self.__dict__, _cache=None, _ranks=None)


class SliceSamplerWithoutReplacement(SliceSampler):
    """A :class:`SliceSampler` that visits every eligible trajectory once per epoch.

    Each batch takes ``num_slices`` trajectories that were not used yet in the epoch
    (one slice each, at a random start); the epoch restarts when they are exhausted or
    when the number of eligible trajectories changes.

    Args:
        num_slices, slice_len, end_key, traj_key, truncated_key, strict_length: as in
            :class:`SliceSampler`.
        drop_last: skip an epoch's last batch when it would have fewer slices.
        shuffle: ``False`` visits trajectories in time order.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data.replay_buffers.storages import LazyTensorStorage
        >>> storage = LazyTensorStorage(100)
        >>> storage.set(slice(0, 12), TensorDict({"episode": torch.arange(12) // 4}, [12]))
        >>> sampler = SliceSamplerWithoutReplacement(slice_len=2, traj_key="episode")
        >>> seen = [storage.get(sampler.sample(storage, 2)[0])["episode"][0].item() for _ in range(3)]
        >>> sorted(seen), sampler.ran_out
        ([0, 1, 2], True)
    """

    def __init__(
        self,
        *,
        num_slices: int | None = None,
        slice_len: int | None = None,
        drop_last: bool = False,
        end_key: NestedKey | None = None,
        traj_key: NestedKey | None = None,
        truncated_key: NestedKey | None = ("next", "truncated"),
        strict_length: bool = True,
        shuffle: bool = True,
    ) -> None:
        super().__init__(
            num_slices=num_slices,
            slice_len=slice_len,
            end_key=end_key,
            traj_key=traj_key,
            truncated_key=truncated_key,
            strict_length=strict_length,
        )
        self.drop_last = bool(drop_last)
        self.shuffle = bool(shuffle)
        self._perm: torch.Tensor | None = None
        self._pos = 0
        self._epoch_key: tuple[int, int] = (0, 0)
        self._ran_out = False

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "drop_last": self.drop_last, "shuffle": self.shuffle}

    def sample(self, storage: Storage, batch_size: int) -> tuple[torch.Tensor, dict[NestedKey, Any]]:
        _check_empty(storage)
        slice_len, num_slices = self._split(batch_size)
        order, starts, lengths = self._bounds(storage)
        eligible = self._eligible(lengths, slice_len)
        count = eligible.numel()
        if self.drop_last and num_slices > count:
            raise ValueError(
                f"only {count} trajectories are long enough for {num_slices} slices per batch with "
                "drop_last=True; sample fewer slices, or pass drop_last=False"
            )
        if self._perm is None or self._epoch_key != (count, slice_len):
            self._new_epoch(count)
            self._epoch_key = (count, slice_len)
        assert self._perm is not None
        take = self._perm[self._pos : self._pos + num_slices]
        self._pos += take.numel()
        left = count - self._pos
        if left == 0 or (self.drop_last and left < num_slices):
            self._ran_out = True
            self._new_epoch(count)
            left = count
        else:
            self._ran_out = False
        self._remaining_batches = left // num_slices if self.drop_last else -(-left // num_slices)
        return self._slices(storage, order, starts, lengths, eligible[take], slice_len)

    def _new_epoch(self, count: int) -> None:
        self._perm = torch.randperm(count, generator=self._rng) if self.shuffle else torch.arange(count)
        self._pos = 0

    @property
    def ran_out(self) -> bool:
        return self._ran_out

    @ran_out.setter
    def ran_out(self, value: bool) -> None:
        self._ran_out = bool(value)

    def _empty(self) -> None:
        super()._empty()
        self._perm = None
        self._pos = 0
        self._epoch_key = (0, 0)
        self._ran_out = False

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "perm": self._perm,
            "pos": self._pos,
            "epoch_key": list(self._epoch_key),
            "ran_out": self._ran_out,
        }

    def _check_state_dict(self, state: dict[str, Any]) -> None:
        super()._check_state_dict(state)
        epoch_key = checks.entry(state, "epoch_key")
        if (
            not isinstance(epoch_key, list)
            or len(epoch_key) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in epoch_key)
        ):
            raise checks.StateError(
                "epoch_key", f"must be [trajectories, slice length] (two integers >= 0), got {epoch_key!r}"
            )
        _check_epoch(state, epoch_key[0])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state_dict(state)
        self._perm = None if state["perm"] is None else state["perm"].clone()
        self._pos = int(state["pos"])
        self._epoch_key = (int(state["epoch_key"][0]), int(state["epoch_key"][1]))
        self._ran_out = bool(state["ran_out"])
        self._cache = None
