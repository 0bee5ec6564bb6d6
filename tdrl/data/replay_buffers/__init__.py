"""Replay buffers built from a storage, a sampler and a writer.

``ReplayBuffer(storage=LazyTensorStorage(n), sampler=SamplerWithoutReplacement())`` keeps
the last ``n`` items and samples them without replacement; swap any part for another.
``DedupNextStorage(LazyTensorStorage(n))`` stores each observation once rather than twice
(at the root and under ``"next"``).
``RayReplayBuffer(storage=partial(LazyTensorStorage, n))`` serves such a buffer from a Ray
actor, written by collectors in other processes (needs ``pip install "tdrl[ray]"``).
"""

from tdrl.data.replay_buffers.dedup import DedupNextStorage
from tdrl.data.replay_buffers.ray_buffer import RayReplayBuffer
from tdrl.data.replay_buffers.replay_buffers import (
    PrioritizedReplayBuffer,
    ReplayBuffer,
    TensorDictPrioritizedReplayBuffer,
    TensorDictReplayBuffer,
)
from tdrl.data.replay_buffers.samplers import (
    PrioritizedSampler,
    RandomSampler,
    Sampler,
    SamplerWithoutReplacement,
    SliceSampler,
    SliceSamplerWithoutReplacement,
)
from tdrl.data.replay_buffers.storages import (
    LazyMemmapStorage,
    LazyTensorStorage,
    ListStorage,
    Storage,
    TensorStorage,
)
from tdrl.data.replay_buffers.writers import (
    RoundRobinWriter,
    TensorDictMaxValueWriter,
    TensorDictRoundRobinWriter,
    Writer,
)

__all__ = [
    "ReplayBuffer",
    "TensorDictReplayBuffer",
    "PrioritizedReplayBuffer",
    "TensorDictPrioritizedReplayBuffer",
    "RayReplayBuffer",
    "Storage",
    "ListStorage",
    "TensorStorage",
    "LazyTensorStorage",
    "LazyMemmapStorage",
    "DedupNextStorage",
    "Sampler",
    "RandomSampler",
    "SamplerWithoutReplacement",
    "PrioritizedSampler",
    "SliceSampler",
    "SliceSamplerWithoutReplacement",
    "Writer",
    "RoundRobinWriter",
    "TensorDictRoundRobinWriter",
    "TensorDictMaxValueWriter",
]
