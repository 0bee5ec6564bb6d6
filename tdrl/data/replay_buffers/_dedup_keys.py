"""The entries a :class:`~tdrl.data.replay_buffers.DedupNextStorage` stores once, and how rows are compared.

A key names a root entry (``"pixels"``) whose ``("next", key)`` twin the storage keeps only
where the following slot does not hold it. This module checks the ``keys=`` argument, finds
the keys in the first data written when none are given, takes the pairs out of written
data (checking that each pair has one shape and dtype), and compares rows bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey, unravel_key

from tdrl.data.replay_buffers._layout import TensorLayout, key_str

__all__: list[str] = []

_AUTO_KEYS: tuple[NestedKey, ...] = ("observation", "pixels")
_MISSING_PAIR = (
    "DedupNextStorage stores {key} once for it and for ('next', {key}), but the data lacks {missing}; "
    "it holds keys {keys}. Pass keys= naming entries that the data holds at the root and under 'next'"
)
_NO_AUTO_KEY = (
    "DedupNextStorage found none of {auto} both at the root and under 'next' in the data, which holds "
    "keys {keys}; pass keys=[...] naming the observations to store once"
)
_PAIR_MISMATCH = (
    "DedupNextStorage stores {key} and ('next', {key}) in one column, so they need one shape and "
    "dtype: got {root} and {nxt}; store them in a plain storage, or leave {key} out of keys="
)


def _next_key(key: NestedKey) -> NestedKey:
    return cast(NestedKey, ("next", *key) if isinstance(key, tuple) else ("next", key))


def _key_list(keys: Any) -> str:
    """``['obs', ('next', 'obs')]``: keys as an error message lists them."""
    return "[" + ", ".join(key_str(k) for k in keys) + "]"


def _row_words(value: torch.Tensor) -> torch.Tensor:
    """``[n, ...]`` as ``[n, k]`` integers holding each row's bytes (as wide as the row allows)."""
    if value.is_complex():
        value = torch.view_as_real(value)
    rows = value.reshape(value.shape[0], -1).contiguous().view(torch.uint8)
    width = rows.shape[1]
    for size, dtype in ((8, torch.int64), (4, torch.int32), (2, torch.int16)):
        if width % size == 0:
            try:
                return rows.view(dtype)
            except RuntimeError:  # a view whose offset does not align with the wider type
                break
    return rows


def _same_rows(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    """Per row, whether two ``[n, ...]`` tensors hold the same bits (so NaN matches NaN and
    -0.0 does not match 0.0)."""
    count = first.shape[0]
    if first.numel() == 0:
        return np.ones(count, dtype=bool)
    a, b = _row_words(first), _row_words(second)
    if a.device.type != "cpu":
        return (a == b).all(1).cpu().numpy()
    differ = a.numpy() != b.numpy()
    if differ.shape[1] >= 64:
        return ~differ.any(1)
    # numpy reduces short rows one by one; the few differing words are found faster
    same = np.ones(count, dtype=bool)
    same[np.flatnonzero(differ) // differ.shape[1]] = False
    return same


def _keys_argument(keys: Any) -> tuple[NestedKey, ...] | None:
    if keys is None:
        return None
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, Sequence) or not keys:
        raise TypeError(f"keys must be a key or a non-empty list of keys, got {keys!r}")
    out = []
    for key in keys:
        if not (isinstance(key, str) or (isinstance(key, tuple) and key and all(isinstance(k, str) for k in key))):
            raise TypeError(f"keys must name entries (strings, or tuples of strings for nested ones), got {key!r}")
        key = unravel_key(key)
        if key == "next" or (isinstance(key, tuple) and key[0] == "next"):
            raise ValueError(f"keys name root entries whose ('next', key) twin is stored once, got {key_str(key)}")
        out.append(key)
    if len(set(out)) != len(out):
        raise ValueError(f"keys lists an entry twice: {_key_list(out)}")
    return tuple(out)


def _resolve_keys(keys_arg: tuple[NestedKey, ...] | None, data: TensorDictBase) -> tuple[NestedKey, ...]:
    """The keys given (``keys_arg``), else those of ``_AUTO_KEYS`` that ``data`` holds with their twins."""
    if keys_arg is not None:
        return keys_arg
    stored = set(data.keys(include_nested=True, leaves_only=True))
    found = tuple(k for k in _AUTO_KEYS if k in stored and _next_key(k) in stored)
    if not found:
        raise KeyError(_NO_AUTO_KEY.format(auto=list(_AUTO_KEYS), keys=_key_list(sorted(stored, key=str))))
    return found


def _pairs(data: TensorDictBase, keys: tuple[NestedKey, ...]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The root values of ``keys`` in ``data`` and their ``("next", key)`` twins, checked to match."""
    roots, nexts = [], []
    for key in keys:
        twin = _next_key(key)
        root, nxt = data.get(key, None), data.get(twin, None)
        if not isinstance(root, torch.Tensor) or not isinstance(nxt, torch.Tensor):
            missing = key_str(key) if not isinstance(root, torch.Tensor) else key_str(twin)
            held = _key_list(sorted(data.keys(include_nested=True, leaves_only=True), key=str))
            raise KeyError(_MISSING_PAIR.format(key=key_str(key), missing=missing, keys=held))
        if root.shape != nxt.shape or root.dtype != nxt.dtype:
            raise ValueError(
                _PAIR_MISMATCH.format(
                    key=key_str(key),
                    root=f"{list(root.shape)} {root.dtype}",
                    nxt=f"{list(nxt.shape)} {nxt.dtype}",
                )
            )
        roots.append(root)
        nexts.append(nxt)
    return roots, nexts


def _make_kept_layout(layout: TensorLayout, keys: tuple[NestedKey, ...]) -> TensorLayout:
    """The layout of the next values kept apart: one column per key, shaped as its twin in ``layout``."""
    shapes = [layout.shapes[layout.position(_next_key(k))] for k in keys]
    dtypes = [layout.dtypes[layout.position(_next_key(k))] for k in keys]
    return TensorLayout(list(keys), shapes, dtypes, torch.Size([]))
