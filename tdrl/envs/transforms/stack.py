"""Stack: gather entries of the same shape (e.g. one per agent) into one entry along a new dim.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"a": torch.zeros(3), "b": torch.ones(3)}, [])
    >>> out = Stack(in_keys=["a", "b"], out_key="ab", dim=-2)(td)
    >>> sorted(out.keys()), out["ab"].shape
    (['ab'], torch.Size([2, 3]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform, _as_key_list, _key_tuple, _slot, _unravel
from tdrl.specs import Bounded, Composite, NestedKey, TensorSpec

__all__ = ["Stack"]


def _stack_specs(specs: list, pos: int, names: list) -> TensorSpec | Composite:
    """The spec of ``torch.stack(values, pos)`` for values in ``specs`` (``pos`` counted from the start)."""
    first = specs[0]
    if isinstance(first, Composite):
        if not all(isinstance(s, Composite) and set(s.keys()) == set(first.keys()) for s in specs):
            raise ValueError(f"Stack: {names} are groups with different entries; only alike groups stack.")
        shape = list(first.shape)
        shape.insert(pos, len(specs))
        entries = {key: _stack_specs([s[key] for s in specs], pos, names) for key in first.keys()}
        return Composite(entries, shape=shape, device=first.device)
    shape = list(first.shape)
    shape.insert(pos, len(specs))
    if isinstance(first, Bounded) and all(
        isinstance(s, Bounded) and s.shape == first.shape and s.dtype == first.dtype for s in specs
    ):
        low = torch.stack([s.space.low for s in specs], pos)
        high = torch.stack([s.space.high for s in specs], pos)
        return Bounded(low, high, shape=shape, dtype=first.dtype, device=first.device)
    if not all(s == first for s in specs):
        raise ValueError(
            f"Stack: the specs of {names} differ ({[type(s).__name__ for s in specs]}, shapes "
            f"{[tuple(s.shape) for s in specs]}); only entries of one spec (or bounded ones of one shape) stack. "
            "Fix: stack alike entries, or cast/reshape them first."
        )
    n = len(specs)
    offset = pos - len(first.shape) - 1  # the same dim counted from the end, for the bounds' own shapes
    return first._reshaped(torch.Size(shape), lambda t: torch.stack([t] * n, offset))


class Stack(Transform):
    """Stack the entries ``in_keys`` (tensors or TensorDicts of one shape) into ``out_key`` along a new dim ``dim``.

    Useful for multi-agent envs that give each agent its own group (``"agent_0"``,
    ``"agent_1"``, ...): ``Stack(in_keys=["agent_0", "agent_1"], out_key="agents")``
    gives one group with an agent dim, as multi-agent algorithms expect. The specs are
    stacked likewise (observation, reward, done, and the action and state specs, where
    ``in_keys`` name inputs). On the inverse path, ``in_key_inv`` (what the policy
    writes, stacked) is split back into ``out_keys_inv`` (the base env's entries).

    Args:
        in_keys: the entries to stack, all of the same shape and spec.
        out_key: where the stacked entry goes.
        in_key_inv: the stacked entry the inverse splits (default: no inverse).
        out_keys_inv: the entries it writes, one per slice (given with ``in_key_inv``).
        dim: the new dim, negative (counted from the end of each entry; for TensorDicts,
            of their batch dims). Default -1.
        allow_positive_dim: accept a positive ``dim`` (counted from the start).
        del_keys: remove the stacked entries (and groups left empty) from the output.

    Raises:
        ValueError: for a positive ``dim`` without ``allow_positive_dim``; for only one of
            ``in_key_inv``/``out_keys_inv``; for ``out_key`` among ``in_keys``; (when
            attached) for entries whose specs differ.

    Examples:
        >>> from tdrl.envs import Compose, TransformedEnv, UnaryTransform
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(), Compose(
        ...     UnaryTransform(["observation"], ["twice"], fn=lambda x: 2 * x),
        ...     Stack(in_keys=["observation", "twice"], out_key="both", dim=-2),
        ... ))
        >>> env.observation_spec["both"].shape, env.rollout(2)["next", "both"].squeeze(-1)
        (torch.Size([2, 1]), tensor([[1., 2.],
                [2., 4.]]))
    """

    def __init__(
        self,
        in_keys: Sequence[NestedKey],
        out_key: NestedKey,
        in_key_inv: NestedKey | None = None,
        out_keys_inv: Sequence[NestedKey] | None = None,
        dim: int = -1,
        allow_positive_dim: bool = False,
        *,
        del_keys: bool = True,
    ) -> None:
        if dim >= 0 and not allow_positive_dim:
            raise ValueError(
                f"Stack: dim={dim} is a positive dim; dims are counted from the end so that batch dims do not matter. "
                "Fix: pass a negative dim, or allow_positive_dim=True."
            )
        if (in_key_inv is None) != (out_keys_inv is None):
            raise ValueError(
                "Stack: in_key_inv and out_keys_inv go together (the stacked entry the policy writes, and the "
                "entries it is split into). Fix: pass both, or neither."
            )
        super().__init__()
        self.in_keys = _as_key_list(in_keys)
        self.out_keys = [_unravel(out_key)]
        if self.out_keys[0] in self.in_keys:
            raise ValueError(f"Stack: out_key {self.out_keys[0]!r} is among in_keys {self.in_keys}; name a new entry.")
        # kept under TorchRL's meaning: in_key_inv is read (stacked), out_keys_inv written (split)
        self._stacked_inv = _unravel(in_key_inv) if in_key_inv is not None else None
        self._split_inv = _as_key_list(out_keys_inv)
        self.in_keys_inv = [self._stacked_inv] if self._stacked_inv is not None else []
        self.out_keys_inv = list(self._split_inv)
        self.dim = dim
        self._del_keys = del_keys
        parents = {_key_tuple(k)[:-i] for k in self.in_keys for i in range(1, len(_key_tuple(k)))}
        self._parents = sorted(parents, key=len, reverse=True)

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        values = [tensordict.get(key, None) for key in self.in_keys]
        found = [v for v in values if v is not None]
        if not found:
            return tensordict
        if len(found) != len(values):
            missing = [k for k, v in zip(self.in_keys, values) if v is None]
            have = sorted(map(str, tensordict.keys()))
            raise KeyError(f"Stack: {missing} missing where {self.in_keys} are stacked (have {have}).")
        tensordict.set(self.out_keys[0], torch.stack(found, dim=self.dim))
        if self._del_keys:
            self._drop_inputs(tensordict)
        return tensordict

    def _drop_inputs(self, tensordict: TensorDictBase) -> None:
        for key in self.in_keys:
            del tensordict[key]
        for parent in self._parents:
            group = tensordict.get(parent, None)
            if isinstance(group, TensorDictBase) and group.is_empty():
                del tensordict[parent]

    def _has_inverse(self) -> bool:
        return self._stacked_inv is not None

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._stacked_inv is None:
            return tensordict
        stacked = tensordict.get(self._stacked_inv, None)
        if stacked is None:
            return tensordict
        parts = torch.unbind(stacked, dim=self.dim)
        if len(parts) != len(self._split_inv):
            raise ValueError(
                f"Stack: {self._stacked_inv!r} holds {len(parts)} entries along dim {self.dim}, but out_keys_inv "
                f"names {len(self._split_inv)}. Fix: one out_keys_inv entry per slice."
            )
        for key, part in zip(self._split_inv, parts):
            tensordict.set(key, part)
        del tensordict[self._stacked_inv]
        return tensordict

    def _check_spec_keys(self, output_spec: Composite, input_spec: Composite) -> None:
        # in_keys may name outputs or inputs (agents' actions): checked where they are stacked
        return None

    def _stack_slot(self, spec: Composite) -> Composite:
        keys = set(spec.keys(True))
        present = [k for k in self.in_keys if k in keys]
        if not present:
            return spec
        if len(present) != len(self.in_keys):
            missing = [k for k in self.in_keys if k not in keys]
            raise KeyError(f"Stack: {missing} are not where {present} are (keys {sorted(map(str, keys))}).")
        leaves = [spec[k] for k in present]
        first = leaves[0]
        ndim = len(first.shape)
        pos = self.dim + ndim + 1 if self.dim < 0 else self.dim
        spec[self.out_keys[0]] = _stack_specs(leaves, pos, present)
        if self._del_keys:
            for key in present:
                del spec[key]
            for parent in self._parents:
                parent_key = parent[0] if len(parent) == 1 else parent
                if parent_key in spec.keys(True) and len(cast(Composite, spec[parent_key]).keys()) == 0:
                    del spec[parent_key]
        return spec

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        return self._stack_slot(observation_spec)

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        return self._stack_slot(reward_spec)

    def transform_done_spec(self, done_spec: Composite) -> Composite:
        return self._stack_slot(done_spec)

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        self._stack_slot(_slot(input_spec, "full_state_spec"))
        self._stack_slot(_slot(input_spec, "full_action_spec"))
        return input_spec

    def __repr__(self) -> str:
        return f"Stack(in_keys={self.in_keys}, out_key={self.out_keys[0]!r}, dim={self.dim})"
