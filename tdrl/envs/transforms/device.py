"""DeviceCastTransform: move an env's data (all of it, or chosen entries) to another device.

Without keys, the whole env moves: what it returns lives on ``device``, its specs and
``env.device`` say so, and what the policy writes is moved back to the base env's device
before the base env reads it. With ``in_keys`` / ``in_keys_inv``, only those entries move
(observations out, actions back in), and the specs holding them no longer claim one device.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> t = DeviceCastTransform("meta", in_keys=["x"])
    >>> t(TensorDict({"x": torch.ones(2), "y": torch.ones(2)}, [2]))["x"].device
    device(type='meta')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform
from tdrl.specs import Composite, NestedKey, TensorSpec

__all__ = ["DeviceCastTransform"]


def _ordinal(device: torch.device | str | int) -> torch.device:
    """``device`` with an index for accelerators (``"cuda"`` -> ``cuda:0``), so comparisons are exact."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _to(data: Any, device: torch.device) -> Any:
    """``data`` (a tensor or a TensorDict) on ``device``.

    A copy to an accelerator is queued on its stream (``non_blocking``), which orders it
    before the kernels that read it; a copy back to the CPU waits for its data, so the CPU
    never reads a buffer the device is still writing.
    """
    return data.to(device, non_blocking=device.type != "cpu")


def _without_device(spec: Composite) -> Composite:
    """A copy of ``spec`` that states no device of its own (its entries may live on several)."""
    return Composite({key: spec[key] for key in spec.keys()}, shape=spec.shape, device=None)


class DeviceCastTransform(Transform):
    """Move entries, or the whole env, to ``device``; the inverse path moves actions back.

    Args:
        device: the device seen from outside the env (or the replay buffer).
        orig_device: the device inside; by default the device of the env the transform
            is attached to (None when standalone: the inverse then leaves data where it is).

    Keyword Args:
        in_keys: the entries to move; with neither ``in_keys`` nor ``in_keys_inv`` every
            entry moves and ``env.device`` becomes ``device``.
        out_keys: where to write the moved entries (default ``in_keys``; a different name
            keeps the original entry too).
        in_keys_inv: the base env's inputs, moved back to its device.
        out_keys_inv: the entries the policy writes (default ``in_keys_inv``).

    Examples:
        >>> import torch
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> device = "cuda" if torch.cuda.is_available() else "cpu"
        >>> env = TransformedEnv(CountingEnv(), DeviceCastTransform(device))
        >>> env.device.type == env.observation_spec["observation"].device.type == device
        True
        >>> env.rollout(3)["next", "observation"].device.type == device
        True
    """

    def __init__(
        self,
        device: torch.device | str | int,
        orig_device: torch.device | str | int | None = None,
        *,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(in_keys, out_keys, in_keys_inv, out_keys_inv)
        self.device = _ordinal(device)
        self._given_orig = None if orig_device is None else torch.device(orig_device)
        self._parent_device: torch.device | None = None  # the attached env's device, learnt from the chain
        self._map_env_device = not self.in_keys and not self.in_keys_inv

    @property
    def orig_device(self) -> torch.device | None:
        """The device inside (``orig_device`` if given, else the attached env's; None when standalone)."""
        return self._given_orig if self._given_orig is not None else self._parent_device

    # --- the env seen from outside ------------------------------------------------------
    def transform_env_device(self, device: torch.device) -> torch.device:
        self._parent_device = torch.device(device)
        return self.device if self._map_env_device else device

    def _reset_env_preprocess(self, tensordict: TensorDictBase | None) -> TensorDictBase | None:
        """The reset's input, moved to the base env's device (it may hold ``"_reset"`` or a state)."""
        if tensordict is None or not self._has_inverse():
            return tensordict
        return self._inv_call(tensordict.copy())

    # --- data -------------------------------------------------------------------------------
    def _move(self, value: torch.Tensor) -> torch.Tensor:
        return _to(value, self.device)

    _apply_transform = _move

    def _inv_apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        orig = self.orig_device
        return value if orig is None else _to(value, orig)

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._map_env_device:
            return _to(tensordict, self.device)
        return super()._call(tensordict)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Move the selected entries (or the whole tensordict) to ``device``; returns the moved tensordict."""
        if self._map_env_device:
            return _to(tensordict, self.device)
        return super().forward(tensordict)

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._map_env_device:
            orig = self.orig_device
            return tensordict if orig is None else _to(tensordict, orig)
        return super()._inv_call(tensordict)

    def _has_inverse(self) -> bool:
        return self._map_env_device or bool(self.in_keys_inv)

    # --- specs ------------------------------------------------------------------------------
    def transform_output_spec(self, output_spec: Composite) -> Composite:
        if self._map_env_device:
            return output_spec.to(self.device)
        return super().transform_output_spec(output_spec)

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        if self._map_env_device:
            return input_spec.to(self.device)
        return super().transform_input_spec(input_spec)

    def transform_done_spec(self, done_spec: Composite) -> Composite:
        return self._map_spec(done_spec)

    def _map_spec(self, spec: Composite) -> Composite:
        if any(key in spec for key in self.in_keys):
            spec = _without_device(spec)
        return super()._map_spec(spec)

    def _map_inv_spec(self, spec: Composite) -> Composite:
        if any(key in spec for key in self.in_keys_inv):
            spec = _without_device(spec)
        return super()._map_inv_spec(spec)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        return spec.to(self.device)

    _transform_inv_spec = _transform_spec

    def _extra_repr(self) -> str:
        return f"device={self.device}, orig_device={self.orig_device}"
