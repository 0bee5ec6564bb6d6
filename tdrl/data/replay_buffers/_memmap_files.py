"""The files of a :class:`~tdrl.data.replay_buffers.LazyMemmapStorage` folder, read back safely.

- ``tdrl_storage.json``, the description: format, version, ``max_size``, the layout and
  the leaf file names. Written last and crash-safe: a folder without it holds no storage.
- ``leaf_<i>.memmap``: one file per leaf, ``max_size`` rows.
- ``tdrl_state.bin``, the state record: the length, the last write position, and the rows
  being overwritten while a write is under way (see :class:`StateRecord`).

:func:`read_description` and :func:`open_state` check everything :meth:`open` reads: leaf
file names are plain names inside the folder (no ``..``, no absolute path, no symlink
out), every leaf file has exactly the size its rows need, and the length and positions lie
inside the storage. A storage whose process was killed while it overwrote stored items is
refused, naming the items that may mix old and new data.
"""

from __future__ import annotations

import json
import mmap
import os
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from tdrl._safe_io import UnsafePathError, contained_file, write_file_atomic
from tdrl.data.replay_buffers._layout import TensorLayout

__all__ = [
    "META_FILE",
    "STATE_FILE",
    "Description",
    "StateRecord",
    "TornWriteError",
    "leaf_bytes",
    "write_description",
    "read_description",
    "open_state",
]

META_FILE = "tdrl_storage.json"
STATE_FILE = "tdrl_state.bin"
_FORMAT = "tdrl.memmap_storage"
_VERSION = 2  # 1 (tdrl 0.1): a state file of two numbers, no checksum, no record of overwrites
_SLOT = 6  # sequence, length, last position (-1: none), overwrite start, overwrite end, CRC-32 of the five
_RECORD_BYTES = 2 * _SLOT * 8
_V1_RECORD_BYTES = 16


class TornWriteError(ValueError):
    """The storage's process was killed while it overwrote stored items."""


class Description(NamedTuple):
    """What ``tdrl_storage.json`` says, checked: capacity, layout, leaf files (resolved)."""

    max_size: int
    layout: TensorLayout
    names: list[str]
    paths: list[Path]
    version: int


def leaf_bytes(max_size: int, shape: torch.Size, dtype: torch.dtype) -> int:
    """The size of a leaf file: ``max_size`` rows of ``shape`` and ``dtype``."""
    return max_size * torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()


def write_description(folder: Path, max_size: int, layout: TensorLayout, names: list[str]) -> None:
    """Writes ``tdrl_storage.json`` crash-safe (after the files it describes)."""
    document = {
        "format": _FORMAT,
        "version": _VERSION,
        "max_size": max_size,
        "layout": layout.to_json(),
        "files": names,
    }
    write_file_atomic(folder / META_FILE, lambda f: f.write(json.dumps(document).encode()))


def read_description(folder: Path) -> Description:
    """Reads and checks ``tdrl_storage.json`` and the leaf files it names.

    Raises:
        FileNotFoundError: when ``folder`` holds no storage.
        ValueError: for a description this version does not read, a malformed one, a leaf
            file name that leaves the folder, or a leaf file of the wrong size (naming it).
    """
    meta = folder / META_FILE
    if not meta.is_file():
        raise FileNotFoundError(f"{folder} holds no LazyMemmapStorage (no {META_FILE})")

    def bad(problem: str) -> ValueError:
        return ValueError(f"{meta}: {problem}; the storage cannot be opened")

    try:
        document: Any = json.loads(meta.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise bad(f"not valid JSON ({err})") from None
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise ValueError(f"{meta} is not a LazyMemmapStorage description")
    version = document.get("version")
    if type(version) is not int or version not in (1, _VERSION):
        raise ValueError(f"{meta} has version {version!r}; this version of tdrl reads versions 1 and {_VERSION}")
    max_size = document.get("max_size")
    if type(max_size) is not int or max_size < 1:
        raise bad(f"max_size is {max_size!r}, expected a positive integer")
    try:
        layout = TensorLayout.from_json(document.get("layout"))
    except ValueError as err:
        raise bad(str(err)) from None
    names = document.get("files")
    if not isinstance(names, list) or len(names) != len(layout.shapes) or len(set(map(str, names))) != len(names):
        raise bad(f"files is {names!r}, expected {len(layout.shapes)} distinct leaf file names")
    paths = []
    for name, shape, dtype in zip(names, layout.shapes, layout.dtypes):
        try:
            path = contained_file(folder, name, what="leaf file name")
        except UnsafePathError as err:
            raise bad(str(err)) from None
        except FileNotFoundError:
            raise bad(f"the leaf file {name!r} is missing") from None
        size, expected = path.stat().st_size, leaf_bytes(max_size, shape, dtype)
        if size != expected:
            raise bad(
                f"the leaf file {name} holds {size} bytes, expected {expected} ({max_size} rows of "
                f"{list(shape)} {dtype}): it was truncated or replaced"
            )
        paths.append(path)
    if len(set(paths)) != len(paths):
        raise bad("two leaves name the same file")
    return Description(max_size, layout, names, paths, version)


class StateRecord:
    """Length, last write position and rows being overwritten, in a small mapped file.

    The file holds two slots, written alternately; each carries a sequence number and a
    CRC-32 of its values, written last. An update cut off at any instant (a SIGKILL between
    two stores) leaves that slot invalid and the other one, the previous state, in force.
    Before a write changes stored rows, the record names them; once the write is complete,
    the new length and position replace that mark. The record reaches the file through the
    page cache: it survives the process being killed; against a power cut it is not synced.
    """

    def __init__(self, path: Path) -> None:
        with open(path, "r+b") as file:
            self._map = mmap.mmap(file.fileno(), _RECORD_BYTES)
        self._array = np.frombuffer(self._map, dtype=np.int64)
        found = self._newest(self._array)
        if found is None:
            raise ValueError(f"{path}: neither copy of the state record is intact; the storage cannot be opened")
        self._slot, self._sequence = found

    @staticmethod
    def _values(sequence: int, length: int, last: int | None, dirty: tuple[int, int]) -> np.ndarray:
        values = np.array([sequence, length, -1 if last is None else last, dirty[0], dirty[1], 0], dtype=np.int64)
        values[5] = zlib.crc32(values[:5].tobytes())
        return values

    @staticmethod
    def _newest(array: np.ndarray) -> tuple[int, int] | None:
        best = None
        for slot in range(2):
            values = array[slot * _SLOT : (slot + 1) * _SLOT]
            if int(values[5]) == zlib.crc32(values[:5].tobytes()) and (best is None or values[0] > best[1]):
                best = (slot, int(values[0]))
        return best

    @classmethod
    def create(cls, path: Path, length: int = 0, last: int | None = None) -> None:
        """Writes a new record file (synced) holding ``length`` and ``last``."""
        record = np.zeros(2 * _SLOT, dtype=np.int64)
        record[:_SLOT] = cls._values(1, length, last, (0, 0))
        write_file_atomic(path, lambda f: f.write(record.tobytes()))

    def read(self) -> tuple[int, int | None, tuple[int, int]]:
        """``(length, last position or None, (first, end) of the rows being overwritten)``."""
        values = self._array[self._slot * _SLOT : (self._slot + 1) * _SLOT]
        last = int(values[2])
        return int(values[1]), None if last < 0 else last, (int(values[3]), int(values[4]))

    def write(self, length: int, last: int | None, dirty: tuple[int, int] = (0, 0)) -> None:
        """Records a new state in the slot not in force, then makes it the one in force."""
        slot = 1 - self._slot
        values = self._values(self._sequence + 1, length, last, dirty)
        start = slot * _SLOT
        self._array[start : start + 5] = values[:5]
        self._array[start + 5] = values[5]  # last: until it lands, the other slot is in force
        self._slot, self._sequence = slot, self._sequence + 1


def open_state(folder: Path, max_size: int) -> tuple[StateRecord, int, int | None]:
    """Opens the state record of a storage; checks it (and upgrades a tdrl 0.1 one).

    Returns:
        The record, the stored length and the last write position.

    Raises:
        TornWriteError: when the storage's process was killed while it overwrote stored
            items (naming them: they may mix old and new data).
        ValueError: for a damaged record, or a length or position outside the storage.
    """
    try:
        path = contained_file(folder, STATE_FILE, what="state file")
    except UnsafePathError as err:
        raise ValueError(str(err)) from None
    except FileNotFoundError:
        raise ValueError(f"{folder / STATE_FILE} is missing; the storage cannot be opened") from None
    size = path.stat().st_size
    if size == _V1_RECORD_BYTES:  # tdrl 0.1: length and last position, rewritten as a record
        old_length, old_last = (int(v) for v in np.fromfile(path, dtype=np.int64, count=2))
        _check_position(path, old_length, None if old_last < 0 else old_last, max_size)
        StateRecord.create(path, old_length, None if old_last < 0 else old_last)
    elif size != _RECORD_BYTES:
        raise ValueError(f"{path} holds {size} bytes, expected {_RECORD_BYTES}: the storage cannot be opened")
    record = StateRecord(path)
    length, last, (low, high) = record.read()
    _check_position(path, length, last, max_size)
    if low < high:
        if not 0 <= low < high <= length:
            raise ValueError(f"{path}: the rows marked as being overwritten, {low}..{high - 1}, are out of range")
        raise TornWriteError(
            f"{folder}: the process writing this storage stopped while it overwrote items {low}..{high - 1}, "
            f"so those items may mix old and new data; the other {length - (high - low)} items are intact. "
            "Refill the storage (e.g. LazyMemmapStorage(..., existsok=True) on this folder) rather than "
            "train on torn items"
        )
    return record, length, last


def _check_position(path: Path, length: int, last: int | None, max_size: int) -> None:
    if not 0 <= length <= max_size:
        raise ValueError(f"{path}: the stored length is {length}, outside [0, {max_size}] (max_size)")
    if (last is None) != (length == 0) or (last is not None and not 0 <= last < length):
        raise ValueError(f"{path}: the last write position is {last}, which {length} stored items cannot have")


def sync_file(path: Path) -> None:
    """fsyncs an existing file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
