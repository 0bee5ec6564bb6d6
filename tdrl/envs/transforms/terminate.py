"""TerminateTransform: end an episode when a condition of the step's output holds.

Examples:
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.testing import CountingEnv
    >>> env = TransformedEnv(CountingEnv(max_steps=10), TerminateTransform(lambda nxt: nxt["observation"] >= 3))
    >>> env.rollout(10)["next", "observation"].squeeze(-1)
    tensor([1., 2., 3.])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform, _key_tuple, _slot
from tdrl.specs import Composite

__all__ = ["TerminateTransform"]


class TerminateTransform(Transform):
    """Set ``terminated`` (and ``done``) after a step for which ``stop(next_tensordict)`` is true.

    After each step, ``stop`` receives the step's output (the ``"next"`` TensorDict, after
    the transforms before this one) and returns a bool, or a bool tensor that broadcasts
    to the done flags (e.g. ``[*B]`` or ``[*B, 1]``). Where it is true, every
    ``terminated`` flag, and (with ``write_done``) every ``done`` flag, of the env is set;
    ``truncated`` flags are left alone. With ``rollout(..., break_when_any_done=True)``
    (the default) the rollout stops there: a goal-terminated scripted replay needs no
    hand-written loop.

    Args:
        stop: ``stop(next_tensordict) -> bool | Tensor``.
        write_done: also set the ``done`` flags (default True).

    Raises:
        ValueError: when ``stop`` is not callable.
        RuntimeError: when called on a TensorDict outside an env.

    Examples:
        >>> import torch
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> first_only = TerminateTransform(lambda nxt: torch.tensor([True, False]))
        >>> env = TransformedEnv(CountingEnv(batch_size=[2]), first_only)
        >>> ro = env.rollout(1)
        >>> ro["next", "terminated"].squeeze(-1), ro["next", "done"].squeeze(-1)
        (tensor([[ True],
                [False]]), tensor([[ True],
                [False]]))
    """

    time_vectorizable = False

    def __init__(self, stop: Callable[[TensorDictBase], Any], *, write_done: bool = True) -> None:
        if not callable(stop):
            raise ValueError(
                f"TerminateTransform: stop must be a callable taking the step's output, got {stop!r}. "
                "Fix: e.g. TerminateTransform(lambda nxt: nxt['observation'][..., 0] > 1)."
            )
        super().__init__(in_keys=[], out_keys=[])
        self.stop = stop
        self.write_done = write_done
        self._flag_keys: list = []

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        flags = []
        for key in _slot(output_spec, "full_done_spec").keys(True, True):
            leaf = _key_tuple(key)[-1]
            if leaf == "terminated" or (leaf == "done" and self.write_done):
                flags.append(key)
        self._flag_keys = flags
        return output_spec

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        flag = self.stop(next_tensordict)
        flag = torch.as_tensor(flag, device=next_tensordict.device).bool()
        for key in self._flag_keys:
            current = next_tensordict.get(key, None)
            if current is None:
                continue
            stop = flag
            while stop.ndim < current.ndim:
                stop = stop.unsqueeze(-1)
            try:
                stop = stop.expand(current.shape)
            except RuntimeError:
                raise ValueError(
                    f"TerminateTransform: stop returned shape {tuple(flag.shape)}, which does not broadcast to "
                    f"{key!r} of shape {tuple(current.shape)}. Fix: return a bool or a tensor of the env's batch "
                    "shape (or the flag's shape)."
                ) from None
            next_tensordict.set(key, current | stop)
        return next_tensordict

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise RuntimeError(
            "TerminateTransform acts on an env's steps. Fix: attach it to the env (TransformedEnv(env, ...))."
        )

    forward = _call

    def _rewritten_keys(self) -> set:
        return set(self._flag_keys)

    def __repr__(self) -> str:
        return f"TerminateTransform(stop={self.stop!r}, write_done={self.write_done})"
