"""What the exploration modules (:mod:`tdrl.modules.exploration`) check and share: the action's spec and shape.

Whether noise applies now (exploring), the leaf spec of the action entry, the dims of an
action in front of its spec's shape, the projection of a safe module's action, and the
annealing arguments every noise module takes.
"""

from __future__ import annotations

from typing import cast, overload

import torch
from tensordict import TensorDictBase
from tensordict.nn import InteractionType
from tensordict.nn.probabilistic import interaction_type

from tdrl.specs import Composite, NestedKey, TensorSpec

__all__: list[str] = []


def _exploring() -> bool:
    mode = interaction_type()
    return mode is None or mode is InteractionType.RANDOM


@overload
def _leaf_spec(spec: TensorSpec | Composite, key: NestedKey, owner: str) -> TensorSpec: ...


@overload
def _leaf_spec(spec: TensorSpec | Composite | None, key: NestedKey, owner: str) -> TensorSpec | None: ...


def _leaf_spec(spec: TensorSpec | Composite | None, key: NestedKey, owner: str) -> TensorSpec | None:
    if spec is None:
        return None
    if isinstance(spec, Composite):
        if key not in spec:
            raise KeyError(f"{owner}: the Composite spec has no {key!r} entry; keys are {spec.keys(True, True)}.")
        return cast(TensorSpec, spec[key])  # an action entry is a leaf
    if not isinstance(spec, TensorSpec):
        raise TypeError(f"{owner}: spec must be a tdrl TensorSpec or Composite, got {type(spec).__name__}.")
    return spec


def _lead_dims(action: torch.Tensor, spec: TensorSpec, owner: str) -> torch.Size:
    """The dims of ``action`` in front of ``spec.shape`` (the spec may itself carry batch dims)."""
    n = spec.ndim
    if action.ndim < n or tuple(action.shape[action.ndim - n :]) != tuple(spec.shape):
        raise ValueError(
            f"{owner}: the action has shape {tuple(action.shape)}, which does not end with the spec's "
            f"shape {tuple(spec.shape)}. Pass the env's action_spec (env.action_spec)."
        )
    return action.shape[: action.ndim - n]


def _project_in_place(tensordict: TensorDictBase, key: NestedKey, spec: TensorSpec) -> None:
    """Project the entry onto ``spec`` if it is there (a safe module outside exploration)."""
    value = tensordict.get(key, None)
    if value is not None:
        tensordict.set(key, spec.project(value))


def _check_annealing(init: float, end: float, steps: int, owner: str, name: str) -> None:
    if end > init:
        raise ValueError(f"{owner}: {name}_end={end} must not exceed {name}_init={init} (the noise anneals down).")
    if steps <= 0:
        raise ValueError(f"{owner}: annealing_num_steps must be > 0, got {steps}.")
