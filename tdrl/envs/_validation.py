"""The validation mode: checks of every env step's values against the specs, for debugging.

:class:`set_validation` (re-exported by :mod:`tdrl.envs.utils` and :mod:`tdrl.envs`) sets
one process-wide mode object that ``EnvBase.step`` and ``EnvBase.reset`` read once per
call. It lives in a module of its own, holding nothing else that changes, so that every
module that reads or writes the mode binds the same object.
"""

from __future__ import annotations

import os
from contextlib import ContextDecorator
from typing import Any

import torch

from tdrl.specs import TensorSpec

__all__ = ["set_validation", "validation_enabled"]


class _ValidationMode:
    """What ``EnvBase.step`` checks beyond shapes and dtypes; one per process, set by :class:`set_validation`."""

    __slots__ = ("actions", "outputs")

    def __init__(self, actions: bool = False, outputs: bool = False) -> None:
        self.actions = actions
        self.outputs = outputs


ENV_VAR = "TDRL_VALIDATION"
_ENV_VALUES = {"": (False, False), "0": (False, False), "1": (True, False), "outputs": (True, True)}


def _mode_from_environment() -> _ValidationMode:
    """The mode a process starts in: ``TDRL_VALIDATION`` unset or ``0`` off, ``1`` actions, ``outputs`` both."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value not in _ENV_VALUES:
        raise ValueError(
            f"{ENV_VAR}={value!r} is not a validation mode: use 1 (check actions), outputs (check actions "
            "and what envs write) or 0 (off), or unset it."
        )
    return _ValidationMode(*_ENV_VALUES[value])


_validation = _mode_from_environment()
"""Read by ``EnvBase.step`` once per step (one attribute read when off); written only by set_validation."""


class set_validation(ContextDecorator):  # lower case, as set_exploration_type: read as a statement
    """Check the values of every env step against the env's specs: a debug mode, off by default.

    Inside the block (or the decorated function), ``env.step`` checks each action against
    the action spec before the env runs it: NaN or infinite values, values outside a
    ``Bounded`` box, indices outside a ``Categorical``'s ``0..n-1``, vectors that are not
    one-hot. The first bad value raises a ``ValueError`` that names the key, the value, its
    index, the bound and the spec. With ``outputs=True``, what each step and reset write
    (observations, rewards, done flags) is checked the same way. ``check_env_specs`` runs
    with the checks on.

    Off, the cost is one attribute read per step. On, expect a few tens of microseconds per
    step and key: use it to find where a bad value enters (as ``torch.autograd.detect_anomaly``),
    not for long runs. Without it, tdrl checks the shape and dtype of each action, and
    refuses a cast that would change a one-hot or binary action, but passes its values on.

    The mode is process-wide (as ``set_exploration_type``) and restored when the block
    exits, also on an exception. It covers ``env.step``, ``env.reset``, ``env.rollout`` and
    every collector: their fast paths, which call an env's ``_step`` directly once its first
    step was checked, read the mode once per batch and, while it is on, step through
    ``env.step``. A batched env checks its batched actions and outputs in the parent
    process; the workers of ``MultiSyncDataCollector`` and ``MultiaSyncDataCollector`` take
    the parent's mode with each batch request.

    The environment variable ``TDRL_VALIDATION`` sets the mode a process starts in, for a
    whole program and every worker process it starts, without editing it: ``1`` checks
    actions, ``outputs`` checks outputs too (``TDRL_VALIDATION=1 python train.py``).

    Args:
        mode: True to check inside the block, False to switch checks off in it.
        outputs: also check the observations, rewards and done flags the env writes.

    Examples:
        >>> import torch
        >>> from tdrl.envs import GymEnv, set_validation
        >>> env = GymEnv("Pendulum-v1")
        >>> td = env.reset()
        >>> td["action"] = torch.tensor([1e6])
        >>> _ = env.step(td)  # off: the env clips the value and nothing says so
        >>> with set_validation():
        ...     env.step(td)
        Traceback (most recent call last):
        ...
        ValueError: GymEnv.step: action 'action' is not in its spec: value 1000000.0 at index [0] is outside ...
        >>> @set_validation(outputs=True)
        ... def evaluate(env):
        ...     return env.rollout(10)
        >>> evaluate(env).batch_size
        torch.Size([10])
    """

    def __init__(self, mode: bool = True, *, outputs: bool = False) -> None:
        self.mode = bool(mode)
        self.outputs = bool(outputs) and self.mode
        self._saved: list[tuple[bool, bool]] = []  # a stack: a decorated function may re-enter

    def __enter__(self) -> set_validation:
        self._saved.append((_validation.actions, _validation.outputs))
        _validation.actions, _validation.outputs = self.mode, self.outputs
        return self

    def __exit__(self, *exc: Any) -> None:
        _validation.actions, _validation.outputs = self._saved.pop()


def validation_enabled() -> bool:
    """Whether :class:`set_validation` is on (actions are checked against the specs at each step)."""
    return _validation.actions


def _value_problem(spec: TensorSpec, value: torch.Tensor) -> str | None:
    """Why ``value`` is not a legal value of ``spec`` (NaN and inf included), or None when it is."""
    if value.dtype.is_floating_point:
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            index = (~finite).nonzero()[0].tolist()
            return f"value {value[tuple(index)].item()} at index {index} is not finite"
    return spec.mismatch(value)
