"""find_start_stop_traj: where each trajectory starts and stops in storage-ordered data (TorchRL's helper).

Examples:
    >>> import torch
    >>> from tdrl.data import find_start_stop_traj
    >>> ids = torch.tensor([0, 0, 0, 1, 1, 2])
    >>> start, stop, lengths = find_start_stop_traj(trajectory=ids, at_capacity=False)
    >>> start.squeeze(-1), stop.squeeze(-1), lengths
    (tensor([0, 3, 5]), tensor([2, 4, 5]), tensor([3, 2, 1]))
"""

from __future__ import annotations

from typing import cast

import torch

__all__ = ["find_start_stop_traj"]


def _cursor_row(cursor: int | torch.Tensor | range) -> int:
    if isinstance(cursor, torch.Tensor):
        flat = cursor.reshape(-1)
        if flat.numel() == 0:
            raise ValueError("find_start_stop_traj: cursor is an empty tensor. Fix: pass the last written row.")
        return int(flat[-1])
    if isinstance(cursor, range):
        if len(cursor) == 0:
            raise ValueError("find_start_stop_traj: cursor is an empty range. Fix: pass the last written row.")
        return cursor[-1]
    if isinstance(cursor, bool) or not isinstance(cursor, int):
        raise TypeError(
            f"find_start_stop_traj: cursor must be an int, a 1-d tensor or a range, got {type(cursor).__name__}."
        )
    return cursor


def _end_flags(
    trajectory: torch.Tensor | None,
    end: torch.Tensor | None,
    at_capacity: bool,
    cursor: int | torch.Tensor | range | None,
) -> torch.Tensor:
    """A ``[T, *B]`` bool tensor in which every trajectory's last step is flagged."""
    if (trajectory is None) == (end is None):
        raise TypeError(
            "find_start_stop_traj: pass exactly one of trajectory= (ids) and end= (end-of-trajectory flags)."
        )
    signal = cast(torch.Tensor, trajectory if trajectory is not None else end)
    if signal.dim() == 0 or signal.shape[0] == 0:
        raise ValueError(
            f"find_start_stop_traj: the signal has shape {tuple(signal.shape)}; it needs a time dim (dim 0) of "
            "length >= 1. Fix: pass [T, *batch] data."
        )
    if trajectory is not None:
        # a step ends its trajectory when the next step's id differs; the last step compares with the
        # first one in a full circular storage (the trajectory may continue at row 0)
        following = torch.cat([trajectory[1:], trajectory[:1]], 0)
        flags = trajectory != following
        if not at_capacity:
            flags[-1] = True
    else:
        flags = signal.bool().clone()
        if not at_capacity:
            flags[-1] = True
    if at_capacity:
        if cursor is not None:
            flags[_cursor_row(cursor)] = True  # what followed the cursor was overwritten
        lonely = ~flags.any(0)  # a column with no end at all: it ends at the last row
        flags[-1] |= lonely
    return flags


def find_start_stop_traj(
    *,
    trajectory: torch.Tensor | None = None,
    end: torch.Tensor | None = None,
    at_capacity: bool,
    cursor: int | torch.Tensor | range | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first and last step and the length of every trajectory in ``[T, *B]`` storage-ordered data.

    Trajectories are found from ids (a boundary wherever the id changes from one row to
    the next) or from end flags. In a full circular storage (``at_capacity``) a
    trajectory without an end flag before the last row continues at row 0, and the row
    under ``cursor`` (the last one written) is an end. Otherwise the last row ends a
    trajectory.

    Args:
        trajectory: trajectory ids ``[T, *B]`` (time first). Exclusive with ``end``.
        end: bool end-of-trajectory flags ``[T, *B]``. Exclusive with ``trajectory``.
        at_capacity: whether the storage is full and circular.
        cursor: the last written row (an int, or the last entry of a tensor or range);
            used only with ``at_capacity``.
        device: where to compute (the results come back on the input's device).

    Returns:
        ``(start, stop, lengths)``: ``start`` and ``stop`` are ``[N, 1 + len(B)]`` integer
        tensors holding, for each of the ``N`` trajectories, the time index of its first
        (resp. last, inclusive) step then its batch coordinates; ``lengths`` is ``[N]``
        (a trajectory that wraps has ``start > stop``). The trajectories are listed batch
        column by batch column, in time order, as TorchRL lists them.

    Raises:
        TypeError: when neither or both of ``trajectory`` and ``end`` are given, or for a bad cursor.
        ValueError: for data without a time dim or with ``T == 0``.

    Examples:
        >>> import torch
        >>> end = torch.zeros(10, dtype=torch.bool)
        >>> end[2] = end[7] = True
        >>> start, stop, lengths = find_start_stop_traj(end=end, at_capacity=True, cursor=4)
        >>> start.squeeze(-1), stop.squeeze(-1), lengths
        (tensor([8, 3, 5]), tensor([2, 4, 7]), tensor([5, 2, 3]))
    """
    flags = _end_flags(trajectory, end, at_capacity, cursor)
    home = cast(torch.Tensor, trajectory if trajectory is not None else end).device
    if device is not None:
        flags = flags.to(device)
    steps = flags.shape[0]
    # list the ends column by column: transpose time with the last batch dim, then read back in
    # (time, batch...) order
    found = flags.transpose(0, -1).nonzero()
    stop = found.clone()
    stop[:, 0], stop[:, -1] = found[:, -1], found[:, 0]
    after = stop.clone()
    after[:, 0] = (stop[:, 0] + 1) % steps  # the row after each end starts the next trajectory
    start = after.clone()
    if len(stop) > 1:
        same_column = (stop[1:, 1:] == stop[:-1, 1:]).all(-1)
        has_before = torch.cat([same_column.new_zeros(1), same_column])
        has_after = torch.cat([same_column, same_column.new_zeros(1)])
        start[has_before] = after[has_after]  # after the previous end of the column
        start[~has_before] = after[~has_after]  # a column's first: after its last end (circular)
    lengths = stop[:, 0] - start[:, 0] + 1
    lengths = torch.where(lengths <= 0, lengths + steps, lengths)
    return start.to(home), stop.to(home), lengths.to(home)
