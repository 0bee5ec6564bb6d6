"""Bounds of squashed and truncated distributions: parsed and checked once, then reused.

``low``/``high`` (or TorchRL's older ``min``/``max``) become a :class:`_Box` holding the
affine map ``[-1, 1] -> [low, high]`` and its log-scale; ``low < high`` is checked when a
box is built, and :data:`_BOXES` reuses the last box while the same bound objects come
back, so a distribution built on every policy step does not re-check them.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch

from tdrl._compat import tensor_version

__all__: list[str] = []

TensorLike = torch.Tensor | float  # a bound: a tensor or a number (an int is a float to a type checker)
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

    __slots__ = ("center", "const", "half", "high", "lim", "log_half", "low", "needs_clamp", "trivial")

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
            low,
            tensor_version(low) if isinstance(low, torch.Tensor) else None,
            high,
            tensor_version(high) if isinstance(high, torch.Tensor) else None,
            dtype,
            device,
        )
        old = self._key
        if (
            old is not None
            and len(old) == len(key)
            and all(
                a is b or (not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor) and a == b)
                for a, b in zip(old, key)
            )
        ):
            return cast(_Box, self._box)  # set together with the key
        box = _Box(low, high, dtype, device)
        self._key, self._box = key, box
        return box


_BOXES = _BoxCache()
