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

import torch

from tdrl.specs.base import CategoricalBox, ContinuousBox, DeviceLike, NestedKey, ShapeLike, TensorSpec
from tdrl.specs.composite import Composite
from tdrl.specs.continuous import Bounded, Unbounded
from tdrl.specs.discrete import Binary, Categorical, MultiCategorical, MultiOneHot, OneHot

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


def _unbounded_discrete(
    shape: ShapeLike = (), device: DeviceLike = None, dtype: torch.dtype = torch.int64
) -> Unbounded:
    """TorchRL's older ``UnboundedDiscreteTensorSpec``: an :class:`Unbounded` spec of dtype ``int64`` by default."""
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
