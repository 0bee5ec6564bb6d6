"""Trajectory boundaries inside a 1-D storage, and contiguous slices within them.

A round-robin storage is a ring: once full, its oldest item sits right after the last
write. Boundaries are found in *time order* (oldest to newest), so a trajectory that
wraps around the end of the storage stays one trajectory, and the newest item is never
joined to the oldest. A trajectory starts where the trajectory id changes (``traj_key``)
or right after an item whose end flag is set (``end_key``).
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict.utils import NestedKey

from tdrl.data.replay_buffers._layout import key_str

__all__ = ["time_order", "trajectory_bounds", "slice_positions", "resolve_traj_keys"]

_AUTO_TRAJ_KEYS: tuple[NestedKey, ...] = (("collector", "traj_ids"), "episode")
_DEFAULT_END_KEY: NestedKey = ("next", "done")


def time_order(storage: Any) -> torch.Tensor:
    """Storage positions of the stored items from the oldest to the newest."""
    count = len(storage)
    last = storage._last_cursor
    if count < storage.max_size or last is None:
        return torch.arange(count)
    start = (last + 1) % count
    return torch.arange(start, start + count) % count


def resolve_traj_keys(
    storage: Any, traj_key: NestedKey | None, end_key: NestedKey | None
) -> tuple[NestedKey | None, NestedKey | None]:
    """Picks the key that marks trajectories: ``traj_key``, else ``end_key``, else the
    first of ``("collector", "traj_ids")`` / ``"episode"`` present, else ``("next", "done")``.

    Raises:
        TypeError: for a storage without named tensor leaves.
        KeyError: when the chosen key is not stored, naming the keys that are.
    """
    if not hasattr(storage, "_has_key"):
        raise TypeError(f"slice samplers read trajectory markers from a tensor storage, got {type(storage).__name__}")
    layout = storage.layout
    if layout is not None and len(layout.item_batch):
        raise ValueError(
            f"slice samplers need a storage of single transitions, got items of batch size "
            f"{list(layout.item_batch)}; extend the buffer with data.reshape(-1)"
        )
    if traj_key is None and end_key is None:
        for candidate in _AUTO_TRAJ_KEYS:
            if storage._has_key(candidate):
                traj_key = candidate
                break
        else:
            end_key = _DEFAULT_END_KEY
    key = traj_key if traj_key is not None else end_key
    if not storage._has_key(key):
        stored = [] if layout is None or layout.keys is None else list(layout.keys)
        role = "traj_key" if traj_key is not None else "end_key"
        raise KeyError(
            f"{role} {key_str(key)} is not in the storage, which holds keys {stored}; pass "
            "traj_key= (a trajectory id per item) or end_key= (an end-of-trajectory flag)"
        )
    return traj_key, end_key


def trajectory_bounds(
    storage: Any, traj_key: NestedKey | None, end_key: NestedKey | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns ``(order, starts, lengths)``: the time order of the storage positions, and
    the start (in time-order coordinates) and length of every trajectory."""
    order = time_order(storage)
    count = order.shape[0]
    if count == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return order, empty, empty
    new = torch.ones(count, dtype=torch.bool)
    if traj_key is not None:
        ids = storage._leaf(traj_key).reshape(count, -1)[:, 0].cpu()[order]
        new[1:] = ids[1:] != ids[:-1]
    else:
        ends = storage._leaf(end_key).reshape(count, -1).any(-1).cpu()[order]
        new[1:] = ends[:-1]
    starts = new.nonzero().squeeze(-1)
    lengths = torch.diff(starts, append=torch.tensor([count]))
    return order, starts, lengths


def slice_positions(
    order: torch.Tensor,
    starts: torch.Tensor,
    lengths: torch.Tensor,
    trajectories: torch.Tensor,
    slice_len: int,
    strict_length: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws one slice in each of ``trajectories`` (indices into ``starts``/``lengths``).

    Returns:
        The storage positions of all slices, concatenated, and the length of each slice
        (``slice_len``, or the trajectory length when shorter and ``strict_length`` is off).
    """
    length = lengths[trajectories]
    span = torch.full_like(length, slice_len) if strict_length else length.clamp_max(slice_len)
    room = length - span + 1
    offset = (torch.rand(trajectories.shape[0], generator=generator, dtype=torch.float64) * room).long()
    first = starts[trajectories] + torch.minimum(offset, room - 1)
    if strict_length:
        positions = (first.unsqueeze(-1) + torch.arange(slice_len)).reshape(-1)
    else:
        total = int(span.sum())
        slice_start = torch.cumsum(span, 0) - span
        step = torch.arange(total) - torch.repeat_interleave(slice_start, span)
        positions = torch.repeat_interleave(first, span) + step
    return order[positions], span
