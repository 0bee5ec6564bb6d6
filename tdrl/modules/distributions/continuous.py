"""Continuous action distributions: IndependentNormal, TruncatedNormal, Delta (and TanhNormal, TanhDelta).

Each is a ``torch.distributions.Distribution`` built with ``validate_args=False``, with a
``deterministic_sample`` (what ``ExplorationType.DETERMINISTIC``/``MODE`` return from a
:class:`~tdrl.modules.ProbabilisticActor`) and a ``mean`` (``ExplorationType.MEAN``); the two
differ only for :class:`TanhNormal`, which lives in ``tanh_normal.py`` and is re-exported here
(as is :class:`TanhDelta`, from ``tanh_delta.py``).

Examples:
    >>> import torch
    >>> dist = TruncatedNormal(torch.zeros(2), torch.ones(2), low=-1.0, high=1.0)
    >>> bool((dist.sample((50,)).abs() <= 1).all())
    True
    >>> IndependentNormal(torch.zeros(2), torch.ones(2)).deterministic_sample
    tensor([0., 0.])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import distributions as D
from torch.distributions import constraints

from tdrl.modules.distributions._bounds import _BOXES, _HALF_LOG_2PI, TensorLike, _as_scale, _pop_old_bound_names
from tdrl.modules.distributions.tanh_delta import TanhDelta
from tdrl.modules.distributions.tanh_normal import TanhNormal

__all__ = ["TanhNormal", "IndependentNormal", "TruncatedNormal", "Delta", "TanhDelta"]


class IndependentNormal(D.Independent):
    """A diagonal Normal whose ``log_prob`` sums over the last ``event_dim`` dims.

    Args:
        loc: the mean.
        scale: the standard deviation (tensor, number or ``callable(loc)``).
        upscale: with ``tanh_loc=True`` the mean is ``upscale * tanh(loc / upscale)``.
        tanh_loc: bound the mean to ``[-upscale, upscale]``.
        event_dim: how many trailing dims form one event (default 1).

    Examples:
        >>> dist = IndependentNormal(torch.zeros(3), torch.ones(3))
        >>> dist.log_prob(torch.zeros(3))
        tensor(-2.7568)
        >>> dist.deterministic_sample
        tensor([0., 0., 0.])
    """

    num_params = 2
    _extra_kwarg_names = ("event_dims", "validate_args")

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor | float | Callable[[torch.Tensor], torch.Tensor],
        upscale: float = 5.0,
        tanh_loc: bool = False,
        event_dim: int = 1,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("validate_args", None)
        event_dim = kwargs.pop("event_dims", event_dim)
        if kwargs:
            raise TypeError(
                f"IndependentNormal got unexpected keyword arguments {sorted(kwargs)}; it accepts "
                f"loc, scale, upscale, tanh_loc and event_dim."
            )
        if tanh_loc:
            loc = (loc / upscale).tanh() * upscale
        self.upscale, self.tanh_loc = upscale, tanh_loc
        scale = _as_scale(scale, loc)
        super().__init__(D.Normal(loc, scale, validate_args=False), event_dim, validate_args=False)

    @property
    def loc(self) -> torch.Tensor:
        return self.base_dist.loc

    @property
    def scale(self) -> torch.Tensor:
        return self.base_dist.scale

    @property
    def mode(self) -> torch.Tensor:
        return self.base_dist.loc

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self.base_dist.loc


# --- truncated normal ------------------------------------------------------------------
def _log_diff_ndtr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(Phi(b) - Phi(a))`` for ``a < b``, accurate in both tails."""
    # work in the lower tail, where log_ndtr is accurate: reflect when both are positive
    flip = a > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    log_lo = torch.special.log_ndtr(lo)
    # log(exp(log_hi) - exp(log_lo)) = log_hi + log1p(-exp(log_lo - log_hi))
    return log_hi + torch.log1p(-torch.exp(log_lo - log_hi).clamp(max=1 - 1e-12))


class TruncatedNormal(D.Distribution):
    """A Normal restricted to ``[low, high]`` (renormalised), with ``log_prob`` summed over the last dim.

    Sampling inverts the CDF (so ``rsample`` carries gradients to ``loc`` and ``scale``);
    values outside the box have log-probability ``-inf``.

    Args:
        loc: location of the parent Normal, shape ``[*batch, d]``.
        scale: its standard deviation.
        upscale: with ``tanh_loc=True``, the location is ``upscale * tanh(loc / upscale)``.
        low: lower truncation bound (``min`` accepted as the older name).
        high: upper truncation bound (``max``); must be ``> low``.
        tanh_loc: bound the location.

    Raises:
        ValueError: when ``low >= high`` somewhere.

    Examples:
        >>> dist = TruncatedNormal(torch.zeros(2), torch.ones(2), low=-1.0, high=1.0)
        >>> bool(((dist.sample((100,)).abs()) <= 1).all())
        True
        >>> dist.mean
        tensor([0., 0.])
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}  # noqa: RUF012 (torch convention)
    has_rsample = True
    num_params = 2
    _extra_kwarg_names = ("min", "max", "minimum", "maximum")

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor | float,
        upscale: TensorLike = 5.0,
        low: TensorLike = -1.0,
        high: TensorLike = 1.0,
        tanh_loc: bool = False,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            low, high = _pop_old_bound_names(low, high, kwargs, "TruncatedNormal")
        box = _BOXES.get(low, high, loc.dtype, loc.device)
        if tanh_loc:
            loc = (loc / upscale).tanh() * upscale
        scale = _as_scale(scale, loc)
        self.loc, self.scale, self.upscale, self.tanh_loc = loc, scale, upscale, tanh_loc
        self._low, self._high = box.low, box.high
        shape = torch.broadcast_shapes(loc.shape, scale.shape, box.low.shape)
        self._alpha = (box.low - loc) / scale
        self._beta = (box.high - loc) / scale
        # the normaliser in float64: its tails cancel badly in float32
        self._log_z64 = _log_diff_ndtr(self._alpha.double(), self._beta.double())
        self._log_z = self._log_z64.to(loc.dtype)
        super().__init__(shape[:-1], shape[-1:], validate_args=False)

    @property
    def low(self) -> torch.Tensor:
        return self._low

    @property
    def high(self) -> torch.Tensor:
        return self._high

    min = low
    max = high

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.interval(self._low, self._high), 1)

    def _pdf_ratio(self, x: torch.Tensor) -> torch.Tensor:
        """``phi(x) / Z`` computed in log space, in float64 (returned in ``loc``'s dtype)."""
        x = x.double()
        return torch.exp(-0.5 * x * x - _HALF_LOG_2PI - self._log_z64).to(self.loc.dtype)

    def rsample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        u = torch.rand(shape, dtype=torch.float64, device=self.loc.device)
        # Sample the standardised value in float64, in the lower tail where the CDF is
        # accurate (reflect when the box lies right of loc). Deeper than float64's CDF
        # reaches (~37 sigma) the truncated tail is exponential: z = b - Exp(1) / |b|.
        alpha, beta = self._alpha.double(), self._beta.double()
        flip = alpha > 0
        a = torch.where(flip, -beta, alpha)
        b = torch.where(flip, -alpha, beta)
        cdf_a, cdf_b = torch.special.ndtr(a), torch.special.ndtr(b)
        p = (cdf_a + u * (cdf_b - cdf_a)).clamp(1e-300, 1 - 1e-16)
        z = torch.special.ndtri(p)
        tail = b - (-torch.log1p(-u)) / b.abs().clamp_min(1.0)
        z = torch.where(cdf_b > 1e-290, z, tail)
        z = torch.maximum(torch.minimum(z, b), a)
        z = torch.where(flip, -z, z).to(self.loc.dtype)
        x = self.loc + self.scale * z
        return torch.maximum(torch.minimum(x, self._high), self._low)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        z = (value - self.loc) / self.scale
        lp = -0.5 * z * z - _HALF_LOG_2PI - self.scale.log() - self._log_z
        outside = (value < self._low) | (value > self._high)
        lp = lp.masked_fill(outside, float("-inf"))
        return lp.sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        pa, pb = self._pdf_ratio(self._alpha), self._pdf_ratio(self._beta)
        m = self.loc + self.scale * (pa - pb)
        return torch.maximum(torch.minimum(m, self._high), self._low).expand(self.batch_shape + self.event_shape)

    @property
    def mode(self) -> torch.Tensor:
        return torch.maximum(torch.minimum(self.loc, self._high), self._low).expand(self.batch_shape + self.event_shape)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self.mean

    def _moments64(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``phi(a)/Z``, ``phi(b)/Z``, ``a phi(a)/Z``, ``b phi(b)/Z`` in float64 (0 at infinite bounds)."""
        a, b = self._alpha.double(), self._beta.double()
        pa = torch.exp(-0.5 * a * a - _HALF_LOG_2PI - self._log_z64)
        pb = torch.exp(-0.5 * b * b - _HALF_LOG_2PI - self._log_z64)
        apa = torch.where(torch.isfinite(a), a * pa, torch.zeros_like(pa))
        bpb = torch.where(torch.isfinite(b), b * pb, torch.zeros_like(pb))
        return pa, pb, apa, bpb

    @property
    def variance(self) -> torch.Tensor:
        pa, pb, apa, bpb = self._moments64()
        var = self.scale.double() ** 2 * (1 + apa - bpb - (pa - pb) ** 2)
        return var.to(self.loc.dtype).expand(self.batch_shape + self.event_shape)

    def entropy(self) -> torch.Tensor:
        _, _, apa, bpb = self._moments64()
        h = 0.5 + _HALF_LOG_2PI + self.scale.double().log() + self._log_z64 + 0.5 * (apa - bpb)
        return h.to(self.loc.dtype).expand(self.batch_shape + self.event_shape).sum(-1)


class Delta(D.Distribution):
    """A point mass at ``param``: the distribution of a deterministic actor.

    ``log_prob`` is ``+inf`` where the value equals ``param`` (within ``atol``/``rtol``)
    and ``-inf`` elsewhere, as in TorchRL; every sample is ``param``.

    Args:
        param: the point, shape ``[*batch, *event]``.
        atol: absolute tolerance of the equality test.
        rtol: relative tolerance.
        batch_shape: the batch shape (default: all dims but the last).
        event_shape: the event shape (default: the last dim).

    Examples:
        >>> d = Delta(torch.tensor([1.0, 2.0]))
        >>> d.sample()
        tensor([1., 2.])
        >>> d.log_prob(torch.tensor([1.0, 2.0]))
        tensor(inf)
    """

    arg_constraints: dict = {}  # noqa: RUF012 (torch convention)
    has_rsample = True

    def __init__(
        self,
        param: torch.Tensor,
        atol: float = 1e-6,
        rtol: float = 1e-6,
        batch_shape: Sequence[int] | None = None,
        event_shape: Sequence[int] | None = None,
    ) -> None:
        self.param, self.atol, self.rtol = param, atol, rtol
        if batch_shape is None and event_shape is None:
            batch_shape, event_shape = param.shape[:-1], param.shape[-1:]
        super().__init__(torch.Size(batch_shape or ()), torch.Size(event_shape or ()), validate_args=False)

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> Delta:
        shape = torch.Size(batch_shape)
        return Delta(self.param.expand(shape + self.event_shape), self.atol, self.rtol, shape, self.event_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        param = self.param.expand_as(value)
        equal = (value - param).abs() <= self.atol + self.rtol * param.abs()
        for _ in self.event_shape:
            equal = equal.all(-1)
        inf = torch.full_like(equal, float("inf"), dtype=value.dtype)
        return torch.where(equal, inf, -inf)

    def rsample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> torch.Tensor:
        return self.param.expand(*torch.Size(sample_shape), *self.param.shape)

    def sample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    @property
    def mean(self) -> torch.Tensor:
        return self.param

    @property
    def mode(self) -> torch.Tensor:
        return self.param

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self.param
