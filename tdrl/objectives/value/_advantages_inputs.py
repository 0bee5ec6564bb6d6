"""What a value estimator (:mod:`tdrl.objectives.value.advantages`) reads off a rollout besides the values.

The time dimension (given, else the batch dim named ``"time"``, else the last one), the step
signals under ``"next"`` (reward, done, terminated), the discount and lambda buffers, and the
messages that say which of these inputs is missing or misshapen and how to fix it.

Each function takes what it uses (the estimator's class name for messages, the keys) rather
than the estimator.
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torch import Tensor

from tdrl.objectives._keys import MissingKeyError, keys_repr

__all__: list[str] = []

_MISSING_SIGNAL = (
    "{cls}: key {key!r} not found in the input's 'next' TensorDict (keys: {keys}). "
    "Value estimators read the env's step outputs under 'next' (('next', 'reward'), "
    "('next', 'done'), ('next', 'terminated')); rename them with .set_keys({field}=...)."
)
_BAD_VALUE_SHAPE = (
    "{cls}: the value network wrote {key!r} with shape {shape}; expected {expected} "
    "(the shape of ('next', {reward!r})). End the value network with a 1-unit layer "
    "(e.g. ValueOperator(MLP(out_features=1), in_keys=[...])) so it writes [*B, T, 1]."
)


def _as_buffer(x: float | Tensor, device: torch.device | None) -> Tensor:
    """``x`` (a discount, a lambda, a clipping threshold) as a tensor of the default dtype on ``device``."""
    if isinstance(x, Tensor):
        return x.detach().clone().to(device=device, dtype=torch.get_default_dtype())
    return torch.tensor(float(x), device=device)


def _resolve_time_dim(owner: str, time_dim: int | None, data: TensorDictBase) -> int:
    """``time_dim`` (else the dim named ``"time"``, else the last batch dim) as a non-negative index."""
    if time_dim is None:
        try:
            names = list(data.names)
        except (RuntimeError, AttributeError):  # some TensorDict types carry no names
            names = []
        time_dim = names.index("time") if "time" in names else data.batch_dims - 1
    if not -data.batch_dims <= time_dim < data.batch_dims:
        raise ValueError(
            f"{owner}: time_dim={time_dim} is out of range for a TensorDict with batch_size {tuple(data.batch_size)}."
        )
    return time_dim % data.batch_dims


def _step_signal(owner: str, data: TensorDictBase, key: NestedKey, field: str, default: Tensor | None) -> Tensor:
    """The entry ``key`` (renamable as ``field``) under ``data["next"]``, else ``default``, else an error."""
    nxt = data.get("next", None)
    if nxt is None:
        raise MissingKeyError(
            f"{owner}: the input has no 'next' entry (keys: {keys_repr(data)}); "
            "pass a rollout written by env.step / env.rollout / a collector."
        )
    value = nxt.get(key, default)
    if value is None:
        raise MissingKeyError(_MISSING_SIGNAL.format(cls=owner, key=key, keys=keys_repr(nxt), field=field))
    return value


def _check_value_shape(
    owner: str, value: Tensor, reward_shape: torch.Size, value_key: NestedKey, reward_key: NestedKey
) -> None:
    """Raises unless the value network's output has the reward's shape."""
    if value.shape != reward_shape:
        raise ValueError(
            _BAD_VALUE_SHAPE.format(
                cls=owner, key=value_key, shape=tuple(value.shape), expected=tuple(reward_shape), reward=reward_key
            )
        )
