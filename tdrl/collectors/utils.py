"""Collector helpers: trajectory ids and trajectory splitting (and the random policy, re-exported).

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> ids = torch.tensor([0, 0, 0, 1, 1])
    >>> data = TensorDict({"obs": torch.arange(5), ("collector", "traj_ids"): ids}, [5])
    >>> split = split_trajectories(data)
    >>> split["obs"]
    tensor([[0, 1, 2],
            [3, 4, 0]])
    >>> split["collector", "mask"]
    tensor([[ True,  True,  True],
            [ True,  True, False]])
"""

from __future__ import annotations

from typing import cast

import torch
from tensordict import TensorDictBase
from torch import Tensor

from tdrl.modules.exploration import RandomPolicy
from tdrl.specs import NestedKey

__all__ = ["split_trajectories", "traj_ids_from_resets", "RandomPolicy"]


def traj_ids_from_resets(
    resets: torch.Tensor, current: torch.Tensor, next_id: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Trajectory ids of a batch, from where its envs were reset.

    Args:
        resets: bool ``[M, T]``: env ``m`` was reset after step ``t`` (so step ``t + 1``
            starts a new trajectory).
        current: int64 ``[M]``: the id of the trajectory each env is in at step 0.
        next_id: the first id not handed out yet.

    Returns:
        ``(ids, current, next_id)``: int64 ``[M, T]`` ids of every step, the ids the envs
        are in after the batch, and the next free id. New ids are handed out in the order
        of the resets (by step, then by env), so ids grow along time for every env.

    Examples:
        >>> resets = torch.tensor([[False, True, False], [True, False, False]])
        >>> ids, cur, nxt = traj_ids_from_resets(resets, torch.tensor([0, 1]), 2)
        >>> ids
        tensor([[0, 0, 3],
                [1, 2, 2]])
        >>> cur, nxt
        (tensor([3, 2]), 4)
    """
    m, t = resets.shape
    order = resets.t().reshape(-1)  # time-major: resets at the same step are numbered by env
    rank = order.cumsum(0) - 1
    new = torch.where(order, rank + next_id, torch.full_like(rank, -1)).reshape(t, m).t()
    shifted = torch.cat([current.reshape(m, 1), new[:, :-1]], dim=1)
    ids = shifted.cummax(dim=1).values
    after = torch.where(resets[:, -1], new[:, -1], ids[:, -1])
    return ids, after, next_id + int(order.sum())


def split_trajectories(
    rollout: TensorDictBase,
    *,
    prefix: NestedKey | None = None,
    trajectory_key: NestedKey | None = None,
    done_key: NestedKey | None = None,
    as_nested: bool | torch.layout = False,
) -> TensorDictBase:
    """Pad a batch per trajectory: the result has shape ``[num_trajectories, max_length]``.

    Trajectories are found from ``("collector", "traj_ids")`` (or ``trajectory_key``),
    else from ``("next", done_key)``. Frames of one trajectory must be contiguous along
    the last dim (as collectors write them). A ``mask`` entry under the same prefix
    marks the real frames; padding is zeros.

    Args:
        rollout: a batch of shape ``[T]`` or ``[*B, T]``.
        prefix: where ``traj_ids`` and ``mask`` live (default ``"collector"``).
        trajectory_key: the trajectory-id key (overrides ``prefix``).
        done_key: the done key used when there are no trajectory ids (default ``"done"``).
        as_nested: return nested tensors instead, one ragged row per trajectory (no padding
            and no mask; batch size ``[num_trajectories, -1]``). ``True`` or ``torch.strided``;
            other layouts (``torch.jagged``) cannot sit in a TensorDict with that batch size.

    Raises:
        KeyError: when neither the trajectory ids nor the done key are present.
        ValueError: ``as_nested`` is a layout other than ``torch.strided``.
    """
    if prefix is None:
        prefix = "collector"
    prefix = (prefix,) if isinstance(prefix, str) else tuple(prefix)
    if trajectory_key is None:
        trajectory_key = (*prefix, "traj_ids")
    mask_key = (*(trajectory_key[:-1] if isinstance(trajectory_key, tuple) else ()), "mask")
    td = rollout.reshape(-1, rollout.shape[-1]) if rollout.ndim != 1 else rollout.unsqueeze(0)
    if trajectory_key in td.keys(True, True):
        ids = td.get(trajectory_key)
    else:
        done_key = ("next", done_key or "done")
        if done_key not in td.keys(True, True):
            raise KeyError(
                f"split_trajectories: found neither {trajectory_key!r} nor {done_key!r}; keys are "
                f"{sorted(map(str, td.keys(True, True)))}. Pass trajectory_key= or done_key=."
            )
        resets = td.get(done_key).reshape(td.shape)
        m = td.shape[0]
        ids, _, _ = traj_ids_from_resets(resets, torch.arange(m), m)
        td = td.clone(False)
        td.set(trajectory_key, ids)
    flat = td.reshape(-1)
    flat_ids = ids.reshape(-1)
    # a new segment starts where the id changes along time (or a new row starts)
    t = td.shape[-1]
    starts = torch.ones_like(flat_ids, dtype=torch.bool)
    starts[1:] = flat_ids[1:] != flat_ids[:-1]
    starts[::t] = True
    seg = starts.cumsum(0) - 1
    n_seg = int(seg[-1]) + 1 if seg.numel() else 0
    lengths = torch.bincount(seg, minlength=n_seg)
    first = torch.nonzero(starts).squeeze(-1)
    pos = torch.arange(flat_ids.numel()) - first[seg]
    if isinstance(as_nested, torch.layout) and as_nested is not torch.strided:
        raise ValueError(
            f"split_trajectories(as_nested={as_nested}): only the strided nested layout can be stored with "
            "batch size [num_trajectories, -1]. Fix: pass as_nested=True."
        )
    if as_nested is not False and n_seg:
        return _nested(flat, lengths)
    max_len = int(lengths.max()) if n_seg else 0
    # apply returns None only when it writes in place (inplace=True), which this call does not
    out = cast(TensorDictBase, flat[:1].expand(n_seg, max_len).apply(torch.zeros_like)) if n_seg else flat[:0]
    out = out.clone() if n_seg else out
    out[seg, pos] = flat
    mask = torch.zeros(n_seg, max_len, dtype=torch.bool)
    mask[seg, pos] = True
    out.set(mask_key, mask)
    return out


def _nested(flat: TensorDictBase, lengths: Tensor) -> TensorDictBase:
    """One nested tensor per entry, its rows the trajectories (contiguous runs of ``flat``)."""
    pieces = flat.split(lengths.tolist(), 0)

    def nest(*rows: Tensor) -> Tensor:
        return torch.nested.nested_tensor(list(rows))

    return cast(TensorDictBase, pieces[0].apply(nest, *pieces[1:], batch_size=[len(pieces), -1]))
