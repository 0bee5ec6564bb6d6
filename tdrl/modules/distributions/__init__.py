"""Action distributions: ``torch.distributions`` classes with the extras RL code needs.

Continuous: :class:`TanhNormal` (bounded actions), :class:`IndependentNormal`,
:class:`TruncatedNormal`, :class:`Delta` and :class:`TanhDelta` (deterministic actors). Discrete:
:class:`Categorical`, :class:`OneHotCategorical`, :class:`MaskedCategorical`,
:class:`MaskedOneHotCategorical`. ``NormalParamExtractor`` is tensordict's, re-exported.

Examples:
    >>> import torch
    >>> from tdrl.modules.distributions import TanhNormal, NormalParamExtractor
    >>> loc, scale = NormalParamExtractor()(torch.zeros(4))
    >>> TanhNormal(loc, scale).sample().shape
    torch.Size([2])
"""

from __future__ import annotations

from tensordict.nn.distributions import NormalParamExtractor

from tdrl.modules.distributions.continuous import Delta, IndependentNormal, TanhDelta, TanhNormal, TruncatedNormal
from tdrl.modules.distributions.discrete import (
    Categorical,
    MaskedCategorical,
    MaskedOneHotCategorical,
    OneHotCategorical,
    ReparamGradientStrategy,
)

__all__ = [
    "TanhNormal",
    "IndependentNormal",
    "TruncatedNormal",
    "Delta",
    "TanhDelta",
    "Categorical",
    "OneHotCategorical",
    "MaskedCategorical",
    "MaskedOneHotCategorical",
    "ReparamGradientStrategy",
    "NormalParamExtractor",
]
