"""Prioritized experience replay: :class:`PrioritizedSampler` and the priority checks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from tensordict.utils import NestedKey

from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._sampler_base import Sampler, _check_empty, _index_device
from tdrl.data.replay_buffers._segment_tree import SumMinTree
from tdrl.data.replay_buffers.storages import Storage


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
