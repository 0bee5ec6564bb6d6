"""How a value estimator (:mod:`tdrl.objectives.value.advantages`) gets ``V(s)`` and ``V(s')``.

The estimator's value network runs once over the root and ``"next"`` inputs together,
concatenated on the first dim. On a one-dim ``[T]`` batch it evaluates a ``"next"`` input
only where it differs from the following row's root input (at resets and the last step) and
takes the following row's value elsewhere. A ``NaN`` in a ``"next"`` input (a trajectory end of
data collected with ``compact_obs=True``) is replaced by the root input of the same step first.
With ``params``/``target_params`` (``to_module`` style) the two halves run apart, each with its
parameters.

Each function takes what it uses (the estimator's class name for messages, the network, the
value key, the shape check) rather than the estimator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import Tensor

from tdrl.modules.rnn import next_sequence_inputs
from tdrl.objectives._keys import MissingKeyError, keys_repr

__all__: list[str] = []

_MISSING_VALUE = (
    "{cls}: key {key!r} not found in the input (keys: {keys}) and no value_network was "
    "given. Pass value_network=... or write {key!r} and ('next', {key!r}) first."
)

# checks a value tensor against the reward's shape, raising if they differ
ShapeCheck = Callable[[Tensor, torch.Size], None]


def _nan_to_root(nxt: TensorDictBase, root: TensorDictBase, in_keys: list) -> TensorDictBase:
    """``nxt`` (a selection of ``"next"`` inputs) with its NaN entries taken from ``root`` (written in place)."""
    for key in in_keys:
        value, fallback = nxt.get(key, None), root.get(key, None)
        if not isinstance(value, Tensor) or not isinstance(fallback, Tensor) or not value.is_floating_point():
            continue
        if value.shape != fallback.shape:
            continue
        missing = torch.isnan(value)
        # compiled: no data-dependent branch (a graph break); the where is cheap either way
        if torch.compiler.is_compiling() or bool(missing.any()):
            nxt.set(key, torch.where(missing, fallback, value))
    return nxt


def _fresh_next_rows(root: TensorDictBase, nxt: TensorDictBase, in_keys: list[NestedKey]) -> Tensor | None:
    """Indices of the rows of a ``[T]`` batch whose next inputs differ from row ``t + 1``'s.

    ``None`` when reuse does not apply: more than one batch dim (a ``[B, T]`` batch keeps
    its shape for the network, which may be recurrent), fewer than two rows, or an input
    that is not a plain tensor of matching shape.
    """
    if root.batch_dims != 1 or root.shape[0] < 2 or not in_keys:
        return None
    differs = []
    for k in in_keys:
        a, b = nxt.get(k, None), root.get(k, None)
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or a.shape != b.shape or a.dtype != b.dtype:
            return None
        d = a[:-1] != b[1:]
        differs.append(d.flatten(1).any(1) if d.ndim > 1 else d)
    last = differs[0].new_ones(1)  # the last step's next observation has no following row
    fresh = torch.cat([torch.stack(differs).any(0), last])
    return fresh.nonzero().squeeze(-1)


def _net_values(owner: str, out: TensorDictBase, key: NestedKey) -> Tensor:
    """The value the network wrote under ``key`` into ``out``."""
    values = out.get(key, None)
    if values is None:
        raise MissingKeyError(
            f"{owner}: the value network did not write {key!r} (it wrote "
            f"{keys_repr(out)}); rename with .set_keys(value=...)."
        )
    return values


def _stored_values(
    owner: str, data: TensorDictBase, key: NestedKey, has_network: bool
) -> tuple[Tensor | None, Tensor | None]:
    """The values already in ``data`` (root and ``"next"``); without a network both must be there."""
    value, next_value = data.get(key, None), data.get("next").get(key, None)
    if not has_network and (value is None or next_value is None):
        missing = key if value is None else ("next", key)
        raise MissingKeyError(_MISSING_VALUE.format(cls=owner, key=missing, keys=keys_repr(data)))
    return value, next_value


def _values_in_one_call(
    owner: str,
    net: TensorDictModuleBase,
    data: TensorDictBase,
    key: NestedKey,
    reward_shape: torch.Size,
    check_shape: ShapeCheck,
    reuse_next_values: bool,
) -> tuple[Tensor, Tensor]:
    """``(value, next_value)`` from one call of ``net`` over root and next inputs; writes both into ``data``."""
    nxt = data.get("next")
    in_keys = list(getattr(net, "in_keys", []))
    for k in in_keys:
        if k not in data.keys(include_nested=True):
            raise MissingKeyError(
                f"{owner}: the value network reads {k!r}, which is not in the "
                f"input (keys: {keys_repr(data)}); pass the rollout it was built for."
            )
        if k not in nxt.keys(include_nested=True):
            raise MissingKeyError(
                f"{owner}: the value network reads {k!r}, which is missing "
                f"under 'next' (keys: {keys_repr(nxt)}); the estimator needs "
                "the next observation to bootstrap."
            )
    n = data.shape[0]
    root = data.select(*in_keys)
    nxt_in = next_sequence_inputs(data, _nan_to_root(nxt.select(*in_keys), root, in_keys), net)
    fresh = _fresh_next_rows(root, nxt_in, in_keys) if reuse_next_values else None
    # One network call over root and next states, concatenated on the first dim.
    if fresh is None:
        values = _net_values(owner, net(torch.cat([root, nxt_in], 0)), key)
        value, next_value = values[:n], values[n:]
        check_shape(value, reward_shape)
    else:
        values = _net_values(owner, net(torch.cat([root, nxt_in[fresh]], 0)), key)
        value = values[:n]
        check_shape(value, reward_shape)
        # next_value[t] = value[t + 1], except at the rows whose next observation is new.
        next_value = value.roll(-1, 0).index_copy(0, fresh, values[n:])
    data.set(key, value)
    nxt.set(key, next_value)
    return value, next_value


def _values_with_params(
    net: TensorDictModuleBase,
    data: TensorDictBase,
    key: NestedKey,
    reward_shape: torch.Size,
    check_shape: ShapeCheck,
    params: TensorDictBase,
    target_params: TensorDictBase,
) -> tuple[Tensor, Tensor]:
    """``(value, next_value)``: ``net`` with ``params`` on the root, with ``target_params`` on ``"next"``."""
    with params.to_module(net):
        value = net(data.select(*net.in_keys)).get(key)
    with target_params.to_module(net):
        nxt_in = _nan_to_root(data.get("next").select(*net.in_keys), data, net.in_keys)
        next_inputs = next_sequence_inputs(data, nxt_in, net)
        next_value = net(next_inputs).get(key)
    check_shape(value, reward_shape)
    data.set(key, value)
    data.set(("next", key), next_value)
    return value, next_value
