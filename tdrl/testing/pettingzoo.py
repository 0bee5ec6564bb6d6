"""A tiny PettingZoo ``ParallelEnv`` whose agents leave at different times, for the PettingZoo backend's tests.

PettingZoo's own tasks keep every agent until the episode ends; ``relay_env`` does not, so it
exercises what a wrapper writes for agents that are gone (masks, done flags, zeros in place
of stale data) and the info and action-mask paths. It needs pettingzoo (imported on call).

Examples:
    >>> env = relay_env()
    >>> observations, infos = env.reset()
    >>> sorted(observations), observations["runner_1"].tolist()
    (['runner_0', 'runner_1'], [0.0, 1.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["relay_env"]


def relay_env(info_note: bool = True) -> Any:
    """A ``ParallelEnv`` of two runners: ``runner_1`` finishes (terminated) after 2 steps, all stop at 4.

    Each runner observes ``[step, its index]`` (float32) and acts in ``Discrete(3)``, rewarded
    by its action. Its info holds a numeric ``"distance"`` (``10 - step``), an
    ``"action_mask"`` (action 2 is legal from the first step on, not at reset) and, with
    ``info_note``, a string ``"note"`` (non-numeric info a wrapper must skip).

    Args:
        info_note: add the string info entry.

    Returns:
        A new ``pettingzoo.ParallelEnv``; ``reset()`` before stepping it.

    Raises:
        ImportError: when pettingzoo is not installed.

    Examples:
        >>> env = relay_env()
        >>> _ = env.reset()
        >>> _, rewards, terminations, _, _ = env.step({"runner_0": 2, "runner_1": 1})
        >>> _, rewards, terminations, _, _ = env.step({"runner_0": 2, "runner_1": 1})
        >>> rewards, terminations, env.agents
        ({'runner_0': 2.0, 'runner_1': 1.0}, {'runner_0': False, 'runner_1': True}, ['runner_0'])
    """
    import gymnasium
    from pettingzoo import ParallelEnv

    class RelayEnv(ParallelEnv):
        metadata = {"name": "relay_v0"}  # noqa: RUF012 (PettingZoo's class attribute)

        def __init__(self) -> None:
            self.possible_agents = ["runner_0", "runner_1"]
            self.agents: list[str] = []
            self.t = 0

        def observation_space(self, agent: str) -> Any:
            return gymnasium.spaces.Box(-10, 10, (2,), np.float32)

        def action_space(self, agent: str) -> Any:
            return gymnasium.spaces.Discrete(3)

        def _observations(self) -> dict:
            return {
                agent: np.array([self.t, i], np.float32)
                for i, agent in enumerate(self.possible_agents)
                if agent in self.agents
            }

        def _infos(self) -> dict:
            mask = np.array([1, 1, int(self.t > 0)], np.int8)
            info: dict[str, Any] = {"distance": 10.0 - self.t, "action_mask": mask}
            if info_note:
                info["note"] = "a string"
            return {agent: dict(info) for agent in self.agents}

        def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
            self.t, self.agents = 0, list(self.possible_agents)
            return self._observations(), self._infos()

        def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
            self.t += 1
            rewards = {agent: float(actions[agent]) for agent in self.agents}
            terminations = {agent: agent == "runner_1" and self.t == 2 for agent in self.agents}
            truncations = dict.fromkeys(self.agents, self.t == 4)
            observations, infos = self._observations(), self._infos()
            self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
            return observations, rewards, terminations, truncations, infos

    return RelayEnv()
