"""A multi-agent mock env with TorchRL's group layout: entries of ``n_agents`` agents under ``"agents"``.

:class:`MultiAgentNavigationMock` is a small cooperative navigation task. Each agent lives
on a plane, observes its position and the offset to its own target, and moves by its
action. Its reward is how much closer it got to its target this step, plus a share of the
team's progress, so that a policy which steps toward the observed offset is optimal and
PPO learns it in a few thousand frames.

The layout follows TorchRL's multi-agent envs (VMAS, PettingZoo): per-agent entries under
the group ``"agents"`` with shape ``[*batch, n_agents, ...]`` and the env's done flags at
the top level, shape ``[*batch, 1]``.

Examples:
    >>> env = MultiAgentNavigationMock(n_agents=2, batch_size=[4])
    >>> td = env.rollout(3)
    >>> td["next", "agents", "reward"].shape, td["next", "done"].shape
    (torch.Size([4, 3, 2, 1]), torch.Size([4, 3, 1]))
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.specs import Bounded, Categorical, Composite, Unbounded
from tdrl.testing.mocks import _MockBase, _reset_mask

__all__ = ["MultiAgentNavigationMock"]

# The discrete actions: stay, +x, -x, +y, -y (VMAS's order).
_MOVES = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])


class MultiAgentNavigationMock(_MockBase):
    """``n_agents`` agents in the group ``"agents"``, each rewarded for moving toward its target.

    Entries (``B`` is the env's batch size, ``n`` the number of agents):

    - ``("agents", "observation")``: ``[*B, n, 4]``, the agent's position and the offset
      from it to its target;
    - ``("agents", "action")``: ``[*B, n, 2]`` in ``[-1, 1]`` (a velocity), or with
      ``categorical_actions=True`` ``[*B, n]`` in ``{0..4}`` (stay, +x, -x, +y, -y);
    - ``("agents", "reward")``: ``[*B, n, 1]``, the agent's progress toward its target
      this step plus ``shared_reward`` times the team's mean progress;
    - ``("agents", "done" | "terminated" | "truncated")``: ``[*B, n, 1]``; an agent
      terminates when it is within ``radius`` of its target, then stays still with zero reward;
    - ``"done"``, ``"terminated"``, ``"truncated"``: ``[*B, 1]``; the env terminates when
      every agent has, and is truncated at ``max_steps``.

    Targets are drawn at every reset, so episodes vary in length.

    Args:
        n_agents: the number of agents in the group.
        categorical_actions: discrete actions (``Categorical(5)``) instead of continuous ones.
        max_steps: the episode's step limit (truncation).
        step_size: how far an action of norm 1 moves an agent.
        radius: the distance to the target at which an agent is done.
        shared_reward: the weight of the team's mean progress in each agent's reward.
        batch_size: the env's batch shape (``[n_envs]`` for a vectorised env like VMAS).
        device: where tensors live.

    Raises:
        ValueError: ``n_agents`` < 1 or ``max_steps`` < 1.

    Examples:
        >>> env = MultiAgentNavigationMock(n_agents=3)
        >>> td = env.reset()
        >>> td["agents", "observation"].shape
        torch.Size([3, 4])
        >>> td["agents", "action"] = td["agents", "observation"][..., 2:].clamp(-1, 1)
        >>> bool((env.step(td)["next", "agents", "reward"] > 0).all())
        True
    """

    def __init__(
        self,
        n_agents: int = 2,
        categorical_actions: bool = False,
        max_steps: int = 20,
        step_size: float = 0.25,
        radius: float = 0.2,
        shared_reward: float = 0.5,
        batch_size: Any = (),
        device: Any = None,
    ) -> None:
        if n_agents < 1:
            raise ValueError(f"MultiAgentNavigationMock: n_agents must be >= 1, got {n_agents}.")
        if max_steps < 1:
            raise ValueError(f"MultiAgentNavigationMock: max_steps must be >= 1, got {max_steps}.")
        super().__init__(batch_size, device)
        b, n = self.batch_size, n_agents
        self.n_agents = n_agents
        self.categorical_actions = categorical_actions
        self.max_steps, self.step_size, self.radius, self.shared_reward = max_steps, step_size, radius, shared_reward
        self.group = "agents"
        self.observation_spec = Composite(
            agents=Composite(observation=Unbounded(shape=(*b, n, 4)), shape=(*b, n)), shape=b
        )
        action = Categorical(5, shape=(*b, n)) if categorical_actions else Bounded(-1.0, 1.0, shape=(*b, n, 2))
        self.action_spec = Composite(agents=Composite(action=action, shape=(*b, n)), shape=b)
        self.reward_spec = Composite(agents=Composite(reward=Unbounded(shape=(*b, n, 1)), shape=(*b, n)), shape=b)
        flag = Categorical(2, shape=(*b, 1), dtype=torch.bool)
        agent_flag = Categorical(2, shape=(*b, n, 1), dtype=torch.bool)
        names = ("done", "terminated", "truncated")
        self.done_spec = Composite(
            {
                **{k: flag.clone() for k in names},
                "agents": Composite({k: agent_flag.clone() for k in names}, shape=(*b, n)),
            },
            shape=b,
        )
        self.pos = torch.zeros((*b, n, 2), device=self.device)
        self.target = torch.zeros((*b, n, 2), device=self.device)
        self.arrived = torch.zeros((*b, n, 1), dtype=torch.bool, device=self.device)
        self.count = torch.zeros((*b, 1), device=self.device)
        self.moves = _MOVES.to(self.device)

    @property
    def group_map(self) -> dict[str, list[str]]:
        """The agents of each group, as TorchRL's multi-agent envs expose it."""
        return {self.group: [f"agent_{i}" for i in range(self.n_agents)]}

    def _observation(self) -> torch.Tensor:
        return torch.cat([self.pos, self.target - self.pos], dim=-1)

    def _flags(self, arrived: torch.Tensor, truncated: torch.Tensor) -> tuple[dict, dict]:
        """Per-agent and env-level done flags; ``truncated`` is ``[*B, 1]``."""
        terminated = arrived.all(-2)
        agent_truncated = truncated.unsqueeze(-2).expand_as(arrived) & ~arrived
        agents = {"done": arrived | agent_truncated, "terminated": arrived.clone(), "truncated": agent_truncated}
        env_level = {"done": terminated | truncated, "terminated": terminated, "truncated": truncated & ~terminated}
        return env_level, agents

    def _output(self, agents: dict, env_level: dict) -> TensorDictBase:
        group = TensorDict(agents, batch_size=(*self.batch_size, self.n_agents), device=self.device)
        return TensorDict({"agents": group, **env_level}, self.batch_size, device=self.device)

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        mask = _reset_mask(self, tensordict)
        shape = self.pos.shape
        self.pos[mask] = (torch.rand(shape, generator=self.rng) * 2 - 1).to(self.device)[mask]
        self.target[mask] = (torch.rand(shape, generator=self.rng) * 2 - 1).to(self.device)[mask]
        self.arrived[mask] = False
        self.count[mask] = 0
        env_level, agents = self._flags(self.arrived, torch.zeros_like(self.count, dtype=torch.bool))
        return self._output({"observation": self._observation(), **agents}, env_level)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(("agents", "action"))
        if self.categorical_actions:
            velocity = self.moves[action.long()]
        else:
            velocity = action.clamp(-1.0, 1.0)
        before = (self.target - self.pos).norm(dim=-1, keepdim=True)
        moving = ~self.arrived
        self.pos = self.pos + self.step_size * velocity * moving
        after = (self.target - self.pos).norm(dim=-1, keepdim=True)
        progress = (before - after) * moving
        reward = progress + self.shared_reward * progress.mean(-2, keepdim=True)
        self.arrived = self.arrived | (after < self.radius)
        self.count += 1
        env_level, agents = self._flags(self.arrived, self.count >= self.max_steps)
        return self._output({"observation": self._observation(), "reward": reward, **agents}, env_level)
