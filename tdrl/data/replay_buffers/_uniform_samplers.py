"""Uniform samplers: with replacement (:class:`RandomSampler`) and by epochs (:class:`SamplerWithoutReplacement`)."""

from __future__ import annotations

from typing import Any

import torch
from tensordict.utils import NestedKey

from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._sampler_base import Sampler, _check_empty, _check_epoch, _index_device
from tdrl.data.replay_buffers.storages import Storage


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
