"""Saving and loading replay-buffer state without pickle, crash-safe and checksummed.

A state is a nested structure of dicts (string keys), lists, ``None``/bool/int/float/str,
tensors and TensorDicts. :func:`save_state` writes it as one checkpoint folder
``<directory>/<name>/``: every tensor as a raw file (``<name>_<i>.bin``, the bytes of the
contiguous tensor) and everything else, including each tensor's dtype and shape, as one
JSON document ``<name>.json``, which also lists every file with its size and CRC-32 and
carries a CRC-32 of its own content. The folder is built next to the old one and renamed
into place (:func:`tdrl._safe_io.replace_folder`): a save killed at any instant leaves the
previous checkpoint or the new one.

:func:`load_state` checks the JSON's checksum and every file's size and checksum before it
decodes anything, and maps the tensor files back with :class:`tensordict.MemoryMappedTensor`,
so that a checkpoint of a 1M-transition buffer is not read into memory before it is copied
where it belongs. Nothing is unpickled: loading a checkpoint cannot execute code. File
names in the JSON are plain names inside the checkpoint folder, or the load is refused.

Checkpoints of version 1 (tdrl 0.1: the files directly in ``<directory>``, no checksums)
still load.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tensordict import MemoryMappedTensor, TensorDict, TensorDictBase, is_non_tensor

from tdrl._safe_io import (
    UnsafePathError,
    committed_folder,
    contained_file,
    file_digest,
    replace_folder,
    write_new_file,
)
from tdrl.data.replay_buffers._layout import dtype_from_str
from tdrl.data.replay_buffers._state_checks import StateError

__all__ = [
    "save_state",
    "load_state",
    "load_into",
    "as_json",
    "CheckpointSource",
    "LoadedState",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
]

CHECKPOINT_FORMAT = "tdrl.replay_buffer"
CHECKPOINT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_TENSOR_TAG = "__tensor__"
_TD_TAG = "__tensordict__"
_MAX_ELEMENTS = 2**48  # more elements than any tensor of a checkpoint holds; keeps sizes exact in int64
_CORRUPT = "the checkpoint is damaged or incomplete; load an earlier one, or save it again with dumps()"


def as_json(obj: Any) -> Any:
    """The value a JSON round trip gives back (tuples become lists); for comparing configs."""
    if isinstance(obj, (list, tuple)):
        return [as_json(o) for o in obj]
    if isinstance(obj, dict):
        return {k: as_json(v) for k, v in obj.items()}
    return obj


def _body_crc(document: dict[str, Any]) -> int:
    """CRC-32 of the document without its checksum, in a canonical JSON form."""
    body = {k: v for k, v in document.items() if k != "checksum"}
    return zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data if flat.numel() else memoryview(b"")


def save_state(state: dict[str, Any], directory: str | os.PathLike, name: str) -> Path:
    """Writes ``state`` as the checkpoint folder ``<directory>/<name>``, crash-safe.

    Args:
        state: the nested state (see the module docstring for what it may hold).
        directory: folder to save into (created if needed); other files in it are left alone.
        name: the checkpoint folder's name, the stem of its JSON file and the prefix of its
            tensor files.

    Returns:
        The path of the JSON file.

    Raises:
        TypeError: for a value that cannot be saved without pickle (nothing is written then).

    Examples:
        >>> import tempfile, torch
        >>> folder = tempfile.mkdtemp()
        >>> _ = save_state({"cursor": 3, "perm": torch.arange(4)}, folder, "sampler")
        >>> load_state(folder, "sampler").state["perm"]
        tensor([0, 1, 2, 3])
    """
    if not name or name != os.path.basename(name) or name.startswith("."):
        raise ValueError(f"invalid checkpoint name {name!r}: expected a plain file name")

    def fill(folder: Path) -> Path:
        files: dict[str, dict[str, int]] = {}

        def encode(obj: Any, where: str) -> Any:
            if isinstance(obj, torch.Tensor):
                filename = f"{name}_{len(files)}.bin"
                digest = write_new_file(folder / filename, _tensor_bytes(obj))
                files[filename] = {"bytes": digest.size, "crc32": digest.crc32}
                return {_TENSOR_TAG: filename, "dtype": str(obj.dtype), "shape": list(obj.shape)}
            if isinstance(obj, TensorDictBase):
                entries = obj.to_dict()
                for entry in entries:  # a nested TensorDict keeps its own batch_size (a group's agent dim)
                    value = obj.get(entry)
                    if isinstance(value, TensorDictBase) and not is_non_tensor(value):
                        entries[entry] = value
                return {
                    _TD_TAG: encode(entries, where),
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

        document: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "state": encode(state, name),
            "files": files,
        }
        document["checksum"] = {"crc32": _body_crc(document)}
        target = folder / f"{name}.json"
        write_new_file(target, json.dumps(document).encode())
        return target

    written = replace_folder(Path(directory) / name, fill)
    return Path(directory) / name / written.name


# ------------------------------------------------------------------------------------- loading
@dataclass
class CheckpointSource:
    """Where a loaded state came from: names the file (and field) of a load error."""

    json_path: Path
    tensor_files: dict[str, str] = field(default_factory=dict)  # state field -> tensor file name

    def explain(self, err: StateError) -> ValueError:
        """A ``ValueError`` naming this checkpoint's file, the field, and the file holding it."""
        stored = self.tensor_files.get(err.field)
        if stored is None:  # a field inside a tensor-holding entry, or an entry holding tensors
            stored = next(
                (name for path, name in self.tensor_files.items() if err.field.startswith(path + ".")),
                None,
            )
        where = f" (stored in {stored})" if stored is not None else ""
        return StateError(
            err.field,
            f"{err.problem}{where}; in checkpoint {self.json_path}: it was not written by this buffer's "
            "dumps(), or it was changed since",
        )


class LoadedState(NamedTuple):
    """A decoded state and where it came from."""

    state: dict[str, Any]
    source: CheckpointSource


def _fail(path: Path, problem: str) -> ValueError:
    return ValueError(f"checkpoint {path}: {problem}; {_CORRUPT}")


def _locate(directory: Path, name: str) -> tuple[Path, bool]:
    """The checkpoint's JSON file, and whether it is at the version-1 place."""
    folder = committed_folder(directory / name)
    if folder is not None and (folder / f"{name}.json").is_file():
        return folder / f"{name}.json", False
    legacy = directory / f"{name}.json"  # version 1: the files directly in the directory
    if legacy.is_file():
        return legacy, True
    raise FileNotFoundError(
        f"no checkpoint {name!r} under {directory} (no {directory / name}/{name}.json): was it written with dumps()?"
    )


def _read_document(path: Path, legacy: bool) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise _fail(path, f"not valid JSON ({err})") from None
    if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a tdrl replay-buffer checkpoint")
    version = document.get("version")
    if type(version) is not int or version not in _READABLE_VERSIONS:
        raise ValueError(
            f"{path} has checkpoint version {version!r}, this tdrl reads versions {list(_READABLE_VERSIONS)}"
        )
    # the place decides which versions may be there: a checkpoint folder is version 2 or
    # later, so that editing the version cannot switch the checksums off
    if (version == 1) != legacy:
        raise _fail(path, f"version {version} is not what a checkpoint {'file' if legacy else 'folder'} holds")
    if version >= 2:
        checksum = document.get("checksum")
        recorded = checksum.get("crc32") if isinstance(checksum, dict) else None
        if recorded != _body_crc(document):
            raise _fail(path, "its content does not match its checksum (it was changed or damaged after it was saved)")
    if "state" not in document:
        raise _fail(path, "it holds no state")
    return document


def _verified_files(path: Path, document: dict[str, Any]) -> dict[str, Path] | None:
    """Checks every listed file's size and CRC-32; ``None`` for a version-1 checkpoint."""
    if document["version"] < 2:
        return None
    manifest = document.get("files")
    if not isinstance(manifest, dict):
        raise _fail(path, "its list of files is missing")
    out = {}
    for filename, record in manifest.items():
        try:
            file = contained_file(path.parent, filename, what="tensor file name")
        except FileNotFoundError:
            raise _fail(path, f"the file {filename!r} it lists is missing") from None
        except UnsafePathError as err:
            raise _fail(path, str(err)) from None
        if not isinstance(record, dict) or not all(
            isinstance(record.get(k), int) and not isinstance(record.get(k), bool) for k in ("bytes", "crc32")
        ):
            raise _fail(path, f"the record of {filename!r} is malformed: {record!r}")
        size = file.stat().st_size
        if size != record["bytes"]:
            raise _fail(path, f"{filename} holds {size} bytes, {record['bytes']} were saved (truncated or replaced?)")
        digest = file_digest(file)
        if digest.crc32 != record["crc32"]:
            raise _fail(
                path,
                f"{filename} does not match its checksum (crc32 {record['crc32']:#010x} saved, "
                f"{digest.crc32:#010x} found): it was changed or damaged after it was saved",
            )
        out[filename] = file
    return out


def _shape(value: Any, field_name: str, what: str) -> torch.Size:
    if (
        not isinstance(value, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)
        or math.prod(value) >= _MAX_ELEMENTS
    ):
        raise StateError(field_name, f"has a malformed {what} {value!r}: expected a list of sizes >= 0")
    return torch.Size(value)


def load_state(directory: str | os.PathLike, name: str) -> LoadedState:
    """Reads a state written by :func:`save_state`; tensors come back memory-mapped.

    Every check that needs only the files runs first: the JSON's checksum, each listed
    file's containment, size and checksum, and each tensor's dtype and shape against its
    file. Nothing of a buffer changes here.

    Raises:
        FileNotFoundError: when ``directory`` holds no checkpoint ``name``.
        ValueError: for a file of another format or version, or a damaged checkpoint (the
            message names the file and what is wrong).
    """
    directory = Path(directory)
    path, legacy = _locate(directory, name)
    document = _read_document(path, legacy)
    files = _verified_files(path, document)
    source = CheckpointSource(path)

    def read_tensor(obj: dict[str, Any], field_name: str) -> torch.Tensor:
        if set(obj) != {_TENSOR_TAG, "dtype", "shape"}:
            raise StateError(field_name, f"has a malformed tensor record {obj!r}")
        filename = obj[_TENSOR_TAG]
        if files is not None:
            if not isinstance(filename, str) or filename not in files:
                raise StateError(field_name, f"names the file {filename!r}, which the checkpoint does not list")
            file = files[filename]
        else:
            try:
                file = contained_file(path.parent, filename, what="tensor file name")
            except FileNotFoundError:
                raise StateError(field_name, f"is stored in {filename!r}, which is missing") from None
            except UnsafePathError as err:
                raise StateError(field_name, str(err)) from None
        source.tensor_files[field_name] = filename
        if not isinstance(obj["dtype"], str):
            raise StateError(field_name, f"has a malformed dtype {obj['dtype']!r}")
        try:
            dtype = dtype_from_str(obj["dtype"])
        except ValueError as err:
            raise StateError(field_name, str(err)) from None
        shape = _shape(obj["shape"], field_name, "shape")
        expected = shape.numel() * torch.empty((), dtype=dtype).element_size()
        size = file.stat().st_size
        if size != expected:
            raise StateError(
                field_name,
                f"is a {dtype} tensor of shape {list(shape)} ({expected} bytes), but {filename} holds {size} bytes",
            )
        if shape.numel() == 0:
            return torch.empty(shape, dtype=dtype)
        return MemoryMappedTensor.from_filename(str(file), dtype=dtype, shape=shape).as_subclass(torch.Tensor)

    def decode(obj: Any, field_name: str) -> Any:
        if isinstance(obj, dict):
            if _TENSOR_TAG in obj:
                return read_tensor(obj, field_name)
            if _TD_TAG in obj:
                if set(obj) != {_TD_TAG, "batch_size", "device"} or not isinstance(obj[_TD_TAG], dict):
                    raise StateError(field_name, f"has a malformed TensorDict record with keys {sorted(obj)}")
                batch_size = _shape(obj["batch_size"], field_name, "batch size")
                device = obj["device"]
                if device is not None and not isinstance(device, str):
                    raise StateError(field_name, f"has a malformed device {device!r}")
                try:
                    return TensorDict(decode(obj[_TD_TAG], field_name), batch_size=batch_size, device=device)
                except StateError:
                    raise
                except (RuntimeError, ValueError, TypeError, KeyError) as err:
                    raise StateError(field_name, f"cannot be rebuilt as a TensorDict: {err}") from None
            return {key: decode(value, f"{field_name}.{key}" if field_name else key) for key, value in obj.items()}
        if isinstance(obj, list):
            return [decode(value, f"{field_name}[{i}]") for i, value in enumerate(obj)]
        return obj

    try:
        state = decode(document["state"], "")
    except StateError as err:
        raise source.explain(err) from None
    if not isinstance(state, dict):
        raise _fail(path, "its state is not a dict of named entries")
    return LoadedState(state, source)


def load_into(directory: str | os.PathLike, name: str, load: Callable[[dict[str, Any]], None]) -> None:
    """Reads checkpoint ``name`` under ``directory`` and hands its state to ``load``.

    ``load`` (a ``load_state_dict``) checks the state before it changes anything; a
    :class:`StateError` it raises comes back naming the checkpoint file and field.
    """
    loaded = load_state(directory, name)
    try:
        load(loaded.state)
    except StateError as err:
        raise loaded.source.explain(err) from None
