"""prefill_replay_buffer: seed a replay buffer with samples of an offline dataset (TorchRL's helper).

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tdrl.data import LazyTensorStorage, ReplayBuffer, prefill_replay_buffer
    >>> offline = ReplayBuffer(storage=LazyTensorStorage(100))
    >>> _ = offline.extend(TensorDict({"obs": torch.randn(100, 4)}, [100]))
    >>> online = ReplayBuffer(storage=LazyTensorStorage(1000))
    >>> len(prefill_replay_buffer(online, offline, n_samples=60, chunk_size=25))
    60
"""

from __future__ import annotations

from typing import Any

__all__ = ["prefill_replay_buffer"]


def prefill_replay_buffer(rb: Any, dataset: Any, n_samples: int | None = None, chunk_size: int = 1000) -> Any:
    """Copy ``n_samples`` samples drawn from ``dataset`` into ``rb``, ``chunk_size`` at a time.

    The samples are drawn with ``dataset.sample`` (so they follow the dataset's sampler;
    with the default random sampler some items may come twice and others not at all).

    Args:
        rb: the replay buffer to fill (``extend`` is called on it).
        dataset: a replay buffer holding the offline data. TorchRL also takes dataset
            names (``"minari:..."``, ``"d4rl:..."``); tdrl ships no dataset loaders.
        n_samples: how many samples to copy (default: ``len(dataset)``; at most that).
        chunk_size: samples per ``sample``/``extend`` call.

    Returns:
        ``rb``, filled.

    Raises:
        TypeError: when ``dataset`` is a name (no loaders in tdrl) or has no ``sample``.
        ValueError: when ``chunk_size`` or ``n_samples`` is negative or zero chunk size.
    """
    if isinstance(dataset, str):
        raise TypeError(
            f"prefill_replay_buffer: dataset {dataset!r} is a name; tdrl ships no offline dataset loaders "
            "(TorchRL's minari/d4rl). Fix: load the data yourself and pass a ReplayBuffer holding it."
        )
    if not hasattr(dataset, "sample"):
        raise TypeError(
            f"prefill_replay_buffer: dataset must be a replay buffer (with .sample), got a {type(dataset).__name__}."
        )
    if chunk_size < 1:
        raise ValueError(f"prefill_replay_buffer: chunk_size must be >= 1, got {chunk_size}.")
    if n_samples is not None and n_samples < 0:
        raise ValueError(f"prefill_replay_buffer: n_samples must be >= 0, got {n_samples}.")
    total = len(dataset) if n_samples is None else min(n_samples, len(dataset))
    copied = 0
    while copied < total:
        size = min(chunk_size, total - copied)
        rb.extend(dataset.sample(size))
        copied += size
    return rb
