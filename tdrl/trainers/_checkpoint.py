"""The ``Trainer``'s checkpoint file: its byte format, the RNG states it carries, reading and writing it.

A checkpoint is one file written crash-safe (:mod:`tdrl._safe_io`): a magic string, the payload's
size and CRC-32, then the payload (``torch.save`` of the trainer's state dict), read back with
``torch.load(weights_only=True)`` so that loading never unpickles code. Import the trainer from
:mod:`tdrl.trainers`.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tdrl._safe_io import write_file_atomic

__all__: list[str] = []

_CHECKPOINT_FORMAT = "tdrl.Trainer/1"
# a checkpoint file: this magic, the payload's size and CRC-32 (little-endian u64, u32), then
# the payload (torch.save's zip of the state dict); torch's reader does not check its own CRCs
_MAGIC = b"tdrl-trainer-checkpoint\x00"
_HEADER = struct.Struct("<QI")


def _encode_checkpoint(state: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    payload = buffer.getvalue()
    return _MAGIC + _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _decode_checkpoint(path: Path, data: bytes, **load_kwargs: Any) -> Any:
    """The state in a checkpoint file's bytes, or a ValueError naming what is wrong."""
    start = len(_MAGIC) + _HEADER.size
    if not data.startswith(_MAGIC) or len(data) < start:
        raise ValueError(
            f"Trainer.load_from_file: {path} is not a tdrl trainer checkpoint (it does not start with "
            f"{_MAGIC!r}); load checkpoints written by Trainer.save_trainer."
        )
    size, crc = _HEADER.unpack_from(data, len(_MAGIC))
    payload = memoryview(data)[start:]
    if len(payload) != size or zlib.crc32(payload) != crc:
        raise ValueError(
            f"Trainer.load_from_file: {path} is damaged (size {len(payload)} for {size} written, or a CRC-32 "
            "mismatch); load an earlier checkpoint."
        )
    try:
        return torch.load(io.BytesIO(payload), weights_only=True, **load_kwargs)
    except Exception as err:  # an unpickling error: classes outside the weights-only set
        raise ValueError(
            f"Trainer.load_from_file: {path} holds objects other than tensors, numbers and containers ({err}); "
            "tdrl does not unpickle them."
        ) from None


def write_checkpoint(file: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Writes ``state`` to ``file`` crash-safe, creating its folder."""
    data = _encode_checkpoint(state)
    path = Path(os.fspath(file))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, lambda handle: handle.write(data))


def read_checkpoint(file: str | os.PathLike, **load_kwargs: Any) -> dict[str, Any]:
    """The state dict in a checkpoint file written by :func:`write_checkpoint`.

    Raises:
        FileNotFoundError: when there is no such file.
        ValueError: when the file is not a trainer checkpoint or is damaged.
    """
    path = Path(os.fspath(file))
    if not path.is_file():
        raise FileNotFoundError(f"Trainer.load_from_file: no checkpoint at {path}.")
    state = _decode_checkpoint(path, path.read_bytes(), **load_kwargs)
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(
            f"Trainer.load_from_file: {path} is not a tdrl trainer checkpoint (format "
            f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r}, expected "
            f"{_CHECKPOINT_FORMAT!r})."
        )
    return state


def _rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002 (the global state users seed)
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }


def _set_rng_states(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))  # noqa: NPY002
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
