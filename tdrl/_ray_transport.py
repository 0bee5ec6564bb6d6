"""How a TensorDict travels to and from a Ray actor: as a flat dict of numpy arrays.

Ray serializes numpy arrays without copying them through pickle (the bytes go out of band,
and a large array is read from the object store in place); a TensorDict is pickled leaf by
leaf with its structure, which costs about twice as much for a collector batch (measured in
``benchmarks/bench_ray_transport.py``). :func:`pack` flattens a plain ``TensorDict`` into
``(batch sizes of its nodes, {key: array})`` and :func:`unpack` rebuilds it on CPU.

Anything else (a tensor, a list, a TensorDict holding non-tensor data or of another class)
travels as it is.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

# dtypes without a numpy twin travel as a same-sized integer view
_VIEWED = {torch.bfloat16: torch.int16, torch.float8_e4m3fn: torch.int8, torch.float8_e5m2: torch.int8}


class Packed:
    """A TensorDict flattened for Ray: the batch size of every node and one array per leaf."""

    __slots__ = ("arrays", "batch_sizes", "viewed")

    def __init__(
        self, batch_sizes: dict[tuple[str, ...], tuple[int, ...]], arrays: dict[tuple[str, ...], np.ndarray]
    ) -> None:
        self.batch_sizes = batch_sizes
        self.arrays = arrays
        self.viewed: dict[tuple[str, ...], torch.dtype] = {}

    def __getstate__(self) -> tuple[Any, ...]:
        return self.batch_sizes, self.arrays, self.viewed

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.batch_sizes, self.arrays, self.viewed = state


def _flat(td: TensorDictBase, prefix: tuple[str, ...], packed: Packed) -> bool:
    packed.batch_sizes[prefix] = tuple(td.batch_size)
    for key, value in td.items():
        path = (*prefix, key)
        if type(value) is TensorDict:
            if not _flat(value, path, packed):
                return False
        elif isinstance(value, torch.Tensor) and type(value) is torch.Tensor and value.layout == torch.strided:
            value = value.detach()
            if value.device.type != "cpu":
                value = value.cpu()
            if value.dtype in _VIEWED:
                packed.viewed[path] = value.dtype
                value = value.view(_VIEWED[value.dtype])
            if value.is_conj() or value.is_neg():
                value = value.resolve_conj().resolve_neg()
            packed.arrays[path] = value.numpy()
        else:
            return False  # non-tensor data, a lazy stack, a sparse tensor...: pickled whole
    return True


def pack(data: Any) -> Any:
    """``data`` ready for Ray: a :class:`Packed` for a plain TensorDict, else ``data`` itself."""
    if type(data) is not TensorDict:
        return data
    packed = Packed({}, {})
    return packed if _flat(data, (), packed) else data


def unpack(data: Any, *, writable: bool = True) -> Any:
    """Rebuilds what :func:`pack` flattened; anything else is returned as it is.

    Args:
        data: what came out of ``ray.get`` or an actor call's argument.
        writable: copy the arrays that Ray handed out read-only (views of the object store),
            so that the caller may write into the tensors. ``False`` keeps the views, for data
            that is only read (e.g. copied into a storage).
    """
    if not isinstance(data, Packed):
        return data
    out = TensorDict({}, batch_size=data.batch_sizes[()])
    for path, size in data.batch_sizes.items():
        if path:
            out.set(path, TensorDict({}, batch_size=size))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for path, array in data.arrays.items():
            if writable and not array.flags.writeable:
                array = array.copy()
            tensor = torch.from_numpy(array)
            if path in data.viewed:
                tensor = tensor.view(data.viewed[path])
            out.set(path, tensor)
    return out
