"""TanhNormal: a Normal squashed by tanh onto ``[low, high]``, for bounded continuous actions.

Built with ``validate_args=False`` and a closed-form ``log_prob``: a policy builds one per
step. Bounds are checked once (see ``_bounds.py``). ``deterministic_sample`` and ``mode``
are the squashed location (``ExplorationType.DETERMINISTIC``/``MODE``); ``mean`` is the
expectation of the action (``ExplorationType.MEAN``), computed without random numbers.

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

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import distributions as D
from torch.distributions import constraints

from tdrl.modules.distributions._bounds import (
    _BOXES,
    TensorLike,
    _as_scale,
    _Box,
    _pop_old_bound_names,
)

__all__ = ["TanhNormal"]

_MEAN_POINTS = 128


@functools.cache
def _normal_quantiles(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The standard Normal's quantiles at the centres of ``_MEAN_POINTS`` equal-probability bins."""
    p = (torch.arange(_MEAN_POINTS, dtype=torch.float64) + 0.5) / _MEAN_POINTS
    return torch.special.ndtri(p).to(dtype=dtype, device=device)


def _standard_normal(shape: torch.Size, loc: torch.Tensor) -> torch.Tensor:
    """``torch.randn(shape)`` in ``loc``'s dtype and device: the noise of a reparametrised draw.

    ``randn_like`` on a contiguous ``loc`` of that shape allocates the same contiguous
    tensor and fills it from the same generator (the same numbers), at a third of the
    per-call cost of ``randn`` with a size, dtype and device to parse.
    """
    if loc.shape == shape and loc.is_contiguous():
        return torch.randn_like(loc)
    return torch.randn(shape, dtype=loc.dtype, device=loc.device)


def _squash(box: _Box, u: torch.Tensor) -> torch.Tensor:
    """The action ``low + (high - low) * (tanh(u) + 1) / 2``, kept strictly inside the box."""
    t = u.tanh().clamp(-box.lim, box.lim)
    if box.trivial:
        return t
    y = torch.addcmul(box.center, box.half, t)
    if box.needs_clamp:
        y = torch.maximum(torch.minimum(y, box.high), box.low)
    return y


def _unsquash(box: _Box, value: torch.Tensor) -> torch.Tensor:
    """The pre-squash value of an action (a bound is read as ``tanh(u) = +-(1 - eps)``)."""
    t = value if box.trivial else (value - box.center) / box.half
    return t.clamp(-box.lim, box.lim).atanh()


def _sum_event(x: torch.Tensor, n: int) -> torch.Tensor:
    if n == 0:
        return x
    if n == 1:
        return x.sum(-1)
    return x.sum(tuple(range(-n, 0)))


def _log_prob_pre(u: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, box: _Box) -> torch.Tensor:
    """Elementwise log-density of the action ``squash(u)``, before the event sum.

    ``log N(u; loc, scale) - log(1 - tanh(u)^2) - log(half-width)`` with
    ``log(1 - tanh(u)^2) = 2 log 2 - 2 (u - 2 sp)`` and ``sp = softplus(u, beta=-2)
    = -softplus(-2u) / 2``: finite for any ``u``, in 8 tensor ops (the constants are
    folded into one tensor of the box).
    """
    z = (u - loc) / scale
    w = torch.add(u, F.softplus(u, beta=-2.0), alpha=-2.0)
    lp = torch.add(box.const - scale.log(), w, alpha=2.0)
    return torch.addcmul(lp, z, z, value=-0.5)


class _TanhNormalBuilder:
    """Builds ``cls(loc, scale, ...)`` with bounds checked once (picklable, unlike a closure)."""

    def __init__(
        self,
        cls: type[TanhNormal],
        low: TensorLike,
        high: TensorLike,
        upscale: TensorLike,
        tanh_loc: bool,
        event_dims: int | None,
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

    def sample_and_log_prob(self, loc: torch.Tensor, scale: Any, score: bool) -> tuple[torch.Tensor, Any] | None:
        """``a = self(loc, scale).rsample()`` and, if ``score``, ``log_prob(a)``, without the object.

        The same tensor operations in the same order (the same values and random draws) as
        the distribution's own methods, for :class:`~tdrl.modules.ProbabilisticActor`'s
        per-step call. ``None`` (nothing drawn) when the builder is not plain: another
        distribution class, or a box not built yet for ``loc``'s dtype and device.
        """
        if self.cls is not TanhNormal or type(loc) is not torch.Tensor:
            return None
        box = self._boxes.get((loc.dtype, loc.device))
        if box is None:
            return None
        scale = _as_scale(scale, loc)
        if self.tanh_loc:
            loc = (loc / self.upscale).tanh() * self.upscale
        shape = loc.shape if loc.shape == scale.shape else torch.broadcast_shapes(loc.shape, scale.shape)
        eps = _standard_normal(shape, loc)
        action = _squash(box, torch.addcmul(loc, scale, eps))
        if not score:
            return action, None
        # log_prob's unsquash: on the [-1, 1] box the action is already clamped to +-lim, and
        # clamping again returns the same bits, so only the atanh is left
        u = action.atanh() if box.trivial else _unsquash(box, action)
        event_dims = min(1, len(shape)) if self.event_dims is None else self.event_dims
        return action, _sum_event(_log_prob_pre(u, loc, scale, box), event_dims)

    @property
    def never_validates(self) -> bool:
        """Whether the distributions it builds skip argument validation whatever torch's default
        (TanhNormal's own setup passes ``validate_args=False``): a loss need not switch it off."""
        return self.cls._setup is TanhNormal._setup

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

    Deterministic actions: ``deterministic_sample`` and ``mode`` are the squashed location
    ``low + (high - low) * (tanh(loc) + 1) / 2`` (``ExplorationType.DETERMINISTIC``/``MODE``,
    the convention of TorchRL and SB3); ``mean`` is the expectation of the action
    (``ExplorationType.MEAN``, as in TorchRL). A wide ``scale`` pulls the mean towards the
    middle of the box while the squashed location stays put. The mean has no closed form:
    it is the average of the squashed Normal at 128 equal-probability quantiles,
    deterministic and within 1e-3 of the half-range of the exact value for any ``loc`` and
    ``scale`` (TorchRL averages 1,000 random samples). The entropy has no closed form either
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

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}  # noqa: RUF012 (torch convention)
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
            kwargs.pop("low", -1.0),
            kwargs.pop("high", 1.0),
            {k: kwargs.pop(k) for k in ("min", "max", "minimum", "maximum") if k in kwargs},
            cls.__name__,
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
        return _squash(self._box, u)

    def _sum_event(self, x: torch.Tensor) -> torch.Tensor:
        return _sum_event(x, self._event_dims)

    def _log_prob_pre(self, u: torch.Tensor) -> torch.Tensor:
        """Elementwise log-density of the action ``squash(u)``, before the event sum (see ``_log_prob_pre``)."""
        return _log_prob_pre(u, self.loc, self.scale, self._box)

    def _unsquash(self, value: torch.Tensor) -> torch.Tensor:
        return _unsquash(self._box, value)

    # --- Distribution API ----------------------------------------------------------------
    def rsample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        eps = _standard_normal(shape, self.loc)
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
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        eps = _standard_normal(shape, self.loc)
        u = torch.addcmul(self.loc, self.scale, eps)
        return self._squash(u), self._sum_event(self._log_prob_pre(u))

    def rsample_log_prob(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> torch.Tensor:
        """The log-probability of a reparametrised draw, without squashing the draw itself.

        The Monte-Carlo entropy estimate ``-rsample_log_prob((n,)).mean(0)`` needs only the
        score: this is the second output of :meth:`rsample_and_log_prob` (same random
        numbers, same value) without the two ops that map the draw onto ``[low, high]``.

        Examples:
            >>> dist = TanhNormal(torch.zeros(3), torch.ones(3))
            >>> _ = torch.manual_seed(0)
            >>> lp = dist.rsample_log_prob((2,))
            >>> _ = torch.manual_seed(0)
            >>> torch.equal(lp, dist.rsample_and_log_prob((2,))[1])
            True
        """
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        eps = _standard_normal(shape, self.loc)
        return self._sum_event(self._log_prob_pre(torch.addcmul(self.loc, self.scale, eps)))

    def sample_and_log_prob(
        self, sample_shape: Sequence[int] | torch.Size = torch.Size()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`rsample_and_log_prob` with the sample detached (the log-prob keeps its graph)."""
        shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
        with torch.no_grad():
            eps = _standard_normal(shape, self.loc)
            u = torch.addcmul(self.loc, self.scale, eps)
            action = self._squash(u)
        return action, self._sum_event(self._log_prob_pre(u))

    @property
    def deterministic_sample(self) -> torch.Tensor:
        """The squashed location, i.e. the action ``ExplorationType.DETERMINISTIC`` returns."""
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
        """The expectation of the action, which ``ExplorationType.MEAN`` returns (see the class note).

        Examples:
            >>> dist = TanhNormal(torch.tensor([0.5, 0.5]), torch.tensor([0.01, 3.0]))
            >>> dist.deterministic_sample
            tensor([0.4621, 0.4621])
            >>> dist.mean  # the wide Normal's mass is spread over both ends of [-1, 1]
            tensor([0.4621, 0.1269])
        """
        shape = self.batch_shape + self.event_shape
        q = _normal_quantiles(self.loc.dtype, self.loc.device)
        u = torch.addcmul(self.loc.expand(shape).unsqueeze(-1), self.scale.expand(shape).unsqueeze(-1), q)
        t = u.tanh().mean(-1)
        box = self._box
        return t if box.trivial else torch.addcmul(box.center, box.half, t)

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
