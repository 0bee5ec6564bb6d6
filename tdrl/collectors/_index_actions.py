"""Index actions for a one-hot action spec: a collector encodes them, instead of refusing them.

A policy that ends in ``argmax`` writes the index of its action (shape ``spec.shape[:-1]``)
while envs such as ``GymEnv("CartPole-v1")`` declare one-hot actions. The collector finds
such actions on its first (validation) step and from then on encodes them with the spec
(:meth:`~tdrl.specs.OneHot.encode`) right after the policy, so the env steps with the
action the policy chose and the batch records it one-hot. TorchRL 0.14.1 accepts such an
action too, but reads it as one-hot (``argmax`` of a scalar): every step takes action 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl.specs import OneHot

__all__ = ["index_action_specs", "IndexActionEncoder"]


def index_action_specs(td: TensorDictBase, action_specs: Any, action_keys: list) -> list[tuple[Any, OneHot]]:
    """``(key, spec)`` of each one-hot action that ``td`` holds as an index (integer, ``spec.shape[:-1]``)."""
    out = []
    for key in action_keys:
        spec = action_specs[key]
        value = td.get(key, None)
        if (
            isinstance(spec, OneHot)
            and spec.space.n > 1
            and isinstance(value, torch.Tensor)
            and not value.is_floating_point()
            and value.dtype != torch.bool
            and value.shape == spec.shape[:-1]
        ):
            out.append((key, spec))
    return out


class IndexActionEncoder:
    """Calls ``policy``, then encodes the index actions ``specs`` names as one-hot.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.specs import OneHot
        >>> policy = IndexActionEncoder(lambda td: td.set("action", torch.tensor(1)), [("action", OneHot(3))])
        >>> policy(TensorDict())["action"]
        tensor([False,  True, False])
    """

    def __init__(self, policy: Callable[[TensorDictBase], Any], specs: list[tuple[Any, OneHot]]) -> None:
        self.policy = policy
        self.specs = specs

    def __call__(self, td: TensorDictBase) -> TensorDictBase:
        out = self.policy(td)
        td = td if out is None else out
        for key, spec in self.specs:
            td.set(key, spec.encode(td.get(key)))
        return td
