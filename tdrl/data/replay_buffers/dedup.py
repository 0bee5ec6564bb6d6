"""A storage that keeps each observation once: :class:`DedupNextStorage`.

A transition holds its observation twice: at the root (``"observation"``) and, as the
observation that followed, under ``("next", "observation")``; within a trajectory the second
is the first of the next transition. For pixel observations that doubles the memory of a
replay buffer. :class:`DedupNextStorage` wraps a :class:`LazyTensorStorage` or
:class:`LazyMemmapStorage` and stores ``("next", key)`` of an item only when the item in the
following storage slot does not hold it as its ``key`` (a trajectory's last transition, the
last transition of each env in a batch, the newest item); every other item's next value is
read from that slot when sampled. Samples are exactly what the wrapped storage alone would
return.

Which items share is decided by comparing the values themselves, bit for bit, when they are
written: nothing is inferred from done flags or trajectory ids, so no combination of
terminations, truncations, interleaved envs or overwrites can make a sample read another
item's observation.

Choosing and checking the paired keys, and the bitwise comparison, are in ``_dedup_keys.py``;
the saved state's link codes and its checks before a load in ``_dedup_state.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey, unravel_key

from tdrl.data.replay_buffers import _state_checks as checks
from tdrl.data.replay_buffers._dedup_keys import _AUTO_KEYS as _AUTO_KEYS
from tdrl.data.replay_buffers._dedup_keys import _MISSING_PAIR as _MISSING_PAIR
from tdrl.data.replay_buffers._dedup_keys import _NO_AUTO_KEY as _NO_AUTO_KEY
from tdrl.data.replay_buffers._dedup_keys import _PAIR_MISMATCH as _PAIR_MISMATCH
from tdrl.data.replay_buffers._dedup_keys import _key_list as _key_list
from tdrl.data.replay_buffers._dedup_keys import (
    _keys_argument,
    _make_kept_layout,
    _next_key,
    _pairs,
    _resolve_keys,
    _same_rows,
)
from tdrl.data.replay_buffers._dedup_keys import _row_words as _row_words
from tdrl.data.replay_buffers._dedup_state import _LINKED, _UNWRITTEN, check_state, saved_keys
from tdrl.data.replay_buffers._kept import KeptRows
from tdrl.data.replay_buffers._layout import TensorLayout
from tdrl.data.replay_buffers._storage_base import _NUMPY_DTYPES, EMPTY_STORAGE_ERROR, Index, _as_index_tensor
from tdrl.data.replay_buffers.storages import LazyMemmapStorage, LazyTensorStorage, Storage

__all__ = ["DedupNextStorage"]

_NOT_LAZY = (
    "DedupNextStorage wraps an empty LazyTensorStorage or LazyMemmapStorage, got {found}; "
    "pass e.g. DedupNextStorage(LazyTensorStorage(100_000))"
)


class DedupNextStorage(Storage):
    """Stores each observation once: ``("next", key)`` is kept only where the next slot lacks it.

    Wraps an empty :class:`LazyTensorStorage` or :class:`LazyMemmapStorage` (which then holds
    the items without their ``("next", key)`` entries) and keeps, for each item, where its
    next value is: the ``key`` of the item in the following slot (``(i + 1) % max_size``)
    when that one holds the same bits, else a copy of its own among the "kept" rows, a
    second set of columns (in memory, or memory-mapped beside a memory-mapped storage)
    that grows as needed. Reads put ``("next", key)`` back: a sample is exactly,
    key for key and bit for bit, what the wrapped storage alone would return; samplers,
    writers, transforms (e.g. ``CatFrames``) and checkpoints see no difference.

    What is saved depends on how items arrive. Trajectories written contiguously (a
    collector batch ``[n_envs, T]`` flattened with ``reshape(-1)``, or one env's steps
    written in order, one call at a time or many) share every observation but each
    trajectory's last (whose next observation is the final one, not the next episode's
    reset) and one per env and batch: about half the memory of pixel observations.
    Transitions of several envs interleaved step by step (``[T, n_envs]`` flattened) or
    n-step transitions (``MultiStep``) share nothing and cost what a plain storage does.

    Each write compares its observations with their successors' (one pass over them, as
    the copy into the storage makes); a sample reads the next observation of each item
    from the following slot or from the kept copies (one gather each). For 84x84 frames
    both cost about what a plain storage's do (``benchmarks/bench_replay_memory.py``); for
    small vector observations, where there is little to save, a write costs a fixed
    ~0.1 ms more.

    Where each next value is lives in memory: save the buffer with ``dumps`` (or
    ``state_dict``) to restart from it. :meth:`LazyMemmapStorage.open` re-opens the items of
    a killed process without their deduplicated ``("next", key)`` entries.

    Args:
        storage: the empty :class:`LazyTensorStorage` or :class:`LazyMemmapStorage` to
            store the items in; its ``max_size`` and device are the buffer's. With a
            :class:`LazyMemmapStorage`, the kept next values are memory-mapped files in a
            folder under its ``scratch_dir``.
        keys: the root entries whose ``("next", key)`` twins are stored once (a key, or a
            list of keys; a nested key is a tuple). ``None``: those of ``"observation"``
            and ``"pixels"`` the first data holds at the root and under ``"next"``.

    Raises:
        TypeError: when ``storage`` is not an empty lazy tensor storage, or ``keys`` are
            not keys.
        KeyError: when written data lacks a key or its ``"next"`` twin (naming the keys
            it holds).
        ValueError: when a key and its twin differ in shape or dtype, or items carry batch
            dims of their own.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data.replay_buffers import LazyTensorStorage, ReplayBuffer
        >>> frames = torch.arange(7.0).unsqueeze(-1)  # one episode: observations 0 .. 6
        >>> steps = TensorDict({"observation": frames[:-1], "next": {"observation": frames[1:]}}, [6])
        >>> storage = DedupNextStorage(LazyTensorStorage(100))
        >>> rb = ReplayBuffer(storage=storage, batch_size=3)
        >>> _ = rb.extend(steps)
        >>> storage.kept_next  # only the newest item keeps its next observation apart
        1
        >>> rb[2]["next", "observation"], rb[5]["next", "observation"]
        (tensor([3.]), tensor([6.]))
        >>> batch = rb.sample()
        >>> bool((batch["next", "observation"] == batch["observation"] + 1).all())
        True
    """

    def __init__(self, storage: LazyTensorStorage, keys: NestedKey | Sequence[NestedKey] | None = None) -> None:
        if not isinstance(storage, LazyTensorStorage) or storage.layout is not None or len(storage):
            found = type(storage).__name__
            if isinstance(storage, LazyTensorStorage):
                found = f"a {found} that already holds data"
            raise TypeError(_NOT_LAZY.format(found=found))
        super().__init__(storage.max_size)
        self._inner = storage
        self._keys_arg = _keys_argument(keys)
        self._keys: tuple[NestedKey, ...] | None = None  # resolved at the first write
        self._layout: TensorLayout | None = None  # of the items as written (with their next keys)
        self._kept_layout: TensorLayout | None = None  # of the kept next values (the keys, as at the root)
        self._sources: list[tuple[bool, int]] = []  # per leaf of _layout: (is a next value, its position)
        self._link = torch.empty(0, dtype=torch.long)  # per slot: a kept slot, _LINKED or _UNWRITTEN
        self._link_np = self._link.numpy()
        self._kept: KeptRows | None = None  # the next values kept apart, by kept slot

    # ------------------------------------------------------------------ properties
    @property
    def storage(self) -> LazyTensorStorage:
        """The wrapped storage (it holds the items without their deduplicated next keys)."""
        return self._inner

    @property
    def keys(self) -> tuple[NestedKey, ...] | None:
        """The root keys whose next twins are stored once (``None`` before the first write
        when they are found from the data)."""
        return self._keys if self._keys is not None else self._keys_arg

    @property
    def device(self) -> Any:
        """The wrapped storage's device."""
        return self._inner.device

    @property
    def layout(self) -> TensorLayout | None:
        """The structure of the stored items, next keys included (``None`` before the first write)."""
        return self._layout

    @property
    def kept_next(self) -> int:
        """How many stored items keep their next values apart, because the following slot
        does not hold them (trajectory ends, the newest item, ...)."""
        return int((self._link_np[: self._len] >= 0).sum()) if self._len else 0

    # ------------------------------------------------------------------ writes
    # Positions and slots are numpy arrays: the bookkeeping of a write is a few small index
    # operations, which cost numpy about a microsecond each and torch several.
    def set(self, cursor: Index, data: TensorDictBase) -> None:
        if not isinstance(data, TensorDictBase):
            raise TypeError(
                f"DedupNextStorage stores TensorDicts holding ('next', key) entries, got {type(data).__name__}"
            )
        positions, inner_cursor = self._positions(cursor, data)
        if positions.size == 0:
            return
        batched = not isinstance(inner_cursor, int)  # add(): one item, kept as it is for the wrapped storage
        layout, keys = self._layout, self._keys
        if layout is None or keys is None:
            layout = TensorLayout.from_data(data, batched=batched)
            keys = _resolve_keys(self._keys_arg, data)
        roots, nexts = _pairs(data, keys)
        if not batched:
            roots, nexts = [r.unsqueeze(0) for r in roots], [n.unsqueeze(0) for n in nexts]
        kept_layout = self._kept_layout or _make_kept_layout(layout, keys)
        for i, (key, nxt) in enumerate(zip(keys, nexts)):  # the next values fit their column, before any write
            kept_layout._check_leaf(key, i, nxt, 1)
        contiguous = not batched or isinstance(inner_cursor, slice) or self._contiguous(positions)
        shares = self._shares(positions, roots, nexts, contiguous)
        main = data.exclude(*(_next_key(k) for k in keys))
        if self._layout is None:
            self._allocate_links()
        items, following = self._boundaries(positions, contiguous)
        self._detach(items, following)
        self._inner.set(inner_cursor, main)  # checks the rest; on a refusal nothing changed
        if self._layout is None:
            self._adopt(layout, keys, kept_layout)
        try:
            self._commit(positions, shares, nexts, items, following, contiguous)
        except BaseException:
            self._link_np[positions] = _UNWRITTEN  # refused on read rather than stale
            raise
        finally:
            self._len = len(self._inner)
            self._last_cursor = self._inner._last_cursor
            self._writes += 1

    def _positions(self, cursor: Index, data: TensorDictBase) -> tuple[np.ndarray, Any]:
        """The written positions, and the cursor for the wrapped storage."""
        max_size = self.max_size
        if isinstance(cursor, (int, np.integer)):
            pos = int(cursor)
            if not 0 <= pos < max_size:
                raise IndexError(f"cursor {pos} is out of range for a storage of max_size {max_size}")
            if data.batch_dims:
                raise ValueError(
                    f"add() writes one transition (batch_size []), got batch_size {list(data.batch_size)}; "
                    "use extend() for a batch"
                )
            return np.array([pos]), pos
        if data.batch_dims != 1:
            raise ValueError(
                f"DedupNextStorage stores single transitions (data of batch_size [N]), got batch_size "
                f"{list(data.batch_size)}; flatten trajectories first, e.g. data.reshape(-1)"
            )
        count = data.batch_size[0]
        if isinstance(cursor, slice):
            start, stop, step = cursor.indices(max_size)
            if step != 1 or stop - start != count:
                raise ValueError(
                    f"cannot write a batch of {count} items at {cursor} of a storage of max_size {max_size}"
                )
            return np.arange(start, stop), slice(start, stop)
        index = _as_index_tensor(cursor)
        if index.numel() != count:
            raise ValueError(f"got a batch of {count} items for {index.numel()} positions")
        positions = index.cpu().numpy()
        if count:
            low, high = int(positions.min()), int(positions.max())
            if low < 0 or high >= max_size:
                raise IndexError(f"positions {low}..{high} are out of range for a storage of max_size {max_size}")
            if not self._contiguous(positions) and np.unique(positions).size != count:
                raise ValueError(
                    "DedupNextStorage writes each position once per call, got repeated positions; "
                    "write the items one call after another"
                )
        return positions, index

    def _contiguous(self, positions: np.ndarray) -> bool:
        """Whether ``positions`` run through consecutive slots (wrapping at ``max_size``), each once."""
        return positions.size <= self.max_size and bool((np.diff(positions) % self.max_size == 1).all())

    def _shares(
        self, positions: np.ndarray, roots: list[torch.Tensor], nexts: list[torch.Tensor], contiguous: bool
    ) -> np.ndarray:
        """Per written item, whether its next values are the root values of the item written
        to the following slot in the same call."""
        count, max_size = positions.size, self.max_size
        shares = np.zeros(count, dtype=bool)
        if contiguous:
            shares[:-1] = True
            for root, nxt in zip(roots, nexts):
                shares[:-1] &= _same_rows(nxt[:-1], root[1:])
            if count == max_size:  # the last item's following slot is the first item's
                shares[-1] = all(bool(_same_rows(n[-1:], r[:1])[0]) for r, n in zip(roots, nexts))
            return shares
        following = (positions + 1) % max_size
        order = np.argsort(positions, kind="stable")
        ordered = positions[order]
        at = np.minimum(np.searchsorted(ordered, following), count - 1)
        found = ordered[at] == following
        rows = np.flatnonzero(found)
        if rows.size:
            partner = torch.from_numpy(order[at[rows]])
            same = np.ones(rows.size, dtype=bool)
            for root, nxt in zip(roots, nexts):
                same &= _same_rows(nxt[torch.from_numpy(rows).to(nxt.device)], root[partner.to(root.device)])
            shares[rows] = same
        return shares

    def _boundaries(self, positions: np.ndarray, contiguous: bool) -> tuple[np.ndarray, np.ndarray]:
        """Stored items whose following slot is written now while they are not: their
        positions, and the following ones."""
        max_size = self.max_size
        if contiguous:
            if positions.size >= max_size:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
            first = positions[:1]
            before = (first - 1) % max_size
        else:
            before = (positions - 1) % max_size
            outside = ~np.isin(before, positions)
            first, before = positions[outside], before[outside]
        stored = self._link_np[before] != _UNWRITTEN
        return before[stored], first[stored]

    def _detach(self, items: np.ndarray, following: np.ndarray) -> None:
        """Copies aside the next values of stored items whose following slot is about to change."""
        if items.size == 0:
            return
        linked = self._link_np[items] == _LINKED
        if not linked.any():
            return
        items, index = items[linked], torch.from_numpy(following[linked])
        kept = self._kept_rows()
        slots = kept.allocate(items.size)
        kept.write(slots, [self._inner._take(key, index) for key in cast(tuple, self._keys)])
        self._link_np[items] = slots

    def _commit(
        self,
        positions: np.ndarray,
        shares: np.ndarray,
        nexts: list[torch.Tensor],
        items: np.ndarray,
        following: np.ndarray,
        contiguous: bool,
    ) -> None:
        """Bookkeeping after the wrapped storage took the items at ``positions``; ``items``
        are the stored ones before them (see :meth:`_boundaries`)."""
        link, kept = self._link_np, self._kept_rows()
        region = self._region(positions, contiguous)
        old = link[region]
        kept.release(old[old >= 0])
        new = np.full(positions.size, _LINKED, dtype=np.int64)
        alone = np.flatnonzero(~shares)
        if alone.size:
            new[alone] = slots = kept.allocate(alone.size)
            if alone.size == positions.size:
                kept.write(slots, nexts)
            else:
                rows = torch.from_numpy(alone)
                kept.write(slots, [n[rows.to(n.device)] for n in nexts])
        link[region] = new
        if items.size:
            # share with the new successor when it holds the item's next values
            slots = link[items]
            same = np.ones(items.size, dtype=bool)
            index = torch.from_numpy(following)
            for i, key in enumerate(cast(tuple, self._keys)):
                same &= _same_rows(kept.take(i, slots), self._inner._take(key, index))
            if same.any():
                kept.release(slots[same])
                link[items[same]] = _LINKED

    @staticmethod
    def _region(positions: np.ndarray, contiguous: bool) -> slice | np.ndarray:
        """``positions`` as a slice when they are a run that does not wrap (cheaper to index)."""
        first, count = int(positions[0]), positions.size
        if contiguous and positions[-1] == first + count - 1:
            return slice(first, first + count)
        return positions

    def _adopt(self, layout: TensorLayout, keys: tuple[NestedKey, ...], kept_layout: TensorLayout) -> None:
        """Takes the structure of the first data written."""
        inner_layout = cast(TensorLayout, self._inner.layout)
        positions = {k: i for i, k in enumerate(keys)}
        sources = []
        for key in cast(tuple, layout.keys):
            if isinstance(key, tuple) and key[0] == "next" and unravel_key(key[1:]) in positions:
                sources.append((True, positions[unravel_key(key[1:])]))
            else:
                sources.append((False, inner_layout.position(key)))
        self._layout, self._keys, self._kept_layout, self._sources = layout, keys, kept_layout, sources

    def _allocate_links(self) -> None:
        if self._link.numel() != self.max_size:
            self._link = torch.full((self.max_size,), _UNWRITTEN, dtype=torch.long)
            self._link_np = self._link.numpy()

    # ------------------------------------------------------------------ kept next values
    def _kept_rows(self) -> KeptRows:
        if self._kept is None:
            layout = cast(TensorLayout, self._kept_layout)
            folder = None
            if isinstance(self._inner, LazyMemmapStorage):
                folder = cast(Path, self._inner.scratch_dir)  # allocated by the first write
            device = self._inner.device if isinstance(self._inner.device, torch.device) else torch.device("cpu")
            self._kept = KeptRows(list(layout.shapes), list(layout.dtypes), self.max_size, device, folder)
        return self._kept

    # ------------------------------------------------------------------ reads
    def get(self, index: Index) -> TensorDictBase:
        if self._layout is None or self._len == 0:
            raise RuntimeError(EMPTY_STORAGE_ERROR)
        if isinstance(index, (int, np.integer)):
            pos = int(index)
            if not -self._len <= pos < self._len:
                raise IndexError(f"index {pos} is out of range for a storage holding {self._len} items")
            return self._read(torch.tensor([pos % self._len]))[0]
        if isinstance(index, slice):
            rows = range(*index.indices(self._len))
            index = torch.arange(rows.start, rows.stop, rows.step, dtype=torch.long)
        elif not (isinstance(index, torch.Tensor) and index.dtype == torch.long and index.ndim == 1):
            index = _as_index_tensor(index)
        return self._read(index)

    def _read(self, index: torch.Tensor) -> TensorDictBase:
        layout = cast(TensorLayout, self._layout)
        host = index if index.device.type == "cpu" else index.cpu()
        link = self._link_np.take(host.numpy())
        if link.size and link.min() < _LINKED:
            where = int(host[torch.from_numpy(link < _LINKED)][0])
            raise IndexError(f"position {where} holds no item: the storage holds {self._len} of {self.max_size}")
        leaves = self._inner._gather_leaves(index)
        following = host.numpy() + 1  # numpy: a few microseconds less per call than torch on a small index
        following[following == self.max_size] = 0
        kept_rows = np.flatnonzero(link >= 0)
        nexts = []
        for j, key in enumerate(cast(tuple, self._keys)):
            value = self._inner._take(key, torch.from_numpy(following))
            if kept_rows.size:
                kept = cast(KeptRows, self._kept).take(j, link[kept_rows])
                if value.device.type == "cpu" and value.dtype in _NUMPY_DTYPES:
                    value.numpy()[kept_rows] = kept.numpy()  # ~30x cheaper than torch's index_put here
                else:
                    value[torch.from_numpy(kept_rows).to(value.device)] = kept.to(value.device)
            nexts.append(value)
        out = [nexts[i] if is_next else leaves[i] for is_next, i in self._sources]
        return cast(TensorDictBase, layout.build(out, (index.shape[0],), self._inner._out_device))

    def _leaf(self, key: NestedKey) -> torch.Tensor:
        """The stored rows ``[0, len)`` of one leaf: a view, or a copy for a deduplicated next key."""
        layout = self._layout
        if layout is None:
            raise RuntimeError(EMPTY_STORAGE_ERROR)
        if self._sources[layout.position(key)][0]:
            return cast(torch.Tensor, self._read(torch.arange(self._len)).get(key))
        return self._inner._leaf(key)

    def _has_key(self, key: NestedKey) -> bool:
        return self._layout is not None and key in self._layout

    # ------------------------------------------------------------------ state
    def _empty(self) -> None:
        self._inner._empty()
        if self._link.numel():
            self._link.fill_(_UNWRITTEN)
        if self._kept is not None:
            self._kept.clear()
        self._len = 0
        self._last_cursor = None
        self._writes += 1

    def state_dict(self) -> dict[str, Any]:
        """The items (in the wrapped storage's state), where each next value is, and the kept
        next values, renumbered ``0 .. k - 1`` in the order of the items that keep them."""
        link = self._link[: self._len].clone()
        owned = link >= 0
        kept: list[torch.Tensor] = []
        if bool(owned.any()):
            slots = link[owned].numpy()
            kept = [cast(KeptRows, self._kept).take(i, slots) for i in range(len(cast(tuple, self._keys)))]
            link[owned] = torch.arange(int(owned.sum()))
        return {
            **self._bookkeeping(),
            "family": "dedup_next",
            "keys": None if self.keys is None else [list(k) if isinstance(k, tuple) else [k] for k in self.keys],
            "layout": None if self._layout is None else self._layout.to_json(),
            "items": self._inner.state_dict(),
            "link": link,
            "kept": kept,
        }

    def _check_state_dict(self, state: dict[str, Any]) -> None:
        length = self._check_common(state, "dedup_next")
        keys = self._state_keys(state)
        with checks.within("items"):
            self._inner._check_state_dict(checks.as_state(checks.entry(state, "items"), "items"))
        check_state(state, length, keys, self._layout, self.max_size)

    def _state_keys(self, state: dict[str, Any]) -> tuple[NestedKey, ...] | None:
        """The keys a state was written with, checked against this storage's."""
        return saved_keys(state, self.keys)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state_dict(state)
        self._inner.load_state_dict(state["items"])
        length = state["len"]
        if state["layout"] is None:
            self._empty()
            return
        if self._layout is None:
            layout = TensorLayout.from_json(state["layout"])
            keys = cast(tuple, self._state_keys(state))
            self._allocate_links()
            self._adopt(layout, keys, _make_kept_layout(layout, keys))
        link = state["link"]
        count = int((link >= 0).sum())
        if self._kept is not None:
            self._kept.clear()
        if count:
            kept = self._kept_rows()
            slots = kept.allocate(count)
            kept.write(slots, state["kept"])
            remapped = link.clone()
            remapped[link >= 0] = torch.from_numpy(slots)
            link = remapped
        self._link.fill_(_UNWRITTEN)
        self._link[:length] = link
        self._len = length
        self._last_cursor = state["last_cursor"]
        self._writes += 1

    def __getstate__(self) -> dict[str, Any]:
        """The storage by value (a memory-mapped one comes back in a new temporary folder,
        its kept rows in memory)."""
        return dict(self.__dict__, _link_np=None)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._link_np = self._link.numpy()

    def __repr__(self) -> str:
        return (
            f"DedupNextStorage(storage={self._inner!r}, keys={self.keys}, len={self._len}, kept_next={self.kept_next})"
        )
