"""The trainer hooks (TorchRL's): what a :class:`~tdrl.trainers.Trainer` does at its hook points.

Each hook's :meth:`register` puts it at its usual point and names it for checkpoints; call
:meth:`~tdrl.trainers.Trainer.register_op` directly to put it elsewhere.

========================  =====================================  =========================
hook                      point(s)                               logs
========================  =====================================  =========================
``ReplayBufferTrainer``   batch_process, process_optim_batch,
                          post_loss
``OptimizerHook``         optimizer                              ``grad_norm_<index>``
``BatchSubSampler``       process_optim_batch
``RewardNormalizer``      batch_process, process_optim_batch
``SelectKeys``            batch_process
``LogScalar``             pre_steps_log                          ``<logname>``, ``<logname>_std``
``CountFramesLog``        pre_steps_log                          ``n_frames``
``UpdateWeights``         post_steps (or post_optim)
``LogValidationReward``   post_steps_log                         ``r_evaluation``, ``total_r_evaluation``
========================  =====================================  =========================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from tensordict import NestedKey, TensorDictBase
from torch import nn

from tdrl.trainers._batch_hooks import (
    _MASK_KEY,
    REWARD_KEY,
    BatchSubSampler,
    ReplayBufferTrainer,
    RewardNormalizer,
    SelectKeys,
    mask_batch,
)
from tdrl.trainers._grads import clip_gradients
from tdrl.trainers.trainers import Trainer, TrainerHookBase

__all__ = [
    "BatchSubSampler",
    "CountFramesLog",
    "LogScalar",
    "LogValidationReward",
    "OptimizerHook",
    "ReplayBufferTrainer",
    "RewardNormalizer",
    "SelectKeys",
    "UpdateWeights",
    "mask_batch",
]


class OptimizerHook(TrainerHookBase):
    """Backpropagates the sum of loss components, clips, steps the optimizer, zeroes the grads.

    Registered at ``optimizer``; adds ``grad_norm_<index>`` (the gradients' total norm
    before clipping) to the losses. A :class:`~tdrl.trainers.Trainer` built with an
    ``optimizer`` registers one over all ``loss_*`` entries.

    Args:
        optimizer: the optimizer.
        loss_components: the loss entries to sum (``None``: every entry whose name starts
            with ``"loss"``).

    Raises:
        ValueError: for an empty ``loss_components``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> w = torch.nn.Parameter(torch.ones(1))
        >>> hook = OptimizerHook(torch.optim.SGD([w], lr=0.5))
        >>> out = hook(TensorDict({"loss_a": (2 * w).sum()}), True, None, 0)
        >>> out["grad_norm_0"].item(), w.item()
        (2.0, 0.0)
    """

    def __init__(self, optimizer: torch.optim.Optimizer, loss_components: Sequence[str] | None = None) -> None:
        if loss_components is not None and not loss_components:
            raise ValueError("OptimizerHook: loss_components is empty; pass None to sum every loss_* entry.")
        self.optimizer = optimizer
        self.loss_components = None if loss_components is None else set(loss_components)

    def _grad_clip(self, clip_grad_norm: bool, clip_norm: float | None) -> float:
        return clip_gradients(self.optimizer, clip_grad_norm, clip_norm)

    def __call__(
        self, losses_td: TensorDictBase, clip_grad_norm: bool, clip_norm: float | None, index: int
    ) -> TensorDictBase:
        if self.loss_components is None:
            components = [item for key, item in losses_td.items() if key.startswith("loss")]
        else:
            components = [item for key, item in losses_td.items() if key in self.loss_components]
        if not components:
            raise KeyError(
                f"OptimizerHook: no loss to optimize among {sorted(losses_td.keys())}; expected "
                f"{sorted(self.loss_components) if self.loss_components else 'entries named loss_*'}. "
                "Pass loss_components=[...] naming the loss entries."
            )
        loss = components[0]
        for component in components[1:]:
            loss = loss + component
        loss.backward()
        losses_td.set(f"grad_norm_{index}", torch.tensor(self._grad_clip(clip_grad_norm, clip_norm)))
        self.optimizer.step()
        self.optimizer.zero_grad()
        return losses_td

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if state_dict:
            self.optimizer.load_state_dict(dict(state_dict))

    def register(self, trainer: Trainer, name: str = "optimizer") -> None:
        trainer.register_op("optimizer", self)
        trainer.register_module(name, self)


class LogScalar(TrainerHookBase):
    """Logs a reduction of one entry of each collected batch (at ``pre_steps_log``).

    Only the valid frames count when the batch has a ``("collector", "mask")``.

    Args:
        key: the entry (default ``("next", "reward")``).
        logname: the logged name (default ``str(key)``); TorchRL's examples use ``"r_training"``.
        log_pbar: show it on the progress bar.
        include_std: also log ``<logname>_std`` (with more than one value).
        reduction: ``"mean"``, ``"sum"``, ``"min"`` or ``"max"``.

    Raises:
        ValueError: for another reduction.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> batch = TensorDict({("next", "reward"): torch.tensor([[1.0], [3.0]])}, [2])
        >>> LogScalar(logname="r_training")(batch)
        {'r_training': 2.0, 'log_pbar': False, 'r_training_std': 1.4142135381698608}
    """

    def __init__(
        self,
        key: NestedKey = REWARD_KEY,
        logname: str | None = None,
        log_pbar: bool = False,
        include_std: bool = True,
        reduction: str = "mean",
    ) -> None:
        if reduction not in ("mean", "sum", "min", "max"):
            raise ValueError(f"LogScalar: reduction must be 'mean', 'sum', 'min' or 'max', got {reduction!r}.")
        self.key = key
        self.logname = logname if logname is not None else str(key)
        self.log_pbar = log_pbar
        self.include_std = include_std
        self.reduction = reduction

    def __call__(self, batch: TensorDictBase) -> dict[str, Any]:
        value = batch.get(self.key)
        mask = batch.get(_MASK_KEY, None)
        if mask is not None:
            value = value[mask]
        if self.reduction == "mean":
            reduced = value.float().mean()
        else:
            reduced = getattr(value, self.reduction)()
        out: dict[str, Any] = {self.logname: reduced.item(), "log_pbar": self.log_pbar}
        if self.include_std and value.numel() > 1:
            out[f"{self.logname}_std"] = value.float().std().item()
        return out

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        trainer.register_op("pre_steps_log", self)
        trainer.register_module(f"log_{self.logname}" if name is None else name, self)


class CountFramesLog(TrainerHookBase):
    """Logs ``n_frames``, the frames collected so far (valid frames x ``frame_skip``).

    Args:
        frame_skip: frames per collected step.
        log_pbar: show it on the progress bar.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> hook = CountFramesLog(frame_skip=2)
        >>> _ = hook(TensorDict({}, [5]))
        >>> hook(TensorDict({}, [5]))
        {'n_frames': 20, 'log_pbar': False}
    """

    def __init__(self, frame_skip: int, log_pbar: bool = False) -> None:
        self.frame_skip = frame_skip
        self.log_pbar = log_pbar
        self.frame_count = 0

    def __call__(self, batch: TensorDictBase) -> dict[str, Any]:
        mask = batch.get(_MASK_KEY, None)
        frames = batch.numel() if mask is None else int(mask.sum())
        self.frame_count += frames * self.frame_skip
        return {"n_frames": self.frame_count, "log_pbar": self.log_pbar}

    def state_dict(self) -> dict[str, Any]:
        return {"frame_count": self.frame_count}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.frame_count = int(state_dict["frame_count"])

    def register(self, trainer: Trainer, name: str = "count_frames_log") -> None:
        trainer.register_module(name, self)
        trainer.register_op("pre_steps_log", self)


class UpdateWeights(TrainerHookBase):
    """Pushes the trained policy's weights to the collector every ``update_weights_interval``
    batches (at ``post_steps``), or optimizer steps (``interval_unit="optim_steps"``, at
    ``post_optim``).

    Args:
        collector: the collector (``update_policy_weights_`` is called).
        update_weights_interval: batches (or optimizer steps) between two pushes.
        policy_weights_getter: returns the weights to push (``None``: the collector copies
            from the policy it was given).
        weight_update_map: TorchRL's weight-sync-scheme mapping; not supported (refused).
        trainer: the trainer (needed for ``interval_unit="optim_steps"``; set by
            :meth:`register`).
        sender: TorchRL's weight-sync sender; not supported (refused).
        interval_unit: ``"batches"`` or ``"optim_steps"``.

    Raises:
        ValueError: for an interval below 1, another unit, or the unsupported arguments.

    Examples:
        >>> from tdrl.collectors import SyncDataCollector
        >>> from tdrl.testing import CountingEnv
        >>> collector = SyncDataCollector(CountingEnv(), None, frames_per_batch=4, total_frames=8)
        >>> hook = UpdateWeights(collector, update_weights_interval=2)
        >>> hook(); hook(); hook.counter
        2
    """

    def __init__(
        self,
        collector: Any = None,
        update_weights_interval: int = 1,
        policy_weights_getter: Callable[[], Any] | None = None,
        weight_update_map: dict[str, str] | None = None,
        trainer: Trainer | None = None,
        *,
        sender: Any = None,
        interval_unit: str = "batches",
    ) -> None:
        if weight_update_map is not None or sender is not None:
            raise ValueError(
                "UpdateWeights: weight_update_map and sender (TorchRL's weight-sync schemes) are not supported; "
                "pass policy_weights_getter=lambda: TensorDict.from_module(policy) instead."
            )
        if collector is None:
            raise ValueError("UpdateWeights: pass the collector whose policy weights to update.")
        if (
            isinstance(update_weights_interval, bool)
            or not isinstance(update_weights_interval, int)
            or update_weights_interval < 1
        ):
            raise ValueError(
                f"UpdateWeights: update_weights_interval must be an int >= 1, got {update_weights_interval!r}."
            )
        if interval_unit not in ("batches", "optim_steps"):
            raise ValueError(f"UpdateWeights: interval_unit must be 'batches' or 'optim_steps', got {interval_unit!r}.")
        self.collector = collector
        self.update_weights_interval = update_weights_interval
        self.policy_weights_getter = policy_weights_getter
        self.weight_update_map = None
        self.trainer = trainer
        self.sender = None
        self.interval_unit = interval_unit
        self.counter = 0
        self._last_update_count = 0

    def __call__(self) -> None:
        if self.interval_unit == "optim_steps":
            if self.trainer is None:
                raise ValueError(
                    "UpdateWeights: interval_unit='optim_steps' needs the trainer; use hook.register(trainer)."
                )
            count = self.trainer._optim_count
            if count - self._last_update_count < self.update_weights_interval:
                return
            self._last_update_count = count
        else:
            self.counter += 1
            if self.counter % self.update_weights_interval:
                return
        weights = None if self.policy_weights_getter is None else self.policy_weights_getter()
        if weights is None:
            self.collector.update_policy_weights_()
        else:
            self.collector.update_policy_weights_(weights)

    def state_dict(self) -> dict[str, Any]:
        return {"counter": self.counter, "last_update_count": self._last_update_count}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.counter = int(state_dict.get("counter", 0))
        self._last_update_count = int(state_dict.get("last_update_count", 0))

    def register(self, trainer: Trainer, name: str = "update_weights") -> None:
        if self.trainer is None:
            self.trainer = trainer
        trainer.register_module(name, self)
        trainer.register_op("post_optim" if self.interval_unit == "optim_steps" else "post_steps", self)


class LogValidationReward(TrainerHookBase):
    """Evaluates the policy every ``record_interval`` calls (at ``post_steps_log``) and logs
    ``r_evaluation`` (the mean reward per step, divided by ``frame_skip``) and
    ``total_r_evaluation`` (the mean return per trajectory).

    The rollout runs ``record_frames`` steps with resets (``break_when_any_done=False``),
    under ``exploration_type``, with the policy and env in eval mode, without gradients.
    When the env has a transform with ``dump`` (a video recorder), it is called after each
    evaluation. Unlike TorchRL, the env is not closed after each evaluation (it stays
    usable for the next one).

    Args:
        record_interval: calls between two evaluations (the first call evaluates).
        record_frames: steps per evaluation.
        frame_skip: divides the per-step reward.
        policy_exploration: the policy to evaluate.
        environment: the evaluation env.
        exploration_type: the exploration type during the evaluation.
        log_keys: the entries to log (default ``[("next", "reward")]``).
        out_keys: the logged name per entry (default: ``"r_evaluation"`` for the reward,
            ``str(key)`` for others).
        suffix: passed to the env transform's ``dump``.
        log_pbar: show the values on the progress bar.
        recorder: TorchRL's old name of ``environment``.

    Examples:
        >>> from tdrl.testing import CountingEnv
        >>> hook = LogValidationReward(record_interval=2, record_frames=6, policy_exploration=None,
        ...                            environment=CountingEnv(max_steps=3))
        >>> out = hook(None)
        >>> out["r_evaluation"].item(), out["total_r_evaluation"].item(), hook(None)
        (1.0, 3.0, None)
    """

    def __init__(
        self,
        *,
        record_interval: int,
        record_frames: int,
        frame_skip: int = 1,
        policy_exploration: Any,
        environment: Any = None,
        exploration_type: Any = None,
        log_keys: list[NestedKey] | None = None,
        out_keys: dict[NestedKey, str] | None = None,
        suffix: str | None = None,
        log_pbar: bool = False,
        recorder: Any = None,
    ) -> None:
        from tdrl.envs.utils import ExplorationType

        if environment is not None and recorder is not None:
            raise ValueError("LogValidationReward: pass the env as environment= only (recorder= is its old name).")
        environment = recorder if environment is None else environment
        if environment is None:
            raise ValueError("LogValidationReward: pass the evaluation env as environment=.")
        for name, value in (("record_interval", record_interval), ("record_frames", record_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LogValidationReward: {name} must be a positive int, got {value!r}.")
        self.record_interval = record_interval
        self.record_frames = record_frames
        self.frame_skip = frame_skip
        self.policy_exploration = policy_exploration
        self.environment = environment
        self.exploration_type = ExplorationType.RANDOM if exploration_type is None else exploration_type
        self.log_keys = [REWARD_KEY] if log_keys is None else list(log_keys)
        self.out_keys = dict(out_keys) if out_keys is not None else {REWARD_KEY: "r_evaluation"}
        self.suffix = suffix
        self.log_pbar = log_pbar
        self._count = 0

    def _out_key(self, key: NestedKey) -> str:
        return self.out_keys.get(key, key if isinstance(key, str) else str(key))

    @torch.inference_mode()
    def __call__(self, batch: TensorDictBase | None) -> dict[str, Any] | None:
        from tdrl.collectors import split_trajectories
        from tdrl.envs.utils import set_exploration_type

        del batch
        out: dict[str, Any] | None = None
        if self._count % self.record_interval == 0:
            policy = self.policy_exploration
            with set_exploration_type(self.exploration_type):
                if isinstance(policy, nn.Module):
                    policy.eval()
                self.environment.eval()
                try:
                    rollout = self.environment.rollout(
                        max_steps=self.record_frames, policy=policy, auto_reset=True, break_when_any_done=False
                    )
                finally:
                    if isinstance(policy, nn.Module):
                        policy.train()
                    self.environment.train()
            dump = getattr(getattr(self.environment, "transform", None), "dump", None)
            if callable(dump):
                dump(suffix=self.suffix)
            trajectories = split_trajectories(rollout)
            out = {}
            for key in self.log_keys:
                value = trajectories.get(key).float()
                name = self._out_key(key)
                if key == REWARD_KEY:
                    mask = trajectories.get(_MASK_KEY)
                    out[name] = value[mask].mean() / self.frame_skip
                    out["total_" + name] = value.sum(dim=trajectories.ndim - 1).mean()
                else:
                    out[name] = value
            out["log_pbar"] = self.log_pbar
        self._count += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"_count": self._count, "recorder_state_dict": self.environment.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self._count = int(state_dict["_count"])
        self.environment.load_state_dict(state_dict["recorder_state_dict"])

    def register(self, trainer: Trainer, name: str = "recorder") -> None:
        trainer.register_module(name, self)
        trainer.register_op("post_steps_log", self)
