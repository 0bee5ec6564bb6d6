"""Tensors in memory-mapped files that a crashed process can re-open: :class:`LazyMemmapStorage`."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from tensordict import MemoryMappedTensor

from tdrl.data.replay_buffers import _memmap_files as memmap_files
from tdrl.data.replay_buffers._layout import TensorLayout
from tdrl.data.replay_buffers._pages import release_pages
from tdrl.data.replay_buffers._tensor_storage import LazyTensorStorage


class LazyMemmapStorage(LazyTensorStorage):
    """A :class:`LazyTensorStorage` whose tensors are memory-mapped files.

    Each leaf is one file ``leaf_<i>.memmap`` under ``scratch_dir`` (opened through
    :class:`tensordict.MemoryMappedTensor`), next to ``tdrl_storage.json`` (the structure)
    and ``tdrl_state.bin`` (the length and last write position, updated after every
    write). Written pages are handed back to the page cache, so a 1M-transition buffer
    lives on disk, not in the process's resident memory. After a crash,
    :meth:`LazyMemmapStorage.open` re-opens the folder with everything written before.

    A process killed during a write loses that write only: the length and position are
    recorded after the data, in a record that an interrupted update cannot corrupt. If the
    write was overwriting stored items (a full ring), :meth:`open` refuses the folder and
    names those items, which may mix old and new data.

    Args:
        max_size: capacity, in items.
        scratch_dir: folder for the files (a path or a ``tempfile.TemporaryDirectory``).
            ``None``: a temporary folder, deleted with the storage.
        device: must be ``"cpu"``.
        existsok: overwrite a storage already present in ``scratch_dir`` (otherwise
            that is an error: re-open it with :meth:`open` instead).

    Examples:
        >>> import tempfile, torch
        >>> from tensordict import TensorDict
        >>> folder = tempfile.mkdtemp()
        >>> storage = LazyMemmapStorage(1000, scratch_dir=folder)
        >>> storage.set(slice(0, 3), TensorDict({"obs": torch.arange(3.0)}, [3]))
        >>> reopened = LazyMemmapStorage.open(folder)
        >>> len(reopened), reopened.get(torch.tensor([2]))["obs"]
        (3, tensor([2.]))
    """

    def __init__(
        self,
        max_size: int,
        *,
        scratch_dir: str | os.PathLike | tempfile.TemporaryDirectory | None = None,
        device: torch.device | str = "cpu",
        existsok: bool = False,
    ) -> None:
        if torch.device(device if device != "auto" else "cpu").type != "cpu":
            raise ValueError(
                f"LazyMemmapStorage lives on the CPU, got device={device!r}; move samples with a "
                "transform instead, e.g. buffer.append_transform(lambda td: td.to('cuda'))"
            )
        super().__init__(max_size, device="cpu")
        self.existsok = existsok
        self._temporary = scratch_dir is None
        if isinstance(scratch_dir, tempfile.TemporaryDirectory):  # as TorchRL's tutorial passes it
            scratch_dir = scratch_dir.name
        self.scratch_dir: Path | None = None if scratch_dir is None else Path(cast(str, scratch_dir))
        if self.scratch_dir is not None and (self.scratch_dir / memmap_files.META_FILE).exists() and not existsok:
            raise FileExistsError(
                f"{self.scratch_dir} already holds a LazyMemmapStorage; re-open it with "
                f"LazyMemmapStorage.open({str(self.scratch_dir)!r}), or pass existsok=True to overwrite it"
            )
        self._files: list[torch.Tensor] = []  # memory-mapped, or a plain empty tensor for a zero-size leaf
        self._record: memmap_files.StateRecord | None = None

    # ------------------------------------------------------------------ files
    def _allocate(self, layout: TensorLayout, data_device: torch.device | None = None) -> None:
        if self.scratch_dir is None:
            self.scratch_dir = Path(tempfile.mkdtemp(prefix="tdrl-memmap-"))
            weakref.finalize(self, shutil.rmtree, str(self.scratch_dir), True)
        folder = self.scratch_dir
        folder.mkdir(parents=True, exist_ok=True)
        meta = folder / memmap_files.META_FILE
        if meta.exists():
            if not self.existsok:
                raise FileExistsError(f"{folder} already holds a LazyMemmapStorage (pass existsok=True to overwrite)")
            meta.unlink()  # first: until the new description is written, the folder holds no storage
        names = [f"leaf_{i}.memmap" for i in range(len(layout.shapes))]
        paths = []
        for name, shape, dtype in zip(names, layout.shapes, layout.dtypes):
            path = folder / name
            if path.is_symlink() or path.exists():
                path.unlink()  # never write through what was there (a symlink could point anywhere)
            with open(path, "xb") as file:
                file.truncate(memmap_files.leaf_bytes(self.max_size, shape, dtype))  # sparse until written
            memmap_files.sync_file(path)
            paths.append(path)
        state = folder / memmap_files.STATE_FILE
        if state.is_symlink():
            state.unlink()
        memmap_files.StateRecord.create(state)
        memmap_files.write_description(folder, self.max_size, layout, names)  # last, crash-safe
        self._open_files(layout, paths)

    def _open_files(self, layout: TensorLayout, paths: Sequence[Path]) -> None:
        files = []
        for path, shape, dtype in zip(paths, layout.shapes, layout.dtypes):
            if not os.access(path, os.W_OK):
                raise PermissionError(f"{path} is not writable; a LazyMemmapStorage needs write access")
            full = torch.Size((self.max_size, *shape))
            if full.numel() == 0:
                files.append(torch.empty(full, dtype=dtype))
            else:
                files.append(MemoryMappedTensor.from_filename(str(path), dtype=dtype, shape=full))
        folder = cast(Path, self.scratch_dir)  # set before any file is opened
        self._files = files
        if self._record is None:
            self._record = memmap_files.StateRecord(folder / memmap_files.STATE_FILE)
        leaves = [f.as_subclass(torch.Tensor) for f in files]
        self._attach(layout, layout.build(leaves, (self.max_size, *layout.item_batch), torch.device("cpu")))

    @classmethod
    def open(cls, scratch_dir: str | os.PathLike) -> LazyMemmapStorage:
        """Re-opens the storage kept in ``scratch_dir`` (e.g. after a crash).

        Everything read is checked first: leaf file names are plain names inside the folder,
        each leaf file has the size of ``max_size`` rows, and the length and last position
        lie inside the storage.

        Returns:
            A storage holding every item written before, with its length and last write
            position; a :class:`ReplayBuffer` built on it resumes writing after that position.

        Raises:
            FileNotFoundError: when ``scratch_dir`` holds no storage.
            ValueError: when its description is not one this version reads, names a file
                outside the folder, or does not match the files (a truncated leaf file, a
                length larger than the storage), naming the file; or when the process
                writing it was killed while overwriting stored items (naming them).
        """
        folder = Path(scratch_dir)
        description = memmap_files.read_description(folder)
        record, length, last = memmap_files.open_state(folder, description.max_size)
        if description.version == 1:  # tdrl 0.1's description, now with the state record beside it
            memmap_files.write_description(folder, description.max_size, description.layout, description.names)
        storage = cls(description.max_size, scratch_dir=folder, existsok=True)
        storage._record = record
        storage._open_files(description.layout, description.paths)
        storage._len = length
        storage._last_cursor = last
        return storage

    # ------------------------------------------------------------------ bookkeeping
    def _overwriting(self, low: int, high: int) -> None:
        if low < self._len and self._record is not None:
            # rows low..high-1 are about to change: a kill before _written marks them torn
            self._record.write(self._len, self._last_cursor, (low, min(high, self._len)))

    def _written(self, low: int, high: int, last: int) -> None:
        super()._written(low, high, last)
        for leaf in self._leaves:
            release_pages(leaf, low, high)
        self._persist()

    def _persist(self) -> None:
        # after the data: a kill before this loses the bookkeeping of the last write only,
        # never data that the bookkeeping claims
        if self._record is not None:
            self._record.write(self._len, self._last_cursor)

    def _after_restore(self) -> None:
        self._persist()

    def _empty(self) -> None:
        super()._empty()
        self._persist()

    # ------------------------------------------------------------------ pickle
    def __getstate__(self) -> dict[str, Any]:
        """The storage by value: its stored rows, not its files.

        The copy that ``pickle.loads`` / ``torch.load`` builds lives in a new temporary
        folder, so two storages never write the same files; to reopen the files
        themselves, use :meth:`open`.
        """
        rows = [leaf[: self._len].clone() for leaf in self._leaves]
        return {
            "state": dict(self.__dict__, _leaves=[], _numpy=[], _storage=None, _files=[], _record=None),
            "rows": rows,
        }

    def __setstate__(self, pickled: dict[str, Any]) -> None:
        state, rows = pickled["state"], pickled["rows"]
        self.__dict__.update(state)
        layout, length = self._layout, self._len
        self.scratch_dir, self._temporary = None, True
        self._leaves, self._numpy, self._all_numpy = [], [], False
        self._storage, self._files, self._record, self._layout = None, [], None, None
        if layout is not None:
            self._allocate(layout)
            for leaf, src in zip(self._leaves, rows):
                leaf[:length].copy_(src)
            self._persist()

    def __repr__(self) -> str:
        return (
            f"LazyMemmapStorage(max_size={self.max_size}, len={self._len}, "
            f"scratch_dir={str(self.scratch_dir)!r}, layout={self._layout})"
        )
