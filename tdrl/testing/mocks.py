"""Mock environments: small, fast and deterministic, for tests and examples.

- :class:`CountingEnv`: the observation counts steps; done at ``max_steps``.
- :class:`ContinuousActionMock`: a continuous-action env with a known reward.
- :class:`IdentityEnv`: reward for matching the observation (discrete or continuous);
  an agent that learns it proves the learning loop works.
- :class:`NestedKeyMock`: observation and action under nested keys.
- :class:`FailingEnv`: raises after N steps (error paths of collectors and workers).

All of them support a batch size and partial resets through ``"_reset"``.

Examples:
    >>> env = CountingEnv(max_steps=3, batch_size=[2])
    >>> env.rollout(5)["next", "done"].squeeze(-1)
    tensor([[False, False,  True],
            [False, False,  True]])
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.envs.common import EnvBase
from tdrl.specs import Bounded, Categorical, Composite, OneHot, Unbounded

__all__ = ["CountingEnv", "ContinuousActionMock", "IdentityEnv", "NestedKeyMock", "FailingEnv"]


def _reset_mask(env: EnvBase, tensordict: TensorDictBase | None) -> torch.Tensor:
    """A bool mask ``[*B]`` of the sub-envs to reset (all of them without ``"_reset"``)."""
    if tensordict is not None and "_reset" in tensordict.keys():
        return tensordict.get("_reset").reshape(env.batch_size)
    return torch.ones(env.batch_size, dtype=torch.bool, device=env.device)


class _MockBase(EnvBase):
    """Shared seeding: each mock owns a torch.Generator so tests are reproducible."""

    def __init__(self, batch_size: Any = (), device: Any = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.rng = torch.Generator(device="cpu").manual_seed(0)

    def _set_seed(self, seed: int | None) -> None:
        self.rng.manual_seed(0 if seed is None else int(seed))

    def _done(self, terminated: torch.Tensor, truncated: torch.Tensor | None = None) -> dict:
        truncated = torch.zeros_like(terminated) if truncated is None else truncated
        return {"done": terminated | truncated, "terminated": terminated, "truncated": truncated}


class CountingEnv(_MockBase):
    """The observation counts the steps since reset; the episode terminates at ``max_steps``.

    The action (``Categorical(2)``, shape ``[*B, 1]``) is ignored; the reward is 1 per step.

    Args:
        max_steps: the episode length.
        batch_size: the env's batch shape.
        device: where tensors live.

    Examples:
        >>> env = CountingEnv(max_steps=2)
        >>> env.rollout(10)["next", "reward"].sum().item()
        2.0
    """

    def __init__(self, max_steps: int = 5, batch_size: Any = (), device: Any = None) -> None:
        super().__init__(batch_size, device)
        self.max_steps = max_steps
        b = self.batch_size
        self.observation_spec = Composite(observation=Unbounded(shape=(*b, 1)), shape=b)
        self.action_spec = Categorical(2, shape=(*b, 1))
        self.reward_spec = Unbounded(shape=(*b, 1))
        self.count = torch.zeros((*b, 1), device=self.device)

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        mask = _reset_mask(self, tensordict)
        self.count[mask] = 0
        return TensorDict(
            {"observation": self.count.clone(), **self._done(torch.zeros_like(self.count, dtype=torch.bool))},
            self.batch_size,
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self.count += 1
        terminated = self.count >= self.max_steps
        return TensorDict(
            {"observation": self.count.clone(), "reward": torch.ones_like(self.count), **self._done(terminated)},
            self.batch_size,
        )


class ContinuousActionMock(_MockBase):
    """A continuous env: observation in ``[-1, 1]^obs_dim``, action in ``[-1, 1]^action_dim``.

    The reward is ``-||action - observation[:action_dim]||^2`` (a tracking task), the
    observation a random point redrawn each step, and episodes are truncated at ``max_steps``.

    Examples:
        >>> env = ContinuousActionMock(obs_dim=3, action_dim=2)
        >>> env.action_spec.space.high
        tensor([1., 1.])
    """

    def __init__(
        self, obs_dim: int = 3, action_dim: int = 2, max_steps: int = 10, batch_size: Any = (), device: Any = None
    ) -> None:
        super().__init__(batch_size, device)
        if action_dim > obs_dim:
            raise ValueError(f"ContinuousActionMock: action_dim ({action_dim}) must be <= obs_dim ({obs_dim}).")
        b = self.batch_size
        self.max_steps = max_steps
        self.action_dim = action_dim
        self.observation_spec = Composite(observation=Bounded(-1.0, 1.0, shape=(*b, obs_dim)), shape=b)
        self.action_spec = Bounded(-1.0, 1.0, shape=(*b, action_dim))
        self.obs = torch.zeros((*b, obs_dim))
        self.count = torch.zeros((*b, 1))

    def _draw(self) -> torch.Tensor:
        return torch.rand(self.obs.shape, generator=self.rng) * 2 - 1

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        mask = _reset_mask(self, tensordict)
        self.obs[mask] = self._draw()[mask]
        self.count[mask] = 0
        return TensorDict({"observation": self.obs.clone()}, self.batch_size)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        reward = -(action - self.obs[..., : self.action_dim]).pow(2).sum(-1, keepdim=True)
        self.obs = self._draw()
        self.count += 1
        truncated = self.count >= self.max_steps
        return TensorDict(
            {"observation": self.obs.clone(), "reward": reward, **self._done(torch.zeros_like(truncated), truncated)},
            self.batch_size,
        )


class IdentityEnv(_MockBase):
    """Reward 1 for an action that matches the observation: the simplest learnable task.

    Discrete (``n`` classes, one-hot observation, one-hot action ``OneHot(n)``, or
    ``Categorical`` with ``categorical=True``) or continuous (``continuous=True``:
    observation in ``[-1, 1]^n``, reward ``1 - mean|a - o|``). Each episode lasts
    ``episode_length`` steps (truncated); the observation is redrawn every step.

    Examples:
        >>> env = IdentityEnv(n=3)
        >>> td = env.reset()
        >>> td = env.step(td.set("action", td["observation"].bool()))
        >>> td["next", "reward"].item()
        1.0
    """

    def __init__(
        self,
        n: int = 4,
        continuous: bool = False,
        categorical: bool = False,
        episode_length: int = 20,
        batch_size: Any = (),
        device: Any = None,
    ) -> None:
        super().__init__(batch_size, device)
        b = self.batch_size
        self.n, self.continuous, self.categorical = n, continuous, categorical
        self.episode_length = episode_length
        self.observation_spec = Composite(
            observation=Bounded(-1.0, 1.0, shape=(*b, n)) if continuous else Bounded(0.0, 1.0, shape=(*b, n)),
            shape=b,
        )
        if continuous:
            self.action_spec = Bounded(-1.0, 1.0, shape=(*b, n))
        elif categorical:
            self.action_spec = Categorical(n, shape=b)
        else:
            self.action_spec = OneHot(n, shape=(*b, n))
        self.obs = torch.zeros((*b, n))
        self.count = torch.zeros((*b, 1))

    def _draw(self) -> torch.Tensor:
        if self.continuous:
            return torch.rand(self.obs.shape, generator=self.rng) * 2 - 1
        idx = torch.randint(0, self.n, self.batch_size, generator=self.rng)
        return torch.nn.functional.one_hot(idx, self.n).float()

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        mask = _reset_mask(self, tensordict)
        self.obs[mask] = self._draw()[mask]
        self.count[mask] = 0
        return TensorDict({"observation": self.obs.clone()}, self.batch_size)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        if self.continuous:
            reward = 1 - (action - self.obs).abs().mean(-1, keepdim=True)
        else:
            target = self.obs.argmax(-1)
            chosen = action if self.categorical else action.long().argmax(-1)
            reward = (chosen == target).float().unsqueeze(-1)
        self.obs = self._draw()
        self.count += 1
        truncated = self.count >= self.episode_length
        return TensorDict(
            {"observation": self.obs.clone(), "reward": reward, **self._done(torch.zeros_like(truncated), truncated)},
            self.batch_size,
        )


class NestedKeyMock(_MockBase):
    """Observation under ``("data", "states")`` and action under ``("agent", "action")``.

    Examples:
        >>> env = NestedKeyMock()
        >>> env.rollout(2)["next", "data", "states"].shape
        torch.Size([2, 2])
    """

    def __init__(self, max_steps: int = 5, batch_size: Any = (), device: Any = None) -> None:
        super().__init__(batch_size, device)
        b = self.batch_size
        self.max_steps = max_steps
        self.observation_spec = Composite(data=Composite(states=Unbounded(shape=(*b, 2)), shape=b), shape=b)
        self.action_spec = Composite(agent=Composite(action=Bounded(-1.0, 1.0, shape=(*b, 2)), shape=b), shape=b)
        self.state = torch.zeros((*b, 2))
        self.count = torch.zeros((*b, 1))

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        mask = _reset_mask(self, tensordict)
        self.state[mask] = 0
        self.count[mask] = 0
        return TensorDict({("data", "states"): self.state.clone()}, self.batch_size)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self.state = self.state + tensordict.get(("agent", "action"))
        self.count += 1
        terminated = self.count >= self.max_steps
        return TensorDict(
            {
                ("data", "states"): self.state.clone(),
                "reward": -self.state.norm(dim=-1, keepdim=True),
                **self._done(terminated),
            },
            self.batch_size,
        )


class FailingEnv(CountingEnv):
    """A CountingEnv whose ``fail_after``-th step raises ``RuntimeError``.

    Examples:
        >>> env = FailingEnv(fail_after=2)
        >>> env.rollout(5)
        Traceback (most recent call last):
        ...
        RuntimeError: FailingEnv: failing on purpose at step 2
    """

    def __init__(self, fail_after: int = 3, max_steps: int = 100, batch_size: Any = (), device: Any = None) -> None:
        super().__init__(max_steps=max_steps, batch_size=batch_size, device=device)
        self.fail_after = fail_after
        self.steps = 0

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self.steps += 1
        if self.steps >= self.fail_after:
            raise RuntimeError(f"FailingEnv: failing on purpose at step {self.steps}")
        return super()._step(tensordict)
