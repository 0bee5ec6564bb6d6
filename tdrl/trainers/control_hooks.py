"""Trainer hooks that steer training (TorchRL's): schedulers, target networks, advantages, early stopping.

========================  =====================================  =========================
hook                      point                                  effect
========================  =====================================  =========================
``LRSchedulerHook``       post_steps (or post_optim)             ``scheduler.step()``
``TargetNetUpdaterHook``  post_steps                             ``updater.step()``
``ValueEstimatorHook``    pre_epoch                              writes advantages
``EarlyStopping``         post_steps_log                         ``trainer.request_stop``
========================  =====================================  =========================
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl.objectives.utils import TargetNetUpdater
from tdrl.trainers.trainers import Trainer, TrainerHookBase

__all__ = ["EarlyStopping", "LRSchedulerHook", "TargetNetUpdaterHook", "ValueEstimatorHook"]


class LRSchedulerHook(TrainerHookBase):
    """Steps a learning-rate scheduler once per collected batch, or after every optimization step.

    Once registered, it steps only when an optimization step ran since its last call, so
    the learning rate does not decay while the trainer collects ``init_random_frames``.

    Args:
        scheduler: a ``torch.optim.lr_scheduler`` scheduler (anything with ``step()``).
        interval: ``"batch"`` (at ``post_steps``) or ``"optim"`` (at ``post_optim``).

    Raises:
        ValueError: ``interval`` is neither ``"batch"`` nor ``"optim"``.

    Examples:
        >>> import torch
        >>> optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> hook = LRSchedulerHook(torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5))
        >>> optimizer.step()
        >>> _ = hook(None)
        >>> optimizer.param_groups[0]["lr"]
        0.5
    """

    def __init__(self, scheduler: Any, interval: str = "batch") -> None:
        if interval not in ("batch", "optim"):
            raise ValueError(
                f"LRSchedulerHook: interval must be 'batch' (step once per collected batch) or 'optim' "
                f"(after every optimization step), got {interval!r}."
            )
        if not callable(getattr(scheduler, "step", None)):
            raise TypeError(f"LRSchedulerHook: scheduler must have a step() method, got {type(scheduler).__name__}.")
        self.scheduler = scheduler
        self.interval = interval
        self._trainer: weakref.ReferenceType[Trainer] | None = None
        self._last_optim_count = 0

    def __call__(self, batch: TensorDictBase | None = None) -> TensorDictBase | None:
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is not None:
            if trainer.optim_count == self._last_optim_count:
                return batch  # no optimization since the last call (warm-up): keep the rate
            self._last_optim_count = trainer.optim_count
        self.scheduler.step()
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict(), "last_optim_count": self._last_optim_count}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.scheduler.load_state_dict(state_dict["scheduler"])
        self._last_optim_count = int(state_dict.get("last_optim_count", 0))

    def register(self, trainer: Trainer, name: str = "lr_scheduler") -> None:
        self._trainer = weakref.ref(trainer)
        trainer.register_op("post_optim" if self.interval == "optim" else "post_steps", self)
        trainer.register_module(name, self)


class TargetNetUpdaterHook(TrainerHookBase):
    """Updates a loss module's target networks (``SoftUpdate`` / ``HardUpdate``) once per collected batch.

    Registered at ``post_steps`` as TorchRL does; register it at ``post_optim`` with
    ``trainer.register_op("post_optim", hook)`` to update after every optimization step.

    Args:
        target_params_updater: a :class:`~tdrl.objectives.SoftUpdate` or
            :class:`~tdrl.objectives.HardUpdate`.

    Raises:
        TypeError: ``target_params_updater`` is not a target-network updater.

    Examples:
        >>> import torch
        >>> from tensordict.nn import TensorDictModule
        >>> from tdrl.objectives import HardUpdate, LossModule
        >>> class Toy(LossModule):
        ...     def __init__(self, net):
        ...         super().__init__()
        ...         self._register_network(net, "value_network", create_target_params=True)
        >>> loss = Toy(TensorDictModule(torch.nn.Linear(2, 1), ["x"], ["y"]))
        >>> hook = TargetNetUpdaterHook(HardUpdate(loss, value_network_update_interval=1))
        >>> with torch.no_grad():
        ...     _ = loss.value_network.module.bias.fill_(3.0)
        >>> _ = hook(None)
        >>> loss.target_value_network_params["module", "bias"].item() == 3.0
        True
    """

    def __init__(self, target_params_updater: TargetNetUpdater) -> None:
        if not isinstance(target_params_updater, TargetNetUpdater):
            raise TypeError(
                "TargetNetUpdaterHook: expected a target network updater (SoftUpdate(loss, tau=...) or "
                f"HardUpdate(loss, value_network_update_interval=...)), got {type(target_params_updater).__name__}."
            )
        self.target_params_updater = target_params_updater

    def __call__(self, batch: TensorDictBase | None = None) -> TensorDictBase | None:
        self.target_params_updater.step()
        return batch

    def register(self, trainer: Trainer, name: str = "target_net_updater") -> None:
        trainer.register_op("post_steps", self)
        trainer.register_module(name, self)


class ValueEstimatorHook(TrainerHookBase):
    """Runs a value estimator (e.g. :class:`~tdrl.objectives.value.GAE`) over each batch before its epochs.

    Registered at ``pre_epoch``, so the advantages are recomputed with the current critic
    at the start of every epoch, and the sub-batches the loss reads carry them.

    Args:
        value_estimator: maps a batch to the batch with ``"advantage"`` and
            ``"value_target"`` written (a value estimator module).

    Raises:
        TypeError: ``value_estimator`` is not callable.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.objectives.value import TD0Estimator
        >>> hook = ValueEstimatorHook(TD0Estimator(gamma=0.5, value_network=None))
        >>> batch = TensorDict({"state_value": torch.zeros(2, 1), "next": {"state_value": torch.ones(2, 1),
        ...     "reward": torch.ones(2, 1), "done": torch.zeros(2, 1, dtype=torch.bool)}}, [2])
        >>> hook(batch)["value_target"].flatten()
        tensor([1.5000, 1.5000])
    """

    def __init__(self, value_estimator: Callable[[TensorDictBase], TensorDictBase]) -> None:
        if not callable(value_estimator):
            raise TypeError(
                f"ValueEstimatorHook: value_estimator must be callable (e.g. GAE(...)), "
                f"got {type(value_estimator).__name__}."
            )
        self.value_estimator = value_estimator

    def __call__(self, batch: TensorDictBase | None) -> TensorDictBase | None:
        if batch is None:
            return batch
        return self.value_estimator(batch)

    def state_dict(self) -> dict[str, Any]:
        state_dict = getattr(self.value_estimator, "state_dict", None)
        return {"value_estimator": state_dict()} if callable(state_dict) else {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        load = getattr(self.value_estimator, "load_state_dict", None)
        if "value_estimator" in state_dict and callable(load):
            load(state_dict["value_estimator"])

    def register(self, trainer: Trainer, name: str = "value_estimator") -> None:
        trainer.register_op("pre_epoch", self)
        trainer.register_module(name, self)


class EarlyStopping(TrainerHookBase):
    """Stops training when a logged metric stops improving (or becomes NaN / inf).

    After each batch (at ``post_steps_log``) it reads the last value logged under
    ``monitor`` and asks the trainer to stop once ``patience`` frames passed without an
    improvement of more than ``min_delta``. The first ``wait_for`` frames are not judged
    (the metric need not exist yet then).

    Args:
        monitor: the logged name to watch (default ``"r_evaluation"``, which
            :class:`~tdrl.trainers.LogValidationReward` logs).
        mode: ``"max"`` (larger is better) or ``"min"``.
        min_delta: the smallest change that counts as an improvement.
        patience: frames without improvement before stopping.
        wait_for: frames collected before the first judgement.
        check_finite: stop as soon as the metric is NaN or infinite.

    Raises:
        ValueError: ``mode`` is invalid, or ``patience`` / ``wait_for`` is negative.
        KeyError: (when called after ``wait_for`` frames) nothing is logged under ``monitor``.
        RuntimeError: (when called) the hook was not registered with a trainer, or the
            metric is not a scalar.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.collectors import SyncDataCollector
        >>> from tdrl.testing import CountingEnv
        >>> from tdrl.trainers import LogScalar, Trainer
        >>> collector = SyncDataCollector(CountingEnv(max_steps=1000), None, frames_per_batch=4, total_frames=400)
        >>> loss = lambda batch: TensorDict()
        >>> trainer = Trainer(collector=collector, total_frames=400, frame_skip=1, optim_steps_per_batch=1,
        ...                   loss_module=loss, progress_bar=False)
        >>> LogScalar(("next", "done"), "done_rate").register(trainer)
        >>> stopper = EarlyStopping(monitor="done_rate", mode="max", patience=8, wait_for=0)
        >>> stopper.register(trainer)
        >>> trainer.train()
        >>> trainer.collected_frames, stopper.stop_reason
        (12, "'done_rate' did not improve for 8 frames.")
    """

    def __init__(
        self,
        *,
        monitor: str = "r_evaluation",
        mode: str = "max",
        min_delta: float = 0.0,
        patience: int = 100_000,
        wait_for: int = 1_000_000,
        check_finite: bool = True,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}.")
        if patience < 0 or wait_for < 0:
            raise ValueError(
                f"EarlyStopping: patience and wait_for are frame counts >= 0, got patience={patience}, "
                f"wait_for={wait_for}."
            )
        self.monitor = monitor
        self.mode = mode
        self.min_delta = float(min_delta)
        self.patience = int(patience)
        self.wait_for = int(wait_for)
        self.check_finite = check_finite
        self.best_score: float | None = None
        self.stop_reason: str | None = None
        self._last_improvement_frame: int | None = None
        self._trainer: weakref.ReferenceType[Trainer] | None = None

    def _score(self, trainer: Trainer) -> float:
        value = trainer.last_logged(self.monitor)
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise RuntimeError(
                    f"EarlyStopping: {self.monitor!r} must be a scalar, got a tensor of shape {tuple(value.shape)}."
                )
            return float(value.item())
        return float(value)

    def _improves(self, score: float, best: float) -> bool:
        return score > best + self.min_delta if self.mode == "max" else score < best - self.min_delta

    def _stop(self, trainer: Trainer, reason: str) -> None:
        self.stop_reason = reason
        trainer.request_stop(reason)

    def __call__(self, batch: TensorDictBase | None = None) -> None:
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is None:
            raise RuntimeError(
                "EarlyStopping: register it with a trainer first (EarlyStopping(...).register(trainer))."
            )
        if trainer.stop_requested:
            return
        frame = int(trainer.collected_frames)
        if frame < self.wait_for:
            return
        score = self._score(trainer)
        if self.check_finite and not math.isfinite(score):
            self._stop(trainer, f"{self.monitor!r} became non-finite ({score}).")
            return
        if self.best_score is None or self._last_improvement_frame is None or self._improves(score, self.best_score):
            self.best_score = score
            self._last_improvement_frame = frame
        elif frame - self._last_improvement_frame >= self.patience:
            self._stop(trainer, f"{self.monitor!r} did not improve for {frame - self._last_improvement_frame} frames.")

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "stop_reason": self.stop_reason,
            "last_improvement_frame": self._last_improvement_frame,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.best_score = state_dict.get("best_score")
        self.stop_reason = state_dict.get("stop_reason")
        self._last_improvement_frame = state_dict.get("last_improvement_frame")

    def register(self, trainer: Trainer, name: str = "early_stopping") -> None:
        self._trainer = weakref.ref(trainer)
        trainer.register_op("post_steps_log", self)
        trainer.register_module(name, self)
