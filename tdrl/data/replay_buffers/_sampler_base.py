"""The sampler interface and the checks every sampler shares."""

from __future__ import annotations

import os
import sys
import warnings
from abc import ABC, abstractmethod
from typing import Any

import torch
from tensordict.utils import NestedKey

from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._checkpoint import as_json, load_into, save_state
from tdrl.data.replay_buffers.storages import EMPTY_STORAGE_ERROR, Storage


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
