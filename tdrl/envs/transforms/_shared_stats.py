"""Pickling running statistics that live in shared memory, for VecNorm and VecNormV2."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

from tensordict import TensorDictBase


def pickled_state(state: dict, shared: bool) -> dict:
    """``state`` (a transform's ``__getstate__``) with shared statistics as shared-memory handles.

    A copy unpickled in a worker process (``ParallelEnv`` pickles its env factory) then updates
    the same statistics as the original, whatever pickler the caller uses.
    """
    stats = state.get("_stats")
    if shared and isinstance(stats, TensorDictBase) and stats.is_shared():
        state["_stats"] = None
        state["_shared_stats"] = bytes(ForkingPickler.dumps(stats))
    return state


def restore_shared_stats(state: dict) -> TensorDictBase | None:
    """Pop the shared-memory handles :func:`pickled_state` wrote; the statistics they name, or None."""
    blob = state.pop("_shared_stats", None)
    return None if blob is None else pickle.loads(blob)
