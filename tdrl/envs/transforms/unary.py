"""UnaryTransform: apply a user function to entries, with specs read off its output.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> t = UnaryTransform(in_keys=["observation"], out_keys=["obs_sq"], fn=lambda x: x * x)
    >>> t(TensorDict({"observation": torch.tensor([1.0, -2.0])}, []))["obs_sq"]
    tensor([1., 4.])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from tdrl.envs.transforms.transforms import Transform, _leaf, _slot
from tdrl.specs import Composite, NestedKey, TensorSpec, Unbounded

__all__ = ["UnaryTransform"]


def _plain(value: Any, use_raw_nontensor: bool) -> Any:
    """The Python data inside a non-tensor entry (unless the raw entry is asked for); tensors unchanged."""
    if use_raw_nontensor or isinstance(value, torch.Tensor):
        return value
    tolist = getattr(value, "tolist", None)
    if getattr(value, "batch_dims", None) == 0 and hasattr(value, "data"):
        return value.data
    return tolist() if callable(tolist) else value


class UnaryTransform(Transform):
    """Write ``fn(x)`` for each entry ``x`` of ``in_keys`` under the matching ``out_keys``.

    The specs of the outputs are read off ``fn`` applied to a zero value of the input's
    spec: an ``Unbounded`` spec of the output's shape and dtype. On the inverse path,
    ``inv_fn`` (or ``fn`` when it is omitted) maps what the policy writes under
    ``out_keys_inv`` to the base env's ``in_keys_inv``; the policy's spec is, as in
    TorchRL, ``fn`` applied to the base env's input spec.

    ``fn`` must return a tensor with the input's leading (batch) dims: tdrl's specs
    describe tensors. A non-tensor input entry is handed to ``fn`` as Python data
    (``use_raw_nontensor=False``) or as the raw entry.

    Args:
        in_keys: the entries read.
        out_keys: where ``fn``'s results go (one per ``in_key``).
        in_keys_inv: the base env's inputs the inverse writes.
        out_keys_inv: the entries the policy writes, read by the inverse.
        fn: the function, ``Tensor -> Tensor``.
        inv_fn: the inverse path's function (default ``fn``).
        use_raw_nontensor: hand non-tensor entries to ``fn`` as they are.

    Raises:
        TypeError: when ``fn`` (or ``inv_fn``) is not callable, or (when attached) returns
            something other than a tensor.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> t = UnaryTransform(in_keys=["observation"], out_keys=["half"], fn=lambda x: (x / 2).to(torch.float64))
        >>> env = TransformedEnv(CountingEnv(), t)
        >>> env.observation_spec["half"].dtype, env.rollout(2)["next", "half"].squeeze(-1)
        (torch.float64, tensor([0.5000, 1.0000], dtype=torch.float64))
    """

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey],
        out_keys: NestedKey | Sequence[NestedKey],
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        *,
        fn: Callable[[Any], torch.Tensor],
        inv_fn: Callable[[Any], Any] | None = None,
        use_raw_nontensor: bool = False,
    ) -> None:
        for name, f in (("fn", fn), ("inv_fn", inv_fn)):
            if f is not None and not callable(f):
                raise TypeError(f"UnaryTransform: {name} must be callable, got {f!r}.")
        super().__init__(in_keys, out_keys, in_keys_inv, out_keys_inv)
        self._fn = fn
        self._inv_fn = inv_fn
        self._use_raw_nontensor = use_raw_nontensor

    def _apply_transform(self, value: Any) -> Any:
        return self._fn(_plain(value, self._use_raw_nontensor))

    def _inv_apply_transform(self, value: Any) -> Any:
        fn = self._inv_fn if self._inv_fn is not None else self._fn
        return fn(_plain(value, self._use_raw_nontensor))

    def _spec_of_output(self, spec: TensorSpec, key: NestedKey, batch_dims: int) -> TensorSpec:
        out = self._apply_transform(spec.zero())
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"UnaryTransform: fn returned {type(out).__name__} for {key!r}; tdrl's specs describe tensors. "
                "Fix: return a tensor (e.g. torch.as_tensor(...))."
            )
        if tuple(out.shape[:batch_dims]) != tuple(spec.shape[:batch_dims]):
            raise ValueError(
                f"UnaryTransform: fn maps {key!r} of shape {tuple(spec.shape)} to shape {tuple(out.shape)}, which "
                f"changes the env's {batch_dims} batch dim(s). Fix: act on the trailing (feature) dims only."
            )
        return Unbounded(shape=out.shape, dtype=out.dtype, device=spec.device)

    def _map_outputs(self, spec: Composite) -> Composite:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            if in_key in spec.keys(True, True):
                spec[out_key] = self._spec_of_output(_leaf(spec, in_key), in_key, len(spec.shape))
        return spec

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        return self._map_outputs(observation_spec)

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        return self._map_outputs(reward_spec)

    def transform_done_spec(self, done_spec: Composite) -> Composite:
        return self._map_outputs(done_spec)

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        for name in ("full_action_spec", "full_state_spec"):
            slot = _slot(input_spec, name)
            for in_key, out_key in zip(self.in_keys_inv, self.out_keys_inv):
                if in_key in slot.keys(True, True):
                    new = self._spec_of_output(_leaf(slot, in_key), in_key, len(slot.shape))
                    if out_key != in_key:
                        del slot[in_key]
                    slot[out_key] = new
        return input_spec

    def _extra_repr(self) -> str:
        return f"fn={self._fn!r}"
