"""TanhDelta: a point mass squashed by tanh onto ``[low, high]``, for deterministic bounded actors (DDPG, TD3).

Every sample is the same action, the squashed network output; ``rsample`` carries its
gradient to the network, which is how DDPG's actor loss reaches the actor. Bounds are
checked once (see ``_bounds.py``).

Examples:
    >>> import torch
    >>> dist = TanhDelta(torch.tensor([0.0, 0.5]), low=-2.0, high=2.0)
    >>> dist.rsample()
    tensor([0.0000, 0.9242])
    >>> dist.log_prob(dist.rsample()), dist.log_prob(torch.zeros(2))
    (tensor(inf), tensor(-inf))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import distributions as D
from torch.distributions import constraints

from tdrl.modules.distributions._bounds import _BOXES, TensorLike, _Box, _pop_old_bound_names

__all__ = ["TanhDelta"]


class _TanhDeltaBuilder:
    """Builds ``TanhDelta(param, ...)`` with the bounds checked once per actor (picklable)."""

    def __init__(self, low: TensorLike, high: TensorLike, event_dims: int, atol: float, rtol: float) -> None:
        self.low, self.high, self.event_dims, self.atol, self.rtol = low, high, event_dims, atol, rtol
        ref = low if isinstance(low, torch.Tensor) else high if isinstance(high, torch.Tensor) else None
        dtype = ref.dtype if ref is not None and ref.dtype.is_floating_point else torch.get_default_dtype()
        device = ref.device if ref is not None else torch.device("cpu")
        self._boxes = {(dtype, device): _Box(low, high, dtype, device)}

    def __call__(self, param: torch.Tensor) -> TanhDelta:
        box = self._boxes.get((param.dtype, param.device))
        if box is None:
            box = self._boxes[(param.dtype, param.device)] = _Box(self.low, self.high, param.dtype, param.device)
        out = TanhDelta.__new__(TanhDelta)
        out._setup(param, box, self.event_dims, self.atol, self.rtol)
        return out

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_boxes"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._boxes = {}


def _safe_tanh(x: torch.Tensor, lim: float) -> torch.Tensor:
    """``tanh(x)`` kept within ``[-lim, lim]``, with TorchRL's gradient ``1 - y^2`` even where it is clamped."""
    y = x.tanh().clamp(-lim, lim)
    if not x.requires_grad:
        return y
    slope = 1 - y.detach().square()
    return y.detach() + (x - x.detach()) * slope


class TanhDelta(D.Distribution):
    """A point mass at ``low + (high - low) * (tanh(param + centre) + 1) / 2``: a deterministic bounded action.

    ``sample``/``rsample`` (``ExplorationType.RANDOM``), ``deterministic_sample``/``mode``
    (``DETERMINISTIC``/``MODE``) and ``mean`` (``MEAN``) are all that action; ``rsample``
    keeps its gradient. ``log_prob`` is ``+inf`` for the action itself (compared before the
    squash, within ``atol + rtol * |param|``) and ``-inf`` elsewhere, as TorchRL's (so a
    saturated action, whose pre-squash value the clamp has changed, reads ``-inf`` too).

    As in TorchRL 0.14.1, the parameter is shifted by the box's centre ``(low + high) / 2``
    before the squash: with bounds that are not symmetric around 0, ``param = 0`` does not
    give the middle of the box (a network learns the shift in its last bias). The tanh is
    kept ``resolution`` away from ``±1`` so the action can be inverted, and its gradient is
    TorchRL's there too. One difference: ``mean`` is the action (TorchRL's raises).

    Args:
        param: the network output, shape ``[*batch, *event]``.
        low: lower bound of the action (number or tensor; ``min`` is accepted as the older name).
        high: upper bound (``max``); must be ``> low`` everywhere, and both finite.
        event_dims: how many trailing dims form one action (default 1).
        atol: absolute tolerance of ``log_prob``'s equality test.
        rtol: relative tolerance.
        safe: kept for TorchRL compatibility (the squash is always the safe one).

    Raises:
        ValueError: when ``low >= high`` somewhere, or a bound is not finite.
        TypeError: on an unknown keyword argument.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from tensordict import TensorDict
        >>> from tensordict.nn import TensorDictModule
        >>> from tdrl.modules import ProbabilisticActor
        >>> from tdrl.specs import Bounded
        >>> spec = Bounded(-1.0, 1.0, shape=(2,))
        >>> actor = ProbabilisticActor(
        ...     TensorDictModule(nn.Linear(3, 2), in_keys=["observation"], out_keys=["param"]),
        ...     in_keys=["param"], spec=spec, distribution_class=TanhDelta,
        ...     distribution_kwargs={"low": spec.space.low, "high": spec.space.high})
        >>> action = actor(TensorDict(observation=torch.randn(4, 3), batch_size=[4]))["action"]
        >>> action.shape, bool(spec.is_in(action))
        (torch.Size([4, 2]), True)
    """

    arg_constraints = {"param": constraints.real}  # noqa: RUF012 (torch convention)
    has_rsample = True
    num_params = 1
    _extra_kwarg_names = ("min", "max", "minimum", "maximum")

    def __init__(
        self,
        param: torch.Tensor,
        low: TensorLike = -1.0,
        high: TensorLike = 1.0,
        event_dims: int = 1,
        atol: float = 1e-6,
        rtol: float = 1e-6,
        safe: bool = True,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            low, high = _pop_old_bound_names(low, high, kwargs, "TanhDelta")
        if not isinstance(param, torch.Tensor):
            param = torch.as_tensor(param, dtype=torch.get_default_dtype())
        self._setup(param, _BOXES.get(low, high, param.dtype, param.device), event_dims, atol, rtol)

    @classmethod
    def _factory(cls, **kwargs: Any) -> _TanhDeltaBuilder:
        """A ``param -> TanhDelta`` builder with the bounds checked now, once (for ProbabilisticActor)."""
        old = {k: kwargs.pop(k) for k in cls._extra_kwarg_names if k in kwargs}
        low, high = _pop_old_bound_names(kwargs.pop("low", -1.0), kwargs.pop("high", 1.0), old, cls.__name__)
        event_dims = kwargs.pop("event_dims", 1)
        atol, rtol = kwargs.pop("atol", 1e-6), kwargs.pop("rtol", 1e-6)
        kwargs.pop("safe", None)
        if kwargs:
            raise TypeError(
                f"TanhDelta got unexpected keyword arguments {sorted(kwargs)}; it accepts low, high "
                f"(or min, max), event_dims, atol, rtol and safe."
            )
        return _TanhDeltaBuilder(low, high, event_dims, atol, rtol)

    def _setup(self, param: torch.Tensor, box: _Box, event_dims: int, atol: float, rtol: float) -> None:
        if not 0 <= event_dims <= param.ndim:
            raise ValueError(
                f"TanhDelta: event_dims={event_dims} for a parameter of shape {tuple(param.shape)}; "
                f"it must be between 0 and {param.ndim}."
            )
        self.param, self._box, self.atol, self.rtol = param, box, atol, rtol
        self._event_dims = event_dims
        cut = param.ndim - event_dims
        super().__init__(param.shape[:cut], param.shape[cut:], validate_args=False)

    # --- bounds --------------------------------------------------------------------------
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

    @property
    def loc(self) -> torch.Tensor:
        """The point before the squash, ``param`` shifted by the box's centre (TorchRL's convention)."""
        box = self._box
        return self.param if box.trivial else self.param + box.center

    # --- Distribution API ------------------------------------------------------------------
    @property
    def mode(self) -> torch.Tensor:
        """The action."""
        box = self._box
        t = _safe_tanh(self.loc, box.lim)
        if box.trivial:
            return t
        y = box.center + box.half * t
        if box.needs_clamp:
            y = torch.maximum(torch.minimum(y, box.high), box.low)
        return y

    @property
    def deterministic_sample(self) -> torch.Tensor:
        return self.mode

    @property
    def mean(self) -> torch.Tensor:
        """The action (the mean of a point mass; TorchRL's raises ``AttributeError``)."""
        return self.mode

    def rsample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> torch.Tensor:
        mode = self.mode
        return mode.expand(*torch.Size(sample_shape), *mode.shape)

    def sample(self, sample_shape: Sequence[int] | torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        box = self._box
        t = value if box.trivial else (value - box.center) / box.half
        pre = t.clamp(-box.lim, box.lim).atanh()
        loc = self.loc.expand_as(pre)
        equal = (pre - loc).abs() < self.atol + self.rtol * loc.abs()
        for _ in range(self._event_dims):
            equal = equal.all(-1)
        inf = torch.full_like(equal, float("inf"), dtype=value.dtype)
        return torch.where(equal, inf, -inf)

    def update(self, param: torch.Tensor) -> None:
        """Replace the parameter in place (bounds and options kept)."""
        self._setup(param, self._box, self._event_dims, self.atol, self.rtol)

    def expand(self, batch_shape: Sequence[int], _instance: Any = None) -> TanhDelta:
        out = TanhDelta.__new__(TanhDelta)
        out._setup(
            self.param.expand(torch.Size(batch_shape) + self.event_shape),
            self._box,
            self._event_dims,
            self.atol,
            self.rtol,
        )
        return out

    def __repr__(self) -> str:
        return (
            f"TanhDelta(param: {tuple(self.param.shape)}, low={self._box.low.tolist()}, "
            f"high={self._box.high.tolist()}, event_dims={self._event_dims})"
        )
