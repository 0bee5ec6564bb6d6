"""GAE for a team of agents: per-agent values, team-level rewards and done flags."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tdrl.objectives.value.advantages import GAE

__all__ = ["MultiAgentGAE"]


class MultiAgentGAE(GAE):
    """:class:`~tdrl.objectives.value.GAE` for per-agent values and shared (team) step signals.

    In cooperative multi-agent envs (VMAS, PettingZoo groups) the critic often writes one
    value per agent, ``[*B, T, n_agents, 1]``, while the reward and done flags are the
    team's, ``[*B, T, 1]``. The step signals that lack the agent dim are repeated along it
    (signals that have it, e.g. competitive per-agent rewards, are used as they are), and
    the advantage and value target come out per agent. ``average_gae`` standardizes each
    agent's advantages separately.

    Args:
        agent_dim: the agents' dim in the value tensor (negative: counted from its end).
            Default ``-2``, :class:`~tdrl.modules.MultiAgentMLP`'s layout.
        **kwargs: :class:`~tdrl.objectives.value.GAE`'s arguments.

    Raises:
        ValueError: (when called) a step signal has neither the value's number of dims
            nor one fewer.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> done = torch.zeros(1, 3, 1, dtype=torch.bool)
        >>> data = TensorDict({"state_value": torch.zeros(1, 3, 2, 1),
        ...     "next": {"state_value": torch.zeros(1, 3, 2, 1), "reward": torch.ones(1, 3, 1), "done": done,
        ...              "terminated": done}}, [1, 3])
        >>> gae = MultiAgentGAE(gamma=1.0, lmbda=1.0, value_network=None)
        >>> gae(data)["advantage"].shape, data["advantage"][0, :, 0, 0]
        (torch.Size([1, 3, 2, 1]), tensor([3., 2., 1.]))
    """

    def __init__(self, *, agent_dim: int = -2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.agent_dim = agent_dim
        self._standardize_per_agent = self.average_gae
        self.average_gae = False  # standardized here, per agent, instead of over everything

    def _agent_dim(self, value: Tensor) -> int:
        return self.agent_dim % value.ndim

    def _to_agents(self, signal: Tensor, value: Tensor, name: str) -> Tensor:
        if signal.ndim == value.ndim:
            return signal
        if signal.ndim != value.ndim - 1:
            raise ValueError(
                f"MultiAgentGAE: {name} has shape {tuple(signal.shape)}; expected the value's shape "
                f"{tuple(value.shape)} (per agent) or that shape without the agent dim {self.agent_dim} (team)."
            )
        dim = self._agent_dim(value)
        expanded = signal.unsqueeze(dim)
        return expanded.expand(*expanded.shape[:dim], value.shape[dim], *expanded.shape[dim + 1 :])

    def _check_value_shape(self, value: Tensor, reward_shape: torch.Size) -> None:
        if value.ndim == len(reward_shape) + 1:
            dim = self._agent_dim(value)
            reward_shape = torch.Size((*reward_shape[:dim], value.shape[dim], *reward_shape[dim:]))
        super()._check_value_shape(value, reward_shape)

    def _estimate(self, value, next_value, reward, done, terminated, gamma, time_dim):
        reward = self._to_agents(reward, value, "the reward")
        done = self._to_agents(done, value, "done")
        terminated = self._to_agents(terminated, value, "terminated")
        if isinstance(gamma, Tensor) and gamma.ndim:
            gamma = self._to_agents(gamma, value, "gamma")
        advantage, value_target = super()._estimate(value, next_value, reward, done, terminated, gamma, time_dim)
        if self._standardize_per_agent:
            dims = [d for d in range(advantage.ndim) if d != self._agent_dim(advantage)]
            loc = advantage.mean(dim=dims, keepdim=True)
            scale = advantage.std(dim=dims, keepdim=True).clamp_min(1e-4)
            advantage = (advantage - loc) / scale
        return advantage, value_target
