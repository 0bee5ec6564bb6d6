"""Optimization steppers (TorchRL's): one object that runs a whole optimization step for the Trainer.

A :class:`~tdrl.trainers.Trainer` built with ``optimization_stepper=`` calls
``stepper.step(trainer, sub_batch)`` for each sub-batch instead of running its
``post_loss`` / ``process_loss`` / ``optimizer`` hooks; the ``post_optim`` hooks and the
logging points still run around it. Write one for algorithms that need several
optimizers or delayed updates (TD3's actor every other step, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl.trainers._grads import clip_gradients
from tdrl.trainers.trainers import Trainer, TrainerHookBase

__all__ = ["DefaultOptimizationStepper", "OptimizationStepper"]


class OptimizationStepper(TrainerHookBase):
    """Base class: :meth:`step` runs one optimization step and returns what to log.

    Subclasses implement :meth:`step`; :meth:`register` (called by the Trainer) names the
    stepper ``"optimization_stepper"`` in checkpoints, which hold its :meth:`state_dict`.

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
