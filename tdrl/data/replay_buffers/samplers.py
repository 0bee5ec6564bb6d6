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

from tdrl.data.replay_buffers._prioritized_sampler import PrioritizedSampler, check_priorities
from tdrl.data.replay_buffers._sampler_base import Sampler
from tdrl.data.replay_buffers._slice_samplers import SliceSampler, SliceSamplerWithoutReplacement
from tdrl.data.replay_buffers._uniform_samplers import RandomSampler, SamplerWithoutReplacement

__all__ = [
    "Sampler",
    "RandomSampler",
    "SamplerWithoutReplacement",
    "PrioritizedSampler",
    "SliceSampler",
    "SliceSamplerWithoutReplacement",
    "check_priorities",
]
