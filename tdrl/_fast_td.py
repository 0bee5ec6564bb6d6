"""Reading and writing TensorDict entries on the per-step hot paths.

``TensorDict.get`` and ``TensorDict.set`` check the key and the value at every call
(key unravelling, batch-shape and device validation, lock checks). On a per-step path
(an env step, its transforms, a policy call) those checks cost more than the small maps
they guard, and they are repeated for values whose layout is already known to be valid.

:func:`read` and :func:`write` reach the entry dict of a plain, unlocked ``TensorDict``
for string keys, and store a tensor without ``set``'s checks only when it provably keeps
the TensorDict valid: its leading dims equal the batch size and it lives on the
TensorDict's device (or the TensorDict has none). Anything else (nested keys, locked or
lazy TensorDicts, sub-TensorDicts, a value that needs checking) goes through
``get``/``set``, so the behaviour, errors included, is tensordict's.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"x": torch.zeros(3, 2)}, [3])
    >>> _ = write(td, "y", read(td, "x") + 1)
    >>> td["y"].sum().item()
    6.0
    >>> write(td, "z", torch.zeros(4))  # a wrong batch dim gets tensordict's own error
    Traceback (most recent call last):
        ...
    RuntimeError: batch dimension mismatch, got self.batch_size=torch.Size([3]) and value.shape=torch.Size([4]).
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.specs import NestedKey

__all__ = ["read", "write"]


def read(tensordict: TensorDictBase, key: NestedKey) -> Any:
    """``tensordict.get(key, None)``."""
    if type(key) is str and type(tensordict) is TensorDict:
        value = tensordict._tensordict.get(key)
        if isinstance(value, torch.Tensor):
            return value
    return tensordict.get(key, None)  # missing keys, sub-TensorDicts and non-tensor data: tensordict decides


def write(tensordict: TensorDictBase, key: NestedKey, value: Any) -> TensorDictBase:
    """``tensordict.set(key, value)``, without the checks when ``value`` needs none."""
    if type(key) is str and type(tensordict) is TensorDict and isinstance(value, torch.Tensor):
        if not tensordict._is_locked:
            batch = tensordict._batch_size
            device = tensordict._device
            if (not batch or value.shape[: len(batch)] == batch) and (device is None or value.device == device):
                tensordict._tensordict[key] = value
                return tensordict
    return tensordict.set(key, value)
