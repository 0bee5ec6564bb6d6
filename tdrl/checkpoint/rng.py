"""The process-wide random generators (Python, NumPy, torch) as one checkpoint component."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["GlobalRNGState"]

_KEYS = ("python", "numpy", "torch_cpu")


class GlobalRNGState:
    """The state of ``random``, ``numpy.random`` and torch's default generators, as a component.

    :meth:`state_dict` reads them at that moment (CUDA's too, once CUDA is initialized);
    :meth:`load_state_dict` sets them all, after checking every part. Register it in a
    :class:`~tdrl.checkpoint.Checkpoint` so that a resumed run draws the numbers the
    interrupted one would have drawn. Generators owned by objects (an env's, a replay
    buffer's) travel with those objects' states instead.

    Examples:
        >>> import torch
        >>> from tdrl.checkpoint import GlobalRNGState
        >>> rng = GlobalRNGState()
        >>> state = rng.state_dict()
        >>> first = torch.rand(2)
        >>> rng.load_state_dict(state)
        >>> torch.equal(torch.rand(2), first)
        True
    """

    def state_dict(self) -> dict[str, Any]:
        """The generators' states now: ``"python"``, ``"numpy"``, ``"torch_cpu"`` (and ``"torch_cuda"``)."""
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),  # noqa: NPY002 - the global generator is the point
            "torch_cpu": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["torch_cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Sets every generator from ``state_dict``; checks all parts before setting any.

        Raises:
            KeyError: for a missing part (named).
            ValueError: for a part that is not a state of its generator.
            RuntimeError: for a CUDA state where CUDA is not available.
        """
        missing = [k for k in _KEYS if k not in state_dict]
        if missing:
            raise KeyError(
                f"GlobalRNGState.load_state_dict: missing {missing} (keys are {sorted(state_dict)}); "
                "pass what GlobalRNGState.state_dict() returned"
            )
        if "torch_cuda" in state_dict and not torch.cuda.is_available():
            raise RuntimeError("the state holds CUDA generator states, but CUDA is not available here")
        python = state_dict["python"]
        numpy_state = tuple(state_dict["numpy"])
        torch_cpu = state_dict["torch_cpu"]
        # check on scratch generators first, so that a bad part changes nothing
        try:
            random.Random().setstate(_as_tuples(python))
            np.random.RandomState().set_state(numpy_state)
            torch.Generator().set_state(torch_cpu)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"GlobalRNGState.load_state_dict: not a generator state ({err})") from None
        random.setstate(_as_tuples(python))
        np.random.set_state(numpy_state)  # noqa: NPY002 - the global generator is the point
        torch.set_rng_state(torch_cpu)
        if "torch_cuda" in state_dict:
            torch.cuda.set_rng_state_all(list(state_dict["torch_cuda"]))


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples where a JSON round trip may have made lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value
