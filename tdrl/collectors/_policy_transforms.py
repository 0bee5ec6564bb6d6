"""``auto_register_policy_transforms``: the env transforms a policy needs, added by the collector.

A recurrent policy needs its env to mark episode starts (:class:`~tdrl.envs.InitTracker`,
``is_init``) and to declare and reset its hidden states (the
:class:`~tdrl.envs.TensorDictPrimer` of each recurrent submodule). As TorchRL 0.14.1's
collectors do, the check reads the env's specs (so transforms inside a batched env's
workers count) and only adds what is missing: building a second collector on the same
env adds nothing. Any ``nn.Module`` policy gets an ``InitTracker`` when the env has no
``is_init``; a policy that is a plain function, or ``None``, is not inspected.
"""

from __future__ import annotations

from typing import Any

from tensordict.utils import unravel_key
from torch import nn

from tdrl.envs.common import EnvBase
from tdrl.envs.transforms import Compose, InitTracker, TensorDictPrimer, Transform
from tdrl.modules.utils import get_primers_from_module

__all__ = ["missing_policy_transforms", "register_policy_transforms", "check_auto_register_flag"]


def check_auto_register_flag(value: Any, owner: str) -> bool | None:
    """Validate ``auto_register_policy_transforms`` (``True``, ``False`` or ``None``)."""
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(
        f"{owner}: auto_register_policy_transforms must be True, False or None, got {value!r} "
        f"({type(value).__name__}). Pass True to add the InitTracker / TensorDictPrimer the policy needs, "
        "False or None to leave the env as it is."
    )


def _flatten(transform: Any) -> list:
    if transform is None:
        return []
    if isinstance(transform, Compose):
        return [t for inner in transform for t in _flatten(inner)]
    return [transform]


def missing_policy_transforms(env: EnvBase, policy: Any, init_key: str = "is_init") -> list[Transform]:
    """The transforms ``policy`` needs that ``env`` lacks, judged from the env's specs (nothing is changed).

    Examples:
        >>> from tensordict.nn import TensorDictModule, TensorDictSequential
        >>> from torch import nn
        >>> from tdrl.modules import GRUModule
        >>> from tdrl.testing import CountingEnv
        >>> gru = GRUModule(input_size=1, hidden_size=2, in_key="observation", out_key="features")
        >>> policy = TensorDictSequential(gru, TensorDictModule(nn.Linear(2, 1), ["features"], ["action"]))
        >>> [type(t).__name__ for t in missing_policy_transforms(CountingEnv(), policy)]
        ['InitTracker', 'TensorDictPrimer']
    """
    if not isinstance(policy, nn.Module):
        return []
    declared = {unravel_key(k) for k in env.full_observation_spec.keys(True, True)}
    declared |= {unravel_key(k) for k in env.full_state_spec.keys(True, True)}
    out: list[Transform] = []
    if not any(k == init_key or (isinstance(k, tuple) and k[-1] == init_key) for k in declared):
        out.append(InitTracker(init_key=init_key))
    for transform in _flatten(get_primers_from_module(policy, warn=False, strict=False)):
        if isinstance(transform, TensorDictPrimer) and {unravel_key(k) for k in transform.primers} <= declared:
            continue  # the env declares these states already
        out.append(transform)
    return out


def register_policy_transforms(env: EnvBase, policy: Any) -> EnvBase:
    """``env`` with the transforms ``policy`` needs appended (the env itself when none is missing).

    Examples:
        >>> from tensordict.nn import TensorDictModule, TensorDictSequential
        >>> from torch import nn
        >>> from tdrl.modules import GRUModule
        >>> from tdrl.testing import CountingEnv
        >>> gru = GRUModule(input_size=1, hidden_size=2, in_key="observation", out_key="features")
        >>> policy = TensorDictSequential(gru, TensorDictModule(nn.Linear(2, 1), ["features"], ["action"]))
        >>> env = register_policy_transforms(CountingEnv(), policy)
        >>> sorted(env.observation_spec.keys())
        ['is_init', 'observation', 'recurrent_state']
        >>> register_policy_transforms(env, policy) is env  # nothing more is missing
        True
    """
    for transform in missing_policy_transforms(env, policy):
        env = env.append_transform(transform)
    return env
