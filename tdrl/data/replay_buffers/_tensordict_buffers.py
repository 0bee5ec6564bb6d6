"""TensorDict and prioritized replay buffers: samples carry their index and the sampler's info."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey, unravel_key

from tdrl.data.replay_buffers._layout import key_str
from tdrl.data.replay_buffers._replay_buffer import ReplayBuffer, _as_batch, _finite_capacity
from tdrl.data.replay_buffers.samplers import PrioritizedSampler, check_priorities
from tdrl.data.replay_buffers.storages import ListStorage, Storage
from tdrl.data.replay_buffers.writers import TensorDictRoundRobinWriter, Writer, _expand_index


class TensorDictReplayBuffer(ReplayBuffer):
    """A :class:`ReplayBuffer` of TensorDicts.

    Writes each item's position under ``"index"`` (by default through a
    :class:`TensorDictRoundRobinWriter`); samples carry ``"index"`` and the sampler's info
    (e.g. ``"priority_weight"``). With a prioritized sampler, the priorities of extended
    data are read from ``priority_key`` when present, and
    :meth:`update_tensordict_priority` updates them from a sampled batch.

    Args:
        priority_key: the entry holding priorities (e.g. a TD error).
        **kwargs: as for :class:`ReplayBuffer`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data.replay_buffers import TensorDictReplayBuffer, LazyTensorStorage
        >>> rb = TensorDictReplayBuffer(storage=LazyTensorStorage(10), batch_size=3)
        >>> _ = rb.extend(TensorDict({"obs": torch.arange(5.0)}, [5]))
        >>> batch = rb.sample()
        >>> bool((batch["obs"] == batch["index"].float()).all())
        True
    """

    def __init__(self, *, priority_key: NestedKey = "td_error", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.priority_key = unravel_key(priority_key)

    def _default_writer(self) -> Writer:
        return TensorDictRoundRobinWriter()

    @property
    def _prioritized(self) -> bool:
        return isinstance(self._sampler, PrioritizedSampler)

    def _postprocess(self, data: Any, info: dict[NestedKey, Any]) -> Any:
        if not isinstance(data, TensorDictBase):
            return data
        for key, value in info.items():
            value = torch.as_tensor(value)
            if data.device is not None and value.device != data.device:
                value = value.to(data.device)
            if value.shape[:1] != data.batch_size[:1]:
                raise ValueError(
                    f"cannot write the sample info {key_str(key)} (shape {list(value.shape)}) into a batch "
                    f"of batch_size {list(data.batch_size)}: did a transform change the batch size? Use "
                    "a ReplayBuffer with sample(return_info=True) instead"
                )
            if value.ndim < data.batch_dims:
                value = _expand_index(value, data)
            data.set(key, value)
        return data

    def _priority_vector(self, data: TensorDictBase) -> Any:
        """Per-item priorities read from ``priority_key`` (``None`` when absent)."""
        priority = data.get(self.priority_key, None)
        if priority is None:
            return None
        count = data.batch_size[0] if data.batch_dims else 1
        flat = priority.detach().reshape(count, -1).to(torch.float64)
        reduction = getattr(self._sampler, "reduction", "max")
        if flat.shape[1] == 1:
            flat = flat[:, 0]
        elif reduction in ("max", "min", "median"):
            flat = getattr(flat, reduction)(dim=1).values
        else:
            flat = getattr(flat, reduction)(dim=1)
        check_priorities(flat, count)
        return flat

    def add(self, data: TensorDictBase) -> int:
        if not isinstance(data, TensorDictBase):
            raise TypeError(f"{type(self).__name__} stores TensorDicts, got {type(data).__name__}")
        priority = self._priority_vector(data.unsqueeze(0)) if self._prioritized else None
        if self._transform.has_inverse:
            data = self._inverse_one(data)
        with self._lock:
            index = self._writer.add(data)
            self._sampler.add(index)
            data.set("index", _expand_index(torch.as_tensor(index), data))  # an item may have batch dims
            if priority is not None and index >= 0:
                self._sampler.update_priority(torch.tensor([index]), priority)
        return index

    def extend(self, data: TensorDictBase, *, update_priority: bool | None = None) -> torch.Tensor:
        """Writes a batch; with a prioritized sampler, sets priorities from ``priority_key``.

        Args:
            data: a TensorDict whose first batch dimension indexes the items.
            update_priority: ``False`` ignores ``priority_key`` (new items get the default
                priority).
        """
        if isinstance(data, (list, tuple)) and data and all(isinstance(i, TensorDictBase) for i in data):
            data = _as_batch(data, list_storage=False)
        if not isinstance(data, TensorDictBase):
            raise TypeError(
                f"{type(self).__name__} stores TensorDicts, got {type(data).__name__}; "
                "use a ReplayBuffer for other data"
            )
        priority = None
        if self._prioritized and update_priority is not False:
            priority = self._priority_vector(data)  # checked before anything is written
        if self._transform.has_inverse:
            data = self._transform.inv(data)
        with self._lock:
            index = self._writer.extend(data)
            self._sampler.extend(index)
            if not isinstance(self._writer, TensorDictRoundRobinWriter):
                data.set("index", _expand_index(index, data))
            if priority is not None:
                self._sampler.update_priority(index, priority)
        return index

    def update_priority(self, index: Any, priority: Any = None) -> None:
        """``update_priority(index, priority)``, or ``update_priority(td)`` (see
        :meth:`update_tensordict_priority`)."""
        if isinstance(index, TensorDictBase) and priority is None:
            self.update_tensordict_priority(index)
            return
        super().update_priority(index, priority)

    def update_tensordict_priority(self, data: TensorDictBase) -> None:
        """Updates priorities from a sampled batch's ``"index"`` and ``priority_key`` entries.

        Raises:
            KeyError: when ``data`` lacks ``"index"`` or ``priority_key``.
        """
        if not self._prioritized:
            return
        if "index" not in data.keys():
            raise KeyError("the TensorDict has no 'index' entry: pass a batch sampled from this buffer")
        priority = self._priority_vector(data if data.batch_dims else data.unsqueeze(0))
        if priority is None:
            raise KeyError(
                f"priority key {key_str(self.priority_key)} not found in the TensorDict, which has keys "
                f"{list(data.keys(include_nested=True, leaves_only=True))}"
            )
        index = data.get("index")
        count = data.batch_size[0] if data.batch_dims else 1
        index = index.reshape(count, -1)[:, 0]
        with self._lock:
            self._sampler.update_priority(index, priority, storage=self._storage)


class PrioritizedReplayBuffer(ReplayBuffer):
    """A :class:`ReplayBuffer` with a :class:`PrioritizedSampler` over its storage.

    Args:
        alpha, beta, eps, dtype: as for :class:`PrioritizedSampler`.
        storage, collate_fn, pin_memory, prefetch, transform, batch_size, generator: as for
            :class:`ReplayBuffer`.

    Examples:
        >>> import torch
        >>> from tdrl.data.replay_buffers import PrioritizedReplayBuffer, LazyTensorStorage
        >>> rb = PrioritizedReplayBuffer(alpha=1.0, beta=0.5, storage=LazyTensorStorage(8))
        >>> index = rb.extend(torch.arange(4.0))
        >>> rb.update_priority(index, torch.tensor([0.0, 0.0, 0.0, 2.0]))
        >>> data, info = rb.sample(3, return_info=True)
        >>> data.tolist(), sorted(info)
        ([3.0, 3.0, 3.0], ['index', 'priority_weight'])
    """

    def __init__(
        self,
        *,
        alpha: float,
        beta: float,
        eps: float = 1e-8,
        dtype: torch.dtype = torch.float,
        storage: Storage | None = None,
        collate_fn: Callable[[Any], Any] | None = None,
        pin_memory: bool = False,
        prefetch: int | None = None,
        transform: Callable[[Any], Any] | None = None,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        storage = ListStorage(max_size=1000) if storage is None else _finite_capacity(storage)
        super().__init__(
            storage=storage,
            sampler=PrioritizedSampler(storage.max_size, alpha, beta, eps, dtype),
            collate_fn=collate_fn,
            pin_memory=pin_memory,
            prefetch=prefetch,
            transform=transform,
            batch_size=batch_size,
            generator=generator,
        )


class TensorDictPrioritizedReplayBuffer(TensorDictReplayBuffer):
    """A :class:`TensorDictReplayBuffer` with a :class:`PrioritizedSampler`.

    Samples carry ``"index"`` and ``"priority_weight"``; after computing a TD error into
    ``priority_key``, :meth:`TensorDictReplayBuffer.update_tensordict_priority` feeds it back.

    Args:
        alpha, beta, eps: as for :class:`PrioritizedSampler`.
        priority_key: the entry holding priorities.
        reduction: how a multi-element priority is reduced per item.
        storage, collate_fn, pin_memory, prefetch, transform, batch_size, generator: as for
            :class:`ReplayBuffer`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data.replay_buffers import TensorDictPrioritizedReplayBuffer, LazyTensorStorage
        >>> rb = TensorDictPrioritizedReplayBuffer(alpha=0.7, beta=0.5, storage=LazyTensorStorage(100), batch_size=8)
        >>> _ = rb.extend(TensorDict({"obs": torch.randn(20, 3)}, [20]))
        >>> batch = rb.sample()
        >>> batch["td_error"] = torch.rand(8)
        >>> rb.update_tensordict_priority(batch)
        >>> sorted(k for k in batch.keys() if k != "obs")
        ['index', 'priority_weight', 'td_error']
    """

    def __init__(
        self,
        *,
        alpha: float,
        beta: float,
        priority_key: NestedKey = "td_error",
        eps: float = 1e-8,
        storage: Storage | None = None,
        collate_fn: Callable[[Any], Any] | None = None,
        pin_memory: bool = False,
        prefetch: int | None = None,
        transform: Callable[[Any], Any] | None = None,
        reduction: str = "max",
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        storage = ListStorage(max_size=1000) if storage is None else _finite_capacity(storage)
        super().__init__(
            priority_key=priority_key,
            storage=storage,
            sampler=PrioritizedSampler(storage.max_size, alpha, beta, eps, reduction=reduction),
            collate_fn=collate_fn,
            pin_memory=pin_memory,
            prefetch=prefetch,
            transform=transform,
            batch_size=batch_size,
            generator=generator,
        )
