"""ConditionalSkip: skip the env's step when a condition on its input holds.

Examples:
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.testing import CountingEnv
    >>> env = TransformedEnv(CountingEnv(max_steps=20), ConditionalSkip(lambda td: td["observation"] >= 3))
    >>> env.rollout(5)["next", "observation"].squeeze(-1)  # from 3 on, the base env is not stepped
    tensor([1., 2., 3., 3., 3.])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform

__all__ = ["ConditionalSkip"]


class ConditionalSkip(Transform):
    """Skip the step of the env it is attached to when ``cond(tensordict)`` is true for the step's input.

    A skipped step does not reach the base env, nor the transforms of the same
    ``TransformedEnv``: its output is the input's state again (observations and done
    flags copied from the root), with a zero reward. To keep a transform running on
    skipped steps (a step counter), put it in an outer ``TransformedEnv``.

    ``cond`` must agree across a batched env's sub-envs: tdrl skips whole steps only
    (TorchRL hands a partial mask to the base env).

    Args:
        cond: ``cond(tensordict) -> bool | Tensor``: True to skip. A tensor is a single
            element or of the env's batch shape.

    Raises:
        RuntimeError: when the condition skips only part of a batch, or the transform is
            called outside an env.

    Examples:
        >>> from tdrl.envs import StepCounter, TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> inner = TransformedEnv(CountingEnv(max_steps=20), ConditionalSkip(lambda td: td["observation"] >= 2))
        >>> env = TransformedEnv(inner, StepCounter())
        >>> ro = env.rollout(4)
        >>> ro["next", "observation"].squeeze(-1), ro["next", "step_count"].squeeze(-1)
        (tensor([1., 2., 2., 2.]), tensor([1, 2, 3, 4]))
    """

    time_vectorizable = False

    def __init__(self, cond: Callable[[TensorDictBase], Any]) -> None:
        if not callable(cond):
            raise TypeError(f"ConditionalSkip: cond must be callable, got {cond!r}.")
        super().__init__()
        self.cond = cond

    def _has_inverse(self) -> bool:
        return True  # the condition is read on the step's input, on the inverse path

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        skip = torch.as_tensor(self.cond(tensordict), device=tensordict.device).bool()
        if skip.numel() == 1:
            skip = skip.reshape(()).expand(tensordict.batch_size)
        elif skip.shape != tensordict.batch_size:
            skip = skip.reshape(tensordict.batch_size)
        previous = tensordict.get("_step", None)
        run = ~skip if previous is None else previous.reshape(tensordict.batch_size) & ~skip
        tensordict.set("_step", run)
        return tensordict

    def inv(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The input unchanged: skipping is decided by the env's own step."""
        return tensordict

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise RuntimeError("ConditionalSkip acts on an env's steps. Fix: attach it (TransformedEnv(env, ...)).")

    def __repr__(self) -> str:
        return f"ConditionalSkip(cond={self.cond!r})"
