"""Fixtures for the replay-buffer tests: MuJoCo-like transitions built from plain tensors."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict


def transitions(n: int, start: int = 0, *, obs_dim: int = 3, episode_len: int | None = None) -> TensorDict:
    """``n`` transitions whose entries encode their global step ``start + i``.

    ``observation[:, 0]`` and ``("next", "observation")[:, 0] - 1`` equal the step, so a
    sampled row tells which stored item it came from. With ``episode_len``, the episode
    id is ``step // episode_len`` and the last step of each episode is done.
    """
    step = torch.arange(start, start + n)
    obs = step.double().unsqueeze(-1).expand(n, obs_dim).clone()
    done = torch.zeros(n, 1, dtype=torch.bool)
    episode = torch.zeros(n, dtype=torch.long)
    if episode_len is not None:
        done[:, 0] = (step + 1) % episode_len == 0
        episode = step // episode_len
    return TensorDict(
        {
            "observation": obs,
            "action": torch.randn(n, 2),
            "episode": episode,
            "next": {
                "observation": obs + 1,
                "reward": step.float().unsqueeze(-1),
                "done": done,
                "terminated": done.clone(),
                "truncated": torch.zeros(n, 1, dtype=torch.bool),
            },
        },
        [n],
    )


@pytest.fixture
def make_transitions():
    return transitions
