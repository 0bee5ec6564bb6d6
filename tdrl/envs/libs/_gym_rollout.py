"""A policy-free rollout of one gymnasium env that writes straight into preallocated tensors.

``env.rollout(n)`` without a policy steps the env with random actions; the generic loop builds
two TensorDicts per step and copies each leaf into the result. Here the actions are drawn for
every step at once (by :class:`~tdrl.envs.libs.gym.GymWrapper`, which also decides whether this
path applies), gymnasium's numpy results are written into one tensor per entry through its numpy
view, and the TensorDicts are built once at the end. The result equals the generic loop's for
the same actions (tested in ``tests/envs/test_env_rollout.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase

from tdrl._compat import td_unchecked

__all__: list[str] = []


def _fill_rollout(
    step: Callable[[Any], tuple],
    reset: Callable[[], tuple],
    obs0: torch.Tensor,
    actions: torch.Tensor,
    env_actions: Sequence[Any] | np.ndarray,
    max_steps: int,
    break_when_any_done: bool,
) -> TensorDictBase:
    """Steps ``step`` with ``env_actions[t]`` from the observation ``obs0``; returns the ``[T]`` rollout.

    Args:
        step: the gymnasium env's ``step``.
        reset: its ``reset``, called after a done step unless ``break_when_any_done``.
        obs0: the observation the rollout starts from (the reset's).
        actions: the actions as tdrl writes them (``[max_steps, *action_shape]``).
        env_actions: the same actions as gymnasium takes them, one per step.
        max_steps: the number of steps.
        break_when_any_done: stop after the first done step (the result is then shorter).
    """
    observation = torch.empty((max_steps, *obs0.shape), dtype=obs0.dtype)
    next_obs = torch.empty_like(observation)
    reward = torch.empty((max_steps, 1), dtype=torch.float32)
    term = torch.zeros((max_steps, 1), dtype=torch.bool)
    trunc = torch.zeros((max_steps, 1), dtype=torch.bool)
    root_np, obs_np = observation.numpy(), next_obs.numpy()
    rew_np, term_np, trunc_np = reward.numpy(), term.numpy(), trunc.numpy()
    current = obs0.numpy()
    n = max_steps
    for t in range(max_steps):
        root_np[t] = current
        current, r, te, tr, _ = step(env_actions[t])
        obs_np[t] = current
        rew_np[t] = r
        if te or tr:
            term_np[t] = te
            trunc_np[t] = tr
            if break_when_any_done:
                n = t + 1
                break
            current, _ = reset()
    if n < max_steps:
        observation, actions, next_obs, reward, term, trunc = (
            x[:n].clone() for x in (observation, actions, next_obs, reward, term, trunc)
        )
    batch = torch.Size([n])
    root_done = torch.zeros((n, 1), dtype=torch.bool)
    nxt = td_unchecked(
        {"observation": next_obs, "reward": reward, "done": term | trunc, "terminated": term, "truncated": trunc},
        batch,
    )
    return td_unchecked(
        {
            "observation": observation,
            "action": actions,
            "done": root_done,
            "terminated": root_done.clone(),
            "truncated": root_done.clone(),
            "next": nxt,
        },
        batch,
    )
