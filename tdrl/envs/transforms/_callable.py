"""A plain function ``tensordict -> tensordict`` as a transform (what Compose accepts besides Transforms)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tensordict import TensorDictBase
from torch import nn

from tdrl.envs.transforms.transforms import Transform

__all__: list[str] = []


def _as_transform(item: Any, where: str) -> Transform:
    """``item`` itself if it is a Transform, a plain callable wrapped in one; TypeError otherwise."""
    if isinstance(item, Transform):
        return item
    if callable(item) and not isinstance(item, nn.Module):
        return _CallableTransform(item)
    raise TypeError(
        f"{where} takes Transform instances or functions tensordict -> tensordict, got {type(item).__name__}."
    )


class _CallableTransform(Transform):
    """A function ``tensordict -> tensordict`` inside a Compose (TorchRL accepts those too).

    Applied to each step's and reset's output and in ``forward``; no inverse, no spec change.
    It may return a new TensorDict (``td.to(device)``), so it is not mapped over time at once.
    """

    time_vectorizable = False

    def __init__(self, func: Callable[[TensorDictBase], TensorDictBase]) -> None:
        super().__init__()
        self.func = func

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        return self.func(tensordict)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return self.func(tensordict)

    def extra_repr(self) -> str:
        return f"func={self.func!r}"
