"""RemoveEmptySpecs: drop the empty groups (Composites with no leaf) of an env's specs and data.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"observation": torch.zeros(2), "info": {}}, [])
    >>> sorted(RemoveEmptySpecs()(td).keys())
    ['observation']
"""

from __future__ import annotations

from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform, _slot
from tdrl.specs import Composite

__all__ = ["RemoveEmptySpecs"]

_OUTPUT_SLOTS = ("full_observation_spec", "full_reward_spec", "full_done_spec")
_INPUT_SLOTS = ("full_action_spec", "full_state_spec")


def _deepest_first(keys: list) -> list:
    """Nested keys ordered so that a group's members come before the group (deleting them keeps keys valid)."""
    return sorted(keys, key=lambda k: len(k) if isinstance(k, tuple) else 1, reverse=True)


def _drop_empty(spec: Composite) -> list:
    """Delete the empty sub-Composites of ``spec``; returns their keys."""
    dropped = []
    for key in _deepest_first(spec.keys(True)):
        sub = spec[key]
        if isinstance(sub, Composite) and sub.is_empty():
            del spec[key]
            dropped.append(key)
    return dropped


class RemoveEmptySpecs(Transform):
    """Remove the empty groups of an env: Composite specs with no leaf, and the empty TensorDicts they produce.

    Observation, reward, done, action and state specs lose their empty groups (such as an
    ``"info"`` group a wrapper declares but never fills), and every reset and step output
    loses its empty sub-TensorDicts. On the inverse path, the empty groups the base env
    declares as inputs are put back (empty) before it reads the action.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.specs import Composite
        >>> from tdrl.testing import CountingEnv
        >>> base = CountingEnv()
        >>> base.observation_spec["info"] = Composite()
        >>> env = TransformedEnv(base, RemoveEmptySpecs())
        >>> "info" in env.observation_spec.keys(), "info" in env.rollout(2)["next"].keys()
        (False, False)
    """

    def __init__(self) -> None:
        super().__init__(in_keys=[])
        self._empty_inputs: list = []

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for key in _deepest_first(list(tensordict.keys(True))):
            value = tensordict.get(key)
            if isinstance(value, TensorDictBase) and value.is_empty():
                del tensordict[key]
        return tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict)

    def _has_inverse(self) -> bool:
        return bool(self._empty_inputs)

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        keys = set(tensordict.keys(True))
        for key in reversed(_deepest_first(self._empty_inputs)):
            if key not in keys:
                tensordict.create_nested(key)
        return tensordict

    def _rewritten_keys(self) -> set:
        return set()

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        for slot in _OUTPUT_SLOTS:
            _drop_empty(_slot(output_spec, slot))
        return output_spec

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        self._empty_inputs = []
        for slot in _INPUT_SLOTS:
            self._empty_inputs += _drop_empty(_slot(input_spec, slot))
        return input_spec

    def __repr__(self) -> str:
        return "RemoveEmptySpecs()"
