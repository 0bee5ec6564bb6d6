"""Saving and loading replay-buffer state without pickle.

A state is a nested structure of dicts (string keys), lists, ``None``/bool/int/float/str,
tensors and TensorDicts. :func:`save_state` writes every tensor as a raw little file
(``<name>_<i>.bin``: the bytes of the contiguous tensor) and everything else, including
each tensor's dtype and shape, as one JSON document. :func:`load_state` reads the JSON
and maps the tensor files back with :class:`tensordict.MemoryMappedTensor`, so that a
checkpoint of a 1M-transition buffer is not read into memory before it is copied where
it belongs. Nothing is unpickled: loading a checkpoint cannot execute code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from tensordict import MemoryMappedTensor, TensorDict, TensorDictBase

from tdrl.data.replay_buffers._layout import dtype_from_str

__all__ = ["save_state", "load_state", "as_json", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION"]

CHECKPOINT_FORMAT = "tdrl.replay_buffer"
CHECKPOINT_VERSION = 1
_TENSOR_TAG = "__tensor__"
_TD_TAG = "__tensordict__"


def as_json(obj: Any) -> Any:
    """The value a JSON round trip gives back (tuples become lists); for comparing configs."""
    if isinstance(obj, (list, tuple)):
        return [as_json(o) for o in obj]
    if isinstance(obj, dict):
        return {k: as_json(v) for k, v in obj.items()}
    return obj


def _write_tensor(tensor: torch.Tensor, path: Path) -> None:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    with open(path, "wb") as file:
        if flat.numel():
            # raw bytes through write(2): the data does not go through a mapping of the
            # destination, so saving a large storage does not grow the resident memory
            file.write(flat.view(torch.uint8).numpy().data)


def _read_tensor(path: Path, dtype: torch.dtype, shape: torch.Size) -> torch.Tensor:
    numel = shape.numel()
    expected = numel * torch.empty((), dtype=dtype).element_size()
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ValueError(f"checkpoint file {path} is missing") from None
    if size != expected:
        raise ValueError(
            f"checkpoint file {path} holds {size} bytes, expected {expected} for a "
            f"{dtype} tensor of shape {list(shape)}: the checkpoint is corrupt or incomplete"
        )
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return MemoryMappedTensor.from_filename(str(path), dtype=dtype, shape=shape).as_subclass(torch.Tensor)


def save_state(state: dict[str, Any], directory: str | os.PathLike, name: str) -> Path:
    """Writes ``state`` under ``directory`` as ``<name>.json`` plus one file per tensor.

    Args:
        state: the nested state (see the module docstring for what it may hold).
        directory: folder to write into (created if needed).
        name: stem of the JSON file and prefix of the tensor files.

    Returns:
        The path of the JSON file.

    Raises:
        TypeError: for a value that cannot be saved without pickle.

    Examples:
        >>> import tempfile, torch
        >>> folder = tempfile.mkdtemp()
        >>> _ = save_state({"cursor": 3, "perm": torch.arange(4)}, folder, "sampler")
        >>> load_state(folder, "sampler")["perm"]
        tensor([0, 1, 2, 3])
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    counter = 0

    def encode(obj: Any, where: str) -> Any:
        nonlocal counter
        if isinstance(obj, torch.Tensor):
            filename = f"{name}_{counter}.bin"
            counter += 1
            _write_tensor(obj, directory / filename)
            return {_TENSOR_TAG: filename, "dtype": str(obj.dtype), "shape": list(obj.shape)}
        if isinstance(obj, TensorDictBase):
            return {
                _TD_TAG: encode(obj.to_dict(), where),
                "batch_size": list(obj.batch_size),
                "device": None if obj.device is None else str(obj.device),
            }
        if isinstance(obj, dict):
            out = {}
            for key, value in obj.items():
                if not isinstance(key, str):
                    raise TypeError(f"state keys must be strings, got {key!r} at {where}")
                out[key] = encode(value, f"{where}.{key}")
            return out
        if isinstance(obj, (list, tuple)):
            return [encode(value, f"{where}[{i}]") for i, value in enumerate(obj)]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise TypeError(
            f"cannot save a {type(obj).__name__} at {where} without pickle: "
            "checkpoints hold tensors, TensorDicts, and JSON values only"
        )

    document = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "state": encode(state, name)}
    target = directory / f"{name}.json"
    tmp = directory / f".{name}.json.tmp"
    with open(tmp, "w") as file:
        json.dump(document, file)
    os.replace(tmp, target)
    return target


def load_state(directory: str | os.PathLike, name: str) -> dict[str, Any]:
    """Reads a state written by :func:`save_state`; tensors come back memory-mapped.

    Raises:
        FileNotFoundError: when ``directory`` holds no ``<name>.json``.
        ValueError: for a file of another format or version, or a corrupt tensor file.
    """
    directory = Path(directory)
    target = directory / f"{name}.json"
    if not target.is_file():
        raise FileNotFoundError(f"no checkpoint {target}: was it written with dumps()?")
    with open(target) as file:
        try:
            document = json.load(file)
        except json.JSONDecodeError as err:
            raise ValueError(f"{target} is not a valid checkpoint: {err}") from err
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{target} is not a tdrl replay-buffer checkpoint")
    if document.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{target} has checkpoint version {document.get('version')}, this tdrl reads version {CHECKPOINT_VERSION}"
        )

    def decode(obj: Any) -> Any:
        if isinstance(obj, dict):
            if _TENSOR_TAG in obj:
                filename = obj[_TENSOR_TAG]
                if not isinstance(filename, str) or "/" in filename or filename.startswith("."):
                    raise ValueError(f"invalid tensor file name {filename!r} in {target}")
                shape = torch.Size(int(d) for d in obj["shape"])
                return _read_tensor(directory / filename, dtype_from_str(obj["dtype"]), shape)
            if _TD_TAG in obj:
                return TensorDict(decode(obj[_TD_TAG]), batch_size=obj["batch_size"], device=obj["device"])
            return {key: decode(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [decode(value) for value in obj]
        return obj

    return decode(document["state"])
