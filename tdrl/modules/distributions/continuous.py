"""Continuous action distributions: TanhNormal, IndependentNormal, TruncatedNormal, Delta.

Every class here is a ``torch.distributions.Distribution`` built with
``validate_args=False`` and closed-form ``log_prob``: they are constructed once per
policy step, so construction does no argument checks beyond what the class needs
to be correct (bounds are checked once, when they are first seen).

Each class offers ``deterministic_sample``, the value ``ExplorationType.MEAN``,
``MODE`` and ``DETERMINISTIC`` return from a :class:`~tdrl.modules.ProbabilisticActor`.

Examples:
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> dist = TanhNormal(torch.zeros(2), torch.ones(2), low=-2.0, high=2.0)
    >>> action = dist.rsample()
    >>> bool(((action >= -2) & (action <= 2)).all())
    True
    >>> dist.log_prob(action).shape
    torch.Size([])
    >>> dist.deterministic_sample
    tensor([0., 0.])
"""

from __future__ import annotations

import math
from numbers import Number
from typing import Any, Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import distributions as D
from torch.distributions import constraints

__all__ = ["TanhNormal", "IndependentNormal", "TruncatedNormal", "Delta"]

TensorLike = Union[torch.Tensor, Number]
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_LOG2 = math.log(2.0)


def _as_scale(scale: Any, loc: torch.Tensor) -> torch.Tensor:
    """``scale`` as a tensor on ``loc``'s device: a tensor, a number or ``callable(loc)``."""
    if isinstance(scale, torch.Tensor):
        return scale if scale.device == loc.device else scale.to(loc.device)
    if callable(scale):
        return scale(loc)
    return torch.full_like(loc, float(scale))


def _pop_old_bound_names(low: Any, high: Any, kwargs: dict, cls: str) -> tuple[Any, Any]:
    """Accept TorchRL's older ``min``/``max`` (and ``minimum``/``maximum``) keyword names."""
    for old, new in (("min", "low"), ("minimum", "low"), ("max", "high"), ("maximum", "high")):
        if old in kwargs:
            value = kwargs.pop(old)
            if new == "low":
                low = value
            else:
                high = value
    if kwargs:
        raise TypeError(
            f"{cls} got unexpected keyword arguments {sorted(kwargs)}; it accepts loc, scale, "
            f"low, high (or the older min, max), upscale, tanh_loc and event_dims."
        )
    return low, high


class _Box:
    """The affine map ``[-1, 1] -> [low, high]`` of a squashed distribution, checked once.

    Holds ``low``/``high`` as tensors, the map's centre and half-width, ``log(half-width)``
    and whether rounding can push ``centre + half_width * t`` (``|t| <= 1``) out of the box
    (then samples are clamped). ``trivial`` is True for the default ``[-1, 1]`` box, which
    skips the affine map altogether.
    """

    __slots__ = ("low", "high", "center", "half", "log_half", "const", "trivial", "needs_clamp", "lim")

    def __init__(self, low: TensorLike, high: TensorLike, dtype: torch.dtype, device: torch.device) -> None:
        low_t = torch.as_tensor(low, dtype=dtype, device=device)
        high_t = torch.as_tensor(high, dtype=dtype, device=device)
        try:
            bad = ~(high_t > low_t)
        except RuntimeError as err:
            raise ValueError(
                f"low {tuple(low_t.shape)} and high {tuple(high_t.shape)} cannot be broadcast "
                f"together; pass bounds of the action's shape or scalars."
            ) from err
        if bad.any():
            raise ValueError(
                f"low must be < high everywhere, got low={low_t.tolist()} high={high_t.tolist()}. "
                f"Pass the action spec's bounds: low=spec.space.low, high=spec.space.high."
            )
        if not (torch.isfinite(low_t).all() and torch.isfinite(high_t).all()):
            raise ValueError(
                f"low and high must be finite for a squashed distribution, got low={low_t.tolist()} "
                f"high={high_t.tolist()}. Use IndependentNormal for an unbounded action."
            )
        self.low, self.high = low_t, high_t
        self.lim = 1.0 - torch.finfo(dtype).resolution
        self.trivial = bool((low_t == -1).all() and (high_t == 1).all())
        self.center = (high_t + low_t) / 2
        self.half = (high_t - low_t) / 2
        self.log_half = self.half.log()
        # the constant part of the elementwise log-density: -log(sqrt(2 pi)) - 2 log 2 - log(half)
        const = -_HALF_LOG_2PI - 2 * _LOG2
        self.const = torch.tensor(const, dtype=dtype, device=device) if self.trivial else const - self.log_half
        top = self.center + self.half * self.lim
        bottom = self.center - self.half * self.lim
        self.needs_clamp = bool((top > high_t).any() or (bottom < low_t).any())

    def to(self, dtype: torch.dtype, device: torch.device) -> _Box:
        return _Box(self.low, self.high, dtype, device)


class _BoxCache:
    """Reuse the last checked :class:`_Box` when the same bounds come again.

    A policy builds one distribution per step with the same ``low``/``high`` objects;
    checking ``low < high`` each time would cost a device sync. The cache key holds the
    bound tensors themselves (so their ids cannot be reused) and their version counters
    (so an in-place change is seen).
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._box: _Box | None = None

    def get(self, low: TensorLike, high: TensorLike, dtype: torch.dtype, device: torch.device) -> _Box:
        key = (
            low, low._version if isinstance(low, torch.Tensor) else None,
            high, high._version if isinstance(high, torch.Tensor) else None,
            dtype, device,
        )
        old = self._key
        if old is not None and len(old) == len(key) and all(
            a is b or (not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor) and a == b)
            for a, b in zip(old, key)
        ):
            return self._box  # type: ignore[return-value]
        box = _Box(low, high, dtype, device)
        self._key, self._box = key, box
        return box


_BOXES = _BoxCache()


class _TanhNormalBuilder:
    """Builds ``cls(loc, scale, ...)`` with bounds checked once (picklable, unlike a closure)."""

    def __init__(
        self, cls: type, low: TensorLike, high: TensorLike, upscale: TensorLike, tanh_loc: bool, event_dims: int | None
    ) -> None:
        self.cls, self.low, self.high = cls, low, high
        self.upscale, self.tanh_loc, self.event_dims = upscale, tanh_loc, event_dims
        ref = low if isinstance(low, torch.Tensor) else high if isinstance(high, torch.Tensor) else None
        dtype = ref.dtype if ref is not None and ref.dtype.is_floating_point else torch.get_default_dtype()
        device = ref.device if ref is not None else torch.device("cpu")
        self._boxes = {(dtype, device): _Box(low, high, dtype, device)}

    def __call__(self, loc: torch.Tensor, scale: Any) -> TanhNormal:
        box = self._boxes.get((loc.dtype, loc.device))
        if box is None:
            box = self._boxes[(loc.dtype, loc.device)] = _Box(self.low, self.high, loc.dtype, loc.device)
        out = self.cls.__new__(self.cls)
        out._setup(loc, scale, box, self.upscale, self.tanh_loc, self.event_dims)
        return out

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_boxes"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._boxes = {}


class TanhNormal(D.Distribution):
    """A Normal squashed by ``tanh`` and mapped onto ``[low, high]``: bounded continuous actions.

    A sample is ``low + (high - low) * (tanh(u) + 1) / 2`` with ``u ~ Normal(loc, scale)``.
    ``log_prob`` is in closed form, ``log N(u) - log(1 - tanh(u)^2) - log((high - low) / 2)``
    with ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``, which stays finite at the
    bounds: a value at ``low`` or ``high`` is read as ``tanh(u) = ±(1 - eps)`` (``eps`` the
    dtype's resolution), as TorchRL does.

    The deterministic action (``deterministic_sample``, ``mode`` and ``mean``) is the
    squashed location ``low + (high - low) * (tanh(loc) + 1) / 2``: this is what
    ``ExplorationType.MEAN``/``MODE``/``DETERMINISTIC`` return, so evaluation rollouts are
    deterministic. Note that the exact expectation of a tanh-normal has no closed form
    (estimate it with ``dist.sample((n,)).mean(0)``) and neither has its entropy
    (``entropy()`` raises; estimate it with ``-dist.log_prob(dist.rsample((n,))).mean(0)``).

    Args:
        loc: location of the Normal before the squash, shape ``[*batch, *event]``.
        scale: its standard deviation: a tensor, a number, or a callable ``scale(loc)``.
        low: lower bound of the action (number or tensor broadcastable to ``loc``).
            ``min`` is accepted as TorchRL's older name.
        high: upper bound (``max`` in older code). Must be ``> low`` everywhere.
        upscale: with ``tanh_loc=True``, the location is ``upscale * tanh(loc / upscale)``.
        tanh_loc: bound the pre-squash location to ``[-upscale, upscale]``.
        event_dims: how many trailing dims ``log_prob`` sums over (``None``: 1, or 0 for a
            scalar ``loc``).
        safe_tanh: kept for TorchRL compatibility (the squash is always safe).

    Raises:
        ValueError: when ``low >= high`` somewhere, or a bound is not finite.
        TypeError: on an unknown keyword argument.

    Examples:
        >>> dist = TanhNormal(torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0]), min=0.0, max=4.0)
        >>> dist.deterministic_sample
        tensor([2.0000, 3.9901])
        >>> dist.log_prob(torch.tensor([2.0, 4.0])).isfinite().item()
        True
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = True
    num_params = 2
    _extra_kwarg_names = ("min", "max", "minimum", "maximum")

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor | float | Callable[[torch.Tensor], torch.Tensor],
        low: TensorLike = -1.0,
        high: TensorLike = 1.0,
        upscale: TensorLike = 5.0,
        tanh_loc: bool = False,
        event_dims: int | None = None,
        safe_tanh: bool = True,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            low, high = _pop_old_bound_names(low, high, kwargs, "TanhNormal")
        if not isinstance(loc, torch.Tensor):
            loc = torch.as_tensor(loc, dtype=torch.get_default_dtype())
        box = _BOXES.get(low, high, loc.dtype, loc.device)
        self._setup(loc, scale, box, upscale, tanh_loc, event_dims)

    @classmethod
    def _factory(cls, **kwargs: Any) -> _TanhNormalBuilder:
        """A ``(loc, scale) -> TanhNormal`` builder with the bounds checked now, once.

        :class:`~tdrl.modules.ProbabilisticActor` uses it on its per-step path.
        """
        low, high = _pop_old_bound_names(
            kwargs.pop("low", -1.0), kwargs.pop("high", 1.0),
            {k: kwargs.pop(k) for k in ("min", "max", "minimum", "maximum") if k in kwargs}, cls.__name__,
        )
        upscale = kwargs.pop("upscale", 5.0)
        tanh_loc = kwargs.pop("tanh_loc", False)
        event_dims = kwargs.pop("event_dims", None)
        kwargs.pop("safe_tanh", None)
        if kwargs:
            raise TypeError(f"{cls.__name__} got unexpected keyword arguments {sorted(kwargs)}")
        return _TanhNormalBuilder(cls, low, high, upscale, tanh_loc, event_dims)

    def _setup(
        self,
        loc: torch.Tensor,
        scale: Any,
        box: _Box,
        upscale: TensorLike,
        tanh_loc: bool,
        event_dims: int | None,
    ) -> None:
        scale = _as_scale(scale, loc)
        if tanh_loc:
            loc = (loc / upscale).tanh() * upscale
        self.loc, self.scale = loc, scale
        self.upscale, self.tanh_loc = upscale, tanh_loc
        self._box = box
        shape = loc.shape if loc.shape == scale.shape else torch.broadcast_shapes(loc.shape, scale.shape)
        if event_dims is None:
            event_dims = min(1, len(shape))
        self._event_dims = event_dims
        cut = len(shape) - event_dims
        super().__init__(shape[:cut], shape[cut:], validate_args=False)

    # --- bounds ------------------------------------------------------------------------
    @property
    def low(self) -> torch.Tensor:
        return self._box.low

    @property
    def high(self) -> torch.Tensor:
        return self._box.high

    min = low
    max = high

    @property
    def event_dims(self) -> int:
        return self._event_dims

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self) -> constraints.Constraint:
        return constraints.interval(self._box.low, self._box.high)

    # --- the squash ----------------------------------------------------------------------
    def _squash(self, u: torch.Tensor) -> torch.Tensor:
        box = self._box
        t = u.tanh().clamp(-box.lim, box.lim)
        if box.trivial:
            return t
        y = torch.addcmul(box.center, box.half, t)
        if box.needs_clamp:
            y = torch.maximum(torch.minimum(y, box.high), box.low)
        return y

    def _sum_event(self, x: torch.Tensor) -> torch.Tensor:
        n = self._event_dims
        if n == 0:
            return x
        if n == 1:
            return x.sum(-1)
        return x.sum(tuple(range(-n, 0)))

    def _log_prob_pre(self, u: torch.Tensor) -> torch.Tensor:
        """Elementwise log-density of the action ``squash(u)``, before the event sum.

        ``log N(u; loc, scale) - log(1 - tanh(u)^2) - log(half-width)`` with
        ``log(1 - tanh(u)^2) = 2 log 2 - 2 (u - 2 sp)`` and ``sp = softplus(u, beta=-2)
        = -softplus(-2u) / 2``: finite for any ``u``, in 8 tensor ops (the constants are
        folded into one tensor of the box).
        """
        z = (u - self.loc) / self.scale
        w = torch.add(u, F.softplus(u, beta=-2.0), alpha=-2.0)
        lp = torch.add(self._box.const - self.scale.log(), w, alpha=2.0)
        return torch.addcmul(lp, z, z, value=-0.5)

    def _unsquash(self, value: torch.Tensor) -> torch.Tensor:
        box = self._box
        t = value if box.trivial else (value - box.center) / box.half
        return t.clamp(-box.lim, box.lim).atanh()

    # --- Distribution API ----------------------------------------------------------------
    def rsample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self._squash(torch.addcmul(self.loc, self.scale, eps))

    def sample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self._sum_event(self._log_prob_pre(self._unsquash(value)))

    def rsample_and_log_prob(
        self, sample_shape: Sequence[int] | torch.Size = torch.Size()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparametrised sample and its log-probability, scored on the exact pre-squash value.

        Cheaper and more accurate than ``log_prob(rsample())`` when ``tanh`` saturates.
        """
        shape = self._extended_shape(torch.Size(sample_shape))
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        u = torch.addcmul(self.loc, self.scale, eps)
        return self._squash(u), self._sum_event(self._log_prob_pre(u))

    def sample_and_log_prob(
        self, sample_shape: Sequence[int] | torch.Size = torch.Size()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`rsample_and_log_prob` with the sample detached (the log-prob keeps its graph)."""
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
            u = torch.addcmul(self.loc, self.scale, eps)
            action = self._squash(u)
        return action, self._sum_event(self._log_prob_pre(u))

    @property
    def deterministic_sample(self) -> torch.Tensor:
        """The squashed location: the action ``ExplorationType.DETERMINISTIC`` returns."""
        loc = self.loc
        if loc.shape != self.batch_shape + self.event_shape:
            loc = loc.expand(self.batch_shape + self.event_shape)
        return self._squash(loc)

    @property
    def mode(self) -> torch.Tensor:
        """The squashed location (the convention of SB3 and TorchRL's deterministic action)."""
        return self.deterministic_sample

    @property
    def mean(self) -> torch.Tensor:
        """The squashed location, which ``ExplorationType.MEAN`` returns (see the class note)."""
        return self.deterministic_sample

    def entropy(self) -> torch.Tensor:
        raise NotImplementedError(
            "TanhNormal has no closed-form entropy; estimate it with "
            "-dist.log_prob(dist.rsample((n,))).mean(0) (or dist.rsample_and_log_prob((n,)))."
        )

    @property
    def base_dist(self) -> D.Distribution:
        """The Normal before the squash (as ``Independent`` over the event dims)."""
        base = D.Normal(self.loc, self.scale, validate_args=False)
        return D.Independent(base, self._event_dims, validate_args=False) if self._event_dims else base

    root_dist = base_dist

    def update(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        """Replace ``loc`` and ``scale`` in place (bounds and options kept)."""
        self._setup(loc, scale, self._box, self.upscale, self.tanh_loc, self._event_dims)

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> TanhNormal:
        shape = torch.Size(batch_shape) + self.event_shape
        out = type(self).__new__(type(self))
        out._setup(self.loc.expand(shape), self.scale.expand(shape), self._box, self.upscale, False, self._event_dims)
        out.tanh_loc = self.tanh_loc
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(loc: {tuple(self.loc.shape)}, scale: {tuple(self.scale.shape)}, "
            f"low={self._box.low.tolist()}, high={self._box.high.tolist()}, event_dims={self._event_dims})"
        )


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

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
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
        shape = self._extended_shape(torch.Size(sample_shape))
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
        return torch.maximum(torch.minimum(self.loc, self._high), self._low).expand(
            self.batch_shape + self.event_shape
        )

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

    arg_constraints: dict = {}
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
