"""Transforms that rearrange the feature dims of entries: PermuteTransform, SqueezeTransform, FlattenObservation,
FlattenAction.

They act on the dims after the env's batch dims (counted from the end, so the same
transform works on a single env, a batched env and a stacked rollout) and reshape the
specs to match, bounds included. ``PermuteTransform`` and ``SqueezeTransform`` also map
actions back (``in_keys_inv``): the policy writes the rearranged shape, the base env
receives its own.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> td = TensorDict({"pixels": torch.zeros(2, 4, 5, 3)}, [2])
    >>> PermuteTransform([-1, -3, -2], in_keys=["pixels"])(td)["pixels"].shape
    torch.Size([2, 3, 4, 5])
    >>> FlattenObservation(-3, -1, in_keys=["pixels"])(td)["pixels"].shape
    torch.Size([2, 60])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.transforms import Transform, _leaf, _slot, _unravel
from tdrl.specs import Composite, NestedKey, TensorSpec

__all__ = ["PermuteTransform", "SqueezeTransform", "FlattenObservation", "FlattenAction"]

_POSITIVE_DIM = (
    "{name}: {what}={dim} is a positive dim; dims are counted from the end so that batch dims do not matter. "
    "Fix: pass a negative dim, or allow_positive_dim=True to count it after the env's batch dims."
)


def _reshape_leaf(spec: TensorSpec, fn: Callable[[torch.Tensor], torch.Tensor]) -> TensorSpec:
    """``spec`` with ``fn`` applied to its shape (and to its bounds, for a bounded spec)."""
    shape = fn(torch.empty(spec.shape, device="meta")).shape
    return spec._reshaped(shape, fn)


def _batch_dims_of(spec: Composite) -> int:
    return len(spec.shape)


class PermuteTransform(Transform):
    """Reorder the trailing dims of entries (e.g. ``[H, W, C]`` pixels to ``[C, H, W]``).

    ``dims`` lists, for each trailing dim of the output, the input dim it comes from; the
    dims before them (batch and leading features) stay where they are. The inverse path
    applies the reverse order to the entries the policy writes (``out_keys_inv``) before
    the base env reads them (``in_keys_inv``).

    Args:
        dims: a reordering of ``[-len(dims), ..., -1]``, e.g. ``[-1, -3, -2]``.
        in_keys: the entries to permute.
        out_keys: where to write them (default ``in_keys``).
        in_keys_inv: the base env's inputs, written with the reverse order.
        out_keys_inv: the entries the policy writes (default ``in_keys_inv``).

    Raises:
        ValueError: when ``dims`` is not a reordering of the last ``len(dims)`` dims
            (at construction), or an entry has fewer dims (when attached).

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing.transform_contract import TransformTestEnv
        >>> env = TransformedEnv(TransformTestEnv(pixels=(4, 5)), PermuteTransform([-1, -3, -2], in_keys=["pixels"]))
        >>> env.observation_spec["pixels"].shape, env.rollout(2)["next", "pixels"].shape
        (torch.Size([3, 4, 5]), torch.Size([2, 3, 4, 5]))
    """

    def __init__(
        self,
        dims: Sequence[int],
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        dims = [int(d) for d in dims]
        if sorted(dims) != list(range(-len(dims), 0)):
            raise ValueError(
                f"PermuteTransform: dims must reorder the trailing dims [-{len(dims)}, ..., -1] with negative "
                f"indices, got {dims}. Fix: e.g. dims=[-1, -3, -2] moves the last dim of [H, W, C] first."
            )
        super().__init__(in_keys, out_keys, in_keys_inv, out_keys_inv)
        self.dims = dims
        n = len(dims)
        # the reverse order: output position j holds input dim dims[j], so input dim dims[j] comes back from j
        inverse = [0] * n
        for j, d in enumerate(dims):
            inverse[d + n] = j - n
        self._inverse_dims = inverse

    @staticmethod
    def _permute(value: torch.Tensor, dims: list) -> torch.Tensor:
        lead = value.ndim - len(dims)
        return value.permute(*range(lead), *(lead + len(dims) + d for d in dims))

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return self._permute(value, self.dims)

    def _inv_apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return self._permute(value, self._inverse_dims)

    def _check_rank(self, spec: TensorSpec, key: NestedKey, batch_dims: int) -> None:
        if len(spec.shape) - batch_dims < len(self.dims):
            raise ValueError(
                f"PermuteTransform: {key!r} has feature shape {tuple(spec.shape[batch_dims:])}, fewer dims than "
                f"dims={self.dims} reorders. Fix: pass dims for its last {len(spec.shape) - batch_dims} dims."
            )

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        for in_key in self.in_keys:
            if in_key in observation_spec:
                self._check_rank(_leaf(observation_spec, in_key), in_key, _batch_dims_of(observation_spec))
        return self._map_spec(observation_spec)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        return _reshape_leaf(spec, self._apply_transform)

    def _transform_inv_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        # the policy writes x with inv(x) in the base spec: x is the base spec permuted forward
        return _reshape_leaf(spec, self._apply_transform)

    def _extra_repr(self) -> str:
        return f"dims={self.dims}"


class SqueezeTransform(Transform):
    """Remove a size-1 dim of entries; the inverse path puts it back on actions.

    Args:
        dim: the dim to remove, negative (counted from the end). A positive ``dim`` needs
            ``allow_positive_dim=True`` and is counted after the env's batch dims.
        allow_positive_dim: accept a positive ``dim``.
        in_keys: the entries to squeeze.
        out_keys: where to write them (default ``in_keys``).
        in_keys_inv: the base env's inputs (the dim is put back before it reads them).
        out_keys_inv: the entries the policy writes (default ``in_keys_inv``).
        **kwargs: ``squeeze_dim`` is accepted in place of ``dim`` (TorchRL's older name).

    Raises:
        TypeError: when no dim is given.
        ValueError: for a positive ``dim`` without ``allow_positive_dim``, or (when
            attached) an entry whose dim ``dim`` is not of size 1.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(), SqueezeTransform(-1, in_keys=["observation"]))
        >>> env.observation_spec["observation"].shape, env.rollout(3)["next", "observation"]
        (torch.Size([]), tensor([1., 2., 3.]))
    """

    def __init__(
        self,
        dim: int | None = None,
        *,
        allow_positive_dim: bool = False,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        **kwargs: Any,
    ) -> None:
        if dim is None and "squeeze_dim" in kwargs:
            warnings.warn(
                "SqueezeTransform: squeeze_dim is TorchRL's older name; pass dim.", DeprecationWarning, stacklevel=2
            )
            dim = kwargs.pop("squeeze_dim")
        if kwargs:
            raise TypeError(f"SqueezeTransform got unexpected arguments {sorted(kwargs)}.")
        if dim is None:
            raise TypeError("SqueezeTransform needs dim, the dim to remove (e.g. SqueezeTransform(-1, in_keys=[...])).")
        if not isinstance(dim, int):
            raise TypeError(f"SqueezeTransform: dim must be an int, got {dim!r}.")
        if dim >= 0 and not allow_positive_dim:
            raise ValueError(_POSITIVE_DIM.format(name="SqueezeTransform", what="dim", dim=dim))
        super().__init__(in_keys, out_keys, in_keys_inv, out_keys_inv)
        self.allow_positive_dim = allow_positive_dim
        self._dim = dim
        self._batch_dims: int | None = None  # known once attached: a positive dim counts after them

    @property
    def dim(self) -> int:
        """The dim removed (``dim`` itself, or a positive one shifted past the env's batch dims)."""
        if self._dim >= 0 and self._batch_dims is not None:
            return self._batch_dims + self._dim
        return self._dim

    squeeze_dim = dim

    # a positive dim counts after the batch dims of the data at hand (a step's, or a whole rollout's)
    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._dim >= 0:
            self._batch_dims = tensordict.batch_dims
        return super()._call(tensordict)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._dim >= 0:
            self._batch_dims = tensordict.batch_dims
        return super().forward(tensordict)

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._dim >= 0:
            self._batch_dims = tensordict.batch_dims
        return super()._inv_call(tensordict)

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return value.squeeze(self.dim)

    def _inv_apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return value.unsqueeze(self.dim)

    def _size_one(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        shape = spec.shape
        dim = self.dim
        if not -len(shape) <= dim < len(shape) or shape[dim] != 1:
            raise ValueError(
                f"SqueezeTransform: {key!r} has shape {tuple(shape)}; dim {dim} is not a dim of size 1. "
                f"Fix: pass the dim of size 1 to remove (e.g. -1 for shape [..., 1])."
            )
        return spec.squeeze(dim)

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        self._batch_dims = len(output_spec.shape)
        return super().transform_output_spec(output_spec)

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        self._batch_dims = len(input_spec.shape)
        return super().transform_input_spec(input_spec)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        return self._size_one(spec, key)

    _transform_inv_spec = _transform_spec

    def _extra_repr(self) -> str:
        return f"dim={self.dim}"


class _MergedDims:
    """``first_dim``/``last_dim`` of a flattening transform: positive dims count past the env's batch dims."""

    _first_dim: int
    _last_dim: int
    _batch_dims: int | None

    def _resolve(self, dim: int) -> int:
        if dim >= 0 and self._batch_dims is not None:
            return self._batch_dims + dim
        return dim

    @property
    def first_dim(self) -> int:
        """The first merged dim (a positive one shifted past the env's batch dims)."""
        return self._resolve(self._first_dim)

    @property
    def last_dim(self) -> int:
        """The last merged dim (a positive one shifted past the env's batch dims)."""
        return self._resolve(self._last_dim)


class FlattenObservation(_MergedDims, Transform):
    """Merge the dims ``first_dim`` to ``last_dim`` (included) of entries into one.

    Args:
        first_dim: the first dim to merge, negative (counted from the end). Positive dims
            need ``allow_positive_dim=True`` and count after the env's batch dims.
        last_dim: the last dim to merge, negative likewise.
        in_keys: the entries (default ``["pixels"]``).
        out_keys: where to write them (default ``in_keys``).
        allow_positive_dim: accept positive dims.

    Raises:
        ValueError: for a positive dim without ``allow_positive_dim``.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing.transform_contract import TransformTestEnv
        >>> env = TransformedEnv(TransformTestEnv(pixels=(4, 5)), FlattenObservation(-3, -1))
        >>> env.observation_spec["pixels"].shape
        torch.Size([60])
    """

    def __init__(
        self,
        first_dim: int,
        last_dim: int,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        allow_positive_dim: bool = False,
    ) -> None:
        for what, dim in (("first_dim", first_dim), ("last_dim", last_dim)):
            if not isinstance(dim, int):
                raise TypeError(f"FlattenObservation: {what} must be an int, got {dim!r}.")
            if dim >= 0 and not allow_positive_dim:
                raise ValueError(_POSITIVE_DIM.format(name="FlattenObservation", what=what, dim=dim))
        super().__init__(["pixels"] if in_keys is None else in_keys, out_keys)
        self.allow_positive_dim = allow_positive_dim
        self._first_dim = first_dim
        self._last_dim = last_dim
        self._batch_dims: int | None = None

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return torch.flatten(value, self.first_dim, self.last_dim)

    # positive dims count after the batch dims of the data at hand (a step's, or a whole rollout's)
    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._first_dim >= 0 or self._last_dim >= 0:
            self._batch_dims = tensordict.batch_dims
        return super()._call(tensordict)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._first_dim >= 0 or self._last_dim >= 0:
            self._batch_dims = tensordict.batch_dims
        return super().forward(tensordict)

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        self._batch_dims = len(output_spec.shape)
        return super().transform_output_spec(output_spec)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        try:
            return _reshape_leaf(spec, self._apply_transform)
        except (IndexError, RuntimeError) as err:
            raise ValueError(
                f"FlattenObservation: cannot flatten dims {self.first_dim}..{self.last_dim} of {key!r} "
                f"(shape {tuple(spec.shape)}): {err}. Fix: pass dims inside the entry's feature dims."
            ) from None

    def _extra_repr(self) -> str:
        return f"first_dim={self.first_dim}, last_dim={self.last_dim}"


class FlattenAction(_MergedDims, Transform):
    """Let the policy write a flat action: merge the action dims ``first_dim`` to ``last_dim`` into one.

    The action spec the policy sees is flattened (bounds included); on the inverse path
    the flat action is unflattened to the base env's shape before the base env reads it.
    Called on data (a stored rollout, a replay buffer), ``in_keys`` are flattened, so
    stored base-env actions take the policy's shape.

    Args:
        first_dim: the first action dim to merge, negative (counted from the end), default -2.
        last_dim: the last action dim to merge (included), negative, default -1.
        in_keys_inv: the base env's actions (default ``["action"]``).
        out_keys_inv: the flat actions the policy writes (default ``in_keys_inv``).
        in_keys: the entries flattened when called on data (default ``in_keys_inv``).
        out_keys: where those go (default ``in_keys``).
        allow_positive_dim: accept positive dims (counted after the env's batch dims).
        action_shape: the shape of the merged dims, for use without an env (e.g. only in a
            replay buffer); when attached, it is read from the base env's action spec.

    Raises:
        ValueError: for a positive dim without ``allow_positive_dim``, ``first_dim > last_dim``,
            or (when attached) dims outside the action's feature dims.
        RuntimeError: on the inverse path, when the unflattened shape is unknown.

    Examples:
        >>> from tdrl.envs import TransformedEnv, UnsqueezeTransform
        >>> from tdrl.testing.transform_contract import TransformTestEnv
        >>> base = TransformedEnv(TransformTestEnv(), UnsqueezeTransform(-2, in_keys_inv=["action"]))
        >>> base.action_spec.shape
        torch.Size([1, 2])
        >>> env = TransformedEnv(base, FlattenAction(-2, -1))
        >>> env.action_spec.shape, env.rollout(3, break_when_any_done=False)["action"].shape
        (torch.Size([2]), torch.Size([3, 2]))
    """

    def __init__(
        self,
        first_dim: int = -2,
        last_dim: int = -1,
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        allow_positive_dim: bool = False,
        *,
        action_shape: Sequence[int] | None = None,
    ) -> None:
        for what, dim in (("first_dim", first_dim), ("last_dim", last_dim)):
            if not isinstance(dim, int):
                raise TypeError(f"FlattenAction: {what} must be an int, got {dim!r}.")
            if dim >= 0 and not allow_positive_dim:
                raise ValueError(_POSITIVE_DIM.format(name="FlattenAction", what=what, dim=dim))
        if (first_dim >= 0) == (last_dim >= 0) and first_dim > last_dim:
            raise ValueError(
                f"FlattenAction: first_dim ({first_dim}) must be <= last_dim ({last_dim}). Fix: swap them."
            )
        inv = ["action"] if in_keys_inv is None else in_keys_inv
        super().__init__(in_keys if in_keys is not None else inv, out_keys, inv, out_keys_inv)
        self.allow_positive_dim = allow_positive_dim
        self._first_dim, self._last_dim = first_dim, last_dim
        self._batch_dims: int | None = None
        self._unflatten_shapes: dict = {}
        if action_shape is not None:
            span = tuple(int(n) for n in action_shape)
            self._unflatten_shapes = dict.fromkeys(self.in_keys_inv, span)

    @property
    def _flat_dim(self) -> int:
        # where the merged dim sits once flattened: counted from the start for positive dims, from the end otherwise
        return self.first_dim if self._first_dim >= 0 else self.last_dim

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return torch.flatten(value, self.first_dim, self.last_dim)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._first_dim >= 0 or self._last_dim >= 0:
            self._batch_dims = tensordict.batch_dims
        return super().forward(tensordict)

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._first_dim >= 0 or self._last_dim >= 0:
            self._batch_dims = tensordict.batch_dims
        for in_key, out_key in zip(self.in_keys_inv, self.out_keys_inv):
            value = tensordict.get(out_key, None)
            if value is None:
                continue
            span = self._unflatten_shapes.get(in_key)
            if span is None:
                raise RuntimeError(
                    f"FlattenAction: the shape to unflatten {out_key!r} into is unknown. Fix: attach the "
                    "transform to an env (it reads the base env's action spec) or pass action_shape=[...]."
                )
            tensordict.set(in_key, torch.unflatten(value, self._flat_dim, span))
        return tensordict

    def _check_spec_keys(self, output_spec: Composite, input_spec: Composite) -> None:
        # in_keys name actions (flattened when the transform is called on stored data), not outputs of the env
        saved, self.in_keys = self.in_keys, []
        try:
            super()._check_spec_keys(output_spec, input_spec)
        finally:
            self.in_keys = saved

    def _span(self, spec: TensorSpec, key: NestedKey) -> tuple:
        ndim, batch = len(spec.shape), self._batch_dims or 0
        first = self.first_dim if self.first_dim >= 0 else ndim + self.first_dim
        last = self.last_dim if self.last_dim >= 0 else ndim + self.last_dim
        if first < batch or last >= ndim or first > last:
            raise ValueError(
                f"FlattenAction: dims {self.first_dim}..{self.last_dim} are not feature dims of {key!r} "
                f"(shape {tuple(spec.shape)}, {batch} batch dims). Fix: pass dims inside the action's own dims."
            )
        return tuple(int(n) for n in spec.shape[first : last + 1])

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        self._batch_dims = len(input_spec.shape)
        actions = _slot(input_spec, "full_action_spec")
        for in_key, out_key in zip(self.in_keys_inv, self.out_keys_inv):
            in_key = _unravel(in_key)
            if in_key not in actions.keys(True, True):
                continue
            spec = _leaf(actions, in_key)
            self._unflatten_shapes[in_key] = self._span(spec, in_key)
            flat = _reshape_leaf(spec, self._apply_transform)
            if out_key != in_key:
                del actions[in_key]
            actions[out_key] = flat
        return input_spec

    def _extra_repr(self) -> str:
        return f"first_dim={self.first_dim}, last_dim={self.last_dim}"
