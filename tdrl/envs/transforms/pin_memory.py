"""PinMemoryTransform: put the env's outputs in page-locked (pinned) memory, for fast copies to a GPU.

Pinning needs an accelerator (CUDA) in the machine: without one, the transform refuses to
be built rather than fail at the first step.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"observation": torch.zeros(3)}, [])
    >>> PinMemoryTransform()(td)["observation"].is_pinned() if torch.cuda.is_available() else True
    True
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform

__all__ = ["PinMemoryTransform"]

_NO_ACCELERATOR = (
    "PinMemoryTransform: pinned memory needs an accelerator (CUDA) in the machine, and torch sees none "
    "(torch.cuda.is_available() is False). Fix: drop the transform on CPU-only machines; it only speeds up "
    "copies to a GPU."
)


def pin_memory_available() -> bool:
    """Whether this machine can pin host memory (it has a CUDA device torch can use)."""
    return torch.cuda.is_available()


class PinMemoryTransform(Transform):
    """Pin the memory of every reset and step output (and of a TensorDict it is called on).

    Data on the CPU that is pinned copies to a CUDA device faster and asynchronously
    (``.to("cuda", non_blocking=True)``); values, shapes and specs are unchanged.

    Raises:
        RuntimeError: at construction, on a machine without an accelerator.

    Examples:
        >>> import torch
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> if torch.cuda.is_available():
        ...     env = TransformedEnv(CountingEnv(), PinMemoryTransform())
        ...     assert env.rollout(2)["next", "observation"].is_pinned()
    """

    def __init__(self) -> None:
        if not pin_memory_available():
            raise RuntimeError(_NO_ACCELERATOR)
        super().__init__()

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict.pin_memory()

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict)

    def _rewritten_keys(self) -> set:
        return set()

    def __repr__(self) -> str:
        return "PinMemoryTransform()"
