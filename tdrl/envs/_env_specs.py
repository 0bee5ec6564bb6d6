"""The specs of an env: the ``full_*_spec`` slots, their single-entry views, and the key lists.

:class:`_EnvSpecs` is a mixin of :class:`~tdrl.envs.EnvBase`: ``output_spec`` holds the
observation, reward and done specs, ``input_spec`` the action and state specs; a spec set
through a property is checked against the env's batch size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import torch
from tensordict import TensorDictBase

from tdrl.envs.utils import DONE_KEYS
from tdrl.specs import Categorical, Composite, NestedKey, TensorSpec, Unbounded

__all__ = ["_EnvSpecs", "make_composite_from_td", "_done_spec"]


def make_composite_from_td(td: TensorDictBase) -> Composite:
    """A Composite of Unbounded specs describing ``td``'s structure (shapes, dtypes)."""
    spec = Composite(shape=td.batch_size)
    for key, value in td.items():
        if isinstance(value, TensorDictBase):
            spec[key] = make_composite_from_td(value)
        else:
            spec[key] = Unbounded(shape=value.shape, dtype=value.dtype, device=value.device)
    return spec


def _done_spec(batch_size: torch.Size, device: torch.device) -> Composite:
    leaf = Categorical(2, shape=(*batch_size, 1), dtype=torch.bool, device=device)
    return Composite({k: leaf.clone() for k in DONE_KEYS}, shape=batch_size)


class _EnvSpecs:
    """The spec properties of :class:`~tdrl.envs.EnvBase` (a mixin: EnvBase holds the state)."""

    if TYPE_CHECKING:
        batch_size: torch.Size
        output_spec: Composite
        input_spec: Composite
        _action_checks: list | None

    def _set_spec(self, holder: Composite, slot: str, default_key: str, spec: Any, what: str) -> None:
        if isinstance(spec, TensorSpec):
            self._check_leaf_batch(default_key, spec, what)
            spec = Composite({default_key: spec}, shape=self.batch_size)
        if not isinstance(spec, Composite):
            raise TypeError(f"{type(self).__name__}.{what} must be a spec, got {type(spec).__name__}")
        if spec.shape != self.batch_size:
            spec = self._rebatch(spec, what)
        for key in spec.keys(True, True):
            self._check_leaf_batch(key, spec[key], what)
        holder[slot] = spec
        self._action_checks = None

    def _check_leaf_batch(self, key: NestedKey, leaf: TensorSpec, what: str) -> None:
        if leaf.shape[: len(self.batch_size)] != self.batch_size:
            raise ValueError(
                f"{type(self).__name__}.{what}[{key!r}] has shape {tuple(leaf.shape)}, which does not "
                f"start with the env's batch_size {tuple(self.batch_size)}. Give it shape "
                f"{tuple(self.batch_size) + tuple(leaf.shape)} (or spec.expand(*batch_size, *shape))."
            )

    def _rebatch(self, spec: Composite, what: str) -> Composite:
        if spec.shape == self.batch_size[: len(spec.shape)]:
            out = Composite(shape=self.batch_size)
            for key in spec.keys():
                sub = spec[key]
                out[key] = sub if isinstance(sub, TensorSpec) else self._rebatch(sub, what)
            return out
        raise ValueError(
            f"{type(self).__name__}.{what} has batch shape {tuple(spec.shape)}, but the env's batch_size "
            f"is {tuple(self.batch_size)}. Build the Composite with shape={tuple(self.batch_size)}."
        )

    # The full_*_spec slots hold Composites: __init__ builds them and _set_spec only stores one.
    @property
    def full_observation_spec(self) -> Composite:
        return cast(Composite, self.output_spec["full_observation_spec"])

    @full_observation_spec.setter
    def full_observation_spec(self, spec: Composite) -> None:
        self._set_spec(self.output_spec, "full_observation_spec", "observation", spec, "observation_spec")

    observation_spec = full_observation_spec

    @property
    def full_reward_spec(self) -> Composite:
        return cast(Composite, self.output_spec["full_reward_spec"])

    @full_reward_spec.setter
    def full_reward_spec(self, spec: TensorSpec | Composite) -> None:
        self._set_spec(self.output_spec, "full_reward_spec", "reward", spec, "reward_spec")

    @property
    def reward_spec(self) -> TensorSpec | Composite:
        """The reward's spec (the Composite when there are several rewards)."""
        full = self.full_reward_spec
        keys = full.keys(True, True)
        return full[keys[0]] if len(keys) == 1 else full

    @reward_spec.setter
    def reward_spec(self, spec: TensorSpec | Composite) -> None:
        self.full_reward_spec = spec

    @property
    def full_done_spec(self) -> Composite:
        return cast(Composite, self.output_spec["full_done_spec"])

    @full_done_spec.setter
    def full_done_spec(self, spec: TensorSpec | Composite) -> None:
        if isinstance(spec, TensorSpec):
            spec = Composite({k: spec.clone() for k in DONE_KEYS}, shape=self.batch_size)
        self._set_spec(self.output_spec, "full_done_spec", "done", spec, "done_spec")

    done_spec = full_done_spec

    @property
    def full_action_spec(self) -> Composite:
        return cast(Composite, self.input_spec["full_action_spec"])

    @full_action_spec.setter
    def full_action_spec(self, spec: TensorSpec | Composite) -> None:
        self._set_spec(self.input_spec, "full_action_spec", "action", spec, "action_spec")

    @property
    def action_spec(self) -> TensorSpec | Composite:
        """The action's spec (the Composite when there are several action entries)."""
        full = self.full_action_spec
        keys = full.keys(True, True)
        return full[keys[0]] if len(keys) == 1 else full

    @action_spec.setter
    def action_spec(self, spec: TensorSpec | Composite) -> None:
        self.full_action_spec = spec

    @property
    def action_spec_unbatched(self) -> TensorSpec | Composite:
        """The action spec of one sub-env, i.e. ``action_spec`` without the batch dims.

        Use it for a policy's bounds (e.g. ``TanhNormal``'s ``low``/``high``) so that the
        policy also works on minibatches whose shape is not the env's batch size.
        """
        return self.action_spec.drop_leading_dims(self.batch_dims)

    @property
    def full_action_spec_unbatched(self) -> Composite:
        return self.full_action_spec.drop_leading_dims(self.batch_dims)

    @property
    def observation_spec_unbatched(self) -> Composite:
        return self.full_observation_spec.drop_leading_dims(self.batch_dims)

    @property
    def full_state_spec(self) -> Composite:
        return cast(Composite, self.input_spec["full_state_spec"])

    @full_state_spec.setter
    def full_state_spec(self, spec: Composite) -> None:
        self._set_spec(self.input_spec, "full_state_spec", "state", spec, "state_spec")

    state_spec = full_state_spec

    @property
    def action_keys(self) -> list:
        return self.full_action_spec.keys(True, True)

    @property
    def action_key(self) -> NestedKey:
        return self.action_keys[0]

    @property
    def reward_keys(self) -> list:
        return self.full_reward_spec.keys(True, True)

    @property
    def reward_key(self) -> NestedKey:
        return self.reward_keys[0]

    @property
    def done_keys(self) -> list:
        return self.full_done_spec.keys(True, True)

    @property
    def observation_keys(self) -> list:
        return self.full_observation_spec.keys(True, True)

    @property
    def batch_dims(self) -> int:
        return len(self.batch_size)
