"""Decorators that turn a per-entry spec function into a transform's spec method.

TorchRL's tutorials decorate a per-entry spec function with these (imported from
``torchrl.envs.transforms.transforms``); ``tdrl.envs.transforms.transforms`` re-exports them
so that import path keeps working.
"""

from __future__ import annotations

import functools
from typing import Any

import torch  # noqa: F401 (doctests)

from tdrl.envs.transforms.transforms import Transform, _leaf, _slot
from tdrl.specs import Composite

__all__: list[str] = []


def _apply_to_composite(function: Any) -> Any:
    """Turn ``fn(self, leaf_spec) -> leaf_spec`` into a ``transform_observation_spec`` (or reward) method.

    The decorated method receives a ``Composite`` and, for each ``in_key``/``out_key`` pair of
    the transform whose ``in_key`` it holds, writes ``fn(self, spec[in_key].clone())`` under
    ``out_key``. A leaf spec passed directly goes to ``fn`` unchanged.

    Examples:
        >>> from tdrl.specs import Bounded, Unbounded
        >>> class Sin(Transform):
        ...     def _apply_transform(self, x):
        ...         return x.sin()
        ...
        ...     @_apply_to_composite
        ...     def transform_observation_spec(self, spec):
        ...         return Bounded(-1.0, 1.0, shape=spec.shape, dtype=spec.dtype)
        >>> out = Sin(in_keys=["th"], out_keys=["sin"]).transform_observation_spec(Composite(th=Unbounded(())))
        >>> sorted(out.keys()), out["sin"].space.high
        (['sin', 'th'], tensor(1.))
    """

    @functools.wraps(function)
    def per_entry(self: Transform, spec: Any) -> Any:
        if not isinstance(spec, Composite):
            return function(self, spec)
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            if in_key in spec:
                spec[out_key] = function(self, _leaf(spec, in_key).clone())
        return spec

    return per_entry


def _apply_to_composite_inv(function: Any) -> Any:
    """Turn ``fn(self, leaf_spec) -> leaf_spec`` into a ``transform_input_spec`` over ``in_keys_inv``.

    For each ``in_keys_inv``/``out_keys_inv`` pair, the entry is looked up in the action
    spec, then the state spec, and the result written under ``out_key`` there (the
    ``in_key`` entry is dropped when the names differ).

    Examples:
        >>> from tdrl.specs import Unbounded
        >>> class Half(Transform):
        ...     @_apply_to_composite_inv
        ...     def transform_input_spec(self, spec):
        ...         return Unbounded(spec.shape, dtype=torch.float16)
        >>> inputs = Composite(full_action_spec=Composite(action=Unbounded((2,))), full_state_spec=Composite())
        >>> Half(in_keys_inv=["action"]).transform_input_spec(inputs)["full_action_spec", "action"].dtype
        torch.float16
    """

    @functools.wraps(function)
    def per_entry(self: Transform, input_spec: Composite) -> Composite:
        slots = [_slot(input_spec, name) for name in ("full_action_spec", "full_state_spec") if name in input_spec]
        for in_key, out_key in zip(self.in_keys_inv, self.out_keys_inv):
            for slot in slots:
                if in_key in slot:
                    new = function(self, _leaf(slot, in_key).clone())
                    if out_key != in_key:
                        del slot[in_key]
                    slot[out_key] = new
                    break
        return input_spec

    return per_entry
