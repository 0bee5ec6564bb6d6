"""The arguments :class:`~tdrl.trainers.Trainer` checks when it is built.

Counts must be positive ints (``save_trainer_interval`` and ``log_interval`` may be 0); the
arguments of TorchRL features that tdrl's trainer does not have (a remote learner,
asynchronous collection, ``torchrl.checkpoint``) are refused with what to use instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__: list[str] = []

_UNSUPPORTED = (
    # (argument, default, what to do instead)
    ("replay_buffer", None, "register a ReplayBufferTrainer hook (ReplayBufferTrainer(rb).register(trainer))"),
    (
        "target_net_updater",
        None,
        "call the updater from a 'post_optim' hook: trainer.register_op('post_optim', updater.step)",
    ),
    ("batch_size", None, "give the batch size to ReplayBufferTrainer or BatchSubSampler"),
    ("learner_backend", "local", "train locally (learner_backend='local')"),
    ("learner_backend_options", None, "leave it unset (there is only the local learner)"),
    ("learner_poll_interval", 0.05, "leave it unset (there is only the local learner)"),
    ("checkpoint", None, "pass save_trainer_file (one crash-safe file) and save_trainer_interval"),
    ("checkpoint_rotation", None, "pass save_trainer_file; copy the file aside to keep older checkpoints"),
    ("checkpoint_metadata", None, "pass save_trainer_file; log metadata through the logger"),
    ("async_collection", False, "collect synchronously (async_collection=False)"),
    ("log_timings", False, "profile the loop instead (py-spy, torch.profiler)"),
)


def _check_count(name: str, value: Any, *, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Trainer: {name} must be an int >= {minimum}, got {value!r}.")


def check_trainer_args(args: Mapping[str, Any]) -> None:
    """Raises for an argument of ``Trainer(...)`` that is refused or out of range (``args``: by name).

    Raises:
        ValueError: for a count that is not a positive int, a ``clip_norm`` that is not
            positive, or an unsupported argument (the message says what to do instead).
        TypeError: for a ``loss_module`` that is not callable.
    """
    for name, default, instead in _UNSUPPORTED:
        value = args[name]
        if value is not default and value != default:
            raise ValueError(f"Trainer: {name}={value!r} is not supported by tdrl's Trainer; {instead}.")
    _check_count("total_frames", args["total_frames"])
    _check_count("frame_skip", args["frame_skip"])
    _check_count("optim_steps_per_batch", args["optim_steps_per_batch"], allow_none=True)
    _check_count("num_epochs", args["num_epochs"])
    _check_count("save_trainer_interval", args["save_trainer_interval"], minimum=0)
    _check_count("log_interval", args["log_interval"], minimum=0)
    loss_module, clip_norm = args["loss_module"], args["clip_norm"]
    if not callable(loss_module):
        raise TypeError(f"Trainer: loss_module must be callable (an nn.Module), got {type(loss_module).__name__}.")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"Trainer: clip_norm must be a positive number or None, got {clip_norm!r}.")
