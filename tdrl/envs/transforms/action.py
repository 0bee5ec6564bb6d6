"""Action maps: ActionScaling, an affine map from the policy's action to the base env's.

Examples:
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.envs.libs.gym import GymEnv
    >>> env = TransformedEnv(GymEnv("Pendulum-v1"), ActionScaling(low=-1.0, high=1.0))
    >>> env.action_spec.space.high, env.base_env.action_spec.space.high
    (tensor([1.]), tensor([2.]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform
from tdrl.specs import Bounded, Composite, NestedKey, TensorSpec, Unbounded

__all__ = ["ActionScaling"]


class ActionScaling(Transform):
    """The base env receives ``loc + scale * action`` for the action the policy writes.

    When the base action is a bounded box, the result is clamped into it: in floating point
    the map can put the ends of the policy's box a rounding error outside the base box.

    Two ways to set the map:

    - ``ActionScaling(low=-1.0, high=1.0)`` (the default): the policy acts in the box
      ``[low, high]``, mapped onto the base env's bounded action box;
    - ``ActionScaling(loc=..., scale=...)``: a fixed affine map; the policy's action
      spec is the base spec mapped back (bounds included).

    Args:
        loc: the shift of the fixed map.
        scale: the scale of the fixed map (non-zero).
        low: the lower bound of the policy's action box.
        high: the upper bound of the policy's action box.
        in_keys_inv: the base env's actions (default ``["action"]``).
        out_keys_inv: the actions the policy writes (default ``in_keys_inv``).

    Raises:
        ValueError: when both forms are mixed, ``scale`` is 0, ``low >= high``, or (at
            attach time) the base action is not a bounded floating-point box.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> t = ActionScaling(loc=1.0, scale=2.0)
        >>> t.inv(TensorDict({"action": torch.tensor([0.5])}, []))["action"]
        tensor([2.])
    """

    # buffers (registered in __init__): the fixed map, None when the map is fitted to a box
    loc: torch.Tensor | None
    scale: torch.Tensor | None

    def __init__(
        self,
        loc: float | torch.Tensor | None = None,
        scale: float | torch.Tensor | None = None,
        low: float | None = None,
        high: float | None = None,
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__(None, None, ["action"] if in_keys_inv is None else in_keys_inv, out_keys_inv)
        affine = loc is not None or scale is not None
        box = low is not None or high is not None
        if affine and box:
            raise ValueError("ActionScaling: give either loc/scale (a fixed map) or low/high (a target box), not both.")
        self.box = None
        self._maps: dict = {}
        self._bounds: dict = {}  # key -> (low, high) of a bounded base action, to clamp the map's result into
        self._batch_dims = 0
        if affine:
            loc_t = torch.as_tensor(0.0 if loc is None else loc, dtype=torch.get_default_dtype())
            scale_t = torch.as_tensor(1.0 if scale is None else scale, dtype=torch.get_default_dtype())
            if (scale_t == 0).any():
                raise ValueError(f"ActionScaling: scale must be non-zero, got {scale_t.tolist()}.")
            self.register_buffer("loc", loc_t)
            self.register_buffer("scale", scale_t)
        else:
            low = -1.0 if low is None else float(low)
            high = 1.0 if high is None else float(high)
            if not low < high:
                raise ValueError(f"ActionScaling: low ({low}) must be < high ({high}).")
            self.box = (low, high)
            self.register_buffer("loc", None)
            self.register_buffer("scale", None)

    def _map_for(self, key: NestedKey) -> tuple[torch.Tensor, torch.Tensor]:
        if self.box is None:  # a fixed map: loc and scale are tensors
            return cast(torch.Tensor, self.loc), cast(torch.Tensor, self.scale)
        if key not in self._maps:
            raise RuntimeError(
                f"ActionScaling(low={self.box[0]}, high={self.box[1]}): the map for {key!r} is fitted to the base "
                f"env's action bounds when the transform is attached to an env. Fix: use it inside a "
                f"TransformedEnv, or pass loc= and scale=."
            )
        return self._maps[key]

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        for in_key, out_key in zip(self.in_keys_inv, self.out_keys_inv):
            action = tensordict.get(out_key, None)
            if action is not None:
                loc, scale = self._map_for(in_key)
                base = torch.addcmul(loc.to(action.dtype), action, scale.to(action.dtype))
                bounds = self._bounds.get(in_key)
                if bounds is not None:
                    base = base.clamp_(bounds[0].to(base.dtype), bounds[1].to(base.dtype))
                tensordict.set(in_key, base)
        return tensordict

    def transform_action_spec(self, action_spec: Composite) -> Composite:
        self._batch_dims = len(action_spec.shape)
        return super().transform_action_spec(action_spec)

    def _per_env(self, bound: torch.Tensor) -> torch.Tensor:
        """A bound without its batch dims when every sub-env shares it (so the map fits any batch)."""
        if not self._batch_dims:
            return bound
        flat = bound.reshape(-1, *bound.shape[self._batch_dims :])
        return flat[0] if bool((flat == flat[0]).all()) else bound

    def _transform_inv_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if isinstance(spec, Bounded):
            self._bounds[key] = (self._per_env(spec.low), self._per_env(spec.high))
        else:
            self._bounds.pop(key, None)
        if not spec.dtype.is_floating_point:
            raise ValueError(
                f"ActionScaling: action {key!r} has dtype {spec.dtype}; an affine map needs continuous actions. "
                f"Fix: remove ActionScaling for discrete actions."
            )
        if self.box is not None:
            if not isinstance(spec, Bounded) or not (
                torch.isfinite(spec.low).all() and torch.isfinite(spec.high).all()
            ):
                raise ValueError(
                    f"ActionScaling(low, high): the base env's action {key!r} must be a bounded box, got {spec}. "
                    f"Fix: use ActionScaling(loc=..., scale=...) for unbounded actions."
                )
            low, high = self.box
            base_low, base_high = self._per_env(spec.low), self._per_env(spec.high)
            scale = (base_high - base_low) / (high - low)
            loc = base_low - low * scale
            self._maps[key] = (loc, scale)
            return Bounded(low, high, shape=spec.shape, dtype=spec.dtype, device=spec.device)
        if isinstance(spec, Bounded):
            loc, scale = self._map_for(key)  # no box here: the fixed map
            loc, scale = loc.to(spec.dtype), scale.to(spec.dtype)
            a, b = (spec.low - loc) / scale, (spec.high - loc) / scale
            return Bounded(
                torch.minimum(a, b), torch.maximum(a, b), shape=spec.shape, dtype=spec.dtype, device=spec.device
            )
        return Unbounded(shape=spec.shape, dtype=spec.dtype, device=spec.device)

    def _extra_repr(self) -> str:
        if self.box is not None:
            return f"low={self.box[0]}, high={self.box[1]}"
        loc, scale = cast(torch.Tensor, self.loc), cast(torch.Tensor, self.scale)  # no box: a fixed map
        return f"loc={loc.tolist()}, scale={scale.tolist()}"
