"""Continuous specs: ``Unbounded`` and ``Bounded``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tdrl.specs.base import ContinuousBox, DeviceLike, ShapeLike, TensorSpec, _as_shape, _clamp_cast, _first_bad

__all__ = ["Unbounded", "Bounded"]


class Unbounded(TensorSpec):
    """A tensor with no bound on its values (``float32`` by default).

    Args:
        shape: the tensor's shape, batch dims included.
        device: where the tensors live.
        dtype: the tensor's dtype.

    Examples:
        >>> Unbounded(shape=(2,)).zero()
        tensor([0., 0.])
    """

    def __init__(
        self,
        shape: ShapeLike = (),
        device: DeviceLike = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(shape, dtype or torch.get_default_dtype(), device)

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        full = (*_as_shape(shape), *self.shape)
        if self.dtype == torch.bool:
            return torch.randint(0, 2, full, device=self.device).bool()
        if not self.dtype.is_floating_point:
            info = torch.iinfo(self.dtype)  # -100..99, within the dtype (0..99 for uint8)
            return torch.randint(max(-100, info.min), min(100, info.max), full, dtype=self.dtype, device=self.device)
        return torch.randn(full, dtype=self.dtype, device=self.device)

    def _mismatch(self, value: torch.Tensor) -> str | None:
        return None

    def _clone_to(self, **changes: Any) -> Unbounded:
        return Unbounded(
            shape=changes.get("shape", self.shape),
            device=changes.get("device", self.device),
            dtype=changes.get("dtype", self.dtype),
        )


class Bounded(TensorSpec):
    """A tensor whose values lie in the box ``[low, high]``.

    Args:
        low: the lower bound, a number or a tensor broadcastable to ``shape``.
            ``minimum`` is accepted as TorchRL's older name.
        high: the upper bound (``maximum`` in older code).
        shape: the shape; inferred from ``low``/``high`` when they are tensors.
        device: where the tensors live.
        dtype: ``float32`` unless ``low``/``high`` are tensors of another dtype.

    Raises:
        ValueError: when ``low > high`` anywhere, or the bounds do not fit ``shape``.

    Examples:
        >>> spec = Bounded(low=-2.0, high=2.0, shape=(1,))
        >>> spec.space.high
        tensor([2.])
        >>> spec.project(torch.tensor([5.0]))
        tensor([2.])
    """

    def __init__(
        self,
        low: float | torch.Tensor | np.ndarray | None = None,
        high: float | torch.Tensor | np.ndarray | None = None,
        shape: ShapeLike | None = None,
        device: DeviceLike = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        low = kwargs.pop("minimum", low)
        high = kwargs.pop("maximum", high)
        if kwargs:
            raise TypeError(f"Bounded got unexpected arguments {sorted(kwargs)}")
        if low is None or high is None:
            raise TypeError("Bounded needs both `low` and `high` (e.g. Bounded(low=-1.0, high=1.0, shape=(2,))).")
        low_t = torch.as_tensor(low)
        high_t = torch.as_tensor(high)
        if dtype is None:
            dtype = low_t.dtype if (low_t.dtype == high_t.dtype and low_t.ndim) else torch.get_default_dtype()
            if isinstance(low, (float, int)) and isinstance(high, (float, int)):
                dtype = torch.get_default_dtype()
        if shape is None:
            shape = torch.broadcast_shapes(low_t.shape, high_t.shape)
        shape = _as_shape(shape)
        super().__init__(shape, dtype, device)
        # Python floats (and lists of them) become float32 tensors: read them again in float64 so that
        # a float64 spec keeps its bounds exactly (7.4e-76 is 0.0 in float32)
        if not isinstance(low, (torch.Tensor, np.ndarray)) and low_t.dtype.is_floating_point:
            low_t = torch.as_tensor(low, dtype=torch.float64)
        if not isinstance(high, (torch.Tensor, np.ndarray)) and high_t.dtype.is_floating_point:
            high_t = torch.as_tensor(high, dtype=torch.float64)
        try:
            low_t = low_t.to(dtype=dtype, device=self.device).expand(shape).clone()
            high_t = high_t.to(dtype=dtype, device=self.device).expand(shape).clone()
        except RuntimeError as err:
            raise ValueError(
                f"Bounded: low {tuple(torch.as_tensor(low).shape)} and high "
                f"{tuple(torch.as_tensor(high).shape)} cannot be broadcast to shape {tuple(shape)}; "
                f"pass bounds of that shape or scalars."
            ) from err
        if low_t.dtype.is_floating_point and (low_t.isnan().any() or high_t.isnan().any()):
            raise ValueError(f"Bounded: low and high must not be NaN, got low={low_t.tolist()} high={high_t.tolist()}.")
        if (low_t > high_t).any():
            raise ValueError(
                f"Bounded: low must be <= high everywhere, got low={low_t.tolist()} high={high_t.tolist()}."
            )
        self.space = ContinuousBox(low_t, high_t)

    @property
    def low(self) -> torch.Tensor:
        return self.space.low

    @property
    def high(self) -> torch.Tensor:
        return self.space.high

    minimum = low
    maximum = high

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        full = (*_as_shape(shape), *self.shape)
        low, high = self.space.low, self.space.high
        if not self.dtype.is_floating_point:
            r = torch.rand(full, device=self.device, dtype=torch.float64)
            return (low + (r * (high.double() - low.double() + 1)).floor().to(self.dtype)).clamp(low, high)
        r = torch.rand(full, dtype=self.dtype, device=self.device)
        span = high - low
        if not torch.isfinite(span).all():
            # infinite bounds: sample a normal and clamp into the box
            return torch.randn(full, dtype=self.dtype, device=self.device).clamp(low, high)
        return low + r * span

    def zero(self, shape: ShapeLike | None = None) -> torch.Tensor:
        return self.project(super().zero(shape))

    def _mismatch(self, value: torch.Tensor) -> str | None:
        low, high = self.space.low.to(value.device), self.space.high.to(value.device)
        bad = ~((value >= low) & (value <= high))  # NaN compares False with both: outside
        if bad.any():
            v, idx = _first_bad(value, bad)
            lo = low.expand_as(value)[tuple(idx)].item()
            hi = high.expand_as(value)[tuple(idx)].item()
            return f"value {v} at index {idx} is outside [{lo}, {hi}]"
        return None

    def _project(self, value: torch.Tensor) -> torch.Tensor:
        return _clamp_cast(value, self.space.low.to(value.device), self.space.high.to(value.device), self.dtype)

    def drop_leading_dims(self, n: int) -> Bounded:
        idx = (0,) * n
        return Bounded(self.space.low[idx], self.space.high[idx], device=self.device, dtype=self.dtype)

    def _reshaped(self, shape: torch.Size, fn: Callable[[torch.Tensor], torch.Tensor]) -> Bounded:
        return Bounded(fn(self.space.low), fn(self.space.high), shape=shape, device=self.device, dtype=self.dtype)

    def _clone_to(self, **changes: Any) -> Bounded:
        shape = changes.get("shape", self.shape)
        dtype = changes.get("dtype", self.dtype)
        return Bounded(
            self.space.low.expand(shape).to(dtype),
            self.space.high.expand(shape).to(dtype),
            shape=shape,
            device=changes.get("device", self.device),
            dtype=dtype,
        )

    def _same_domain(self, other: Bounded) -> bool:
        return torch.equal(self.space.low, other.space.low) and torch.equal(self.space.high, other.space.high)

    def _extra_repr(self) -> str:
        low, high = self.space.low, self.space.high
        if low.numel() and (low == low.flatten()[0]).all() and (high == high.flatten()[0]).all():
            return f"low={low.flatten()[0].item()}, high={high.flatten()[0].item()}"
        return f"low={low.tolist()}, high={high.tolist()}"
