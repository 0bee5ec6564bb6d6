"""Element-wise observation maps: dtype casts (DoubleToFloat) and clipping.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"observation": torch.zeros(2, dtype=torch.float64)}, [])
    >>> DoubleToFloat()(td)["observation"].dtype
    torch.float32
    >>> ClipTransform(in_keys=["observation"], low=-1.0, high=1.0)(
    ...     TensorDict({"observation": torch.tensor([-3.0, 0.5])}, []))["observation"]
    tensor([-1.0000,  0.5000])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read, td_write
from tdrl.envs.transforms.transforms import Transform, _leaf, _slot
from tdrl.specs import Bounded, Composite, NestedKey, TensorSpec

__all__ = ["DTypeCastTransform", "DoubleToFloat", "ClipTransform"]

# ``value.to(dtype)`` for the floating dtypes, without ``to``'s overload parsing (about 1.5 us of a
# 3.5 us cast of a small tensor): ``Tensor.float()`` & co. are ``to(dtype)`` with the same defaults
_CASTS = {
    torch.float32: torch.Tensor.float,
    torch.float64: torch.Tensor.double,
    torch.float16: torch.Tensor.half,
    torch.bfloat16: torch.Tensor.bfloat16,
}


def _cast_to(value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``value.to(dtype)`` (``value`` itself when it has ``dtype`` already), floating casts by their shortcuts.

    Examples:
        >>> import torch
        >>> _cast_to(torch.ones(2, dtype=torch.float64), torch.float32).dtype
        torch.float32
    """
    cast = _CASTS.get(dtype)
    return cast(value) if cast is not None else value.to(dtype)


class DTypeCastTransform(Transform):
    """Cast entries from ``dtype_in`` to ``dtype_out`` (and actions back, for the inverse).

    With neither ``in_keys`` nor ``in_keys_inv`` given, every observation and reward of
    dtype ``dtype_in`` is cast, and every action or state input of that dtype is exposed
    as ``dtype_out`` and cast back before the base env sees it. Standalone (no env), it
    casts every entry of dtype ``dtype_in`` it finds.

    Args:
        dtype_in: the dtype the base env uses.
        dtype_out: the dtype seen from outside.
        in_keys: the entries to cast (default: all of dtype ``dtype_in``).
        out_keys: where to write them (default ``in_keys``).
        in_keys_inv: base-env inputs cast back to ``dtype_in``.
        out_keys_inv: the entries the policy writes (default ``in_keys_inv``).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> t = DTypeCastTransform(torch.float32, torch.float16, in_keys=["x"])
        >>> t(TensorDict({"x": torch.ones(2)}, []))["x"].dtype
        torch.float16
    """

    def __init__(
        self,
        dtype_in: torch.dtype,
        dtype_out: torch.dtype,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(in_keys, out_keys, in_keys_inv, out_keys_inv)
        self.dtype_in = dtype_in
        self.dtype_out = dtype_out
        self._auto = in_keys is None and in_keys_inv is None
        self._resolved = not self._auto

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return _cast_to(value, self.dtype_out)

    def _inv_apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return _cast_to(value, self.dtype_in)

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._resolved:
            if type(self)._apply_transform is not DTypeCastTransform._apply_transform:
                return super()._call(tensordict)
            dtype = self.dtype_out  # Transform._call with the cast inlined: this runs at every step
            for in_key, out_key in zip(self.in_keys, self.out_keys):
                value = td_read(tensordict, in_key)
                if value is not None:
                    if value.dtype is not dtype:
                        td_write(tensordict, out_key, _cast_to(value, dtype))
                    elif out_key != in_key:  # already in dtype_out (.to would return it as it is)
                        td_write(tensordict, out_key, value)
            return tensordict
        for key in list(tensordict.keys(True, True)):
            value = tensordict.get(key)
            if value.dtype == self.dtype_in:
                tensordict.set(key, value.to(self.dtype_out))
        return tensordict

    def _transform_specs(self, output_spec: Composite, input_spec: Composite) -> tuple[Composite, Composite]:
        if self._auto:
            outputs = [_slot(output_spec, "full_observation_spec"), _slot(output_spec, "full_reward_spec")]
            inputs = [_slot(input_spec, "full_action_spec"), _slot(input_spec, "full_state_spec")]
            self.in_keys = [k for s in outputs for k in s.keys(True, True) if _leaf(s, k).dtype == self.dtype_in]
            self.out_keys = list(self.in_keys)
            self.in_keys_inv = [k for s in inputs for k in s.keys(True, True) if _leaf(s, k).dtype == self.dtype_in]
            self.out_keys_inv = list(self.in_keys_inv)
            self._resolved = True
        return super()._transform_specs(output_spec, input_spec)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        return spec.to(self.dtype_out)

    def _transform_inv_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        return spec.to(self.dtype_out)

    def _rewritten_keys(self) -> set:
        return set()  # a cast keeps the values a stateful transform carries (to the new dtype's precision)

    def _extra_repr(self) -> str:
        return (
            ""
            if self.dtype_in == torch.float64 and self.dtype_out == torch.float32
            else (f"dtype_in={self.dtype_in}, dtype_out={self.dtype_out}")
        )


class DoubleToFloat(DTypeCastTransform):
    """Cast float64 entries to float32 (and float32 actions back to float64 for the base env).

    Args:
        in_keys: the entries to cast (default: every float64 observation and reward).
        out_keys: where to write them (default ``in_keys``).
        in_keys_inv: base-env inputs to cast back (default with no keys: every float64 action).
        out_keys_inv: the entries the policy writes.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.envs.libs.gym import GymEnv
        >>> env = TransformedEnv(GymEnv("InvertedDoublePendulum-v4"), DoubleToFloat())
        >>> env.observation_spec["observation"].dtype
        torch.float32
    """

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(torch.float64, torch.float32, in_keys, out_keys, in_keys_inv, out_keys_inv)


def _bound(value: float | torch.Tensor | None, default: float) -> torch.Tensor:
    return torch.as_tensor(default if value is None else value, dtype=torch.float64)


class ClipTransform(Transform):
    """Clamp entries into ``[low, high]`` (either bound may be omitted).

    Args:
        in_keys: the entries to clip.
        out_keys: where to write them (default ``in_keys``).
        in_keys_inv: base-env inputs to clip (e.g. ``["action"]``).
        out_keys_inv: the entries the policy writes.
        low: the lower bound (a number or a tensor broadcastable to the entry).
        high: the upper bound.

    Raises:
        ValueError: when both bounds are missing or ``low > high``.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(max_steps=9), ClipTransform(in_keys=["observation"], high=2.0))
        >>> env.rollout(4)["next", "observation"].squeeze(-1)
        tensor([1., 2., 2., 2.])
    """

    # buffers (registered in __init__)
    _low: torch.Tensor
    _high: torch.Tensor

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        low: float | torch.Tensor | None = None,
        high: float | torch.Tensor | None = None,
    ) -> None:
        super().__init__(in_keys, out_keys, in_keys_inv, out_keys_inv)
        if low is None and high is None:
            raise ValueError("ClipTransform: give low, high or both.")
        lo, hi = _bound(low, float("-inf")), _bound(high, float("inf"))
        if (lo > hi).any():
            raise ValueError(f"ClipTransform: low must be <= high, got low={lo.tolist()} high={hi.tolist()}.")
        self.low, self.high = low, high
        self.register_buffer("_low", lo)
        self.register_buffer("_high", hi)

    def _clip(self, value: torch.Tensor) -> torch.Tensor:
        low = None if self.low is None else self._low.to(value.dtype)
        high = None if self.high is None else self._high.to(value.dtype)
        return value.clamp(low, high)

    _apply_transform = _clip
    _inv_apply_transform = _clip

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if not spec.dtype.is_floating_point:
            raise TypeError(
                f"ClipTransform: {key!r} has dtype {spec.dtype}; clipping works on floating-point entries. "
                f"Fix: cast it first or clip another key."
            )
        low, high = self._low.to(spec.dtype), self._high.to(spec.dtype)
        if isinstance(spec, Bounded):
            low = torch.maximum(low, spec.low)
            high = torch.minimum(high, spec.high)
            if (low > high).any():
                raise ValueError(
                    f"ClipTransform: [{self.low}, {self.high}] does not intersect {key!r}'s bounds "
                    f"{spec}. Fix: choose bounds inside the entry's domain."
                )
        return Bounded(
            low.expand(spec.shape), high.expand(spec.shape), shape=spec.shape, dtype=spec.dtype, device=spec.device
        )

    _transform_inv_spec = _transform_spec

    def _extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"
