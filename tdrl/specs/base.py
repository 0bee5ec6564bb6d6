"""The spec base class and the helpers every spec shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from typing import Self

__all__ = ["TensorSpec", "ContinuousBox", "CategoricalBox", "NestedKey"]

NestedKey = str | tuple
"""A TensorDict key: a string, or a tuple of strings for a nested entry (``("next", "reward")``)."""
ShapeLike = int | Sequence[int] | torch.Size
DeviceLike = str | int | torch.device | None


def _as_shape(shape: ShapeLike | None) -> torch.Size:
    if shape is None:
        return torch.Size([])
    size = torch.Size([shape] if isinstance(shape, int) else [int(s) for s in shape])
    if any(s < 0 for s in size):
        raise ValueError(f"shape {tuple(size)} has a negative dim; dims are sizes (>= 0).")
    return size


def _as_device(device: DeviceLike) -> torch.device:
    if device is None:
        return torch.device("cpu")
    return torch.device(device)


def _expand_args(shape: tuple) -> torch.Size:
    if len(shape) == 1 and not isinstance(shape[0], int):
        return _as_shape(shape[0])
    return _as_shape(shape)


def _check_expand(old: torch.Size, new: torch.Size, name: str) -> None:
    if len(new) < len(old) or any(o != n and o != 1 for o, n in zip(old, new[len(new) - len(old) :])):
        raise ValueError(
            f"cannot expand {name} of shape {tuple(old)} to {tuple(new)}: the new shape must "
            f"end with the old one (leading dims are added, dims of size 1 may grow)."
        )


def _clamp_cast(value: torch.Tensor, low: torch.Tensor, high: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``value`` clamped into ``[low, high]`` and cast to ``dtype``, with no wrap-around or overflow.

    ``low``/``high`` hold values of ``dtype``. A float value for an integer dtype is rounded
    to the nearest integer; the clamp happens before the cast, so that ``300`` is not cast
    to ``44`` in ``uint8`` nor ``1e30`` to ``-2**63`` in ``int64`` on its way into the box.
    """
    if dtype.is_floating_point:  # rounding into a float dtype is monotonic: out-of-range values become +-inf
        value = value.to(dtype)
        return torch.maximum(torch.minimum(value, high), low)
    if value.dtype.is_floating_point:
        v = value.double().round()  # exact for every float dtype; a float64 bound may round, hence the masks
        lo, hi = low.double(), high.double()
        inside = v.clamp(lo, hi).to(dtype)  # only read where lo < v < hi, where the cast is exact
        return torch.where(v >= hi, high, torch.where(v <= lo, low, inside))
    v = value.long()  # every integer dtype torch has (and bool) fits int64 exactly
    return torch.maximum(torch.minimum(v, high.long()), low.long()).to(dtype)


_IDENTITY_MAX = 512  # identity matrices up to this size are cached (512**2 elements at most)
_identities: dict = {}


def one_hot(index: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """``F.one_hot(index, n).to(dtype)`` without its range checks (rows of a cached identity).

    ``index`` must hold values in ``[0, n)`` (the caller drew or computed them so). The
    result is a new tensor, never a view of the cache.

    Examples:
        >>> one_hot(torch.tensor([2, 0]), 3, torch.bool)
        tensor([[False, False,  True],
                [ True, False, False]])
    """
    if n > _IDENTITY_MAX:
        return torch.nn.functional.one_hot(index, n).to(dtype)
    key = (n, dtype, index.device)
    eye = _identities.get(key)
    if eye is None:
        eye = _identities[key] = torch.eye(n, dtype=dtype, device=index.device)
    # index_select copies (indexing with a 0-d index tensor would return a view of the cache)
    return eye.index_select(0, index.reshape(-1)).reshape(*index.shape, n)


def _first_bad(value: torch.Tensor, bad: torch.Tensor) -> tuple[Any, list[int]]:
    """The first element of ``value`` where ``bad`` (same shape, bool) is True, and its index."""
    index = bad.nonzero()[0].tolist() if bad.ndim else []
    return value[tuple(index)].item(), index


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
        return torch.zeros((*_as_shape(shape), *self.shape), dtype=self.dtype, device=self.device)

    def zeros(self, shape: ShapeLike | None = None) -> torch.Tensor:
        return self.zero(shape)

    def one(self, shape: ShapeLike | None = None) -> torch.Tensor:
        """An all-ones value, projected into the domain."""
        return self.project(torch.ones((*_as_shape(shape), *self.shape), dtype=self.dtype, device=self.device))

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
        """The closest legal value to ``value`` (cast to this spec's dtype).

        Raises:
            TypeError: when ``value`` is not a tensor.
            ValueError: when its shape does not end with the spec's shape.
        """
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{type(self).__name__}.project takes a torch.Tensor, got {type(value).__name__}.")
        n = len(self.shape)
        if value.ndim < n or value.shape[value.ndim - n :] != self.shape:
            raise ValueError(
                f"{type(self).__name__}.project: a value of shape {list(value.shape)} does not end with the spec's "
                f"shape {list(self.shape)}. Pass a tensor of shape [..., {', '.join(map(str, self.shape))}]."
            )
        return self._project(value)

    def _project(self, value: torch.Tensor) -> torch.Tensor:
        """``project`` for a value whose shape ends with the spec's (checked by ``project``)."""
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

    def _reshaped(self, shape: torch.Size, fn: Callable[[torch.Tensor], torch.Tensor]) -> TensorSpec:
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

    def _same_domain(self, other: Self) -> bool:
        return True

    # No __hash__: defining __eq__ sets it to None, and specs are mutable containers of tensors.

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self._extra_repr()
        return (
            f"{type(self).__name__}(shape={tuple(self.shape)}, dtype={self.dtype}, "
            f"device={self.device}{', ' + extra if extra else ''})"
        )
