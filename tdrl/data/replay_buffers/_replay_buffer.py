""":class:`ReplayBuffer`: a storage, a sampler, a writer and transforms, put together."""

from __future__ import annotations

import os
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey

from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._checkpoint import load_into, save_state
from tdrl.data.replay_buffers._sampler_base import _index_device
from tdrl.data.replay_buffers._sampling import (
    NEEDS_TRAJECTORIES_ERROR,
    SampleContext,
    needs_trajectories,
)
from tdrl.data.replay_buffers._transform_chain import TransformChain, _Inverted
from tdrl.data.replay_buffers.samplers import RandomSampler, Sampler
from tdrl.data.replay_buffers.storages import LazyTensorStorage, ListStorage, Storage, TensorStorage
from tdrl.data.replay_buffers.writers import RoundRobinWriter, Writer

EMPTY_BUFFER_ERROR = "cannot sample from an empty replay buffer: add data with extend() or add() first"
_CHECKPOINT_NAME = "replay_buffer"


def _stack_items(items: Any) -> Any:
    """Default collate for a :class:`ListStorage`: stacks tensors and TensorDicts."""
    if not isinstance(items, list) or not items:
        return items
    if all(isinstance(i, torch.Tensor) for i in items) or all(isinstance(i, TensorDictBase) for i in items):
        try:
            return torch.stack(items)
        except (RuntimeError, ValueError) as err:
            raise ValueError(
                f"the sampled items cannot be stacked ({err}); pass collate_fn=list to get them as a list"
            ) from err
    return items


_NOT_A_BATCH = (
    "extend() takes a batch of items: a TensorDict or a tensor (its first dimension indexes the "
    "items), or a sequence of items (list, tuple, range, set, numpy array); got {kind}. {fix}"
)


def _as_batch(data: Any, list_storage: bool) -> Any:
    """``data`` as something the storage's ``set`` takes: a TensorDict, a tensor, or a list.

    A :class:`ListStorage` keeps the items of any sequence as they are; a tensor storage
    takes a sequence of tensors (or of TensorDicts) stacked into one batch.
    """
    if isinstance(data, (TensorDictBase, torch.Tensor)):
        return data
    if isinstance(data, (str, bytes, bytearray, Mapping)):
        fix = "For one item, use add(item); for several, pass a list of them."
        raise TypeError(_NOT_A_BATCH.format(kind=type(data).__name__, fix=fix))
    if isinstance(data, np.ndarray):
        if data.ndim == 0:
            raise TypeError(_NOT_A_BATCH.format(kind="a 0-dim numpy array", fix="Use add(item) for one item."))
        return list(data) if list_storage else torch.from_numpy(data)
    if not isinstance(data, (Sequence, AbstractSet)):
        raise TypeError(_NOT_A_BATCH.format(kind=type(data).__name__, fix="Pass list(data) to store what it yields."))
    items = list(data)
    if list_storage or not items:
        return items
    if all(isinstance(i, TensorDictBase) for i in items) or all(isinstance(i, torch.Tensor) for i in items):
        try:
            return torch.stack(items)
        except (RuntimeError, ValueError) as err:
            raise ValueError(
                f"extend() stacks a list of {len(items)} items into one batch for a tensor storage, and these "
                f"cannot be stacked ({err}); give them one shape and structure, or use a ListStorage"
            ) from err
    kinds = sorted({type(i).__name__ for i in items})
    raise TypeError(
        f"a tensor storage holds tensors or TensorDicts, got a sequence of {kinds}; use a ListStorage "
        "(the default storage) for arbitrary Python objects"
    )


def _finite_capacity(storage: Storage) -> Storage:
    if storage.max_size > 2**31:
        raise ValueError(
            f"a prioritized buffer keeps one priority per slot, so it needs a storage with a finite "
            f"max_size, got {type(storage).__name__}(max_size={storage.max_size}); pass e.g. "
            "storage=LazyTensorStorage(100_000)"
        )
    return storage


def _check_batch_size(batch_size: Any, name: str = "batch_size") -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{name} must be a positive integer, got {batch_size!r}")
    return int(batch_size)


class ReplayBuffer:
    """A replay buffer: ``storage`` (where), ``sampler`` (which), ``writer`` (where new items go).

    Args:
        storage: defaults to ``ListStorage(max_size=1000)``.
        sampler: defaults to :class:`RandomSampler`.
        writer: defaults to :class:`RoundRobinWriter`.
        collate_fn: applied to sampled items (default: stack the items of a
            :class:`ListStorage`; nothing for tensor storages, which already return a batch).
        pin_memory: pin sampled data in page-locked memory (when CUDA is available).
        prefetch: number of batches to sample ahead in a background thread (needs
            ``batch_size``). Batches already prefetched do not see later writes.
        transform: a callable applied to sampled data (see :meth:`append_transform`).
        batch_size: default batch size of :meth:`sample` and of iteration.
        generator: a ``torch.Generator`` for sampling (default: torch's global one).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data.replay_buffers import ReplayBuffer, LazyTensorStorage, SamplerWithoutReplacement
        >>> rb = ReplayBuffer(storage=LazyTensorStorage(100), sampler=SamplerWithoutReplacement(), batch_size=4)
        >>> rb.extend(TensorDict({"obs": torch.arange(10.0)}, [10])).tolist()
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        >>> [len(batch) for batch in rb]  # one epoch: every item once
        [4, 4, 2]
        >>> rb.sample()["obs"].shape
        torch.Size([4])
    """

    def __init__(
        self,
        *,
        storage: Storage | None = None,
        sampler: Sampler | None = None,
        writer: Writer | None = None,
        collate_fn: Callable[[Any], Any] | None = None,
        pin_memory: bool = False,
        prefetch: int | None = None,
        transform: Callable[[Any], Any] | None = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        storage = ListStorage(max_size=1000) if storage is None else storage
        sampler = RandomSampler() if sampler is None else sampler
        writer = self._default_writer() if writer is None else writer
        for name, value, kind in (
            ("storage", storage, Storage),
            ("sampler", sampler, Sampler),
            ("writer", writer, Writer),
        ):
            if not isinstance(value, kind):
                raise TypeError(f"{name} must be a {kind.__name__} instance, got {type(value).__name__}")
        if batch_size is not None:
            batch_size = _check_batch_size(batch_size)
        if prefetch is not None and (isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0):
            raise ValueError(f"prefetch must be a non-negative integer, got {prefetch!r}")
        if prefetch and batch_size is None:
            raise ValueError("prefetch needs a fixed batch_size: pass batch_size= to the constructor")
        self._storage = storage
        self._sampler = sampler
        self._writer = writer
        self._writer.register_storage(storage)
        self._writer._sync_with_storage()
        self._sampler._sync_with_storage(storage)
        if collate_fn is None:
            collate_fn = _stack_items if isinstance(storage, ListStorage) else None
        self._collate_fn = collate_fn
        self._pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self._batch_size = batch_size
        self._warned_batch_size = False
        self._transform = TransformChain()
        if transform is not None:
            self.append_transform(transform)
        self._rng = generator
        self._sampler._rng = generator
        self._lock = threading.RLock()
        # bumped (under the lock) whenever the content is replaced: a batch prefetched before
        # is dropped rather than handed out
        self._generation = 0
        self._prefetch_cap = prefetch or 0
        self._queue: deque[Future] = deque()
        self._executor: ThreadPoolExecutor | None = None
        self._last_ran_out = False
        self._plain = self._is_plain()

    def _is_plain(self) -> bool:
        """Whether a sample is one index draw and one gather from the storage, nothing more.

        True for a ``RandomSampler`` over a ``TensorStorage`` / ``LazyTensorStorage`` without
        collate function, pinning or prefetching, in a buffer class that adds nothing to a
        sample; :meth:`sample` then skips the general path's bookkeeping, as long as the
        buffer holds data and has no transform (checked on each call). The batch, the
        positions and the generator's state are those of the general path.
        """
        return (
            type(self._sampler) is RandomSampler
            and type(self._storage) in (TensorStorage, LazyTensorStorage)
            and self._collate_fn is None
            and not self._pin_memory
            and not self._prefetch_cap
            and type(self)._sample is ReplayBuffer._sample
            and type(self)._postprocess is ReplayBuffer._postprocess
        )

    def _default_writer(self) -> Writer:
        return RoundRobinWriter()

    # ------------------------------------------------------------------ components
    @property
    def storage(self) -> Storage:
        """Where the items live."""
        return self._storage

    @property
    def sampler(self) -> Sampler:
        """Which items are sampled."""
        return self._sampler

    @property
    def writer(self) -> Writer:
        """Where new items go."""
        return self._writer

    @property
    def transform(self) -> TransformChain:
        """The transforms applied to sampled data, in order."""
        return self._transform

    @property
    def batch_size(self) -> int | None:
        """Default batch size of :meth:`sample`."""
        return self._batch_size

    @property
    def write_count(self) -> int:
        """Items written since creation (or the last :meth:`empty`)."""
        return self._writer.write_count

    def set_rng(self, generator: torch.Generator | None) -> None:
        """Samples with ``generator`` from now on (``None``: torch's global generator)."""
        self._rng = generator
        self._sampler._rng = generator

    def __len__(self) -> int:
        return len(self._storage)

    # ------------------------------------------------------------------ writing
    def add(self, data: Any) -> int:
        """Writes one item; returns its position in the storage."""
        if self._transform.has_inverse:
            data = self._inverse_one(data)
        with self._lock:
            index = self._writer.add(data)
            self._sampler.add(index)
        return index

    def _inverse_one(self, data: Any) -> Any:
        # transforms see a batch: give them one of size 1
        if isinstance(data, (TensorDictBase, torch.Tensor)):
            return self._transform.inv(data.unsqueeze(0)).squeeze(0)
        return self._transform.inv(data)

    def extend(self, data: Any) -> torch.Tensor:
        """Writes a batch (its first dimension indexes the items); returns their positions.

        Args:
            data: a TensorDict or a tensor whose first dimension indexes the items, or any
                sequence of items (list, tuple, range, set, numpy array). A
                :class:`ListStorage` keeps each item as it is (any Python object); a tensor
                storage stacks a sequence of tensors or of TensorDicts into one batch.

        Raises:
            KeyError, ValueError, TypeError: when the data does not match what the storage
                holds (the message names the key and the shapes); nothing is written then.
        """
        data = _as_batch(data, isinstance(self._storage, ListStorage))
        if self._transform.has_inverse:
            data = self._transform.inv(data)
        with self._lock:
            index = self._writer.extend(data)
            self._sampler.extend(index)
        return index

    def update_priority(self, index: Any, priority: Any) -> None:
        """Sets the priorities of the items at ``index`` (prioritized samplers only)."""
        with self._lock:
            self._sampler.update_priority(index, priority, storage=self._storage)

    def empty(self) -> None:
        """Forgets every item (the storage keeps its allocation and structure)."""
        self._drain_prefetch()
        with self._lock:
            self._generation += 1
            self._writer._empty()
            self._sampler._empty()
            self._storage._empty()

    # ------------------------------------------------------------------ reading
    def _resolve_batch_size(self, batch_size: int | None) -> int:
        if batch_size is None:
            if self._batch_size is None:
                raise ValueError("no batch size: pass it to sample(batch_size), or to the constructor (batch_size=)")
            return self._batch_size
        batch_size = _check_batch_size(batch_size)
        if self._batch_size is not None and batch_size != self._batch_size and not self._warned_batch_size:
            self._warned_batch_size = True
            warnings.warn(
                f"sample({batch_size}) overrides the batch_size={self._batch_size} given to the constructor",
                stacklevel=3,
            )
        return batch_size

    def sample(self, batch_size: int | None = None, return_info: bool = False) -> Any:
        """Samples a batch.

        Args:
            batch_size: items to draw (default: the constructor's ``batch_size``). A
                sampler without replacement returns fewer at the end of an epoch.
            return_info: also return the sampler's info dict (``"index"``, weights, ...).

        Raises:
            RuntimeError: when the buffer is empty.
        """
        batch_size = self._resolve_batch_size(batch_size)
        if self._plain and not self._transform._items:
            storage = cast(TensorStorage, self._storage)
            with self._lock:
                count = storage._len
                if count:  # else the general path says that the buffer is empty
                    # RandomSampler.sample's draw, then TensorStorage.get's gather for a 1-D long index
                    index = torch.randint(
                        0, count, (batch_size,), generator=self._sampler._rng, device=_index_device(storage)
                    )
                    data = storage._gather(index)
            if count:
                self._last_ran_out = False
                return (data, {"index": index}) if return_info else data
        if self._prefetch_cap:
            data, info, ran_out, _, _ = self._prefetched(batch_size)
        else:
            data, info, ran_out, _, _ = self._sample(batch_size)
        self._last_ran_out = ran_out
        return (data, info) if return_info else data

    def _sample(self, batch_size: int) -> tuple[Any, dict[NestedKey, Any], bool, int, int]:
        """``(data, info, ran_out, batches left in the epoch, generation drawn from)``."""
        with self._lock:
            if len(self._storage) == 0:
                raise RuntimeError(EMPTY_BUFFER_ERROR)
            index, info = self._sampler.sample(self._storage, batch_size)
            data = self._storage.get(index)
            ran_out, left = self._sampler.ran_out, self._sampler._remaining_batches
            generation = self._generation
        info["index"] = index
        if self._collate_fn is not None:
            data = self._collate_fn(data)
        if self._pin_memory and hasattr(data, "pin_memory"):
            data = data.pin_memory()
        if len(self._transform):
            data = self._transform._call_sampled(data, SampleContext(self._storage, index, self._sampler))
        return self._postprocess(data, info), info, ran_out, left, generation

    def _postprocess(self, data: Any, info: dict[NestedKey, Any]) -> Any:
        return data

    def _prefetched(self, batch_size: int) -> tuple[Any, dict[NestedKey, Any], bool, int, int]:
        if self._executor is None:
            # one worker: prefetched batches come out in the order they were drawn
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tdrl-rb-prefetch")
        result = None
        while self._queue:
            drawn = self._queue.popleft().result()
            if drawn[4] == self._generation:
                result = drawn
                break
            # else drawn before empty() / load_state_dict() replaced the content: dropped
        if result is None:
            result = self._sample(batch_size)
        ran_out, left = result[2], result[3]
        # never draw past the end of an epoch: batches of the next one would go stale
        room = self._prefetch_cap if not ran_out else 0
        room = min(room, left) - len(self._queue)
        for _ in range(max(room, 0)):
            self._queue.append(self._executor.submit(self._sample, batch_size))
        return result

    def _drain_prefetch(self) -> None:
        """Drops the prefetched batches, waiting for those being drawn.

        Called *without* holding the lock: a prefetch job takes the lock to draw, so waiting
        for it while holding the lock would wait forever.
        """
        while self._queue:
            future = self._queue.popleft()
            if not future.cancel():
                future.exception()  # wait for it; its batch is dropped

    def __iter__(self) -> Iterator[Any]:
        """Batches of ``batch_size`` until the sampler's epoch ends.

        With a sampler without replacement that is one epoch (the rest of the current one
        if sampling already began): every stored item exactly once. With a sampler with
        replacement, iteration never ends.
        """
        if self._batch_size is None:
            raise ValueError("iterating needs a batch_size: pass batch_size= to the constructor")
        while True:
            yield self.sample()
            if self._last_ran_out:
                return

    def __getitem__(self, index: int | slice | torch.Tensor | list[int]) -> Any:
        """The stored item(s) at ``index`` (copies), transformed like samples."""
        count = len(self._storage)
        if isinstance(index, int):
            if not -count <= index < count:
                raise IndexError(f"index {index} is out of range for a buffer holding {count} items")
            data = self._storage.get(index % count)
        else:
            if not isinstance(index, slice):
                index = torch.as_tensor(index)
                if index.dtype == torch.bool or index.is_floating_point():
                    raise TypeError(f"buffer indices must be integers, got {index.dtype}")
                index = index.to(torch.long).reshape(-1)
                if index.numel() and (int(index.min()) < -count or int(index.max()) >= count):
                    raise IndexError(f"indices must lie in [-{count}, {count}) for a buffer holding {count} items")
                index = index % max(count, 1)
            elif count == 0:
                raise IndexError("the buffer is empty")
            data = self._storage.get(index)
            if self._collate_fn is not None:
                data = self._collate_fn(data)
            if len(self._transform):
                positions = index if isinstance(index, torch.Tensor) else torch.arange(count)[index]
                return self._transform._call_sampled(data, SampleContext(self._storage, positions, self._sampler))
        return self._transform(data) if len(self._transform) else data

    # ------------------------------------------------------------------ transforms
    def append_transform(self, transform: Callable[[Any], Any], *, invert: bool = False) -> ReplayBuffer:
        """Adds a transform applied to sampled data after the others.

        Args:
            transform: any callable ``data -> data`` (e.g. a tdrl transform, a lambda).
                If it has ``inv``, that is applied to data written with ``extend``/``add``.
            invert: swap the two: ``inv`` on samples, the forward call on writes.

        A transform that is an ``nn.Module`` is put in eval mode (as in TorchRL), so
        that statistics it keeps, e.g. running means, do not update from replayed data.
        """
        self._check_transform(transform)
        self._transform.append(_Inverted(transform) if invert else transform)
        return self

    def _check_transform(self, transform: Any) -> None:
        """Refuses a frame-stacking transform (e.g. CatFrames) with a sampler blind to trajectories."""
        stacking = needs_trajectories(transform)
        if stacking is not None and not hasattr(self._sampler, "_time_ranks"):
            raise ValueError(
                NEEDS_TRAJECTORIES_ERROR.format(transform=type(stacking).__name__, sampler=type(self._sampler).__name__)
            )

    def insert_transform(self, index: int, transform: Callable[[Any], Any], *, invert: bool = False) -> ReplayBuffer:
        """Adds a transform at position ``index`` of the chain (see :meth:`append_transform`)."""
        self._check_transform(transform)
        self._transform.insert(index, _Inverted(transform) if invert else transform)
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The state of the storage, sampler, writer and generator (tensors are not copied)."""
        return {
            "type": type(self).__name__,
            "storage": self._storage.state_dict(),
            "sampler": self._sampler.state_dict(),
            "writer": self._writer.state_dict(),
            "rng": None if self._rng is None else self._rng.get_state(),
        }

    def _check_state(self, state: Any) -> None:
        """Checks every part of a :meth:`state_dict` against this buffer; changes nothing."""
        if not isinstance(state, dict) or not {"storage", "sampler", "writer"} <= set(state):
            raise ValueError("not a replay-buffer state: expected storage, sampler and writer entries")
        for part, component in (("storage", self._storage), ("sampler", self._sampler), ("writer", self._writer)):
            with checks.within(part):
                component._check_state_dict(state[part])
        rng = state.get("rng")
        if rng is not None:
            checks.tensor(state, "rng", ndim=1, dtype=torch.uint8)
            if self._rng is not None:
                try:  # a scratch generator of the same kind says whether the state fits
                    torch.Generator(device=self._rng.device).set_state(rng.clone())
                except RuntimeError as err:
                    raise checks.StateError("rng", f"is not a state of a {self._rng.device} generator: {err}") from None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict`.

        Every field of every part is checked before any is changed: a state written for
        another structure (keys, shapes, dtypes, capacity) or other components, or a
        damaged one (a NaN priority, a cursor or a permutation out of range, a length
        larger than the data, a generator state of the wrong size), raises and leaves the
        buffer as it was, prefetched batches included.
        """
        with self._lock:
            self._check_state(state)
        self._drain_prefetch()
        with self._lock:
            self._generation += 1
            self._storage.load_state_dict(state["storage"])
            self._sampler.load_state_dict(state["sampler"])
            self._writer.load_state_dict(state["writer"])
            if state.get("rng") is not None and self._rng is not None:
                self._rng.set_state(state["rng"].clone())
            self._last_ran_out = False

    def dumps(self, path: str | os.PathLike) -> None:
        """Saves the buffer as the checkpoint folder ``path/replay_buffer``: JSON plus raw
        tensor files with a checksum each, no pickle.

        The folder is written next to the previous checkpoint and renamed over it, so that a
        process killed at any instant leaves the previous checkpoint or the new one, whole;
        other files under ``path`` are left alone. Transforms are not saved. With
        ``prefetch``, batches already drawn in the background count as sampled.
        """
        with self._lock:
            save_state(self.state_dict(), path, _CHECKPOINT_NAME)

    def loads(self, path: str | os.PathLike) -> None:
        """Restores what :meth:`dumps` wrote; the next samples are those the saved buffer
        would have drawn (with the same seed).

        Every file's checksum and every field is checked before anything changes.

        Raises:
            FileNotFoundError: when ``path`` holds no checkpoint.
            ValueError: when it was written for another structure or other components, or
                is damaged (the message names the file and the field); the buffer is left
                as it was.
        """
        load_into(path, _CHECKPOINT_NAME, self.load_state_dict)

    # ------------------------------------------------------------------ pickle
    def __getstate__(self) -> dict[str, Any]:
        """The buffer for ``pickle`` / ``torch.save``: content, components, settings.

        Batches already drawn by ``prefetch`` travel with it (the sampler's state counts them
        as sampled, so dropping them would skip items); the lock and the background thread
        do not, and are rebuilt on load.
        """
        # exception() waits for a batch being drawn; one whose draw failed is drawn again later
        drawn = [future.result() for future in list(self._queue) if future.exception() is None]
        with self._lock:
            state = self.__dict__.copy()
        for name in ("_lock", "_executor", "_queue"):
            state.pop(name, None)
        state["_prefetched_batches"] = drawn
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        drawn = state.pop("_prefetched_batches", [])
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._executor = None
        self._queue = deque()
        self._plain = self._is_plain()  # a buffer pickled by an older version lacks it
        for batch in drawn:
            future: Future = Future()
            future.set_result(batch)
            self._queue.append(future)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(\n    storage={self._storage!r},\n    sampler={self._sampler!r},\n"
            f"    writer={self._writer!r},\n    batch_size={self._batch_size}, transforms={len(self._transform)})"
        )

    def __del__(self) -> None:
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
