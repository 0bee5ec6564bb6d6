"""TorchRL's spec helpers and spec aliases in ``torchrl.data``.

``BoundedContinuous``, ``UnboundedContinuous`` and ``UnboundedDiscrete`` are the names
TorchRL gives the float and integer flavours of its ``Bounded`` and ``Unbounded`` specs.
``consolidate_spec``, ``contains_lazy_spec`` and ``check_no_exclusive_keys`` deal with
*lazily stacked* specs (stacks of Composites whose members hold different keys). tdrl's
specs are never lazily stacked: every ``Composite`` holds one set of keys for its whole
batch, so these helpers check their input and give the answers that follow from that.

Examples:
    >>> import torch
    >>> from tdrl.data import UnboundedDiscrete, contains_lazy_spec
    >>> from tdrl.specs import Composite
    >>> spec = Composite(count=UnboundedDiscrete(shape=(1,)))
    >>> spec["count"].dtype, contains_lazy_spec(spec)
    (torch.int64, False)
"""

from __future__ import annotations

from typing import Any

import torch

from tdrl.specs import Bounded, Composite, TensorSpec, Unbounded
from tdrl.specs.base import DeviceLike, ShapeLike

__all__ = [
    "BoundedContinuous",
    "UnboundedContinuous",
    "UnboundedDiscrete",
    "consolidate_spec",
    "contains_lazy_spec",
    "check_no_exclusive_keys",
]

BoundedContinuous = Bounded
"""TorchRL's name for a float :class:`~tdrl.specs.Bounded` spec (the same class here)."""

UnboundedContinuous = Unbounded
"""TorchRL's name for a float :class:`~tdrl.specs.Unbounded` spec (the same class here)."""


class UnboundedDiscrete(Unbounded):
    """An :class:`~tdrl.specs.Unbounded` spec whose dtype defaults to ``torch.int64`` (TorchRL's name).

    Args:
        shape: the shape.
        device: where the tensors live.
        dtype: an integer dtype (default ``torch.int64``).

    Examples:
        >>> spec = UnboundedDiscrete(shape=(2,))
        >>> spec.zero()
        tensor([0, 0])
        >>> isinstance(spec, Unbounded)
        True
    """

    def __init__(self, shape: ShapeLike = (), device: DeviceLike = None, dtype: torch.dtype = torch.int64) -> None:
        super().__init__(shape=shape, device=device, dtype=dtype)


def _check_spec(name: str, spec: Any) -> None:
    if not isinstance(spec, (TensorSpec, Composite)):
        raise TypeError(
            f"{name}: expected a tdrl TensorSpec or Composite, got a {type(spec).__name__}. "
            "Fix: pass an env's spec (e.g. env.observation_spec)."
        )


def consolidate_spec(
    spec: Composite, recurse_through_entries: bool = True, recurse_through_stack: bool = True
) -> Composite | TensorSpec:
    """A copy of ``spec`` in which every stacked member holds the same keys (TorchRL's helper).

    tdrl's specs have no exclusive keys, so the copy equals ``spec``.

    Args:
        spec: the spec.
        recurse_through_entries: accepted for TorchRL compatibility (nested entries are
            already consistent).
        recurse_through_stack: accepted for TorchRL compatibility.

    Raises:
        TypeError: when ``spec`` is not a tdrl spec.

    Examples:
        >>> from tdrl.specs import Composite, Unbounded
        >>> spec = Composite(obs=Unbounded(shape=(3,)))
        >>> consolidate_spec(spec) == spec
        True
    """
    del recurse_through_entries, recurse_through_stack
    _check_spec("consolidate_spec", spec)
    return spec.clone()


def contains_lazy_spec(spec: Composite | TensorSpec) -> bool:
    """Whether ``spec`` holds a lazily stacked spec anywhere: never for tdrl's specs.

    Raises:
        TypeError: when ``spec`` is not a tdrl spec.

    Examples:
        >>> from tdrl.specs import Unbounded
        >>> contains_lazy_spec(Unbounded(shape=(2,)))
        False
    """
    _check_spec("contains_lazy_spec", spec)
    return False


def check_no_exclusive_keys(spec: Composite | TensorSpec, recurse: bool = True) -> bool:
    """Whether every stacked member of ``spec`` holds the same keys: always for tdrl's specs.

    Args:
        spec: the spec.
        recurse: accepted for TorchRL compatibility.

    Raises:
        TypeError: when ``spec`` is not a tdrl spec.

    Examples:
        >>> from tdrl.specs import Composite, Unbounded
        >>> check_no_exclusive_keys(Composite(obs=Unbounded(shape=(3,))))
        True
    """
    del recurse
    _check_spec("check_no_exclusive_keys", spec)
    return True
