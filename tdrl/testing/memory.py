"""A partially observed mock env: a cue shown once must be recalled later.

:class:`RecallEnv` is the smallest task on which a recurrent policy beats a feed-forward
one: the cue is visible only at the first step, and the reward comes from the action at
the last step, where the observation is the same whatever the cue was. A feed-forward
policy can do no better than chance there; a policy with memory gets the full reward.

Examples:
    >>> env = RecallEnv(n_cues=3, delay=2, batch_size=[2])
    >>> _ = env.set_seed(0)
    >>> data = env.rollout(3)
    >>> data["observation"][0]  # the cue (one-hot), then blanks, then the query flag
    tensor([[0., 0., 1., 0.],
            [0., 0., 0., 0.],
            [0., 0., 0., 1.]])
    >>> data["next", "done"][0].squeeze(-1)
    tensor([False, False,  True])
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.specs import Bounded, Categorical, Composite, Unbounded
from tdrl.testing.mocks import _MockBase, _reset_mask

__all__ = ["RecallEnv"]


class RecallEnv(_MockBase):
    """Recall a cue after a delay: a memory task that a feed-forward policy cannot solve.

    An episode lasts ``delay + 1`` steps. At the first step the observation holds the cue
    (one of ``n_cues``, one-hot); at the next ``delay - 1`` steps it is all zeros; at the
    last step only its final entry (the query flag) is 1. The action (``Categorical(n_cues)``,
    shape ``[*B]``) is ignored except at the last step, where it earns reward 1 if it names
    the cue and 0 otherwise; the episode then terminates. The best return is 1, a policy
    without memory expects ``1 / n_cues``.

    Cues are drawn from the env's own generator, so a seeded env repeats its episodes.

    Args:
        n_cues: how many cues there are (the action space's size), at least 2.
        delay: steps from the cue to the query, at least 1.
        batch_size: the env's batch shape.
        device: where tensors live.

    Raises:
        ValueError: ``n_cues`` < 2 or ``delay`` < 1.

    Examples:
        >>> env = RecallEnv(n_cues=2, delay=1)
        >>> _ = env.set_seed(1)
        >>> td = env.reset()
        >>> cue = td["observation"][:2].argmax()
        >>> td = env.step(td.set("action", torch.zeros((), dtype=torch.long)))
        >>> td = env.step(td["next"].set("action", cue))
        >>> td["next", "reward"].item(), td["next", "terminated"].item()
        (1.0, True)
    """

    def __init__(self, n_cues: int = 2, delay: int = 3, batch_size: Any = (), device: Any = None) -> None:
        if not isinstance(n_cues, int) or n_cues < 2:
            raise ValueError(f"RecallEnv: n_cues must be an integer >= 2 (one cue is no task), got {n_cues!r}.")
        if not isinstance(delay, int) or delay < 1:
            raise ValueError(f"RecallEnv: delay must be an integer >= 1 (steps from cue to query), got {delay!r}.")
        super().__init__(batch_size, device)
        b = self.batch_size
        self.n_cues, self.delay = n_cues, delay
        self.observation_spec = Composite(observation=Bounded(0.0, 1.0, shape=(*b, n_cues + 1)), shape=b)
        self.action_spec = Categorical(n_cues, shape=b)
        self.reward_spec = Unbounded(shape=(*b, 1))
        self.cue = torch.zeros(b, dtype=torch.long, device=self.device)
        self.count = torch.zeros((*b, 1), dtype=torch.long, device=self.device)

    def _observation(self) -> torch.Tensor:
        obs = torch.zeros((*self.batch_size, self.n_cues + 1), device=self.device)
        first = self.count.squeeze(-1) == 0
        obs[..., : self.n_cues] = torch.nn.functional.one_hot(self.cue, self.n_cues).float() * first.unsqueeze(-1)
        obs[..., self.n_cues] = (self.count.squeeze(-1) == self.delay).float()
        return obs

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        mask = _reset_mask(self, tensordict)
        cues = torch.randint(0, self.n_cues, self.batch_size, generator=self.rng).to(self.device)
        self.cue[mask] = cues[mask]
        self.count[mask] = 0
        terminated = torch.zeros_like(self.count, dtype=torch.bool)
        return TensorDict({"observation": self._observation(), **self._done(terminated)}, self.batch_size)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action").reshape(self.batch_size)
        query = self.count == self.delay
        reward = (query & (action == self.cue).unsqueeze(-1)).float()
        self.count = self.count + 1
        terminated = self.count > self.delay
        return TensorDict(
            {"observation": self._observation(), "reward": reward, **self._done(terminated)}, self.batch_size
        )
