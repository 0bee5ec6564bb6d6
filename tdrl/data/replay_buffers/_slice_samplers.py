"""Slices of stored trajectories: :class:`SliceSampler` and :class:`SliceSamplerWithoutReplacement`."""

from __future__ import annotations

from typing import Any, cast

import torch
from tensordict.utils import NestedKey, unravel_key

from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._sampler_base import Sampler, _check_empty, _check_epoch, _index_device
from tdrl.data.replay_buffers._trajectories import (
    resolve_traj_keys,
    slice_positions,
    trajectory_bounds,
)
from tdrl.data.replay_buffers.storages import Storage, TensorStorage


def _replace_last(key: NestedKey, name: str) -> NestedKey:
    return name if isinstance(key, str) else (*key[:-1], name)


def _checked_key(key: Any, name: str) -> NestedKey:
    """``key`` unravelled, or a TypeError naming ``name`` when it is not a key."""
    if isinstance(key, str) or (isinstance(key, tuple) and key and all(isinstance(k, (str, tuple)) for k in key)):
        return unravel_key(key)
    raise TypeError(
        f"SliceSampler: {name} must be a key (a string or a tuple of strings) or None, got {key!r}; "
        f'pass e.g. {name}="is_init"'
    )


class SliceSampler(Sampler):
    """Contiguous slices of stored trajectories; a slice never crosses a boundary.

    A batch of ``batch_size`` items is made of ``num_slices`` slices of
    ``batch_size // num_slices`` steps (or of ``slice_len`` steps, ``batch_size //
    slice_len`` slices). Each slice picks a trajectory uniformly among those long
    enough, then a uniform start inside it. Trajectories are told apart by ``traj_key``
    (an id per item) or ``end_key`` (an end flag); without either, the sampler uses
    ``("collector", "traj_ids")`` or ``"episode"`` when stored, else ``("next", "done")``.
    ``info`` marks the last step of each slice as truncated (and done) under
    ``truncated_key``, so value estimators never bootstrap across slices, and the first
    step of each slice under ``init_key`` (OR-ed with the stored flags), so a recurrent
    module restarts from the stored hidden state at every slice start instead of
    carrying its state from one slice into the next.

    Args:
        num_slices: slices per batch (exclusive with ``slice_len``).
        slice_len: steps per slice (exclusive with ``num_slices``).
        end_key: key of the end-of-trajectory flag.
        traj_key: key of the trajectory id.
        cache_values: accepted for TorchRL compatibility; boundaries are always cached
            until the next write.
        truncated_key: where ``info`` marks slice ends (``None``: not at all).
        init_key: where ``info`` marks slice starts (default ``"is_init"``, the key
            :class:`~tdrl.envs.InitTracker` writes). The marks are written only when the
            storage holds that key, OR-ed with the stored flags so resets inside a slice
            stay marked; ``None`` leaves the stored flags as they are.
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

        With an ``"is_init"`` entry in the data, every slice starts with ``True``:

        >>> flags = LazyTensorStorage(100)
        >>> no_reset = torch.zeros(10, 1, dtype=torch.bool)
        >>> flags.set(slice(0, 10), TensorDict({"episode": episode, "is_init": no_reset}, [10]))
        >>> index, info = SliceSampler(slice_len=4, traj_key="episode").sample(flags, 8)
        >>> info["is_init"].squeeze(-1).tolist()
        [True, False, False, False, True, False, False, False]
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
        init_key: NestedKey | None = "is_init",
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
        self.init_key = None if init_key is None else _checked_key(init_key, "init_key")
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
        if self.init_key is not None:
            info.update(self._start_marks(storage, index, span))
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

    def _start_marks(self, storage: Storage, index: torch.Tensor, span: torch.Tensor) -> dict[NestedKey, torch.Tensor]:
        """The stored ``init_key`` flags of the sampled steps, with each slice's first step set.

        Nothing when the storage does not hold ``init_key``: without an ``InitTracker`` the
        data says nothing about resets, and a new entry would only mark slice starts.
        """
        key = self.init_key
        assert key is not None
        if not getattr(storage, "_has_key", lambda k: False)(key):
            return {}
        stored = cast(TensorStorage, storage)._leaf(key)
        if stored.dtype.is_floating_point or stored.dtype.is_complex:
            raise ValueError(
                f"SliceSampler: the stored {key!r} entry has dtype {stored.dtype}, expected bool (the flags "
                "InitTracker writes); store it as bool, or pass init_key=None (or another key) to the sampler"
            )
        marks = stored[index.to(stored.device)].cpu()  # a new tensor: the storage is not written
        marks[torch.cumsum(span, 0) - span] = True
        return {key: marks}

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
        num_slices, slice_len, end_key, traj_key, truncated_key, init_key, strict_length:
            as in :class:`SliceSampler`.
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
        init_key: NestedKey | None = "is_init",
        strict_length: bool = True,
        shuffle: bool = True,
    ) -> None:
        super().__init__(
            num_slices=num_slices,
            slice_len=slice_len,
            end_key=end_key,
            traj_key=traj_key,
            truncated_key=truncated_key,
            init_key=init_key,
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
