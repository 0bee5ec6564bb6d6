"""The base class of the trainer hooks: the state a checkpoint saves and the hook's default place.

Import it from :mod:`tdrl.trainers` (or :mod:`tdrl.trainers.trainers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tdrl.trainers.trainers import Trainer

__all__ = ["TrainerHookBase"]


class TrainerHookBase:
    """Base class of the trainer hooks: a state to checkpoint and a default place in the loop.

    Subclasses implement :meth:`register` (which calls :meth:`Trainer.register_op` and
    :meth:`Trainer.register_module`), and :meth:`state_dict` / :meth:`load_state_dict` when
    they hold state that a resume needs (the defaults hold none).

    Examples:
        >>> class CountBatches(TrainerHookBase):
        ...     def __init__(self):
        ...         self.count = 0
        ...     def __call__(self, batch):
        ...         self.count += 1
        ...         return {"batches": self.count}
        ...     def state_dict(self):
        ...         return {"count": self.count}
        ...     def load_state_dict(self, state_dict):
        ...         self.count = state_dict["count"]
        ...     def register(self, trainer, name="count_batches"):
        ...         trainer.register_op("pre_steps_log", self)
        ...         trainer.register_module(name, self)
        >>> hook = CountBatches()
        >>> hook(None), hook.state_dict()
        ({'batches': 1}, {'count': 1})
    """

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint saves of this hook (nothing by default)."""
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` (nothing by default)."""
        del state_dict

    def register(self, trainer: Trainer, name: str) -> None:
        """Registers the hook in ``trainer`` at its default point, under ``name`` for checkpoints."""
        raise NotImplementedError(f"{type(self).__name__} must implement register(trainer, name)")
