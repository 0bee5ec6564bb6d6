"""The transforms of a replay buffer: applied in order to samples, inverted on writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from tdrl.data.replay_buffers._sampling import (
    SampleContext,
    sampling,
    sampling_off,
)


class _Inverted:
    """Swaps a transform's forward and inverse (``invert=True``)."""

    def __init__(self, transform: Any) -> None:
        if not callable(getattr(transform, "inv", None)):
            raise TypeError(f"invert=True needs a transform with an inv() method, got {transform!r}")
        self.transform = transform

    def __call__(self, data: Any) -> Any:
        return self.transform.inv(data)

    def inv(self, data: Any) -> Any:
        return self.transform(data)

    def __repr__(self) -> str:
        return f"Inverted({self.transform!r})"


class TransformChain:
    """Callables applied in order to sampled data; their ``inv`` (if any) in reverse on writes.

    Any callable ``TensorDict -> TensorDict`` fits, e.g. a tdrl transform or a lambda;
    a transform without ``inv`` leaves written data alone.
    """

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._inverses: list[Callable[[Any], Any]] = []

    def _refresh(self) -> None:
        self._inverses = [t.inv for t in reversed(self._items) if callable(getattr(t, "inv", None))]

    def append(self, transform: Any) -> None:
        """Adds ``transform`` at the end."""
        self.insert(len(self._items), transform)

    def insert(self, index: int, transform: Any) -> None:
        """Adds ``transform`` at position ``index``."""
        if not callable(transform):
            raise TypeError(f"a replay-buffer transform must be callable, got {type(transform).__name__}")
        if callable(getattr(transform, "eval", None)) and isinstance(transform, torch.nn.Module):
            transform.eval()
        if getattr(transform, "_applies_on_write", False):  # e.g. MultiStep: trajectories are written, not sampled
            transform = _Inverted(transform)
        self._items.insert(index, transform)
        self._refresh()

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Any:
        return self._items[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __call__(self, data: Any) -> Any:
        for transform in self._items:
            data = transform(data)
        return data

    def _call_sampled(self, data: Any, context: SampleContext) -> Any:
        """Applies the transforms to a sampled batch, telling each what was sampled and
        which transforms came before it (to read the items before the sampled ones)."""
        with sampling(context):
            for i, transform in enumerate(self._items):
                context.before = TransformChain._prefix(self._items[:i])
                data = transform(data)
        return data

    @staticmethod
    def _prefix(items: list[Any]) -> Callable[[Any], Any] | None:
        if not items:
            return None

        def apply(data: Any) -> Any:
            with sampling_off():
                for transform in items:
                    data = transform(data)
            return data

        return apply

    @property
    def has_inverse(self) -> bool:
        """Whether any transform changes written data."""
        return bool(self._inverses)

    def inv(self, data: Any) -> Any:
        """Applies the inverses, last transform first."""
        for inverse in self._inverses:
            data = inverse(data)
        return data

    def __repr__(self) -> str:
        return f"TransformChain({self._items!r})"
