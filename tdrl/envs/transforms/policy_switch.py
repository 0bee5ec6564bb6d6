"""ConditionalPolicySwitch: let another policy (an opponent, a scripted controller) act when a condition holds.

Examples:
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.testing import CountingEnv
    >>> def opponent(td):
    ...     return td.set("action", td["observation"].new_ones(1).long())
    >>> env = TransformedEnv(
    ...     CountingEnv(max_steps=20), ConditionalPolicySwitch(opponent, lambda td: td["observation"] % 2 == 1)
    ... )
    >>> env.rollout(3)["next", "observation"].squeeze(-1)  # the opponent plays every odd step
    tensor([2., 4., 6.])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform

__all__ = ["ConditionalPolicySwitch"]

_PARTIAL = (
    "ConditionalPolicySwitch: the condition holds for some sub-envs of the batch and not for others ({cond}); "
    "tdrl runs the other policy on whole batches only. Fix: make the condition agree across the batch, or "
    "use one env per player turn order."
)


class ConditionalPolicySwitch(Transform):
    """After a step (or a reset) whose output satisfies ``condition``, let ``policy`` act and step the env again.

    The env's caller then sees the output of that second step, as if the other policy's
    move were part of the environment: e.g. an opponent in a two-player game plays its
    turn inside ``env.step``. The switch acts on the env made of the base env and the
    transforms before this one (place it last, so that ``policy`` sees the transformed
    data). A reset whose output satisfies ``condition`` also lets ``policy`` act, and
    returns the state after its move (without reward).

    A step that ends an episode is returned as it is. The condition must hold for the whole
    batch or for none of it (a partial switch on a batch is refused).

    Args:
        policy: ``policy(tensordict) -> tensordict`` writing the action.
        condition: ``condition(tensordict) -> bool | Tensor`` on the step's output (a
            bool, a one-element tensor, or a tensor of the env's batch shape).

    Raises:
        RuntimeError: when the condition returns something else, holds for part of a
            batch, or the transform is called outside an env.

    Examples:
        >>> import torch
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> def opponent(td):
        ...     return td.set("action", torch.ones(2, 1, dtype=torch.long))
        >>> switch = ConditionalPolicySwitch(opponent, lambda td: td["observation"] == 1)
        >>> env = TransformedEnv(CountingEnv(max_steps=20, batch_size=[2]), switch)
        >>> env.rollout(2)["next", "observation"].squeeze(-1)
        tensor([[2., 3.],
                [2., 3.]])
    """

    time_vectorizable = False
    policy: Callable[[TensorDictBase], TensorDictBase]

    def __init__(
        self,
        policy: Callable[[TensorDictBase], TensorDictBase],
        condition: Callable[[TensorDictBase], Any],
    ) -> None:
        super().__init__()
        self.__dict__["policy"] = policy  # not a submodule: the policy's parameters are not the env's
        self.condition = condition

    def _holds(self, tensordict: TensorDictBase) -> bool:
        """Whether ``condition`` holds for the whole batch (False if for none of it)."""
        cond = self.condition(tensordict)
        if isinstance(cond, bool):
            return cond
        if not isinstance(cond, torch.Tensor):
            raise RuntimeError(
                f"ConditionalPolicySwitch: condition returned {type(cond).__name__}; it must return a bool or a "
                "bool tensor."
            )
        batch = tuple(tensordict.batch_size)
        if cond.numel() != 1 and tuple(cond.shape) not in (batch, (*batch, 1)):
            raise RuntimeError(
                f"ConditionalPolicySwitch: condition returned shape {tuple(cond.shape)}; it must hold one element or "
                f"have the batch shape {batch}."
            )
        cond = cond.bool()
        if bool(cond.all()):
            return True
        if bool(cond.any()):
            raise RuntimeError(_PARTIAL.format(cond=cond.flatten().tolist()))
        return False

    def _parent(self) -> Any:
        parent = self.parent
        if parent is None:
            raise RuntimeError("ConditionalPolicySwitch acts inside an env. Fix: attach it (TransformedEnv(env, ...)).")
        return parent

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        if not self._holds(next_tensordict):
            return next_tensordict
        done = next_tensordict.get("done", None)
        if done is not None and bool(done.any()):
            if next_tensordict.numel() <= 1 or bool(done.all()):
                return next_tensordict  # the episode ended: nobody plays
            raise RuntimeError(_PARTIAL.format(cond="some sub-envs are done"))
        from tdrl.envs.utils import step_mdp

        parent = self._parent()
        after = self.policy(step_mdp(tensordict.copy().set("next", next_tensordict), reward_keys=parent.reward_keys))
        return parent._step(after)

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        if not self._holds(tensordict_reset):
            return tensordict_reset
        parent = self._parent()
        after = self.policy(tensordict_reset.copy())
        out = parent._step(after)
        for key in parent.reward_keys:
            if key in out.keys(True, True):
                del out[key]
        return out

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise RuntimeError(
            "ConditionalPolicySwitch acts on an env's steps and resets. Fix: attach it (TransformedEnv(env, ...))."
        )

    forward = _call

    def __repr__(self) -> str:
        return f"ConditionalPolicySwitch(policy={self.policy!r}, condition={self.condition!r})"
