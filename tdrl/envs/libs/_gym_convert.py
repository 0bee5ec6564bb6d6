"""How values cross between gymnasium and torch for :mod:`tdrl.envs.libs.gym`.

The gymnasium import (with the install hint), the numpy -> torch dtype table the spaces and
the other numpy backends (dm_control, VMAS) share, the numpy dtypes the lean step builds its
arrays with, and how an action tensor is handed to gymnasium: one env's Discrete action as a
python ``int`` (as TorchRL passes it), any other action as a numpy array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tdrl.specs import Categorical, OneHot, TensorSpec

__all__: list[str] = []

# numpy dtypes looked up once: the lean step builds its arrays with them at every step
_BOOL = np.dtype(bool)
_F32 = np.dtype(np.float32)

_TORCH_DTYPES = {
    np.dtype("float64"): torch.float64,
    np.dtype("float32"): torch.float32,
    np.dtype("float16"): torch.float16,
    np.dtype("int64"): torch.int64,
    np.dtype("int32"): torch.int32,
    np.dtype("int16"): torch.int16,
    np.dtype("int8"): torch.int8,
    np.dtype("uint8"): torch.uint8,
    np.dtype("bool"): torch.bool,
}


# how an action tensor becomes gymnasium's action (GymWrapper._lean_decode)
_AS_ARRAY, _ONE_HOT, _INDEX = 0, 1, 2


def _decode_mode(spec: TensorSpec | None, is_vector: bool) -> int:
    """``_ONE_HOT`` / ``_INDEX`` for one env's Discrete action (passed as a python int), else ``_AS_ARRAY``."""
    if is_vector or spec is None:
        return _AS_ARRAY
    if isinstance(spec, OneHot) and spec.shape.numel() == spec.n:
        return _ONE_HOT
    if type(spec) is Categorical and spec.shape == ():
        return _INDEX
    return _AS_ARRAY


def _gym():
    try:
        import gymnasium
    except ImportError as err:  # pragma: no cover - gymnasium is a core dependency
        raise ImportError("tdrl's gym backend needs gymnasium: pip install gymnasium") from err
    return gymnasium


def _torch_dtype(dtype: Any) -> torch.dtype:
    dtype = np.dtype(dtype)
    if dtype not in _TORCH_DTYPES:
        raise TypeError(f"no torch dtype for numpy dtype {dtype}")
    return _TORCH_DTYPES[dtype]
