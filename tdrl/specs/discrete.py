"""Discrete specs: ``Categorical``, ``OneHot``, ``MultiCategorical``, ``MultiOneHot``, ``Binary``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from tdrl.specs.base import (
    CategoricalBox,
    DeviceLike,
    ShapeLike,
    TensorSpec,
    _as_shape,
    _clamp_cast,
    _first_bad,
    one_hot,
)

__all__ = ["Categorical", "OneHot", "MultiCategorical", "MultiOneHot", "Binary"]

if TYPE_CHECKING:
    from typing import Protocol

    class _IndexSpecClass(Protocol):
        """The constructor ``Categorical`` and ``OneHot`` share, which ``_clone_to`` calls."""

        def __call__(
            self, n: int, *, shape: ShapeLike, device: DeviceLike, dtype: torch.dtype, mask: torch.Tensor | None
        ) -> _IndexSpec: ...


def _not_one_hot(value: torch.Tensor, blocks: list[int]) -> str | None:
    """Why ``value`` is not one-hot in each block of sizes ``blocks`` along its last dim (None when it is)."""
    zero_one = (value == 0) | (value == 1)
    for i, (part, ok) in enumerate(zip(value.split(blocks, -1), zero_one.split(blocks, -1))):
        bad = ~ok.all(-1) | (part.long().sum(-1) != 1)
        if bad.any():
            index = bad.nonzero()[0].tolist() if bad.ndim else []
            row = part[tuple(index)].tolist()
            which = f"block {i} (size {blocks[i]}) of the row" if len(blocks) > 1 else "row"
            return f"{which} {row} at index {index} is not one-hot (expected exactly one 1, the other values 0)"
    return None


def _checked_mask(name: str, mask: torch.Tensor | None, want: tuple) -> torch.Tensor | None:
    """``mask`` expanded to ``want`` (bool), or a ValueError naming both shapes."""
    if mask is None:
        return None
    try:
        return mask.to(torch.bool).expand(want)
    except RuntimeError as err:
        raise ValueError(
            f"{name}.update_mask: a mask of shape {tuple(mask.shape)} does not expand to {want} (one bool per value "
            f"of each block, blocks concatenated along the last dim). Fix: pass a mask of shape {want}."
        ) from err


def _masked_blocks(mask: torch.Tensor, blocks: list[int], full: tuple) -> list[torch.Tensor]:
    """For each block of ``mask`` (split along its last dim), an index drawn uniformly among its True values."""
    out = []
    for part, n in zip(mask.split(blocks, -1), blocks):
        probs = part.float().expand(*full, n).reshape(-1, n)
        out.append(torch.multinomial(probs, 1).reshape(full))
    return out


class _IndexSpec(TensorSpec):
    """What ``Categorical`` and ``OneHot`` share: ``n`` values and an optional action mask."""

    space: CategoricalBox
    mask: torch.Tensor | None

    @property
    def n(self) -> int:
        return self.space.n

    def update_mask(self, mask: torch.Tensor | None) -> None:
        """Restrict ``rand`` to the values where ``mask`` (shape ``[..., n]``) is True."""
        self.mask = mask

    def _clone_to(self, **changes: Any) -> _IndexSpec:
        return cast("_IndexSpecClass", type(self))(
            self.space.n,
            shape=changes.get("shape", self.shape),
            device=changes.get("device", self.device),
            dtype=changes.get("dtype", self.dtype),
            mask=self.mask,
        )

    def _same_domain(self, other: _IndexSpec) -> bool:
        return self.space.n == other.space.n

    def _extra_repr(self) -> str:
        return f"n={self.space.n}"


class Categorical(_IndexSpec):
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

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        full = (*_as_shape(shape), *self.shape)
        if self.mask is not None:
            probs = self.mask.float().expand(*full, self.space.n)
            return torch.multinomial(probs.reshape(-1, self.space.n), 1).reshape(full).to(self.dtype)
        return torch.randint(0, self.space.n, full, dtype=self.dtype, device=self.device)

    def _mismatch(self, value: torch.Tensor) -> str | None:
        bad = (value < 0) | (value >= self.space.n)
        if bad.any():
            v, idx = _first_bad(value, bad)
            return f"value {v} at index {idx} is outside 0..{self.space.n - 1}"
        return None

    def _project(self, value: torch.Tensor) -> torch.Tensor:
        low = torch.zeros((), dtype=torch.int64, device=value.device)
        return _clamp_cast(value, low.to(self.dtype), (low + self.space.n - 1).to(self.dtype), self.dtype)


class OneHot(_IndexSpec):
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
        if int(n) < 1:
            raise ValueError(f"OneHot needs n >= 1, got n={n}.")
        shape = _as_shape(shape if shape is not None else (n,))
        if not shape or shape[-1] != n:
            raise ValueError(f"OneHot: the last dim of shape {tuple(shape)} must be n={n}.")
        super().__init__(shape, dtype, device)
        self.space = CategoricalBox(int(n))
        self.mask = mask

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        full = (*_as_shape(shape), *self.shape[:-1])
        if self.mask is not None:
            probs = self.mask.float().expand(*full, self.space.n).reshape(-1, self.space.n)
            idx = torch.multinomial(probs, 1).reshape(full)
        else:
            idx = torch.randint(0, self.space.n, full, device=self.device)
        return one_hot(idx, self.space.n, self.dtype)

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
        return _not_one_hot(value, [self.space.n])

    def _project(self, value: torch.Tensor) -> torch.Tensor:
        idx = value.float().argmax(-1)
        return torch.nn.functional.one_hot(idx, self.space.n).to(self.dtype)

    def zero(self, shape: ShapeLike | None = None) -> torch.Tensor:
        out = super().zero(shape)
        out[..., 0] = 1
        return out


class MultiCategorical(TensorSpec):
    """Several independent categorical values, the ``i``-th in ``0..nvec[i]-1``.

    Args:
        nvec: the number of values of each entry (the last dim of ``shape``).
        shape: the shape (default ``(len(nvec),)``).
        device: where the tensors live.
        dtype: ``torch.int64`` by default.
        mask: bool ``[*shape[:-1], sum(nvec)]``: which values of each entry ``rand`` may draw
            (the entries' blocks concatenated); see :meth:`update_mask`.

    Examples:
        >>> spec = MultiCategorical([2, 3])
        >>> spec.rand().shape
        torch.Size([2])
        >>> spec.update_mask(torch.tensor([False, True, True, False, False]))
        >>> spec.rand().tolist()
        [1, 0]
    """

    def __init__(
        self,
        nvec: Sequence[int] | torch.Tensor,
        shape: ShapeLike | None = None,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.int64,
        mask: torch.Tensor | None = None,
    ) -> None:
        nvec_t = torch.as_tensor(nvec, dtype=torch.int64)
        shape = _as_shape(shape if shape is not None else nvec_t.shape)
        super().__init__(shape, dtype, device)
        try:
            self.nvec = nvec_t.expand(shape).clone().to(self.device)
        except RuntimeError as err:
            raise ValueError(
                f"MultiCategorical: nvec of shape {tuple(nvec_t.shape)} does not fit shape {tuple(shape)}."
            ) from err
        if (self.nvec < 1).any():
            raise ValueError(f"MultiCategorical: every nvec entry must be >= 1, got {self.nvec.tolist()}.")
        self.mask: torch.Tensor | None = None
        self.update_mask(mask)

    def _blocks(self) -> list[int]:
        """The number of values of each entry along the last dim."""
        return [int(n) for n in self.nvec.reshape(-1, self.shape[-1])[0]] if self.shape else [int(self.nvec)]

    def update_mask(self, mask: torch.Tensor | None) -> None:
        """Restrict ``rand`` to the values where ``mask`` is True (None lifts the mask).

        ``mask`` is bool ``[*shape[:-1], sum(nvec)]``: for each entry, one bool per value.

        Raises:
            ValueError: when ``mask`` does not expand to that shape.
        """
        self.mask = _checked_mask(type(self).__name__, mask, (*self.shape[:-1], sum(self._blocks())))

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        if self.mask is not None:
            full = (*_as_shape(shape), *self.shape[:-1])
            return torch.stack(_masked_blocks(self.mask, self._blocks(), full), -1).to(self.dtype)
        full = (*_as_shape(shape), *self.shape)
        r = torch.rand(full, device=self.device)
        return (r * self.nvec).floor().to(self.dtype)

    def _mismatch(self, value: torch.Tensor) -> str | None:
        nvec = self.nvec.to(value.device)
        bad = (value < 0) | (value >= nvec)
        if bad.any():
            v, idx = _first_bad(value, bad)
            return f"value {v} at index {idx} is outside 0..{nvec.expand_as(value)[tuple(idx)].item() - 1}"
        return None

    def _project(self, value: torch.Tensor) -> torch.Tensor:
        high = (self.nvec.to(value.device) - 1).to(self.dtype)
        return _clamp_cast(value, torch.zeros_like(high), high, self.dtype)

    def drop_leading_dims(self, n: int) -> MultiCategorical:
        return MultiCategorical(self.nvec[(0,) * n], device=self.device, dtype=self.dtype)

    def _reshaped(self, shape: torch.Size, fn: Callable[[torch.Tensor], torch.Tensor]) -> MultiCategorical:
        return MultiCategorical(fn(self.nvec), shape=shape, device=self.device, dtype=self.dtype)

    def _clone_to(self, **changes: Any) -> MultiCategorical:
        shape = changes.get("shape", self.shape)
        return MultiCategorical(
            self.nvec.expand(shape),
            shape=shape,
            device=changes.get("device", self.device),
            dtype=changes.get("dtype", self.dtype),
            mask=self.mask if shape == self.shape else None,
        )

    def _same_domain(self, other: MultiCategorical) -> bool:
        return torch.equal(self.nvec, other.nvec)

    def _extra_repr(self) -> str:
        return f"nvec={self.nvec.flatten()[: self.shape[-1] if self.shape else 1].tolist()}"


class MultiOneHot(TensorSpec):
    """Several one-hot vectors concatenated along the last dim (sizes ``nvec``).

    ``mask`` (bool, the spec's shape) restricts ``rand`` to the values where it is True;
    see :meth:`update_mask`.

    Examples:
        >>> spec = MultiOneHot([2, 3])
        >>> spec.rand().sum().item()
        2
        >>> spec.update_mask(torch.tensor([True, False, False, False, True]))
        >>> spec.rand().long().tolist()
        [1, 0, 0, 0, 1]
    """

    def __init__(
        self,
        nvec: Sequence[int],
        shape: ShapeLike | None = None,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.bool,
        mask: torch.Tensor | None = None,
    ) -> None:
        self.nvec = [int(n) for n in nvec]
        if not self.nvec or min(self.nvec) < 1:
            raise ValueError(f"MultiOneHot: every nvec entry must be >= 1, got {self.nvec}.")
        shape = _as_shape(shape if shape is not None else (sum(self.nvec),))
        if shape[-1] != sum(self.nvec):
            raise ValueError(f"MultiOneHot: last dim of shape {tuple(shape)} must be sum(nvec)={sum(self.nvec)}.")
        super().__init__(shape, dtype, device)
        self.mask: torch.Tensor | None = None
        self.update_mask(mask)

    def update_mask(self, mask: torch.Tensor | None) -> None:
        """Restrict ``rand`` to the values where ``mask`` (the spec's shape) is True (None lifts the mask).

        Raises:
            ValueError: when ``mask`` does not expand to the spec's shape.
        """
        self.mask = _checked_mask(type(self).__name__, mask, tuple(self.shape))

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        full = (*_as_shape(shape), *self.shape[:-1])
        if self.mask is not None:
            indices = _masked_blocks(self.mask, self.nvec, full)
        else:
            indices = [torch.randint(0, n, full, device=self.device) for n in self.nvec]
        parts = [torch.nn.functional.one_hot(idx, n) for idx, n in zip(indices, self.nvec)]
        return torch.cat(parts, -1).to(self.dtype)

    def _mismatch(self, value: torch.Tensor) -> str | None:
        return _not_one_hot(value, self.nvec)

    def _project(self, value: torch.Tensor) -> torch.Tensor:
        parts = [
            torch.nn.functional.one_hot(p.float().argmax(-1), n) for p, n in zip(value.split(self.nvec, -1), self.nvec)
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
        shape = changes.get("shape", self.shape)
        return MultiOneHot(
            self.nvec,
            shape=shape,
            device=changes.get("device", self.device),
            dtype=changes.get("dtype", self.dtype),
            mask=self.mask if shape == self.shape else None,
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
        if shape is None:
            if n is None:
                raise TypeError("Binary needs `n` or `shape`.")
            shape = (n,)
        shape = _as_shape(shape)
        if n is not None and (not shape or shape[-1] != n):
            raise ValueError(f"Binary: the last dim of shape {tuple(shape)} must be n={n}.")
        super().__init__(shape, dtype, device)
        self.n = shape[-1] if shape else 1

    def rand(self, shape: ShapeLike | None = None) -> torch.Tensor:
        full = (*_as_shape(shape), *self.shape)
        return torch.randint(0, 2, full, device=self.device).to(self.dtype)

    def _mismatch(self, value: torch.Tensor) -> str | None:
        bad = (value != 0) & (value != 1)
        if bad.any():
            v, idx = _first_bad(value, bad)
            return f"value {v} at index {idx} is not 0 or 1"
        return None

    def _project(self, value: torch.Tensor) -> torch.Tensor:
        return (value.float() > 0.5).to(self.dtype)

    def _clone_to(self, **changes: Any) -> Binary:
        return Binary(
            shape=changes.get("shape", self.shape),
            device=changes.get("device", self.device),
            dtype=changes.get("dtype", self.dtype),
        )
