"""Trainer hooks that measure or tidy (TorchRL's): timings, update-to-data ratio, the CUDA cache.

========================  =====================================  =========================
hook                      point                                  logs
========================  =====================================  =========================
``LogTiming``             post_steps_log                         ``<prefix>/<timer name>``
``UTDRHook``              pre_steps_log                          ``utd_ratio``, ``write_count``,
                                                                 ``update_count``
``ClearCudaCache``        pre_optim_steps
========================  =====================================  =========================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl._utils import timeit
from tdrl.trainers.hooks import ReplayBufferTrainer
from tdrl.trainers.trainers import Trainer, TrainerHookBase

__all__ = ["ClearCudaCache", "LogTiming", "UTDRHook"]


class LogTiming(TrainerHookBase):
    """Logs the times that :class:`~tdrl._utils.timeit` blocks recorded, one value per timer.

    Args:
        prefix: the logged names are ``"<prefix>/<timer name>"``.
        percall: log the mean time per call (``True``) or the total time.
        erase: zero the timers after each log (each value then covers one batch).

    Examples:
        >>> from tdrl._utils import timeit
        >>> with timeit("log_timing_example"):
        ...     pass
        >>> logged = LogTiming(prefix="time", erase=True)(None)
        >>> "time/log_timing_example" in logged, logged["time/log_timing_example"] >= 0.0
        (True, True)
    """

    def __init__(self, prefix: str = "time", percall: bool = True, erase: bool = False) -> None:
        self.prefix = prefix
        self.percall = percall
        self.erase = erase

    def __call__(self, batch: TensorDictBase | None = None) -> dict[str, float]:
        times = timeit.todict(percall=self.percall, prefix=self.prefix)
        if self.erase:
            timeit.erase()
        return times

    def state_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "percall": self.percall, "erase": self.erase}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.prefix = state_dict.get("prefix", "time")
        self.percall = bool(state_dict.get("percall", True))
        self.erase = bool(state_dict.get("erase", False))

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        trainer.register_module(name or "log_timing", self)
        trainer.register_op("post_steps_log", self)


class UTDRHook(TrainerHookBase):
    """Logs the update-to-data ratio: samples trained on per sample written to the replay buffer.

    ``utd_ratio = batch_size * update_count / write_count``, with ``update_count`` the
    trainer's optimization steps, ``write_count`` the items written to the buffer and
    ``batch_size`` the items per sample. The buffer is the one of a registered
    :class:`~tdrl.trainers.ReplayBufferTrainer` (whose ``batch_size`` is used when set), or
    the collector's ``replay_buffer``. Nothing is logged before the first write.

    Args:
        trainer: the trainer to watch.

    Raises:
        RuntimeError: (when called) neither a registered ``ReplayBufferTrainer`` nor the
            collector has a replay buffer.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.collectors import SyncDataCollector
        >>> from tdrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> from tdrl.testing import CountingEnv
        >>> from tdrl.trainers import ReplayBufferTrainer, Trainer
        >>> collector = SyncDataCollector(CountingEnv(), None, frames_per_batch=4, total_frames=8)
        >>> trainer = Trainer(collector=collector, total_frames=8, frame_skip=1, optim_steps_per_batch=3,
        ...                   loss_module=lambda batch: TensorDict(), progress_bar=False)
        >>> buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(100))
        >>> ReplayBufferTrainer(buffer, batch_size=2).register(trainer)
        >>> utd = UTDRHook(trainer)
        >>> utd.register(trainer)
        >>> trainer.train()
        >>> utd(None)["utd_ratio"]  # 2 items x 6 updates / 8 written
        1.5
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def _buffer(self) -> tuple[Any, int | None]:
        """The replay buffer written to, and the batch size of its samples."""
        buffer = getattr(self.trainer, "replay_buffer", None)
        if buffer is not None:
            return buffer, getattr(buffer, "batch_size", None)
        for module in self.trainer.registered_modules.values():
            if isinstance(module, ReplayBufferTrainer):
                batch_size = module.batch_size if module.batch_size is not None else module.replay_buffer.batch_size
                return module.replay_buffer, batch_size
        buffer = getattr(self.trainer.collector, "replay_buffer", None)
        if buffer is None:
            raise RuntimeError(
                "UTDRHook: the trainer has no replay buffer to read write counts from; register a "
                "ReplayBufferTrainer(buffer, batch_size=...) or give the collector replay_buffer=."
            )
        return buffer, getattr(buffer, "batch_size", None)

    def __call__(self, batch: TensorDictBase | None = None) -> dict[str, Any]:
        buffer, batch_size = self._buffer()
        write_count = int(buffer.write_count)
        if not write_count:
            return {}
        update_count = self.trainer.optim_count
        return {
            "utd_ratio": (batch_size or 1) * update_count / write_count,
            "write_count": write_count,
            "update_count": update_count,
            "log_pbar": False,
        }

    def register(self, trainer: Trainer, name: str = "utdr_hook") -> None:
        trainer.register_op("pre_steps_log", self)
        trainer.register_module(name, self)


class ClearCudaCache(TrainerHookBase):
    """Empties PyTorch's CUDA memory cache every ``interval`` calls (nothing happens without CUDA).

    Args:
        interval: calls between two ``torch.cuda.empty_cache()``.

    Raises:
        ValueError: ``interval`` is not a positive int.

    Examples:
        >>> hook = ClearCudaCache(2)
        >>> hook(); hook()
        >>> hook.state_dict()
        {'count': 2}
    """

    def __init__(self, interval: int) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"ClearCudaCache: interval must be a positive int, got {interval!r}.")
        self.interval = interval
        self.count = 0

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.count += 1
        if self.count % self.interval == 0 and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.count = int(state_dict["count"])

    def register(self, trainer: Trainer, name: str = "clear_cuda_cache") -> None:
        trainer.register_module(name, self)
        trainer.register_op("pre_optim_steps", self)
