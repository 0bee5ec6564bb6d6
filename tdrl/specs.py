"""Tensor specs: what an env reads and writes, with shape, dtype, device and domain.

A spec answers four questions about a tensor: what shape and dtype it has
(``shape``, ``dtype``), which values are legal (``is_in``, ``project``), and how to
make a legal one (``rand``, ``zero``). ``Composite`` nests specs under string keys,
the way a TensorDict nests tensors, so an env's whole input or output is one spec.

Examples:
    >>> import torch
    >>> from tdrl.specs import Bounded, Composite, Unbounded
    >>> action = Bounded(low=-1.0, high=1.0, shape=(2,))
    >>> action.space.low
    tensor([-1., -1.])
    >>> a = action.rand()
    >>> bool(action.is_in(a))
    True
    >>> action.project(torch.tensor([3.0, -5.0]))
    tensor([ 1., -1.])
    >>> spec = Composite(observation=Unbounded(shape=(3,)), next=Composite(reward=Unbounded(shape=(1,))))
    >>> spec["next", "reward"].shape
    torch.Size([1])
    >>> spec.zero()["observation"]
    tensor([0., 0., 0.])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence, Union

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

__all__ = [
    "TensorSpec",
    "Unbounded",
    "Bounded",
    "Categorical",
    "OneHot",
    "MultiCategorical",
    "MultiOneHot",
    "Binary",
    "Composite",
    "ContinuousBox",
    "CategoricalBox",
    "NestedKey",
    # TorchRL's older names
    "BoundedTensorSpec",
    "UnboundedContinuousTensorSpec",
    "UnboundedDiscreteTensorSpec",
    "DiscreteTensorSpec",
    "OneHotDiscreteTensorSpec",
    "MultiDiscreteTensorSpec",
    "MultiOneHotDiscreteTensorSpec",
    "BinaryDiscreteTensorSpec",
    "CompositeSpec",
]

NestedKey = Union[str, tuple]
ShapeLike = Union[int, Sequence[int], torch.Size]
DeviceLike = Union[str, int, torch.device, None]


def _as_shape(shape: ShapeLike | None) -> torch.Size:
    if shape is None:
        return torch.Size([])
    if isinstance(shape, int):
        return torch.Size([shape])
    return torch.Size([int(s) for s in shape])


def _as_device(device: DeviceLike) -> torch.device:
    if device is None:
        return torch.device("cpu")
    return torch.device(device)


def _expand_args(shape: tuple) -> torch.Size:
    if len(shape) == 1 and not isinstance(shape[0], int):
        return _as_shape(shape[0])
    return _as_shape(shape)


def _check_expand(old: torch.Size, new: torch.Size, name: str) -> None:
    if len(new) < len(old) or any(
        o != n and o != 1 for o, n in zip(old, new[len(new) - len(old) :])
    ):
        raise ValueError(
            f"cannot expand {name} of shape {tuple(old)} to {tuple(new)}: the new shape must "
            f"end with the old one (leading dims are added, dims of size 1 may grow)."
        )


@dataclass(eq=False)
class ContinuousBox:
    """The box ``[low, high]`` of a :class:`Bounded` spec."""

    low: torch.Tensor
    high: torch.Tensor


@dataclass(eq=False)
class CategoricalBox:
    """The ``n`` values ``0..n-1`` of a discrete spec."""

    n: int


class TensorSpec:
    """Base of every leaf spec: a shape, a dtype, a device and a domain.

    Subclasses implement ``rand``, ``_mismatch`` (why a value is not in the domain,
    or ``None``), ``project`` and ``_clone_to``.
    """

    shape: torch.Size
    dtype: torch.dtype
    device: torch.device

    def __init__(self, shape: ShapeLike, dtype: torch.dtype, device: DeviceLike) -> None:
        self.shape = _as_shape(shape)
        self.dtype = dtype
        self.device = _as_device(device)

    # --- what every spec offers -----------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    def ndimension(self) -> int:
        return len(self.shape)

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        """A random legal value, with ``shape`` extra leading dims."""
        raise NotImplementedError

    def zero(self, shape: ShapeLike | None = None) -> torch.Tensor:
        """An all-zeros value (projected into the domain), with ``shape`` extra leading dims."""
        return torch.zeros(
            (*_as_shape(shape), *self.shape), dtype=self.dtype, device=self.device
        )

    def zeros(self, shape: ShapeLike | None = None) -> torch.Tensor:
        return self.zero(shape)

    def one(self, shape: ShapeLike | None = None) -> torch.Tensor:
        """An all-ones value, projected into the domain."""
        return self.project(
            torch.ones((*_as_shape(shape), *self.shape), dtype=self.dtype, device=self.device)
        )

    def ones(self, shape: ShapeLike | None = None) -> torch.Tensor:
        return self.one(shape)

    def is_in(self, value: torch.Tensor) -> bool:
        """Whether ``value`` has this spec's trailing shape, dtype and domain."""
        return self.mismatch(value) is None

    def mismatch(self, value: Any) -> str | None:
        """Why ``value`` is not in this spec (``None`` when it is): a sentence for errors."""
        if not isinstance(value, torch.Tensor):
            return f"expected a torch.Tensor, got {type(value).__name__}"
        if value.dtype != self.dtype:
            return f"expected dtype {self.dtype}, got {value.dtype}"
        n = len(self.shape)
        if value.shape[value.ndim - n :] != self.shape or value.ndim < n:
            return f"expected shape [..., {', '.join(map(str, self.shape))}], got {list(value.shape)}"
        return self._mismatch(value)

    def _mismatch(self, value: torch.Tensor) -> str | None:
        return None

    def project(self, value: torch.Tensor) -> torch.Tensor:
        """The closest legal value to ``value`` (cast to this spec's dtype)."""
        return value.to(self.dtype)

    def encode(self, value: Any) -> torch.Tensor:
        """Turn a numpy array, number or tensor into a tensor of this spec's dtype and device."""
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        return torch.as_tensor(value, device=self.device).to(self.dtype)

    def expand(self, *shape: int) -> TensorSpec:
        """This spec with leading dims added: ``shape`` must end with ``self.shape``."""
        new = _expand_args(shape)
        _check_expand(self.shape, new, type(self).__name__)
        return self._clone_to(shape=new)

    def unsqueeze(self, dim: int) -> TensorSpec:
        dim = dim if dim >= 0 else dim + self.ndim + 1
        shape = list(self.shape)
        shape.insert(dim, 1)
        return self._reshaped(torch.Size(shape), lambda t: t.unsqueeze(dim - self.ndim - 1))

    def squeeze(self, dim: int | None = None) -> TensorSpec:
        if dim is None:
            shape = torch.Size([s for s in self.shape if s != 1])
            return self._reshaped(shape, lambda t: t.reshape(shape) if t.ndim else t)
        dim = dim if dim >= 0 else dim + self.ndim
        if self.shape[dim] != 1:
            return self.clone()
        shape = torch.Size([s for i, s in enumerate(self.shape) if i != dim])
        return self._reshaped(shape, lambda t: t.squeeze(dim - self.ndim))

    def _reshaped(self, shape: torch.Size, fn) -> TensorSpec:
        return self._clone_to(shape=shape)

    def drop_leading_dims(self, n: int) -> TensorSpec:
        """This spec without its first ``n`` dims (e.g. an env's batch dims).

        Bounds are those of the first element along the dropped dims.
        """
        if n == 0:
            return self.clone()
        return self._clone_to(shape=self.shape[n:])

    def to(self, dest: DeviceLike | torch.dtype) -> TensorSpec:
        """A copy on another device, or with another dtype."""
        if isinstance(dest, torch.dtype):
            return self._clone_to(dtype=dest)
        return self._clone_to(device=_as_device(dest))

    def cpu(self) -> TensorSpec:
        return self.to("cpu")

    def clone(self) -> TensorSpec:
        return self._clone_to()

    def _clone_to(self, **changes: Any) -> TensorSpec:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return (
            type(self) is type(other)
            and self.shape == other.shape
            and self.dtype == other.dtype
            and self.device == other.device
            and self._same_domain(other)
        )

    def _same_domain(self, other: TensorSpec) -> bool:
        return True

    __hash__ = None  # specs are mutable containers of tensors

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self._extra_repr()
        return (
            f"{type(self).__name__}(shape={tuple(self.shape)}, dtype={self.dtype}, "
            f"device={self.device}{', ' + extra if extra else ''})"
        )


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
            return torch.randint(-100, 100, full, dtype=self.dtype, device=self.device)
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
        try:
            low_t = low_t.to(dtype=dtype, device=self.device).expand(shape).clone()
            high_t = high_t.to(dtype=dtype, device=self.device).expand(shape).clone()
        except RuntimeError as err:
            raise ValueError(
                f"Bounded: low {tuple(torch.as_tensor(low).shape)} and high "
                f"{tuple(torch.as_tensor(high).shape)} cannot be broadcast to shape {tuple(shape)}; "
                f"pass bounds of that shape or scalars."
            ) from err
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
        bad = (value < low) | (value > high)
        if bad.any():
            idx = bad.nonzero()[0].tolist()
            v = value[tuple(idx)].item()
            lo = low.expand_as(value)[tuple(idx)].item()
            hi = high.expand_as(value)[tuple(idx)].item()
            return f"value {v} at index {idx} is outside [{lo}, {hi}]"
        return None

    def project(self, value: torch.Tensor) -> torch.Tensor:
        value = value.to(self.dtype)
        return torch.maximum(torch.minimum(value, self.space.high.to(value.device)), self.space.low.to(value.device))

    def drop_leading_dims(self, n: int) -> Bounded:
        idx = (0,) * n
        return Bounded(self.space.low[idx], self.space.high[idx], device=self.device, dtype=self.dtype)

    def _reshaped(self, shape: torch.Size, fn) -> Bounded:
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


class Categorical(TensorSpec):
    """An integer in ``0..n-1`` per element (a discrete action written as an index).

    Args:
        n: the number of values.
        shape: the shape (``()`` for a single index; ``(1,)`` is common for actions).
        device: where the tensors live.
        dtype: ``torch.int64`` by default.

    Examples:
        >>> spec = Categorical(4)
        >>> spec.space.n
        4
        >>> bool(spec.is_in(torch.tensor(3)))
        True
    """

    def __init__(
        self,
        n: int,
        shape: ShapeLike | None = None,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.int64,
        mask: torch.Tensor | None = None,
    ) -> None:
        if int(n) < 1:
            raise ValueError(f"Categorical needs n >= 1, got n={n}.")
        super().__init__(shape if shape is not None else (), dtype, device)
        self.space = CategoricalBox(int(n))
        self.mask = mask

    @property
    def n(self) -> int:
        return self.space.n

    def update_mask(self, mask: torch.Tensor | None) -> None:
        """Restrict ``rand`` to the values where ``mask`` (shape ``[..., n]``) is True."""
        self.mask = mask

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        full = (*_as_shape(shape), *self.shape)
        if self.mask is not None:
            probs = self.mask.float().expand(*full, self.space.n)
            return torch.multinomial(probs.reshape(-1, self.space.n), 1).reshape(full).to(self.dtype)
        return torch.randint(0, self.space.n, full, dtype=self.dtype, device=self.device)

    def _mismatch(self, value: torch.Tensor) -> str | None:
        bad = (value < 0) | (value >= self.space.n)
        if bad.any():
            return f"value {value[bad].flatten()[0].item()} is outside 0..{self.space.n - 1}"
        return None

    def project(self, value: torch.Tensor) -> torch.Tensor:
        if value.dtype.is_floating_point:
            value = value.round()
        return value.clamp(0, self.space.n - 1).to(self.dtype)

    def _clone_to(self, **changes: Any) -> Categorical:
        return Categorical(
            self.space.n,
            shape=changes.get("shape", self.shape),
            device=changes.get("device", self.device),
            dtype=changes.get("dtype", self.dtype),
            mask=self.mask,
        )

    def _same_domain(self, other: Categorical) -> bool:
        return self.space.n == other.space.n

    def _extra_repr(self) -> str:
        return f"n={self.space.n}"


class OneHot(TensorSpec):
    """A one-hot vector of length ``n`` (the last dim of ``shape``).

    Args:
        n: the number of values.
        shape: the shape; its last dim must be ``n`` (default ``(n,)``).
        device: where the tensors live.
        dtype: ``torch.bool`` by default (as TorchRL); any integer or float dtype works.

    Examples:
        >>> spec = OneHot(3)
        >>> spec.encode(2)
        tensor([False, False,  True])
        >>> spec.to_categorical(spec.encode(2))
        tensor(2)
    """

    def __init__(
        self,
        n: int,
        shape: ShapeLike | None = None,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.bool,
        mask: torch.Tensor | None = None,
    ) -> None:
        shape = _as_shape(shape if shape is not None else (n,))
        if not shape or shape[-1] != n:
            raise ValueError(f"OneHot: the last dim of shape {tuple(shape)} must be n={n}.")
        super().__init__(shape, dtype, device)
        self.space = CategoricalBox(int(n))
        self.mask = mask

    @property
    def n(self) -> int:
        return self.space.n

    def update_mask(self, mask: torch.Tensor | None) -> None:
        self.mask = mask

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        full = (*_as_shape(shape), *self.shape[:-1])
        if self.mask is not None:
            probs = self.mask.float().expand(*full, self.space.n).reshape(-1, self.space.n)
            idx = torch.multinomial(probs, 1).reshape(full)
        else:
            idx = torch.randint(0, self.space.n, full, device=self.device)
        return torch.nn.functional.one_hot(idx, self.space.n).to(self.dtype)

    def encode(self, value: Any) -> torch.Tensor:
        """An index (or array of indices) to its one-hot encoding."""
        idx = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
        if idx.shape[idx.ndim - self.ndim :] == self.shape and idx.ndim >= self.ndim and self.space.n > 1:
            return idx.to(self.dtype).to(self.device)
        return torch.nn.functional.one_hot(idx.long(), self.space.n).to(self.dtype).to(self.device)

    def to_categorical(self, value: torch.Tensor) -> torch.Tensor:
        """A one-hot tensor to the index it encodes."""
        return value.long().argmax(-1)

    def to_numpy(self, value: torch.Tensor) -> np.ndarray:
        return self.to_categorical(value).cpu().numpy()

    def _mismatch(self, value: torch.Tensor) -> str | None:
        if not ((value == 0) | (value == 1)).all() or not (value.long().sum(-1) == 1).all():
            return "expected exactly one 1 along the last dim (a one-hot vector)"
        return None

    def project(self, value: torch.Tensor) -> torch.Tensor:
        idx = value.float().argmax(-1)
        return torch.nn.functional.one_hot(idx, self.space.n).to(self.dtype)

    def zero(self, shape: ShapeLike | None = None) -> torch.Tensor:
        out = super().zero(shape)
        out[..., 0] = 1
        return out

    def _clone_to(self, **changes: Any) -> OneHot:
        return OneHot(
            self.space.n,
            shape=changes.get("shape", self.shape),
            device=changes.get("device", self.device),
            dtype=changes.get("dtype", self.dtype),
            mask=self.mask,
        )

    def _same_domain(self, other: OneHot) -> bool:
        return self.space.n == other.space.n

    def _extra_repr(self) -> str:
        return f"n={self.space.n}"


class MultiCategorical(TensorSpec):
    """Several independent categorical values, the ``i``-th in ``0..nvec[i]-1``.

    Args:
        nvec: the number of values of each entry (the last dim of ``shape``).
        shape: the shape (default ``(len(nvec),)``).
        device: where the tensors live.
        dtype: ``torch.int64`` by default.

    Examples:
        >>> spec = MultiCategorical([2, 3])
        >>> spec.rand().shape
        torch.Size([2])
    """

    def __init__(
        self,
        nvec: Sequence[int] | torch.Tensor,
        shape: ShapeLike | None = None,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.int64,
    ) -> None:
        nvec_t = torch.as_tensor(nvec, dtype=torch.int64)
        shape = _as_shape(shape if shape is not None else nvec_t.shape)
        super().__init__(shape, dtype, device)
        try:
            self.nvec = nvec_t.expand(shape).clone().to(self.device)
        except RuntimeError as err:
            raise ValueError(f"MultiCategorical: nvec of shape {tuple(nvec_t.shape)} does not fit shape {tuple(shape)}.") from err
        if (self.nvec < 1).any():
            raise ValueError(f"MultiCategorical: every nvec entry must be >= 1, got {self.nvec.tolist()}.")

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        full = (*_as_shape(shape), *self.shape)
        r = torch.rand(full, device=self.device)
        return (r * self.nvec).floor().to(self.dtype)

    def _mismatch(self, value: torch.Tensor) -> str | None:
        bad = (value < 0) | (value >= self.nvec.to(value.device))
        if bad.any():
            return f"values outside 0..nvec-1 (nvec={self.nvec.tolist()}): {value[bad].tolist()[:5]}"
        return None

    def project(self, value: torch.Tensor) -> torch.Tensor:
        if value.dtype.is_floating_point:
            value = value.round()
        return torch.minimum(value.clamp_min(0).long(), self.nvec.to(value.device) - 1).to(self.dtype)

    def drop_leading_dims(self, n: int) -> MultiCategorical:
        return MultiCategorical(self.nvec[(0,) * n], device=self.device, dtype=self.dtype)

    def _clone_to(self, **changes: Any) -> MultiCategorical:
        shape = changes.get("shape", self.shape)
        return MultiCategorical(
            self.nvec.expand(shape), shape=shape, device=changes.get("device", self.device),
            dtype=changes.get("dtype", self.dtype),
        )

    def _same_domain(self, other: MultiCategorical) -> bool:
        return torch.equal(self.nvec, other.nvec)

    def _extra_repr(self) -> str:
        return f"nvec={self.nvec.flatten()[: self.shape[-1] if self.shape else 1].tolist()}"


class MultiOneHot(TensorSpec):
    """Several one-hot vectors concatenated along the last dim (sizes ``nvec``).

    Examples:
        >>> spec = MultiOneHot([2, 3])
        >>> spec.rand().sum().item()
        2
    """

    def __init__(
        self,
        nvec: Sequence[int],
        shape: ShapeLike | None = None,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.bool,
    ) -> None:
        self.nvec = [int(n) for n in nvec]
        shape = _as_shape(shape if shape is not None else (sum(self.nvec),))
        if shape[-1] != sum(self.nvec):
            raise ValueError(f"MultiOneHot: last dim of shape {tuple(shape)} must be sum(nvec)={sum(self.nvec)}.")
        super().__init__(shape, dtype, device)

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        full = (*_as_shape(shape), *self.shape[:-1])
        parts = [
            torch.nn.functional.one_hot(torch.randint(0, n, full, device=self.device), n)
            for n in self.nvec
        ]
        return torch.cat(parts, -1).to(self.dtype)

    def _mismatch(self, value: torch.Tensor) -> str | None:
        for i, part in enumerate(value.split(self.nvec, -1)):
            if not (part.long().sum(-1) == 1).all():
                return f"block {i} (size {self.nvec[i]}) is not one-hot"
        return None

    def project(self, value: torch.Tensor) -> torch.Tensor:
        parts = [
            torch.nn.functional.one_hot(p.float().argmax(-1), n)
            for p, n in zip(value.split(self.nvec, -1), self.nvec)
        ]
        return torch.cat(parts, -1).to(self.dtype)

    def zero(self, shape: ShapeLike | None = None) -> torch.Tensor:
        out = super().zero(shape)
        start = 0
        for n in self.nvec:
            out[..., start] = 1
            start += n
        return out

    def _clone_to(self, **changes: Any) -> MultiOneHot:
        return MultiOneHot(
            self.nvec, shape=changes.get("shape", self.shape), device=changes.get("device", self.device),
            dtype=changes.get("dtype", self.dtype),
        )

    def _same_domain(self, other: MultiOneHot) -> bool:
        return self.nvec == other.nvec


class Binary(TensorSpec):
    """A vector of ``n`` independent 0/1 values (gymnasium's ``MultiBinary``).

    Args:
        n: the number of values (the last dim of ``shape``).
        shape: the shape (default ``(n,)``).
        device: where the tensors live.
        dtype: ``torch.int8`` by default (gymnasium's dtype); ``torch.bool`` works too.

    Examples:
        >>> spec = Binary(4)
        >>> spec.rand().dtype
        torch.int8
    """

    def __init__(
        self,
        n: int | None = None,
        shape: ShapeLike | None = None,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.int8,
    ) -> None:
        if n is None and shape is None:
            raise TypeError("Binary needs `n` or `shape`.")
        shape = _as_shape(shape if shape is not None else (n,))
        if n is not None and (not shape or shape[-1] != n):
            raise ValueError(f"Binary: the last dim of shape {tuple(shape)} must be n={n}.")
        super().__init__(shape, dtype, device)
        self.n = shape[-1] if shape else 1

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        full = (*_as_shape(shape), *self.shape)
        return torch.randint(0, 2, full, device=self.device).to(self.dtype)

    def _mismatch(self, value: torch.Tensor) -> str | None:
        if not ((value == 0) | (value == 1)).all():
            return "expected only 0 and 1"
        return None

    def project(self, value: torch.Tensor) -> torch.Tensor:
        return (value.float() > 0.5).to(self.dtype)

    def _clone_to(self, **changes: Any) -> Binary:
        return Binary(
            shape=changes.get("shape", self.shape), device=changes.get("device", self.device),
            dtype=changes.get("dtype", self.dtype),
        )


def _split_key(key: NestedKey) -> tuple:
    if isinstance(key, str):
        return (key,)
    if isinstance(key, tuple) and key and all(isinstance(k, str) for k in key):
        return key
    raise TypeError(f"a spec key is a string or a tuple of strings, got {key!r}")


class Composite:
    """Specs nested under string keys: the spec of a whole TensorDict.

    ``shape`` is the batch shape every entry starts with. Nested entries are reached
    with tuple keys, as in a TensorDict: ``spec["next", "reward"]``.

    Args:
        specs: a mapping from key to spec (or ``None`` is not allowed: leave the key out).
        shape: the batch shape shared by every entry (``batch_size`` is accepted too).
        device: where the tensors live.
        **kwargs: more entries, as ``key=spec``.

    Raises:
        ValueError: when an entry's shape does not start with ``shape``.

    Examples:
        >>> spec = Composite(observation=Unbounded(shape=(4, 3)), shape=(4,))
        >>> spec.rand().batch_size
        torch.Size([4])
        >>> spec["observation"] = Unbounded(shape=(5, 3))
        Traceback (most recent call last):
        ...
        ValueError: Composite: entry 'observation' has shape (5, 3), which does not start with the composite's batch shape (4,). ...
    """

    def __init__(
        self,
        specs: dict | None = None,
        shape: ShapeLike | None = None,
        device: DeviceLike = None,
        batch_size: ShapeLike | None = None,
        **kwargs: Any,
    ) -> None:
        self.shape = _as_shape(shape if shape is not None else batch_size)
        self._device = None if device is None else torch.device(device)
        self._specs: dict[str, TensorSpec | Composite] = {}
        for key, value in {**(specs or {}), **kwargs}.items():
            if value is not None:
                self[key] = value

    # --- mapping ---------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        if self._device is not None:
            return self._device
        for spec in self._specs.values():
            return spec.device
        return torch.device("cpu")

    @property
    def batch_size(self) -> torch.Size:
        return self.shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: NestedKey) -> TensorSpec | Composite:
        parts = _split_key(key)
        node: Any = self
        for i, part in enumerate(parts):
            if not isinstance(node, Composite) or part not in node._specs:
                where = ".".join(parts[:i]) or "<root>"
                have = list(node._specs) if isinstance(node, Composite) else []
                raise KeyError(
                    f"spec key {key!r} not found: {part!r} is not under {where}, which has keys {have}"
                )
            node = node._specs[part]
        return node

    def __setitem__(self, key: NestedKey, value: TensorSpec | Composite) -> None:
        parts = _split_key(key)
        if len(parts) > 1:
            head = parts[0]
            if head not in self._specs:
                self._specs[head] = Composite(shape=self.shape, device=self._device)
            sub = self._specs[head]
            if not isinstance(sub, Composite):
                raise KeyError(f"cannot set {key!r}: {head!r} is a leaf spec, not a Composite")
            sub[parts[1:]] = value
            return
        if not isinstance(value, (TensorSpec, Composite)):
            raise TypeError(f"Composite entry {parts[0]!r} must be a spec, got {type(value).__name__}")
        if value.shape[: len(self.shape)] != self.shape:
            raise ValueError(
                f"Composite: entry {parts[0]!r} has shape {tuple(value.shape)}, which does not start "
                f"with the composite's batch shape {tuple(self.shape)}. Give the entry shape "
                f"{tuple(self.shape)} + its own dims (e.g. spec.expand(...))."
            )
        self._specs[parts[0]] = value

    def __delitem__(self, key: NestedKey) -> None:
        parts = _split_key(key)
        parent = self[parts[:-1]] if len(parts) > 1 else self
        if parts[-1] not in parent._specs:
            raise KeyError(f"spec key {key!r} not found; keys are {list(parent._specs)}")
        del parent._specs[parts[-1]]

    def __contains__(self, key: NestedKey) -> bool:
        try:
            self[key]
        except (KeyError, TypeError):
            return False
        return True

    def get(self, key: NestedKey, default: Any = None) -> Any:
        return self[key] if key in self else default

    def set(self, key: NestedKey, value: TensorSpec | Composite) -> Composite:
        self[key] = value
        return self

    def pop(self, key: NestedKey, *default: Any) -> Any:
        if key not in self:
            if default:
                return default[0]
            raise KeyError(f"spec key {key!r} not found; keys are {list(self._specs)}")
        out = self[key]
        del self[key]
        return out

    def update(self, other: Composite | dict) -> Composite:
        items = other._specs.items() if isinstance(other, Composite) else other.items()
        for key, value in items:
            if isinstance(value, Composite) and key in self._specs and isinstance(self._specs[key], Composite):
                self._specs[key].update(value)
            else:
                self[key] = value
        return self

    def keys(self, include_nested: bool = False, leaves_only: bool = False) -> list:
        """The keys, as strings at the top level and tuples for nested entries."""
        out = []
        for key, spec in self._specs.items():
            is_comp = isinstance(spec, Composite)
            if not (leaves_only and is_comp):
                out.append(key)
            if include_nested and is_comp:
                out.extend((key, *_split_key(sub)) for sub in spec.keys(True, leaves_only))
        return out

    def items(self, include_nested: bool = False, leaves_only: bool = False) -> list:
        return [(k, self[k]) for k in self.keys(include_nested, leaves_only)]

    def values(self, include_nested: bool = False, leaves_only: bool = False) -> list:
        return [self[k] for k in self.keys(include_nested, leaves_only)]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._specs))

    def __len__(self) -> int:
        return len(self._specs)

    def is_empty(self) -> bool:
        return not any(True for _ in self.keys(True, True))

    # --- values ----------------------------------------------------------------------
    def _build(self, fn_name: str, shape: ShapeLike | None) -> TensorDict:
        lead = _as_shape(shape)
        data = {key: getattr(spec, fn_name)(lead) for key, spec in self._specs.items()}
        return TensorDict(data, batch_size=(*lead, *self.shape), device=self._device)

    def rand(self, shape: ShapeLike | None = None) -> TensorDict:
        return self._build("rand", shape)

    def zero(self, shape: ShapeLike | None = None) -> TensorDict:
        return self._build("zero", shape)

    def zeros(self, shape: ShapeLike | None = None) -> TensorDict:
        return self.zero(shape)

    def one(self, shape: ShapeLike | None = None) -> TensorDict:
        return self._build("one", shape)

    def mismatch(self, value: Any) -> str | None:
        if not isinstance(value, TensorDictBase):
            return f"expected a TensorDict, got {type(value).__name__}"
        for key, spec in self._specs.items():
            if key not in value.keys():
                return f"missing key {key!r} (present: {sorted(map(str, value.keys()))})"
            why = spec.mismatch(value.get(key))
            if why is not None:
                sub = why if isinstance(spec, Composite) else f"{key!r}: {why}"
                return f"{key!r} > {why}" if isinstance(spec, Composite) else sub
        return None

    def is_in(self, value: TensorDictBase) -> bool:
        return self.mismatch(value) is None

    def project(self, value: TensorDictBase) -> TensorDictBase:
        out = value.empty()
        for key, spec in self._specs.items():
            if key in value.keys():
                out.set(key, spec.project(value.get(key)))
        return out

    def encode(self, value: dict) -> TensorDict:
        return TensorDict(
            {key: spec.encode(value[key]) for key, spec in self._specs.items() if key in value},
            batch_size=self.shape, device=self._device,
        )

    # --- copies ----------------------------------------------------------------------
    def expand(self, *shape: int) -> Composite:
        new = _expand_args(shape)
        _check_expand(self.shape, new, "Composite")
        lead = new[: len(new) - len(self.shape)]
        return Composite(
            {k: v.expand(*lead, *v.shape) for k, v in self._specs.items()}, shape=new, device=self._device
        )

    def unsqueeze(self, dim: int) -> Composite:
        if dim < 0:
            dim += self.ndim + 1
        shape = list(self.shape)
        shape.insert(dim, 1)
        return Composite({k: v.unsqueeze(dim) for k, v in self._specs.items()}, shape=shape, device=self._device)

    def squeeze(self, dim: int) -> Composite:
        if dim < 0:
            dim += self.ndim
        if self.shape[dim] != 1:
            return self.clone()
        shape = [s for i, s in enumerate(self.shape) if i != dim]
        return Composite({k: v.squeeze(dim) for k, v in self._specs.items()}, shape=shape, device=self._device)

    def drop_leading_dims(self, n: int) -> Composite:
        """This spec and its entries without their first ``n`` dims."""
        return Composite(
            {k: v.drop_leading_dims(n) for k, v in self._specs.items()}, shape=self.shape[n:], device=self._device
        )

    def to(self, dest: DeviceLike | torch.dtype) -> Composite:
        device = self._device if isinstance(dest, torch.dtype) else torch.device(dest)
        return Composite({k: v.to(dest) for k, v in self._specs.items()}, shape=self.shape, device=device)

    def cpu(self) -> Composite:
        return self.to("cpu")

    def clone(self) -> Composite:
        return Composite({k: v.clone() for k, v in self._specs.items()}, shape=self.shape, device=self._device)

    def select(self, *keys: NestedKey, strict: bool = True) -> Composite:
        out = Composite(shape=self.shape, device=self._device)
        for key in keys:
            if key in self:
                out[key] = self[key].clone()
            elif strict:
                raise KeyError(f"spec key {key!r} not found; keys are {self.keys(True)}")
        return out

    def exclude(self, *keys: NestedKey) -> Composite:
        out = self.clone()
        for key in keys:
            if key in out:
                del out[key]
        return out

    def empty(self) -> Composite:
        return Composite(shape=self.shape, device=self._device)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Composite)
            and self.shape == other.shape
            and set(self._specs) == set(other._specs)
            and all(self._specs[k] == other._specs[k] for k in self._specs)
        )

    __hash__ = None

    def __repr__(self) -> str:
        inner = ",\n".join(
            f"    {k}: " + repr(v).replace("\n", "\n    ") for k, v in self._specs.items()
        )
        return f"Composite(\n{inner},\n    shape={tuple(self.shape)})" if inner else f"Composite(shape={tuple(self.shape)})"


def _unbounded_discrete(shape: ShapeLike = (), device: DeviceLike = None, dtype: torch.dtype = torch.int64) -> Unbounded:
    return Unbounded(shape=shape, device=device, dtype=dtype)


# TorchRL's older names: the same classes under the names older code imports.
BoundedTensorSpec = Bounded
UnboundedContinuousTensorSpec = Unbounded
UnboundedDiscreteTensorSpec = _unbounded_discrete
DiscreteTensorSpec = Categorical
OneHotDiscreteTensorSpec = OneHot
MultiDiscreteTensorSpec = MultiCategorical
MultiOneHotDiscreteTensorSpec = MultiOneHot
BinaryDiscreteTensorSpec = Binary
CompositeSpec = Composite

