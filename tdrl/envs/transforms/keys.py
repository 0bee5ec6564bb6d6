"""Transforms that reorganize entries: rename, exclude, select, concatenate, unsqueeze.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"a": torch.zeros(2), "b": torch.ones(3)}, [])
    >>> CatTensors(in_keys=["a", "b"], out_key="ab")(td)["ab"]
    tensor([0., 0., 1., 1., 1.])
    >>> RenameTransform(in_keys=["ab"], out_keys=["x"])(td).keys()
    _StringKeys(dict_keys(['x']))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.compose import Compose  # noqa: F401 (doctests)
from tdrl.envs.transforms.transforms import Transform, _key_tuple, _leaf, _slot, _unravel
from tdrl.envs.utils import DONE_KEYS
from tdrl.specs import Bounded, Composite, NestedKey, TensorSpec, Unbounded

__all__ = ["RenameTransform", "ExcludeTransform", "SelectTransform", "CatTensors", "UnsqueezeTransform"]

_SECTIONS = ("full_observation_spec", "full_reward_spec")


def _delete(tensordict: TensorDictBase, key: NestedKey) -> None:
    if tensordict.get(key, None) is not None:
        del tensordict[key]


def _no_done_keys(name: str, keys: list, output_spec: Composite) -> None:
    done = _slot(output_spec, "full_done_spec")
    for key in keys:
        if key in done:
            raise ValueError(
                f"{name}: {key!r} is a done flag; envs need their done flags under their names. "
                f"Fix: leave {key!r} out of the transform's keys."
            )


def _section_of(output_spec: Composite, key: NestedKey) -> Composite | None:
    for slot in _SECTIONS:
        if key in _slot(output_spec, slot):
            return _slot(output_spec, slot)
    return None


class RenameTransform(Transform):
    """Rename entries (``in_keys`` -> ``out_keys``) and, for the inverse, actions.

    Args:
        in_keys: the names the env writes.
        out_keys: the new names.
        in_keys_inv: the base env's input names.
        out_keys_inv: the names the policy writes them under.
        create_copy: keep the old entries too.

    Raises:
        ValueError: when renaming a done flag (at attach time).

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(), RenameTransform(["observation"], ["count"]))
        >>> env.rollout(2)["next", "count"].squeeze(-1)
        tensor([1., 2.])
    """

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey],
        out_keys: NestedKey | Sequence[NestedKey],
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        create_copy: bool = False,
    ) -> None:
        super().__init__(in_keys, out_keys, in_keys_inv, out_keys_inv)
        self.create_copy = create_copy

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            value = tensordict.get(in_key, None)
            if value is not None and in_key != out_key:  # a rename to the same name keeps the entry
                tensordict.set(out_key, value)
                if not self.create_copy:
                    del tensordict[in_key]
        return tensordict

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for in_key, out_key in zip(self.in_keys_inv, self.out_keys_inv):
            value = tensordict.get(out_key, None)
            if value is not None and in_key != out_key:
                tensordict.set(in_key, value)
                if not self.create_copy:
                    del tensordict[out_key]
        return tensordict

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        _no_done_keys("RenameTransform", self.in_keys, output_spec)
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            section = _section_of(output_spec, in_key)
            if section is None:
                continue
            section[out_key] = section[in_key].clone()
            if not self.create_copy and in_key != out_key:
                del section[in_key]
        return output_spec


class ExcludeTransform(Transform):
    """Remove entries from the env's outputs (root and ``"next"``) and from its specs.

    Args:
        *excluded_keys: the entries to drop.

    Raises:
        ValueError: when excluding a done flag (at attach time).

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import NestedKeyMock
        >>> env = TransformedEnv(NestedKeyMock(), ExcludeTransform(("data", "states")))
        >>> env.observation_spec.keys(True, True)
        []
    """

    def __init__(self, *excluded_keys: NestedKey) -> None:
        if len(excluded_keys) == 1 and isinstance(excluded_keys[0], list):
            excluded_keys = tuple(excluded_keys[0])
        super().__init__(list(excluded_keys))

    @property
    def excluded_keys(self) -> list:
        return self.in_keys

    def _rewritten_keys(self) -> set:
        return set()  # drops entries, rewrites none (a dropped carried entry is caught from the specs)

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for key in self.in_keys:
            _delete(tensordict, key)
        return tensordict

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        _no_done_keys("ExcludeTransform", self.in_keys, output_spec)
        for key in self.in_keys:
            section = _section_of(output_spec, key)
            if section is not None:
                del section[key]
        return output_spec

    def __repr__(self) -> str:
        return f"ExcludeTransform(excluded_keys={self.in_keys})"


class SelectTransform(Transform):
    """Keep only the selected observation entries (plus rewards, done flags and inputs).

    Args:
        *selected_keys: the observation entries to keep.
        keep_rewards: keep the reward entries.
        keep_dones: must be True: tdrl envs need their done flags.

    Raises:
        ValueError: with ``keep_dones=False``.

    Examples:
        >>> from tdrl.envs import StepCounter, TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(), Compose(StepCounter(), SelectTransform("step_count")))
        >>> env.observation_spec.keys()
        ['step_count']
    """

    def __init__(self, *selected_keys: NestedKey, keep_rewards: bool = True, keep_dones: bool = True) -> None:
        if not keep_dones:
            raise ValueError("SelectTransform: keep_dones=False is not supported; envs need their done flags.")
        if len(selected_keys) == 1 and isinstance(selected_keys[0], list):
            selected_keys = tuple(selected_keys[0])
        super().__init__(list(selected_keys))
        self.keep_rewards = keep_rewards
        self._drop: list | None = None

    @property
    def selected_keys(self) -> list:
        return self.in_keys

    def _rewritten_keys(self) -> set:
        return set()  # drops entries, rewrites none (a dropped carried entry is caught from the specs)

    def _selected(self, key: NestedKey) -> bool:
        parts = _key_tuple(key)
        for sel in self.in_keys:
            s = _key_tuple(sel)
            if parts[: len(s)] == s or s[: len(parts)] == parts:
                return True
        return False

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._drop is not None:
            for key in self._drop:
                _delete(tensordict, key)
            return tensordict
        keep = {"next", "action", *DONE_KEYS}
        if self.keep_rewards:
            keep.add("reward")
        for key in list(tensordict.keys(True, True)):
            if _key_tuple(key)[0] not in keep and not self._selected(key):
                del tensordict[key]
        return tensordict

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        obs = _slot(output_spec, "full_observation_spec")
        drop = [k for k in obs.keys(True, True) if not self._selected(k)]
        for key in drop:
            del obs[key]
        if not self.keep_rewards:
            rewards = _slot(output_spec, "full_reward_spec")
            drop += rewards.keys(True, True)
            for key in rewards.keys():
                del rewards[key]
        self._drop = drop
        return output_spec

    def __repr__(self) -> str:
        return f"SelectTransform(selected_keys={self.in_keys}, keep_rewards={self.keep_rewards})"


class CatTensors(Transform):
    """Concatenate entries along ``dim`` into one (e.g. several observations into a vector).

    Args:
        in_keys: the entries to concatenate.
        out_key: the new entry.
        dim: the (negative) feature dim to concatenate along.
        del_keys: remove the inputs.
        sort: sort ``in_keys`` (TorchRL's default), so the order does not depend on the caller.

    Raises:
        ValueError: for fewer than one in_key or a non-negative ``dim``; at attach time,
            for entries whose dtypes or shapes (other than ``dim``) differ.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import NestedKeyMock
        >>> env = TransformedEnv(NestedKeyMock(), CatTensors(in_keys=[("data", "states")], out_key="obs"))
        >>> env.observation_spec["obs"].shape
        torch.Size([2])
    """

    def __init__(
        self,
        in_keys: Sequence[NestedKey],
        out_key: NestedKey = "observation_vector",
        dim: int = -1,
        del_keys: bool = True,
        sort: bool = True,
    ) -> None:
        keys = [_unravel(k) for k in ([in_keys] if isinstance(in_keys, (str, tuple)) else in_keys)]
        if not keys:
            raise ValueError("CatTensors: give at least one in_key.")
        if not isinstance(dim, int) or dim >= 0:
            raise ValueError(f"CatTensors: dim must be a negative int (a feature dim), got {dim!r}.")
        if sort:
            keys = sorted(keys, key=lambda k: _key_tuple(k))
        super().__init__(keys)
        self.out_keys = [_unravel(out_key)]
        self.out_key = self.out_keys[0]
        self.dim = dim
        self.del_keys = del_keys

    def _check_key_lengths(self) -> None:
        """One output for all inputs."""

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        values = [tensordict.get(k, None) for k in self.in_keys]
        missing = [k for k, v in zip(self.in_keys, values) if v is None]
        if len(missing) == len(values):
            return tensordict
        if missing:
            raise KeyError(
                f"CatTensors: {missing} missing from the tensordict (keys {sorted(map(str, tensordict.keys(True)))}) "
                f"while the other in_keys are present. Fix: pass in_keys that are written together."
            )
        tensordict.set(self.out_key, torch.cat(values, self.dim))
        if self.del_keys:
            for key in self.in_keys:
                if key != self.out_key:
                    del tensordict[key]
        return tensordict

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        obs = _slot(output_spec, "full_observation_spec")
        missing = [k for k in self.in_keys if k not in obs]
        if missing:
            raise KeyError(
                f"CatTensors: {missing} are not observations of the env (observations: {obs.keys(True, True)}). "
                f"Fix: concatenate observation entries only."
            )
        specs = [_leaf(obs, k) for k in self.in_keys]
        first = specs[0]
        for spec in specs:
            ok = spec.dtype == first.dtype and len(spec.shape) == len(first.shape) and -self.dim <= len(spec.shape)
            if ok:
                a, b = list(spec.shape), list(first.shape)
                a[self.dim] = b[self.dim] = 0
                ok = a == b
            if not ok:
                shown = {str(k): (tuple(s.shape), str(s.dtype)) for k, s in zip(self.in_keys, specs)}
                raise ValueError(
                    f"CatTensors: cannot concatenate {self.in_keys} along dim {self.dim}: their (shape, dtype) are "
                    f"{shown}; all must share the dtype and every dim but {self.dim}. Fix: cast "
                    f"(DTypeCastTransform) or reshape (UnsqueezeTransform) them first."
                )
        bounded = [s for s in specs if isinstance(s, Bounded)]
        out: TensorSpec
        if len(bounded) == len(specs):
            low = torch.cat([s.low for s in bounded], self.dim)
            high = torch.cat([s.high for s in bounded], self.dim)
            out = Bounded(low, high, shape=low.shape, dtype=first.dtype, device=first.device)
        else:
            shape = list(first.shape)
            shape[self.dim] = sum(s.shape[self.dim] for s in specs)
            out = Unbounded(shape=shape, dtype=first.dtype, device=first.device)
        if self.del_keys:
            for key in self.in_keys:
                del obs[key]
        obs[self.out_key] = out
        return output_spec

    def __repr__(self) -> str:
        return f"CatTensors(in_keys={self.in_keys}, out_key={self.out_key!r}, dim={self.dim})"


class UnsqueezeTransform(Transform):
    """Insert a size-1 dim at ``dim`` (negative, counted from the end) in entries; the inverse removes it.

    Args:
        dim: where to insert the dim (a negative int).
        in_keys: the entries.
        out_keys: where to write them (default ``in_keys``).
        in_keys_inv: base-env inputs to squeeze back.
        out_keys_inv: the entries the policy writes.

    Raises:
        ValueError: for a non-negative ``dim``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> UnsqueezeTransform(-1, in_keys=["x"])(TensorDict({"x": torch.zeros(3)}, []))["x"].shape
        torch.Size([3, 1])
    """

    def __init__(
        self,
        dim: int,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        if not isinstance(dim, int) or dim >= 0:
            raise ValueError(
                f"UnsqueezeTransform: dim must be a negative int (counted from the end, so that batch dims do "
                f"not matter), got {dim!r}."
            )
        super().__init__(in_keys, out_keys, in_keys_inv, out_keys_inv)
        self.dim = dim

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return value.unsqueeze(self.dim)

    def _inv_apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return value.squeeze(self.dim)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if -self.dim > len(spec.shape) + 1:
            raise ValueError(
                f"UnsqueezeTransform: dim={self.dim} is out of range for {key!r} of shape {tuple(spec.shape)}."
            )
        return spec.unsqueeze(self.dim)

    _transform_inv_spec = _transform_spec

    def _extra_repr(self) -> str:
        return f"dim={self.dim}"
