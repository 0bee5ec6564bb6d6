"""Storages: where a replay buffer's items live.

A storage is a fixed-capacity array of items addressed ``0 .. max_size - 1``. It knows how
to write items at positions a writer chose (:meth:`Storage.set`) and to read the items at
positions a sampler chose (:meth:`Storage.get`); it knows nothing of sampling or eviction.

- :class:`ListStorage`: a Python list of arbitrary objects.
- :class:`TensorStorage`: one preallocated tensor per leaf of a TensorDict (or one tensor).
- :class:`LazyTensorStorage`: the same, allocated on the first write from that data's
  structure, on any device.
- :class:`LazyMemmapStorage`: the same, in memory-mapped files under a ``scratch_dir``;
  a crashed process's storage can be re-opened with :meth:`LazyMemmapStorage.open`.
"""

from __future__ import annotations

from tdrl.data.replay_buffers._list_storage import ListStorage
from tdrl.data.replay_buffers._memmap_storage import LazyMemmapStorage
from tdrl.data.replay_buffers._storage_base import EMPTY_STORAGE_ERROR as EMPTY_STORAGE_ERROR
from tdrl.data.replay_buffers._storage_base import Index as Index
from tdrl.data.replay_buffers._storage_base import Storage
from tdrl.data.replay_buffers._tensor_storage import LazyTensorStorage, TensorStorage

__all__ = [
    "Storage",
    "ListStorage",
    "TensorStorage",
    "LazyTensorStorage",
    "LazyMemmapStorage",
]
