"""Shape layers that end convolutional networks: flatten the feature map, or drop singleton dims.

Examples:
    >>> import torch
    >>> SquashDims()(torch.zeros(5, 8, 3, 3)).shape
    torch.Size([5, 72])
    >>> Squeeze2dLayer()(torch.zeros(5, 8, 1, 1)).shape
    torch.Size([5, 8])
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn

__all__ = ["SquashDims", "SqueezeLayer", "Squeeze2dLayer"]


def per_layer_kwargs(
    owner: str, name: str, kwargs: dict | Sequence[dict] | None, n: int, counted: str
) -> Iterator[dict]:
    """One dict of keyword arguments for each of ``n`` layers, from ``None``, one dict, or a list of ``n`` dicts.

    Each layer gets its own copy (a layer may keep or change what it is given). ``counted``
    says in the error where ``n`` comes from (e.g. ``"the network has depth=2"``).

    Raises:
        ValueError: when a list does not hold exactly ``n`` dicts.
    """
    if kwargs is None:
        return iter([{} for _ in range(n)])
    if isinstance(kwargs, dict):
        return iter([copy.deepcopy(kwargs) for _ in range(n)])
    kwargs = list(kwargs)
    if len(kwargs) != n:
        raise ValueError(f"{owner}: {name} has {len(kwargs)} dicts but {counted}; give one per layer.")
    return iter([copy.deepcopy(k) for k in kwargs])


class SquashDims(nn.Module):
    """Flatten the last ``ndims_in`` dims into one (a feature map ``[C, H, W]`` into ``[C * H * W]``).

    Args:
        ndims_in: how many trailing dims to flatten (default 3).

    Examples:
        >>> SquashDims(ndims_in=2)(torch.zeros(4, 2, 3)).shape
        torch.Size([4, 6])
    """

    def __init__(self, ndims_in: int = 3) -> None:
        super().__init__()
        if ndims_in < 1:
            raise ValueError(f"SquashDims: ndims_in must be >= 1, got {ndims_in}.")
        self.ndims_in = int(ndims_in)

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value.flatten(-self.ndims_in, -1)

    def extra_repr(self) -> str:
        return f"ndims_in={self.ndims_in}"


class SqueezeLayer(nn.Module):
    """Remove the given trailing singleton dims (``(-1,)`` by default).

    Args:
        dims: negative dims to squeeze, in the order they are removed.

    Raises:
        ValueError: at construction when a dim is not negative; on a call when a dim to
            squeeze does not have size 1.

    Examples:
        >>> SqueezeLayer()(torch.zeros(4, 1)).shape
        torch.Size([4])
    """

    def __init__(self, dims: Sequence[int] = (-1,)) -> None:
        super().__init__()
        dims = tuple(int(d) for d in dims)
        if any(d >= 0 for d in dims):
            raise ValueError(
                f"SqueezeLayer: dims must all be negative (counted from the end), got {dims}; "
                f"e.g. dims=(-2, -1) for the last two."
            )
        self.dims = dims

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        for dim in self.dims:
            if value.shape[dim] != 1:
                raise ValueError(
                    f"{type(self).__name__}: cannot squeeze dims {self.dims} of a tensor of shape "
                    f"{tuple(value.shape)}: dim {dim} has size {value.shape[dim]}, not 1."
                )
            value = value.squeeze(dim)
        return value


class Squeeze2dLayer(SqueezeLayer):
    """Remove the two trailing singleton dims of a pooled feature map (``[*B, C, 1, 1] -> [*B, C]``).

    Examples:
        >>> Squeeze2dLayer()(torch.zeros(2, 16, 1, 1)).shape
        torch.Size([2, 16])
    """

    def __init__(self) -> None:
        super().__init__((-2, -1))
