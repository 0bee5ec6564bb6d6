"""MaskedDiscreteEnv: a discrete-action mock whose legal actions change at every step.

Used by the ``ActionMask`` tests and examples: each of ``n`` actions can be taken once
per episode (a tiny board game), so the mask shrinks at each step and a random draw that
ignored it would be caught at once (an illegal move earns reward ``-1``).
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.envs.common import EnvBase
from tdrl.specs import Binary, Categorical, Composite, OneHot, Unbounded

__all__ = ["MaskedDiscreteEnv"]


class MaskedDiscreteEnv(EnvBase):
    """``n`` actions, each legal once per episode; the episode ends when none is left.

    The observation is the mask as floats; ``"action_mask"`` (bool ``[*B, n]``) says which
    actions are still legal. A legal action earns ``+1`` and is then masked out; an illegal
    one earns ``-1`` and changes nothing. Deterministic given the actions.

    Args:
        n: the number of actions.
        one_hot: write the action spec as ``OneHot(n)`` instead of ``Categorical(n)``.
        batch_size: the env's batch shape.

    Examples:
        >>> env = MaskedDiscreteEnv(n=3)
        >>> td = env.reset()
        >>> td["action_mask"]
        tensor([True, True, True])
        >>> td["action"] = torch.tensor(1)
        >>> env.step(td)["next", "action_mask"]
        tensor([ True, False,  True])
    """

    def __init__(self, n: int = 4, one_hot: bool = False, batch_size: Any = ()) -> None:
        super().__init__(batch_size=batch_size)
        b = self.batch_size
        self.n, self.one_hot = int(n), one_hot
        self.observation_spec = Composite(
            observation=Unbounded(shape=(*b, self.n)),
            action_mask=Binary(n=self.n, shape=(*b, self.n), dtype=torch.bool),
            shape=b,
        )
        self.action_spec = OneHot(self.n, shape=(*b, self.n)) if one_hot else Categorical(self.n, shape=b)
        self.reward_spec = Unbounded(shape=(*b, 1))
        self.mask = torch.ones((*b, self.n), dtype=torch.bool)

    def _set_seed(self, seed: int | None) -> None:
        del seed  # deterministic

    def _out(self) -> dict:
        return {"observation": self.mask.float(), "action_mask": self.mask.clone()}

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        if tensordict is not None and "_reset" in tensordict.keys():
            which = tensordict.get("_reset").reshape(*self.batch_size, 1)
            self.mask = torch.where(which, torch.ones_like(self.mask), self.mask)
        else:
            self.mask = torch.ones_like(self.mask)
        return TensorDict(self._out(), self.batch_size)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        index = action.long().argmax(-1) if self.one_hot else action.long()
        chosen = torch.nn.functional.one_hot(index, self.n).bool()
        legal = (self.mask & chosen).any(-1, keepdim=True)
        self.mask = self.mask & ~chosen
        terminated = ~self.mask.any(-1, keepdim=True)
        out = self._out()
        out.update(
            reward=torch.where(legal, 1.0, -1.0),
            done=terminated.clone(),
            terminated=terminated,
            truncated=torch.zeros_like(terminated),
        )
        return TensorDict(out, self.batch_size)
