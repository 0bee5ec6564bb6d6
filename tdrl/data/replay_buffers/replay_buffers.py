"""Replay buffers: a storage, a sampler, a writer and optional transforms, put together.

- :class:`ReplayBuffer`: any data; ``extend`` / ``add`` / ``sample`` / iterate / index.
- :class:`TensorDictReplayBuffer`: TensorDict data; samples carry ``"index"`` (and the
  sampler's info, e.g. ``"priority_weight"``); priorities are read from a key.
- :class:`PrioritizedReplayBuffer` / :class:`TensorDictPrioritizedReplayBuffer`: the same
  with a :class:`~tdrl.data.replay_buffers.samplers.PrioritizedSampler`.

The whole buffer saves itself with :meth:`ReplayBuffer.dumps` and restores with
:meth:`ReplayBuffer.loads`, without pickle; a checkpoint written for another structure is
refused before anything changes. A buffer also goes through ``pickle`` and
``torch.save`` / ``torch.load(weights_only=False)`` whole (content, sampler and writer
state, generator, prefetch settings), e.g. to hand it to another process.
"""

from __future__ import annotations

from tdrl.data.replay_buffers._replay_buffer import EMPTY_BUFFER_ERROR as EMPTY_BUFFER_ERROR
from tdrl.data.replay_buffers._replay_buffer import ReplayBuffer
from tdrl.data.replay_buffers._tensordict_buffers import (
    PrioritizedReplayBuffer,
    TensorDictPrioritizedReplayBuffer,
    TensorDictReplayBuffer,
)
from tdrl.data.replay_buffers._transform_chain import TransformChain as TransformChain

__all__ = [
    "ReplayBuffer",
    "TensorDictReplayBuffer",
    "PrioritizedReplayBuffer",
    "TensorDictPrioritizedReplayBuffer",
]
