"""The ``Trainer`` loop (TorchRL's): collect a batch, run the hooks, optimize, log, checkpoint.

The trainer builds none of its operations: hooks registered at named points of the loop do
the work (:data:`HOOK_POINTS`). One iteration, for each batch the collector yields::

    batch_process(batch) -> batch            # e.g. fill a replay buffer, update statistics
    pre_steps_log(batch) -> dict | None      # e.g. the training reward
    pre_optim_steps()
    for each epoch (num_epochs):
        pre_epoch_log(batch); pre_epoch(batch) -> batch
        for each of optim_steps_per_batch steps:
            process_optim_batch(batch) -> sub_batch     # e.g. sample a replay buffer
            loss = loss_module(sub_batch)
            post_loss(sub_batch); process_loss(sub_batch, loss) -> loss
            optimizer(loss, clip_grad_norm, clip_norm, index) -> loss
            post_optim(); post_optim_log(sub_batch)
        post_epoch_log(batch); post_epoch()
    post_optim_complete_log(optim_count, average_losses)
    post_steps()                             # e.g. push the new weights to the collector
    post_steps_log(batch) -> dict | None     # e.g. an evaluation
    save_trainer()                           # every save_trainer_interval frames

``setup`` hooks run once before the first batch and ``shutdown`` hooks once after the last.

A checkpoint (:meth:`Trainer.save_trainer`) holds everything a resume needs to continue
exactly where the run stopped: the loss module, the optimizer, the collector, every
registered hook's state (a replay buffer's content and sampler, a reward normalizer's
statistics, counters), the logger's counters, the trainer's counters and the torch, numpy
and Python RNG states. It is one file written crash-safe (:mod:`tdrl._safe_io`), with the
size and CRC-32 of its payload in a header, and read back without unpickling code
(``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from torch import nn

from tdrl.trainers._checkpoint import (
    _CHECKPOINT_FORMAT,
    _rng_states,
    _set_rng_states,
    read_checkpoint,
    write_checkpoint,
)
from tdrl.trainers._hook_base import TrainerHookBase
from tdrl.trainers._trainer_args import _UNSUPPORTED as _UNSUPPORTED
from tdrl.trainers._trainer_args import _check_count as _check_count
from tdrl.trainers._trainer_args import check_trainer_args

__all__ = ["Trainer", "TrainerHookBase", "HOOK_POINTS"]

HOOK_POINTS: tuple[str, ...] = (
    "setup",
    "batch_process",
    "pre_steps_log",
    "pre_optim_steps",
    "pre_epoch_log",
    "pre_epoch",
    "process_optim_batch",
    "post_loss",
    "process_loss",
    "optimizer",
    "post_optim",
    "post_optim_log",
    "post_epoch_log",
    "post_epoch",
    "post_optim_complete_log",
    "post_steps",
    "post_steps_log",
    "shutdown",
)
"""Where :meth:`Trainer.register_op` can put a hook, in the order one iteration reaches them."""

# hook points whose ops return a dict of values to log (plus an optional "log_pbar" flag)
_LOG_POINTS = frozenset(
    {"pre_steps_log", "post_steps_log", "post_optim_log", "pre_epoch_log", "post_epoch_log", "post_optim_complete_log"}
)

_TYPE_DESCR = {float: "4.4f", int: ""}


class Trainer:
    """Runs a collector and a loss module through the hooks registered at :data:`HOOK_POINTS`.

    TorchRL's ``Trainer`` with its arguments in its order. The arguments of TorchRL's
    remote-learner, asynchronous-collection and ``torchrl.checkpoint`` features
    (``replay_buffer``, ``target_net_updater``, ``batch_size``,
    ``learner_backend*``, ``checkpoint*``, ``async_collection``, ``log_timings``) are
    refused with a ``ValueError`` that says what to use instead.

    Differences on purpose: the trainer keeps the last logged value per name (TorchRL keeps
    every value ever logged, a list that grows for the whole run); an unknown hook point or
    a second module under one name raises ``ValueError`` (TorchRL: ``RuntimeError``); a
    checkpoint also holds the logger's counters and the RNG states, is written crash-safe,
    and is loaded without unpickling code.

    Args:
        collector: yields the batches (a tdrl collector: ``state_dict`` / ``load_state_dict``,
            ``set_seed`` and ``shutdown`` are used).
        total_frames: the run stops once this many frames were collected.
        frame_skip: frames per collected step (counts ``frame_skip`` per step).
        optim_steps_per_batch: optimization steps per batch (``None``: until a
            ``process_optim_batch`` hook raises ``StopIteration``).
        loss_module: maps a sub-batch to a TensorDict of losses (``loss_*`` entries).
        optimizer: when given (and no ``optimization_stepper``), an
            :class:`~tdrl.trainers.OptimizerHook` over all ``loss_*`` entries is registered
            under the name ``"optimizer"``.
        optimization_stepper: an :class:`~tdrl.trainers.OptimizationStepper` that runs each
            optimization step itself (its ``step(trainer, sub_batch)`` replaces the
            ``post_loss`` / ``process_loss`` / ``optimizer`` hooks; ``post_optim`` still runs).
        logger: a :class:`~tdrl.record.Logger` for the values the log hooks return.
        clip_grad_norm: clip the gradients' total norm to ``clip_norm`` (``True``), or
            each partial derivative to ``[-clip_norm, clip_norm]`` (``False``).
        clip_norm: the clipping value (``None``: no clipping).
        progress_bar: show a tqdm bar over ``total_frames`` with the ``log_pbar`` values.
        seed: seeds the collector, torch and numpy.
        save_trainer_interval: frames between two checkpoints.
        log_interval: frames between two writes of one value to the logger.
        save_trainer_file: where checkpoints go (``None``: no checkpoints).
        num_epochs: passes of ``optim_steps_per_batch`` steps over each batch.
        auto_log_optim_steps: log ``optim_steps`` and the batch's average losses after
            each batch's optimization.

    Raises:
        ValueError: for a count that is not a positive int, or an unsupported argument.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.collectors import SyncDataCollector
        >>> from tdrl.testing import CountingEnv
        >>> weight = torch.nn.Parameter(torch.zeros(1))
        >>> class Loss(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.weight = weight
        ...     def forward(self, batch):
        ...         return TensorDict({"loss": (self.weight - batch["observation"]).pow(2).mean()})
        >>> collector = SyncDataCollector(CountingEnv(max_steps=4), None, frames_per_batch=8, total_frames=32)
        >>> trainer = Trainer(collector=collector, total_frames=32, frame_skip=1, optim_steps_per_batch=5,
        ...                   loss_module=Loss(), optimizer=torch.optim.SGD([weight], lr=0.1), progress_bar=False)
        >>> trainer.train()
        >>> trainer.collected_frames, trainer._optim_count, 0.0 < weight.item() < 2.5  # toward the mean count
        (32, 20, True)
    """

    def __init__(
        self,
        *,
        collector: Any,
        total_frames: int,
        frame_skip: int,
        optim_steps_per_batch: int | None,
        loss_module: nn.Module | Callable[[TensorDictBase], TensorDictBase],
        optimizer: torch.optim.Optimizer | None = None,
        optimization_stepper: Any = None,
        replay_buffer: Any = None,
        target_net_updater: Any = None,
        batch_size: int | None = None,
        learner_backend: str = "local",
        learner_backend_options: dict[str, Any] | None = None,
        learner_poll_interval: float = 0.05,
        logger: Any = None,
        clip_grad_norm: bool = True,
        clip_norm: float | None = None,
        progress_bar: bool = True,
        seed: int | None = None,
        save_trainer_interval: int = 10000,
        log_interval: int = 10000,
        save_trainer_file: str | os.PathLike | None = None,
        checkpoint: Any = None,
        checkpoint_rotation: Any = None,
        checkpoint_metadata: Any = None,
        num_epochs: int = 1,
        async_collection: bool = False,
        log_timings: bool = False,
        auto_log_optim_steps: bool = True,
    ) -> None:
        check_trainer_args(locals())
        self.collector = collector
        self.total_frames = total_frames
        self.frame_skip = frame_skip
        self.optim_steps_per_batch = optim_steps_per_batch
        self.loss_module = loss_module
        self.optimizer = optimizer
        self.logger = logger
        self.clip_grad_norm = clip_grad_norm
        self.clip_norm = clip_norm
        self.progress_bar = bool(progress_bar)
        self.seed = seed
        self.save_trainer_interval = save_trainer_interval
        self._log_interval = log_interval
        self.save_trainer_file = save_trainer_file
        self.num_epochs = num_epochs
        self.auto_log_optim_steps = auto_log_optim_steps

        self.collected_frames = 0
        self._optim_count = 0
        self._last_log: dict[str, int] = {}
        self._last_save = 0
        self._log_dict: dict[str, Any] = {}
        self._pbar: Any = None
        self._pbar_str: dict[str, Any] = {}
        self._stop_training = False
        self._stop_reason: str | None = None
        self._ops: dict[str, list[tuple[Callable, dict[str, Any]]]] = {point: [] for point in HOOK_POINTS}
        self._modules: dict[str, Any] = {}
        if seed is not None:
            self.set_seed()
        self.optimization_stepper = optimization_stepper
        if optimization_stepper is not None:
            if not callable(getattr(optimization_stepper, "step", None)):
                raise TypeError(
                    "Trainer: optimization_stepper must have step(trainer, sub_batch) (an OptimizationStepper), "
                    f"got {type(optimization_stepper).__name__}."
                )
            optimization_stepper.register(self, name="optimization_stepper")
        elif optimizer is not None:  # a stepper owns the optimization step: no OptimizerHook beside it
            from tdrl.trainers.hooks import OptimizerHook

            OptimizerHook(optimizer).register(self)

    # ------------------------------------------------------------------ registration
    def register_op(self, dest: str, op: Callable, **kwargs: Any) -> None:
        """Adds ``op`` at the hook point ``dest`` (after the ops already there); ``kwargs``
        are passed to it at each call.

        Raises:
            ValueError: when ``dest`` is not one of :data:`HOOK_POINTS`.
            TypeError: when ``op`` is not callable.
        """
        ops = self._ops.get(dest)
        if ops is None:
            raise ValueError(
                f"Trainer.register_op: unknown hook point {dest!r}; the hook points are {', '.join(HOOK_POINTS)}."
            )
        if not callable(op):
            raise TypeError(f"Trainer.register_op({dest!r}, op): op must be callable, got {type(op).__name__}.")
        ops.append((op, kwargs))

    register_hook = register_op

    def register_module(self, module_name: str, module: Any) -> None:
        """Names ``module`` (a hook, a replay buffer, ...) so that checkpoints save and restore
        its ``state_dict``.

        Raises:
            ValueError: when the name is taken.
            TypeError: when ``module`` has no ``state_dict`` / ``load_state_dict``.
        """
        if module_name in self._modules:
            raise ValueError(
                f"Trainer.register_module: the name {module_name!r} is already registered; "
                f"registered: {sorted(self._modules)}. Register the hook with another name: "
                "hook.register(trainer, name=...)."
            )
        if not (callable(getattr(module, "state_dict", None)) and callable(getattr(module, "load_state_dict", None))):
            raise TypeError(
                f"Trainer.register_module({module_name!r}): a {type(module).__name__} has no "
                "state_dict/load_state_dict; register objects whose state a checkpoint can save "
                "(TrainerHookBase subclasses)."
            )
        self._modules[module_name] = module

    @property
    def registered_modules(self) -> dict[str, Any]:
        """The objects registered with :meth:`register_module`, by name (a copy)."""
        return dict(self._modules)

    def set_seed(self) -> None:
        """Seeds the collector's env with ``seed``, then torch and numpy with the seed it returns."""
        seed = self.collector.set_seed(self.seed, static_seed=False)
        if seed is None:
            seed = self.seed
        torch.manual_seed(seed)
        np.random.seed(seed)  # noqa: NPY002 (TorchRL seeds the global generator)

    def request_stop(self, reason: str | None = None) -> None:
        """Ends :meth:`train` after the current batch (a checkpoint is written first)."""
        self._stop_training = True
        self._stop_reason = reason

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` was called (the loop ends after the current batch)."""
        return self._stop_training

    @property
    def optim_count(self) -> int:
        """Optimization steps run so far (checkpointed)."""
        return self._optim_count

    def last_logged(self, name: str) -> Any:
        """The last value logged under ``name`` by a log hook (or the trainer itself).

        Raises:
            KeyError: nothing was logged under ``name`` yet (the message lists what was).
        """
        if name not in self._log_dict:
            raise KeyError(
                f"Trainer: nothing was logged under {name!r} yet; logged so far: {sorted(self._log_dict)}. "
                "Register the hook that logs it (e.g. LogScalar, LogValidationReward) before the one reading it."
            )
        return self._log_dict[name]

    # ------------------------------------------------------------------ the loop
    def _run(self, point: str, *args: Any) -> None:
        for op, kwargs in self._ops[point]:
            op(*args, **kwargs)

    def _run_map(self, point: str, batch: Any) -> Any:
        for op, kwargs in self._ops[point]:
            out = op(batch, **kwargs)
            if isinstance(out, TensorDictBase):
                batch = out
        return batch

    def _run_log(self, point: str, *args: Any) -> None:
        for op, kwargs in self._ops[point]:
            result = op(*args, **kwargs)
            if result is not None:
                self._log(**result)

    def _frames_in(self, batch: TensorDictBase) -> int:
        mask = batch.get(("collector", "mask"), None)
        count = batch.numel() if mask is None else int(mask.sum())
        return count * self.frame_skip

    def train(self) -> None:
        """Runs the loop until ``total_frames`` frames were collected (or :meth:`request_stop`)."""
        if self.progress_bar:
            from tqdm.auto import tqdm

            self._pbar = tqdm(total=self.total_frames, initial=self.collected_frames, unit="frames")
            self._pbar_str = {}
        if self.optim_steps_per_batch is None and not self._ops["process_optim_batch"]:
            raise ValueError(
                "Trainer.train: optim_steps_per_batch=None runs until a 'process_optim_batch' hook raises "
                "StopIteration, and none is registered (the loop would never end); pass optim_steps_per_batch=N or "
                "register such a hook (ReplayBufferTrainer(..., iterate=True))."
            )
        init_random_frames = getattr(self.collector, "init_random_frames", 0) or 0
        self._run("setup")
        try:
            for batch in self.collector:
                batch = self._run_map("batch_process", batch)
                current_frames = self._frames_in(batch)
                self.collected_frames += current_frames
                self._run_log("pre_steps_log", batch)
                if self.collected_frames >= init_random_frames:
                    self.optim_steps(batch)
                self._run("post_steps")
                self._run_log("post_steps_log", batch)
                if self._pbar is not None:
                    self._pbar.update(current_frames)
                    self._pbar_description()
                if self._stop_training or self.collected_frames >= self.total_frames:
                    self.save_trainer(force_save=True)
                    break
                self.save_trainer()
        finally:
            if self._pbar is not None:
                self._pbar.close()
                self._pbar = None
        self._run("shutdown")
        self.collector.shutdown()

    def optim_steps(self, batch: TensorDictBase) -> None:
        """The optimization of one batch: ``num_epochs`` x ``optim_steps_per_batch`` steps."""
        average_losses: TensorDictBase | None = None
        self._run("pre_optim_steps")
        j = -1
        for _ in range(self.num_epochs):
            self._run_log("pre_epoch_log", batch)
            epoch_batch = batch
            for op, kwargs in self._ops["pre_epoch"]:
                epoch_batch = op(epoch_batch, **kwargs)
            steps: Any = range(self.optim_steps_per_batch) if self.optim_steps_per_batch is not None else iter(int, 1)
            for j, _ in enumerate(steps):
                self._optim_count += 1
                try:
                    sub_batch = self._run_map("process_optim_batch", epoch_batch)
                except StopIteration:
                    break
                if sub_batch is None:
                    break
                if self.optimization_stepper is not None:
                    detached = self.optimization_stepper.step(self, sub_batch).detach()
                else:
                    detached = self._optimize(sub_batch)
                self._run("post_optim")
                self._run_log("post_optim_log", sub_batch)
                if average_losses is None:
                    average_losses = detached
                else:
                    for key, item in detached.items():
                        previous = average_losses.get(key, None)  # e.g. a grad_norm only on accumulation ends
                        average_losses.set(key, item if previous is None else previous * j / (j + 1) + item / (j + 1))
            self._run_log("post_epoch_log", batch)
            self._run("post_epoch")
        if j >= 0:
            self._run_log("post_optim_complete_log", self._optim_count, average_losses)
            if self.auto_log_optim_steps:
                extra: dict[str, Any] = {} if average_losses is None else dict(average_losses.items())
                self._log(optim_steps=self._optim_count, **extra)

    def _optimize(self, sub_batch: TensorDictBase) -> TensorDictBase:
        """One optimization step through the hooks: loss, ``post_loss``, ``process_loss``, ``optimizer``."""
        losses = self.compute_loss(sub_batch)
        self._run_map("post_loss", sub_batch)
        for op, kwargs in self._ops["process_loss"]:
            out = op(sub_batch, losses, **kwargs)
            if isinstance(out, TensorDictBase):
                losses = out
        for index, (op, kwargs) in enumerate(self._ops["optimizer"]):
            out = op(losses, self.clip_grad_norm, self.clip_norm, index, **kwargs)
            if isinstance(out, TensorDictBase):
                losses = out
        return losses.detach()

    def compute_loss(self, sub_batch: TensorDictBase, method: str | None = None) -> Any:
        """The loss module's output for ``sub_batch`` (``method``: call that method of the module instead)."""
        if method is None:
            return self.loss_module(sub_batch)
        return getattr(self.loss_module, method)(sub_batch)

    # ------------------------------------------------------------------ logging
    def _log(self, log_pbar: bool = False, **kwargs: Any) -> None:
        frames = self.collected_frames
        for key, item in kwargs.items():
            self._log_dict[key] = item
            due = frames - self._last_log.get(key, 0) > self._log_interval
            if due:
                self._last_log[key] = frames
            is_scalar = not isinstance(item, torch.Tensor) or item.ndim == 0
            if due and self.logger is not None and is_scalar:
                self.logger.log_scalar(key, item.item() if isinstance(item, torch.Tensor) else item, step=frames)
            if log_pbar and self._pbar is not None and is_scalar:
                self._pbar_str[key] = item.item() if isinstance(item, torch.Tensor) else item

    def _pbar_description(self) -> None:
        if self._pbar_str:
            self._pbar.set_description(
                ", ".join(
                    f"{key}: {value:{_TYPE_DESCR.get(type(value), '4.4f')}}"
                    for key, value in sorted(self._pbar_str.items())
                )
            )

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs: modules, optimizer, collector, hooks, logger, counters, RNGs."""
        state: dict[str, Any] = {
            "format": _CHECKPOINT_FORMAT,
            "collector": self.collector.state_dict(),
            "loss_module": self.loss_module.state_dict() if isinstance(self.loss_module, nn.Module) else {},
            "state": {
                "collected_frames": self.collected_frames,
                "_last_log": dict(self._last_log),
                "_last_save": self._last_save,
                "_optim_count": self._optim_count,
            },
            "rng": _rng_states(),
        }
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        for name, module in self._modules.items():
            if name == "optimizer" and self.optimizer is not None:
                continue  # the OptimizerHook built for `optimizer`: saved above
            state[name] = module.state_dict()
        if self.logger is not None and callable(getattr(self.logger, "state_dict", None)):
            state["logger"] = self.logger.state_dict()
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`; on any error, the trainer is put back as it was.

        Raises:
            KeyError: naming the entries a checkpoint lacks for this trainer's parts.
        """
        needed = ["collector", "loss_module", "state"]
        needed += [name for name in self._modules if not (name == "optimizer" and self.optimizer is not None)]
        if self.optimizer is not None:
            needed.append("optimizer")
        missing = [name for name in needed if name not in state_dict]
        if missing:
            raise KeyError(
                f"Trainer.load_state_dict: the checkpoint has no {missing} (it has {sorted(state_dict)}); "
                "load it into a trainer built with the same optimizer and the same registered hooks."
            )
        backup = copy.deepcopy(self.state_dict())
        try:
            self._apply_state(state_dict)
        except BaseException:
            self._apply_state(backup)
            raise

    def _apply_state(self, state_dict: Mapping[str, Any]) -> None:
        if isinstance(self.loss_module, nn.Module):
            self.loss_module.load_state_dict(state_dict["loss_module"])
        self.collector.load_state_dict(state_dict["collector"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state_dict["optimizer"])
        for name, module in self._modules.items():
            if name == "optimizer" and self.optimizer is not None:
                continue
            module.load_state_dict(state_dict[name])
        if (
            self.logger is not None
            and "logger" in state_dict
            and callable(getattr(self.logger, "load_state_dict", None))
        ):
            self.logger.load_state_dict(state_dict["logger"])
        counters = state_dict["state"]
        self.collected_frames = int(counters["collected_frames"])
        self._last_log = dict(counters["_last_log"])
        self._last_save = int(counters["_last_save"])
        self._optim_count = int(counters["_optim_count"])
        if "rng" in state_dict:  # restored last: loading the other parts may draw numbers
            _set_rng_states(state_dict["rng"])

    def save_trainer(self, force_save: bool = False) -> None:
        """Writes a checkpoint to ``save_trainer_file`` when ``save_trainer_interval`` frames
        passed since the last one (or when ``force_save``); nothing without a file."""
        if self.save_trainer_file is None:
            return
        due = self.collected_frames - self._last_save > self.save_trainer_interval
        if due:
            self._last_save = self.collected_frames
        if due or force_save:
            self._save_trainer()

    def _save_trainer(self) -> None:
        write_checkpoint(self.save_trainer_file, self.state_dict())  # type: ignore[arg-type]

    def load_from_file(self, file: str | os.PathLike, **kwargs: Any) -> Trainer:
        """Restores a checkpoint written by :meth:`save_trainer`; returns the trainer.

        The file's size and CRC-32 are checked, then its payload is read with
        ``torch.load(weights_only=True)``: it can hold tensors, numbers, strings and
        containers, never code. ``kwargs`` go to ``torch.load`` (e.g. ``map_location``).

        Raises:
            FileNotFoundError: when there is no such file.
            ValueError: when the file is not a trainer checkpoint, is damaged, or asks to
                unpickle objects (``weights_only=False`` is refused).
            KeyError: when it lacks a part of this trainer (see :meth:`load_state_dict`).
        """
        if kwargs.get("weights_only", True) is not True:
            raise ValueError(
                "Trainer.load_from_file: weights_only=False is refused; tdrl checkpoints hold only tensors, numbers "
                "and containers and load without unpickling code."
            )
        kwargs.pop("weights_only", None)
        self.load_state_dict(read_checkpoint(file, **kwargs))
        return self

    def shutdown(self) -> None:
        """Shuts the collector down."""
        self.collector.shutdown()

    def __repr__(self) -> str:
        return (
            f"Trainer(\n    loss={self.loss_module},\n    collector={self.collector},\n"
            f"    optimizer={self.optimizer},\n    logger={self.logger})"
        )
