"""How :class:`~tdrl.modules.EGreedyModule` draws its random actions.

The general path draws a random action for every element (among the values an action mask
allows, when there is one) and picks with ``torch.where``. The one-coin step, for one env
with a discrete spec and no mask, reads its coin as a number and draws an action only when
the coin says so; :func:`one_coin_plan` decides whether a layout can take it and
preallocates what it needs.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase

from tdrl.modules._lean import missing_key_error
from tdrl.specs import Categorical, NestedKey, OneHot, TensorSpec

__all__: list[str] = []


def random_action(
    spec: TensorSpec, mask_key: NestedKey | None, tensordict: TensorDictBase, lead: torch.Size, like: torch.Tensor
) -> torch.Tensor:
    """A random action shaped as ``like``: drawn from ``spec``, or among the values ``mask_key``'s mask allows."""
    if mask_key is None:
        return spec.rand(lead).to(like.device)
    mask = tensordict.get(mask_key, None)
    if mask is None:
        raise missing_key_error("EGreedyModule", mask_key, tensordict, "action mask")
    if not isinstance(spec, (Categorical, OneHot)):
        raise ValueError(
            f"EGreedyModule: an action mask needs a Categorical or OneHot spec, got {type(spec).__name__}."
        )
    n = mask.shape[-1]
    idx = torch.multinomial(mask.float().reshape(-1, n), 1).reshape(mask.shape[:-1])
    if isinstance(spec, OneHot):
        return F.one_hot(idx, n).to(like.dtype).expand_as(like)
    return idx.to(like.dtype).reshape(like.shape)


def one_coin_plan(
    spec: TensorSpec,
    mask_key: NestedKey | None,
    eps: torch.Tensor,
    action: torch.Tensor,
    lead: torch.Size,
    coin_shape: torch.Size,
) -> tuple | None:
    """``(n, draw shape, draw dtype, one-hot dtype or None, scratch, coin)`` for a one-coin step, else None.

    A step is one coin and one index draw with one env and no mask.

    Then a step needs no ``torch.where``: the coin is read as a number and the random
    action is encoded only when the coin says so. The draws are the general path's, in
    the same order (``torch.rand(coin_shape)``, then the spec's ``torch.randint``), so
    the random stream and the actions are the same.
    """
    if coin_shape or mask_key is not None or getattr(spec, "mask", None) is not None:
        return None
    if type(spec) not in (OneHot, Categorical) or action.device.type != "cpu" or action.dtype != spec.dtype:
        return None
    if (spec.device is not None and spec.device.type != "cpu") or eps.device.type != "cpu":
        return None
    one_hot_dtype = spec.dtype if type(spec) is OneHot else None
    dtype = torch.long if one_hot_dtype is not None else spec.dtype
    full = torch.Size((*lead, *(spec.shape[:-1] if one_hot_dtype is not None else spec.shape)))
    # a greedy step's unused draw goes into this buffer: ``random_(0, n)`` takes the same
    # numbers from the generator as ``torch.randint(0, n, full)`` (``empty(full).random_(0, n)``)
    discard = torch.empty(full, dtype=dtype)
    # the coin is drawn into this scalar: ``uniform_()`` takes the same number from the generator as
    # ``torch.rand(())`` (which is ``empty(()).uniform_()``), without a new tensor per step
    coin = torch.empty(())
    return cast("OneHot | Categorical", spec).space.n, full, dtype, one_hot_dtype, discard, coin
