"""What a transform may know about the batch being sampled: the storage, the positions
drawn and the sampler (for transforms that need the items before each one, e.g. CatFrames).

The replay buffer publishes a :class:`SampleContext` while its transforms run on a sampled
batch; a transform reads it with :func:`current_sample_context`. Outside sampling there is
none, and transforms act on the data alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from tensordict import TensorDictBase

__all__ = [
    "SampleContext",
    "current_sample_context",
    "sampling",
    "sampling_off",
    "needs_trajectories",
    "NEEDS_TRAJECTORIES_ERROR",
]

NEEDS_TRAJECTORIES_ERROR = (
    "{transform} in a replay buffer stacks each sampled item with the items before it in its "
    "trajectory, so the buffer's sampler must know where trajectories start; {sampler} draws "
    "items without regard to trajectories. Fix: pass sampler=SliceSampler(num_slices=..., "
    "traj_key=...) (or end_key=..., or SliceSamplerWithoutReplacement)."
)

_CURRENT: ContextVar[SampleContext | None] = ContextVar("tdrl_sample_context", default=None)


class SampleContext:
    """The storage positions of a sampled batch and how to read the items before them."""

    def __init__(self, storage: Any, index: torch.Tensor, sampler: Any) -> None:
        self.storage = storage
        self.index = index
        self.sampler = sampler
        # the transforms the buffer applied before the one running now (kept up to date by it)
        self.before: Callable[[Any], Any] | None = None

    def history(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions ``[B, length]`` of each sampled item's last ``length`` items in its
        trajectory, oldest first (the item itself last), and whether each lies inside the
        trajectory; before the trajectory's first item, that first item's position is given
        and marked outside.

        Raises:
            ValueError: when the sampler does not know trajectories.
        """
        ranks = getattr(self.sampler, "_time_ranks", None)
        if ranks is None:
            raise ValueError(
                NEEDS_TRAJECTORIES_ERROR.format(transform="a frame-stacking transform", sampler=self.sampler)
            )
        order, rank, starts = ranks(self.storage)
        index = self.index.reshape(-1).cpu()
        position = rank[index]  # in time order
        first = starts[torch.searchsorted(starts, position, right=True) - 1]
        wanted = position.unsqueeze(-1) + torch.arange(1 - length, 1)
        inside = wanted >= first.unsqueeze(-1)
        return order[torch.maximum(wanted, first.unsqueeze(-1))], inside

    def read(self, positions: torch.Tensor, keys: list) -> TensorDictBase:
        """The stored items at ``positions`` (flat), through the transforms applied before."""
        data = self.storage.get(positions)
        if self.before is not None:
            data = self.before(data)
        return data.select(*keys) if isinstance(data, TensorDictBase) else data


def current_sample_context() -> SampleContext | None:
    """The batch being sampled, while a replay buffer runs its transforms on it."""
    return _CURRENT.get()


@contextmanager
def sampling(context: SampleContext) -> Iterator[SampleContext]:
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


def needs_trajectories(transform: Any) -> Any:
    """The first transform inside ``transform`` (itself, or a member of a Compose) that
    stacks items over time, or ``None``."""
    if getattr(transform, "_needs_trajectories", False):
        return transform
    inner = getattr(transform, "transform", None)  # an inverted wrapper
    if inner is not None and inner is not transform:
        return needs_trajectories(inner)
    for member in getattr(transform, "transforms", ()) or ():
        found = needs_trajectories(member)
        if found is not None:
            return found
    return None


@contextmanager
def sampling_off() -> Iterator[None]:
    """No sample context inside (e.g. while earlier transforms map the items read back)."""
    token = _CURRENT.set(None)
    try:
        yield
    finally:
        _CURRENT.reset(token)
