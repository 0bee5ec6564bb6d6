"""Discrete action distributions: Categorical, OneHotCategorical and their masked variants.

They are ``torch.distributions`` classes built with ``validate_args=False`` and given a
``deterministic_sample`` (the most likely action), the value that
``ExplorationType.MEAN``/``MODE``/``DETERMINISTIC`` selects in a
:class:`~tdrl.modules.ProbabilisticActor`.

Examples:
    >>> import torch
    >>> logits = torch.tensor([0.0, 2.0, 1.0])
    >>> Categorical(logits=logits).deterministic_sample
    tensor(1)
    >>> OneHotCategorical(logits=logits).deterministic_sample
    tensor([0., 1., 0.])
    >>> masked = MaskedCategorical(logits=logits, mask=torch.tensor([True, False, True]))
    >>> masked.deterministic_sample
    tensor(2)
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import distributions as D

__all__ = [
    "Categorical",
    "OneHotCategorical",
    "MaskedCategorical",
    "MaskedOneHotCategorical",
    "ReparamGradientStrategy",
]


class ReparamGradientStrategy(Enum):
    """How ``OneHotCategorical.rsample`` passes gradients through a discrete sample."""

    PassThrough = 1
    """The sample plus ``probs - probs.detach()``: a straight-through estimator."""
    RelaxedOneHot = 2
    """A hard sample from ``RelaxedOneHotCategorical`` (temperature 1) with its soft gradients."""


def _check_params(logits: torch.Tensor | None, probs: torch.Tensor | None, cls: str) -> None:
    if (logits is None) == (probs is None):
        raise ValueError(
            f"{cls} needs exactly one of `logits` or `probs`, got {'both' if logits is not None else 'neither'}."
        )


class Categorical(D.Categorical):
    """An index in ``0..n-1`` drawn from ``logits`` (or ``probs``) over the last dim.

    Args:
        logits: unnormalised log-probabilities, shape ``[*batch, n]``.
        probs: probabilities (exclusive with ``logits``).

    Examples:
        >>> d = Categorical(logits=torch.tensor([0.0, 0.0]))
        >>> d.log_prob(torch.tensor(1))
        tensor(-0.6931)
    """

    num_params = 1
    _extra_kwarg_names: tuple[str, ...] = ("validate_args",)

    def __init__(
        self,
        logits: torch.Tensor | None = None,
        probs: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        _check_params(logits, probs, type(self).__name__)
        kwargs.setdefault("validate_args", False)
        super().__init__(probs=probs, logits=logits, **kwargs)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self.mode


class OneHotCategorical(D.OneHotCategorical):
    """A one-hot vector of length ``n`` drawn from ``logits`` (or ``probs``).

    ``rsample`` returns a hard one-hot sample that carries gradients, by the
    straight-through estimator (default) or a relaxed one-hot sample.

    Args:
        logits: unnormalised log-probabilities, shape ``[*batch, n]``.
        probs: probabilities (exclusive with ``logits``).
        grad_method: the :class:`ReparamGradientStrategy` of ``rsample``.

    Examples:
        >>> d = OneHotCategorical(logits=torch.tensor([0.0, 5.0]))
        >>> d.log_prob(torch.tensor([0.0, 1.0])).round(decimals=3)
        tensor(-0.0070)
    """

    num_params = 1
    has_rsample = True
    _extra_kwarg_names: tuple[str, ...] = ("validate_args",)

    def __init__(
        self,
        logits: torch.Tensor | None = None,
        probs: torch.Tensor | None = None,
        grad_method: ReparamGradientStrategy = ReparamGradientStrategy.PassThrough,
        **kwargs: Any,
    ) -> None:
        _check_params(logits, probs, type(self).__name__)
        kwargs.setdefault("validate_args", False)
        self.grad_method = grad_method
        super().__init__(probs=probs, logits=logits, **kwargs)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self.mode

    def rsample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> torch.Tensor:
        sample_shape = torch.Size(sample_shape)
        if self.grad_method == ReparamGradientStrategy.RelaxedOneHot:
            soft = D.RelaxedOneHotCategorical(
                torch.tensor(1.0, device=self.logits.device), logits=self.logits, validate_args=False
            ).rsample(sample_shape)
            hard = (soft == soft.max(-1, keepdim=True)[0]).to(soft.dtype)
            return hard + soft - soft.detach()
        probs = self.probs
        return self.sample(sample_shape) + probs - probs.detach()


def _dense_mask(
    logits: torch.Tensor, mask: torch.Tensor | None, indices: torch.Tensor | None, padding_value: int | None
) -> torch.Tensor:
    """A boolean mask ``[*batch, n]`` from a dense ``mask`` or a list of valid ``indices``."""
    if (mask is None) == (indices is None):
        raise ValueError(
            "Masked distributions need exactly one of `mask` (a bool tensor [..., n], True = allowed) "
            "or `indices` (the allowed action indices)."
        )
    if mask is not None and mask.dtype != torch.bool:
        indices, mask = mask, None  # TorchRL accepts the index list under `mask` too
    if mask is not None:
        if mask.shape[-1] != logits.shape[-1]:
            raise ValueError(
                f"mask has {mask.shape[-1]} entries on its last dim but the distribution has "
                f"{logits.shape[-1]} actions; the mask must have shape [..., {logits.shape[-1]}]."
            )
        return mask
    idx = cast(torch.Tensor, indices).long()  # exactly one of mask / indices, and the mask returned above
    n = logits.shape[-1]
    if padding_value is not None:
        idx = idx.masked_fill(idx == padding_value, n)  # padding goes to an extra column, dropped below
    shape = torch.broadcast_shapes(idx.shape[:-1], logits.shape[:-1])
    out = torch.zeros(*shape, n + 1, dtype=torch.bool, device=logits.device)
    out.scatter_(-1, idx.expand(*shape, idx.shape[-1]), True)
    return out[..., :n]


if TYPE_CHECKING:
    _MixedInto = D.Distribution  # the mixin only ever precedes a categorical distribution
else:
    _MixedInto = object


class _MaskedMixin(_MixedInto):
    """What the masked categoricals share: the mask, ``neg_inf`` log-probs, a finite entropy."""

    _mask: torch.Tensor
    neg_inf: float
    if TYPE_CHECKING:  # the categorical's parameters
        logits: torch.Tensor
        probs: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        return self._mask

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        lp = super().log_prob(value)
        if self.neg_inf != float("-inf"):
            lp = lp.masked_fill(lp == float("-inf"), self.neg_inf)
        return lp

    def entropy(self) -> torch.Tensor:
        logp = self.logits.masked_fill(~self._mask, 0.0)
        return -(self.probs * logp).sum(-1)


class MaskedCategorical(_MaskedMixin, Categorical):
    """A categorical that never draws a masked-out action (an action mask from the env).

    Masked actions get log-probability ``neg_inf`` and probability 0; the entropy and the
    mode only consider allowed actions.

    Args:
        logits: unnormalised log-probabilities, shape ``[*batch, n]``.
        probs: probabilities (exclusive with ``logits``); renormalised over allowed actions.

    Keyword Args:
        mask: a bool tensor ``[*batch, n]``, ``True`` for allowed actions.
        indices: the allowed action indices, ``[*batch, k]`` (exclusive with ``mask``).
        neg_inf: the log-probability given to masked actions.
        padding_value: an entry of ``indices`` equal to it is ignored.

    Raises:
        ValueError: when neither or both of ``mask``/``indices`` are given, or the mask's
            last dim is not the number of actions.

    Examples:
        >>> d = MaskedCategorical(logits=torch.zeros(3), mask=torch.tensor([True, False, True]))
        >>> d.log_prob(torch.tensor([0, 1, 2]))
        tensor([-0.6931,    -inf, -0.6931])
        >>> d.entropy()
        tensor(0.6931)
    """

    _extra_kwarg_names = ("validate_args", "use_cross_entropy", "padding_side")

    def __init__(
        self,
        logits: torch.Tensor | None = None,
        probs: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
        neg_inf: float = float("-inf"),
        padding_value: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("use_cross_entropy", None)
        kwargs.pop("padding_side", None)
        _check_params(logits, probs, type(self).__name__)
        if logits is None:
            logits = cast(torch.Tensor, probs).log()  # _check_params: one of the two is given
        self._mask = _dense_mask(logits, mask, indices, padding_value)
        self.neg_inf = neg_inf
        masked = logits.masked_fill(~self._mask, float("-inf"))
        super().__init__(logits=masked, **kwargs)


class MaskedOneHotCategorical(_MaskedMixin, OneHotCategorical):
    """The one-hot counterpart of :class:`MaskedCategorical` (same keyword arguments).

    Examples:
        >>> d = MaskedOneHotCategorical(logits=torch.zeros(3), mask=torch.tensor([False, True, True]))
        >>> bool(d.sample((20,))[..., 0].any())
        False
    """

    _extra_kwarg_names = ("validate_args", "use_cross_entropy", "padding_side")

    def __init__(
        self,
        logits: torch.Tensor | None = None,
        probs: torch.Tensor | None = None,
        *,
        mask: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
        neg_inf: float = float("-inf"),
        padding_value: int | None = None,
        grad_method: ReparamGradientStrategy = ReparamGradientStrategy.PassThrough,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("use_cross_entropy", None)
        kwargs.pop("padding_side", None)
        _check_params(logits, probs, type(self).__name__)
        if logits is None:
            logits = cast(torch.Tensor, probs).log()  # _check_params: one of the two is given
        self._mask = _dense_mask(logits, mask, indices, padding_value)
        self.neg_inf = neg_inf
        masked = logits.masked_fill(~self._mask, float("-inf"))
        super().__init__(logits=masked, grad_method=grad_method, **kwargs)
