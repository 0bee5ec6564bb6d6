"""Whole episodes out of fixed-size collector batches (``trajs_per_batch``).

A collector batch ``[*B, T]`` cuts episodes at its edges. :class:`EpisodeAssembler`
takes the batches in order, keeps the pieces of each episode (told apart by
``("collector", "traj_ids")``) until the piece that ends with ``("next", "done")`` arrives,
and hands out complete episodes in the order they ended.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, cast

import torch
from tensordict import TensorDictBase

__all__ = ["EpisodeAssembler", "TRAJ_FORMATS", "check_episode_args"]

TRAJ_FORMATS = ("padded", "cat")
_IDS = ("collector", "traj_ids")
_MASK = ("collector", "mask")


def check_episode_args(cls: str, trajs_per_batch: int | None, traj_format: str | None, split_trajs: bool) -> str:
    """Validates a collector's ``trajs_per_batch`` / ``traj_format``; returns the format to use.

    Raises:
        ValueError: a ``trajs_per_batch`` that is not a positive int, a ``traj_format``
            without it or not in :data:`TRAJ_FORMATS`, or ``trajs_per_batch`` with ``split_trajs``.
    """
    if trajs_per_batch is not None and (
        isinstance(trajs_per_batch, bool) or not isinstance(trajs_per_batch, int) or trajs_per_batch < 1
    ):
        raise ValueError(f"{cls}: trajs_per_batch must be None or a positive int, got {trajs_per_batch!r}.")
    if traj_format is not None and trajs_per_batch is None:
        raise ValueError(f"{cls}: traj_format={traj_format!r} needs trajs_per_batch (whole episodes per batch).")
    if traj_format is not None and traj_format not in TRAJ_FORMATS:
        raise ValueError(f"{cls}: traj_format must be one of {TRAJ_FORMATS}, got {traj_format!r}.")
    if trajs_per_batch is not None and split_trajs:
        raise ValueError(
            f"{cls}: split_trajs pads each fixed-size batch; trajs_per_batch already yields whole, padded "
            "episodes. Pass one of them."
        )
    return traj_format or "padded"


class EpisodeAssembler:
    """Collects the pieces of each episode until it ends; emits complete ones."""

    def __init__(self) -> None:
        self.partial: dict[int, list[TensorDictBase]] = {}
        self.complete: list[TensorDictBase] = []

    def ingest(self, batch: TensorDictBase) -> None:
        """Files the steps of a collector batch (time along the last dim) by episode."""
        rows = batch.reshape(-1, batch.shape[-1])
        ids = rows.get(_IDS)
        done = rows.get(("next", "done")).reshape(rows.shape)
        for row, row_ids, row_done in zip(rows.unbind(0), ids, done):
            cuts = torch.nonzero(row_ids[1:] != row_ids[:-1]).squeeze(-1) + 1
            edges = [0, *cuts.tolist(), row_ids.shape[0]]
            for start, stop in pairwise(edges):
                episode = int(row_ids[start])
                self.partial.setdefault(episode, []).append(row[start:stop])
                if bool(row_done[stop - 1]):
                    pieces = self.partial.pop(episode)
                    self.complete.append(pieces[0] if len(pieces) == 1 else _cat(pieces))

    def drop_partial(self, worker: int | None = None, num_workers: int = 1) -> None:
        """Forgets the episodes still running (e.g. after every env was reset).

        With ``worker``, only those of that worker of a multi-process collector (whose
        trajectory ids are ``id * num_workers + worker``).
        """
        if worker is None:
            self.partial.clear()
        else:
            for episode in [e for e in self.partial if e % num_workers == worker]:
                del self.partial[episode]

    def emit(self, count: int, traj_format: str) -> TensorDictBase | None:
        """The first ``count`` complete episodes, or ``None`` while fewer have ended."""
        if len(self.complete) < count:
            return None
        episodes, self.complete = self.complete[:count], self.complete[count:]
        if traj_format == "cat":
            return _cat(episodes)
        longest = max(e.shape[0] for e in episodes)
        out = cast(TensorDictBase, episodes[0][:1].expand(count, longest).apply(torch.zeros_like)).clone()
        mask = torch.zeros(count, longest, dtype=torch.bool, device=out.device)
        for i, episode in enumerate(episodes):
            out[i, : episode.shape[0]] = episode
            mask[i, : episode.shape[0]] = True
        out.set(_MASK, mask)
        return out


def _cat(pieces: list[TensorDictBase]) -> TensorDictBase:
    """Concatenates TensorDicts along time (dim 0)."""
    return cast(TensorDictBase, torch.cat(cast(Any, pieces), 0))
