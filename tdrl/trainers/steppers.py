"""Optimization steppers (TorchRL's): one object that runs a whole optimization step for the Trainer.

A :class:`~tdrl.trainers.Trainer` built with ``optimization_stepper=`` calls
``stepper.step(trainer, sub_batch)`` for each sub-batch instead of running its
``post_loss`` / ``process_loss`` / ``optimizer`` hooks; the ``post_optim`` hooks and the
logging points still run around it. Write one for algorithms that need several
optimizers or delayed updates (TD3's actor every other step, ...).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from tdrl.trainers._grads import clip_gradients
from tdrl.trainers.trainers import Trainer, TrainerHookBase

__all__ = ["DefaultOptimizationStepper", "MixedPrecisionOptimizationStepper", "OptimizationStepper"]


class OptimizationStepper(TrainerHookBase):
    """Base class: :meth:`~tdrl.trainers.OptimizationStepper.step` runs one optimization step and returns what to log.

    Subclasses implement :meth:`step`; :meth:`register` (called by the Trainer) names the
    stepper ``"optimization_stepper"`` in checkpoints, which hold its ``state_dict()``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.collectors import SyncDataCollector
        >>> from tdrl.testing import CountingEnv
        >>> from tdrl.trainers import Trainer
        >>> class CountSteps(OptimizationStepper):
        ...     def __init__(self):
        ...         self.steps = 0
        ...     def step(self, trainer, sub_batch):
        ...         self.steps += 1
        ...         return TensorDict({"steps": torch.tensor(float(self.steps))})
        >>> stepper = CountSteps()
        >>> trainer = Trainer(collector=SyncDataCollector(CountingEnv(), None, frames_per_batch=4, total_frames=8),
        ...                   total_frames=8, frame_skip=1, optim_steps_per_batch=3,
        ...                   loss_module=lambda batch: TensorDict(), optimization_stepper=stepper, progress_bar=False)
        >>> trainer.train()
        >>> stepper.steps
        6
    """

    def step(self, trainer: Trainer, sub_batch: TensorDictBase) -> TensorDictBase:
        """Run one optimization step on ``sub_batch``; return scalars to log (detached by the Trainer).

        Args:
            trainer: the trainer running the loop (its ``compute_loss``, ``optimizer``,
                ``clip_grad_norm`` and ``clip_norm`` are there to use).
            sub_batch: the data of this step.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement step(trainer, sub_batch).")

    def register(self, trainer: Trainer, name: str = "optimization_stepper") -> None:
        trainer.register_module(name, self)


class DefaultOptimizationStepper(OptimizationStepper):
    """What the Trainer does without a stepper, as one step: loss, backward, clip, ``optimizer.step()``.

    Uses ``trainer.optimizer``, ``trainer.clip_grad_norm`` and ``trainer.clip_norm``, and
    writes ``"grad_norm"`` (the gradients' total norm before clipping) into the losses.
    Its checkpoint state is the optimizer's.

    Args:
        loss_components: the loss entries summed for the backward pass (``None``: every
            entry whose name starts with ``"loss"``).

    Raises:
        ValueError: ``loss_components`` is empty.
        RuntimeError: (in :meth:`step`) the trainer has no optimizer.
        KeyError: (in :meth:`step`) none of the losses is selected.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.collectors import SyncDataCollector
        >>> from tdrl.testing import CountingEnv
        >>> from tdrl.trainers import Trainer
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> loss = lambda batch: TensorDict({"loss_fit": (w - 1.0).pow(2).sum()})
        >>> trainer = Trainer(collector=SyncDataCollector(CountingEnv(), None, frames_per_batch=4, total_frames=4),
        ...                   total_frames=4, frame_skip=1, optim_steps_per_batch=50, loss_module=loss,
        ...                   optimizer=torch.optim.SGD([w], lr=0.1), progress_bar=False,
        ...                   optimization_stepper=DefaultOptimizationStepper())
        >>> trainer.train()
        >>> round(w.item(), 3)
        1.0
    """

    def __init__(self, loss_components: Sequence[str] | None = None) -> None:
        if loss_components is not None and not loss_components:
            raise ValueError(
                "DefaultOptimizationStepper: loss_components is empty; pass None to sum every loss_* entry."
            )
        self.loss_components = None if loss_components is None else set(loss_components)
        self._optimizer: torch.optim.Optimizer | None = None

    def step(self, trainer: Trainer, sub_batch: TensorDictBase) -> TensorDictBase:
        optimizer = trainer.optimizer
        if optimizer is None:
            raise RuntimeError(
                "DefaultOptimizationStepper: the trainer has no optimizer; pass optimizer= to the Trainer, or "
                "write an OptimizationStepper that owns its optimizers."
            )
        self._optimizer = optimizer
        losses = trainer.compute_loss(sub_batch)
        wanted = self.loss_components
        components = [v for k, v in losses.items() if (k in wanted if wanted is not None else k.startswith("loss"))]
        if not components:
            raise KeyError(
                f"DefaultOptimizationStepper: no loss to optimize among {sorted(losses.keys())}; expected "
                f"{sorted(wanted) if wanted else 'entries named loss_*'}. Pass loss_components=[...]."
            )
        total = components[0]
        for component in components[1:]:
            total = total + component
        total.backward()
        losses.set("grad_norm", torch.tensor(clip_gradients(optimizer, trainer.clip_grad_norm, trainer.clip_norm)))
        optimizer.step()
        optimizer.zero_grad()
        return losses

    def state_dict(self) -> dict[str, Any]:
        return {} if self._optimizer is None else {"optimizer": self._optimizer.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if "optimizer" in state_dict and self._optimizer is not None:
            self._optimizer.load_state_dict(dict(state_dict["optimizer"]))

    def register(self, trainer: Trainer, name: str = "optimization_stepper") -> None:
        self._optimizer = trainer.optimizer
        super().register(trainer, name)


def _scalar_metrics(losses: TensorDictBase) -> TensorDictBase:
    """The losses, detached, with every non-scalar entry reduced to its mean (loggable)."""
    return TensorDict(
        {k: v.float().mean() if v.numel() > 1 else v for k, v in losses.detach().items()},
        [],
    )


class MixedPrecisionOptimizationStepper(OptimizationStepper):
    """An optimization step under ``torch.autocast``, with gradient accumulation and non-finite guards.

    Each call runs the loss under autocast (when ``mixed_precision``), divides the sum of
    the ``loss_*`` entries by ``gradient_accumulation_steps`` and backpropagates it; every
    ``gradient_accumulation_steps`` calls it clips the gradients' norm to ``clip_norm``,
    steps and zeroes the optimizer. With ``float16`` a ``GradScaler`` scales the loss
    (a step whose gradients overflow is skipped by it). A non-finite loss drops the whole
    accumulation window; a non-finite gradient norm (without a scaler) skips the step.

    Args:
        optimizer: the optimizer it steps (its state is the stepper's checkpoint state).
        mixed_precision: run the loss under ``torch.autocast``.
        autocast_dtype: the autocast dtype (``torch.bfloat16`` or ``torch.float16``).
        gradient_accumulation_steps: calls whose gradients add up before one optimizer step.
        clip_norm: the largest total gradient norm (``None``: no clipping).
        device_type: autocast's device type (default: that of the optimizer's first parameter).

    Raises:
        ValueError: ``gradient_accumulation_steps`` is below 1.
        RuntimeError: (in :meth:`step`) the loss has no ``loss_*`` entry; (in
            :meth:`state_dict`) an accumulation window is half done.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> class Holder:  # what step() uses of a Trainer
        ...     def compute_loss(self, batch):
        ...         return TensorDict({"loss": (w - 1.0).pow(2).sum()})
        >>> stepper = MixedPrecisionOptimizationStepper(
        ...     torch.optim.SGD([w], lr=0.5), gradient_accumulation_steps=2, clip_norm=None
        ... )
        >>> _ = stepper.step(Holder(), TensorDict()); w.item()  # half a window: no step yet
        0.0
        >>> _ = stepper.step(Holder(), TensorDict()); w.item(), stepper.optimizer_step_count
        (1.0, 1)
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        mixed_precision: bool = False,
        autocast_dtype: torch.dtype = torch.bfloat16,
        gradient_accumulation_steps: int = 1,
        clip_norm: float | None = 1.0,
        device_type: str | None = None,
    ) -> None:
        if gradient_accumulation_steps < 1:
            raise ValueError(
                f"MixedPrecisionOptimizationStepper: gradient_accumulation_steps must be >= 1, "
                f"got {gradient_accumulation_steps}."
            )
        self.optimizer = optimizer
        self.mixed_precision = mixed_precision
        self.autocast_dtype = autocast_dtype
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.clip_norm = clip_norm
        if device_type is None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            device_type = params[0].device.type if params else "cpu"
        self.device_type = device_type
        self._use_scaler = mixed_precision and autocast_dtype == torch.float16  # bfloat16 needs no scaling
        self.scaler = torch.amp.GradScaler(device_type, enabled=self._use_scaler)
        self._micro_step = 0
        self._optimizer_step_count = 0
        self._skipped_nonfinite_steps = 0

    @property
    def optimizer_step_count(self) -> int:
        """Optimizer steps taken (not counting accumulation calls nor skipped steps)."""
        return self._optimizer_step_count

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _skip(self, what: str) -> None:
        self._skipped_nonfinite_steps += 1
        warnings.warn(
            f"MixedPrecisionOptimizationStepper: skipped an optimizer step, {what} "
            f"({self._skipped_nonfinite_steps} skipped so far).",
            RuntimeWarning,
            stacklevel=3,
        )

    def step(self, trainer: Any, sub_batch: TensorDictBase) -> TensorDictBase:
        with torch.autocast(self.device_type, enabled=self.mixed_precision, dtype=self.autocast_dtype):
            losses = trainer.compute_loss(sub_batch)
            components = [v for k, v in losses.items() if k.startswith("loss")]
            if not components:
                raise RuntimeError(
                    f"MixedPrecisionOptimizationStepper: the loss module wrote no 'loss_*' entry "
                    f"(it wrote {sorted(losses.keys())}); name the entries to optimize loss_<something>."
                )
            loss = components[0]
            for component in components[1:]:
                loss = loss + component
            loss = loss / self.gradient_accumulation_steps
        if not bool(torch.isfinite(loss.detach()).all()):
            self._skip(f"the loss is not finite ({loss.detach()}); the accumulation window restarts")
            self.optimizer.zero_grad(set_to_none=True)
            self._micro_step = 0
            return _scalar_metrics(losses)
        (self.scaler.scale(loss) if self._use_scaler else loss).backward()
        self._micro_step += 1
        if self._micro_step % self.gradient_accumulation_steps:
            return _scalar_metrics(losses)
        if self._use_scaler:
            self.scaler.unscale_(self.optimizer)
        grad_norm = 0.0 if self.clip_norm is None else float(nn.utils.clip_grad_norm_(self._params(), self.clip_norm))
        if self._use_scaler:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scaler.get_scale() >= scale:  # a lower scale means an overflow: the step was skipped
                self._optimizer_step_count += 1
        elif not math.isfinite(grad_norm):
            self._skip(f"the gradient norm is not finite ({grad_norm})")
            grad_norm = 0.0
        else:
            self.optimizer.step()
            self._optimizer_step_count += 1
        self.optimizer.zero_grad(set_to_none=True)
        metrics = _scalar_metrics(losses)
        metrics["grad_norm"] = torch.tensor(grad_norm)
        return metrics

    def state_dict(self) -> dict[str, Any]:
        if self._micro_step % self.gradient_accumulation_steps:
            raise RuntimeError(
                f"MixedPrecisionOptimizationStepper: cannot checkpoint in the middle of an accumulation window "
                f"({self._micro_step} of {self.gradient_accumulation_steps} calls); make optim_steps_per_batch a "
                "multiple of gradient_accumulation_steps."
            )
        state: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "micro_step": self._micro_step,
            "optimizer_step_count": self._optimizer_step_count,
            "skipped_nonfinite_steps": self._skipped_nonfinite_steps,
        }
        if self._use_scaler:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(dict(state_dict["optimizer"]))
        self._micro_step = int(state_dict.get("micro_step", 0))
        self._optimizer_step_count = int(state_dict.get("optimizer_step_count", 0))
        self._skipped_nonfinite_steps = int(state_dict.get("skipped_nonfinite_steps", 0))
        if self._use_scaler and "scaler" in state_dict:
            self.scaler.load_state_dict(dict(state_dict["scaler"]))
