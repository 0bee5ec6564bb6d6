"""Running statistics in shared memory, for VecNorm and VecNormV2: sharing them and pickling them."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler
from typing import Any

from tensordict import TensorDictBase


class SharedStatsMixin:
    """What VecNorm and VecNormV2 share about statistics kept in shared memory.

    The class sets ``_stats`` (a TensorDict or None), ``lock`` and ``_shared``, and has a
    ``share_memory_()``. A copy unpickled in a worker process (``ParallelEnv`` pickles its env
    factory) then updates the same statistics as the original, whatever pickler is used.
    """

    _stats: TensorDictBase | None
    lock: Any
    _shared: bool

    def share_memory_(self) -> Any:  # overridden by the transform
        raise NotImplementedError

    def _share_state(self) -> tuple[TensorDictBase | None, Any]:
        """The shared statistics and lock (for EnvCreator), sharing them first."""
        self.share_memory_()
        return self._stats, self.lock

    def _use_shared_state(self, stats: TensorDictBase | None, lock: Any) -> None:
        """Read and update ``stats`` (another copy's shared statistics) from now on."""
        if stats is not None:
            self._stats, self.lock, self._shared = stats, lock, True

    def __getstate__(self) -> dict:
        state: dict = super().__getstate__()  # type: ignore[assignment]
        stats = state.get("_stats")
        if self._shared and isinstance(stats, TensorDictBase) and stats.is_shared():
            state["_stats"] = None
            state["_shared_stats"] = bytes(ForkingPickler.dumps(stats))
        return state

    def __setstate__(self, state: dict) -> None:
        blob = state.pop("_shared_stats", None)
        super().__setstate__(state)  # type: ignore[misc]
        if blob is not None:
            self._stats = pickle.loads(blob)
