"""A state dict as one JSON document plus one file of raw tensor bytes: no pickle either way.

A ``state_dict()`` holds more than JSON can say (int keys in an optimizer's state, tuples in
a random generator's state, tensors, numpy arrays, an ``OrderedDict`` with ``_metadata``).
:func:`encode` turns it into a JSON value in which every container carries its kind
(``{"dict": [[key, value], ...]}``, ``{"tuple": [...]}``) and every tensor is a record
(dtype, shape, device, and where its bytes start in the tensor file); :func:`decode` builds
the same structure back. Plain JSON scalars stand for themselves. Reading a state back runs
no code from the file: the tensors are rebuilt with :func:`torch.frombuffer` from bytes
whose dtype and size are checked against their record.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["encode", "decode", "TensorFile"]

_SCALARS = (bool, int, float, str, type(None))


class TensorFile:
    """The tensors of one state, laid end to end in one byte string (written once, read once)."""

    def __init__(self) -> None:
        self.chunks: list[memoryview] = []
        self.size = 0

    def add(self, tensor: torch.Tensor) -> dict[str, Any]:
        """Appends ``tensor``'s bytes; returns its record."""
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        data = flat.view(torch.uint8).numpy().data if flat.numel() else memoryview(b"")
        record = {
            "dtype": str(tensor.dtype).removeprefix("torch."),
            "shape": list(tensor.shape),
            "device": str(tensor.device),
            "offset": self.size,
        }
        self.chunks.append(data)
        self.size += data.nbytes
        return record


def encode(value: Any, tensors: TensorFile, where: str = "state") -> Any:
    """The JSON value that stands for ``value``; its tensors go to ``tensors``.

    Raises:
        TypeError: for a value that cannot be saved without pickle, naming where it is.
    """
    if isinstance(value, torch.Tensor):
        return {"tensor": tensors.add(value)}
    if isinstance(value, np.ndarray):  # as bytes: torch has no dtype for some numpy ones (uint32 before 2.3)
        if value.dtype.hasobject:
            raise TypeError(f"cannot save the object array at {where} without pickle")
        raw = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
        record = tensors.add(torch.from_numpy(raw))
        return {"ndarray": record, "np_dtype": value.dtype.str, "np_shape": list(value.shape)}
    if isinstance(value, np.generic):
        return {"np_scalar": value.item(), "np_dtype": value.dtype.str}
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Mapping):
        items = [[encode(k, tensors, where), encode(v, tensors, f"{where}[{k!r}]")] for k, v in value.items()]
        out: dict[str, Any] = {"odict" if isinstance(value, OrderedDict) else "dict": items}
        metadata = getattr(value, "_metadata", None)
        if metadata is not None:  # an nn.Module state_dict's per-submodule versions
            out["metadata"] = encode(metadata, tensors, f"{where}._metadata")
        return out
    if isinstance(value, torch.Size):
        return {"size": list(value)}
    if isinstance(value, (list, tuple, set, frozenset)):
        kind = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset"}.get(type(value), "list")
        if isinstance(value, tuple) and type(value) is not tuple:
            kind = "tuple"  # a named tuple comes back as a plain tuple
        return {kind: [encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, torch.dtype):
        return {"torch_dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    raise TypeError(
        f"cannot save the {type(value).__name__} at {where} without pickle: a checkpoint holds tensors, numpy "
        "arrays and JSON-like values (dict, list, tuple, str, int, float, bool, None). Make state_dict() return "
        "those, or register the component with StateDictCheckpointAdapter(payload_format='torch')"
    )


def _dtype(name: Any, where: str) -> torch.dtype:
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"{where}: unknown tensor dtype {name!r}")
    return dtype


def _device(saved: str, map_location: Any) -> torch.device:
    if map_location is None:
        return torch.device(saved)
    if isinstance(map_location, Mapping):
        return torch.device(map_location.get(saved, map_location.get(torch.device(saved), saved)))
    if callable(map_location):
        raise TypeError(
            "a callable map_location works only for payloads saved with payload_format='torch'; "
            "pass a device or a {saved_device: device} dict"
        )
    return torch.device(map_location)


def _tensor(record: Any, data: memoryview, map_location: Any, where: str) -> torch.Tensor:
    if not isinstance(record, dict) or set(record) != {"dtype", "shape", "device", "offset"}:
        raise ValueError(f"{where}: malformed tensor record {record!r}")
    dtype = _dtype(record["dtype"], where)
    shape, offset = record["shape"], record["offset"]
    if (
        not isinstance(shape, list)
        or not all(type(d) is int and d >= 0 for d in shape)
        or type(offset) is not int
        or not isinstance(record["device"], str)
    ):
        raise ValueError(f"{where}: malformed tensor record {record!r}")
    numel = 1
    for d in shape:
        numel *= d
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if offset < 0 or offset + nbytes > len(data):
        raise ValueError(f"{where}: the tensor's bytes [{offset}, {offset + nbytes}) lie outside the tensor file")
    if numel == 0:
        flat = torch.empty(0, dtype=dtype)
    else:
        flat = torch.frombuffer(data, dtype=torch.uint8, count=nbytes, offset=offset).clone().view(dtype)
    return flat.reshape(shape).to(_device(record["device"], map_location))


def decode(value: Any, data: memoryview, map_location: Any = None, where: str = "state") -> Any:
    """The structure :func:`encode` stood for; tensors are new (they share no memory with ``data``).

    Raises:
        ValueError: for a malformed document (the message says where).
    """
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list):  # encode never writes a bare list
        raise ValueError(f"{where}: a bare list where a tagged value was expected")
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{where}: malformed value {value!r}")
    if "tensor" in value:
        return _tensor(value["tensor"], data, map_location, where)
    if "ndarray" in value:
        raw = _tensor(value["ndarray"], data, "cpu", where).numpy()
        try:
            return raw.view(np.dtype(value["np_dtype"])).reshape(value["np_shape"])
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"{where}: malformed numpy array record ({err})") from None
    if "np_scalar" in value:
        return np.dtype(value["np_dtype"]).type(value["np_scalar"])
    for kind in ("dict", "odict"):
        if kind in value:
            items = value[kind]
            if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == 2 for i in items):
                raise ValueError(f"{where}: malformed mapping")
            mapping: dict[Any, Any] = OrderedDict() if kind == "odict" else {}
            for k, v in items:
                key = decode(k, data, map_location, where)
                mapping[key] = decode(v, data, map_location, f"{where}[{key!r}]")
            if "metadata" in value:
                mapping._metadata = decode(value["metadata"], data, map_location, where)  # type: ignore[attr-defined]
            return mapping
    for kind, build in (("list", list), ("tuple", tuple), ("set", set), ("frozenset", frozenset)):
        if kind in value:
            if not isinstance(value[kind], list):
                raise ValueError(f"{where}: malformed {kind}")
            return build(decode(v, data, map_location, f"{where}[{i}]") for i, v in enumerate(value[kind]))
    if "size" in value:
        return torch.Size(value["size"])
    if "torch_dtype" in value:
        return _dtype(value["torch_dtype"], where)
    if "device" in value:
        return torch.device(value["device"])
    if "bytes" in value:
        return bytes.fromhex(value["bytes"])
    raise ValueError(f"{where}: unknown value kind {sorted(value)}")
