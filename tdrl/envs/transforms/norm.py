"""Normalization: ObservationNorm (fixed affine map) and VecNorm (running statistics).

Examples:
    >>> import torch
    >>> from tdrl.envs import ObservationNorm, TransformedEnv, VecNorm
    >>> from tdrl.testing import ContinuousActionMock
    >>> env = TransformedEnv(ContinuousActionMock(obs_dim=3), ObservationNorm(in_keys=["observation"]))
    >>> env.transform.init_stats(num_iter=200, reduce_dim=0, cat_dim=0)
    >>> env.transform.loc.shape
    torch.Size([3])
    >>> vn = VecNorm(in_keys=["observation"], decay=0.99)
    >>> env = TransformedEnv(ContinuousActionMock(obs_dim=3), vn)
    >>> ro = env.rollout(50, break_when_any_done=False)
    >>> int(vn.frozen), ro["next", "observation"].shape
    (0, torch.Size([50, 3]))
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

import torch
from tensordict import TensorDict, TensorDictBase

from tdrl._compat import module_buffers, register_load_state_dict_pre_hook, td_read, td_write
from tdrl._workers import ProcessLock
from tdrl.envs.transforms._shared_stats import SharedStatsMixin
from tdrl.envs.transforms.transforms import Transform, _key_tuple
from tdrl.specs import NestedKey, TensorSpec, Unbounded

__all__ = ["ObservationNorm", "VecNorm"]

_NOT_INITIALIZED = (
    "ObservationNorm(in_keys={keys}): loc and scale are not set, so {key!r} cannot be normalized. Fix: call "
    "env.transform[i].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0) once the transform is in its "
    "TransformedEnv, or pass loc= and scale= to ObservationNorm(...)."
)
_NO_VARIANCE = (
    "ObservationNorm.init_stats: {key!r} has no variance over the {n} values collected (std == 0 in every "
    "dimension), so it cannot be scaled to unit variance. Fix: normalize a key that varies, collect more "
    "steps (num_iter), or set loc= and scale= by hand."
)


def _out_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def _as_buffer(value: Any) -> torch.Tensor | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.clone()
    return torch.as_tensor(value, dtype=torch.get_default_dtype())


def _allocate_missing_stats(module: ObservationNorm, state_dict: dict, prefix: str, *args: Any) -> None:
    """Before loading: give an uninitialized ``loc``/``scale`` a tensor the saved one can be copied into.

    A state saved while ``standard_normal`` was not a buffer yet lacks it: the module's own is kept.
    """
    for name in ("loc", "scale"):
        value = state_dict.get(prefix + name)
        if getattr(module, name) is None and value is not None:
            setattr(module, name, torch.empty_like(value))
    state_dict.setdefault(prefix + "standard_normal", cast(torch.Tensor, module.standard_normal).clone())


def _mirror_standard_normal(module: ObservationNorm, incompatible_keys: Any) -> None:
    """After loading: refresh the Python bool read at each step (no device sync per step)."""
    del incompatible_keys
    module.__dict__["_affine"] = not bool(module.standard_normal)


class ObservationNorm(Transform):
    """Affine normalization: ``(x - loc) / scale`` (``standard_normal=True``) or ``x * scale + loc``.

    ``loc``, ``scale`` and ``standard_normal`` (a bool tensor) are buffers, saved in
    ``state_dict`` as TorchRL saves them. Leave ``loc`` and ``scale`` unset and call
    :meth:`init_stats` once the transform is attached to an env to fit them on a random
    rollout, so that the output has zero mean and unit variance.

    Dtypes, as in TorchRL: ``loc`` and ``scale`` keep the dtype they are given in (numbers
    become tensors of the default dtype; ``init_stats`` fits them in the data's floating
    dtype), and the output has the dtype torch's type promotion gives ``x``, ``loc`` and
    ``scale``: a ``float32`` entry with ``float64`` ``loc``/``scale`` vectors comes out
    ``float64``, an integer entry comes out floating. Unlike TorchRL's, the output spec says
    that dtype (TorchRL's keeps the input's).

    Args:
        loc: the location (a number or a tensor broadcastable to the entry).
        scale: the scale.
        in_keys: entries to normalize (default ``["observation"]``).
        out_keys: where to write them (default ``in_keys``).
        in_keys_inv: base-env inputs the inverse writes (the inverse map de-normalizes).
        out_keys_inv: entries the inverse reads.
        standard_normal: ``(x - loc) / scale`` when True, ``x * scale + loc`` when False
            (TorchRL's convention; ``init_stats`` fits either form).
        eps: the smallest standard deviation treated as variation by ``init_stats``.
            Default, as TorchRL's: the machine epsilon of ``scale``'s dtype when ``scale``
            is a floating tensor, else ``1e-6``.

    Raises:
        ValueError: when only one of ``loc``/``scale`` is given, or ``scale`` is 0
            somewhere with ``standard_normal=True`` (a division by zero).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> t = ObservationNorm(loc=1.0, scale=2.0, standard_normal=True)
        >>> t(TensorDict({"observation": torch.tensor([3.0, 5.0])}, []))["observation"]
        tensor([1., 2.])
    """

    def __init__(
        self,
        loc: float | torch.Tensor | None = None,
        scale: float | torch.Tensor | None = None,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        in_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        out_keys_inv: NestedKey | Sequence[NestedKey] | None = None,
        standard_normal: bool | torch.Tensor = False,
        eps: float | None = None,
    ) -> None:
        super().__init__(["observation"] if in_keys is None else in_keys, out_keys, in_keys_inv, out_keys_inv)
        if (loc is None) != (scale is None):
            raise ValueError(
                "ObservationNorm: pass both loc and scale, or neither (and call init_stats once attached to an env)."
            )
        standard_normal = bool(standard_normal)
        self.register_buffer("standard_normal", torch.tensor(standard_normal))
        self.__dict__["_affine"] = not standard_normal  # what each step reads (a bool: no device sync)
        if eps is None:
            floating = isinstance(scale, torch.Tensor) and scale.dtype.is_floating_point
            eps = torch.finfo(scale.dtype).eps if floating else 1e-6  # type: ignore[union-attr]
        self.eps = eps
        loc_t, scale_t = _as_buffer(loc), _as_buffer(scale)
        if standard_normal and scale_t is not None and (scale_t == 0).any():
            raise ValueError(
                f"ObservationNorm: scale must be non-zero everywhere with standard_normal=True (it divides), got "
                f"{scale_t.tolist()}. Fix: use a small positive scale where the entry does not vary."
            )
        self.register_buffer("loc", loc_t)
        self.register_buffer("scale", scale_t)
        register_load_state_dict_pre_hook(self, _allocate_missing_stats)
        self.register_load_state_dict_post_hook(_mirror_standard_normal)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "standard_normal" and "_affine" in self.__dict__:
            # a bool is accepted too (TorchRL takes a tensor only); the step-time mirror follows
            value = torch.tensor(bool(value), device=cast(torch.Tensor, self._buffers["standard_normal"]).device)
            self.__dict__["_affine"] = not bool(value)
        super().__setattr__(name, value)

    @property
    def initialized(self) -> bool:
        """Whether ``loc`` and ``scale`` are set."""
        return self.loc is not None and self.scale is not None

    # --- maps ----------------------------------------------------------------------------
    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        buffers = module_buffers(self)  # read once: this runs at every step
        loc, scale = buffers["loc"], buffers["scale"]
        if loc is None or scale is None:
            for key in self.in_keys:
                if tensordict.get(key, None) is not None:
                    raise RuntimeError(_NOT_INITIALIZED.format(keys=self.in_keys, key=key))
            return tensordict
        affine = self.__dict__["_affine"]
        dtype = loc.dtype
        same = dtype is scale.dtype and dtype.is_floating_point  # then an entry of that dtype takes one kernel
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            x = td_read(tensordict, in_key)
            if x is not None:
                if same and x.dtype is dtype:
                    y = torch.addcmul(loc, x, scale) if affine else _standardize(x, loc, scale)
                else:
                    y = self._map(x, loc, scale, affine)
                td_write(tensordict, out_key, y)
        return tensordict

    @staticmethod
    def _map(x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, affine: bool) -> torch.Tensor:
        """``x * scale + loc`` (``affine``) or ``(x - loc) / scale``, in the dtype torch's promotion gives."""
        if x.dtype == loc.dtype == scale.dtype and x.dtype.is_floating_point:
            if affine:
                return torch.addcmul(loc, x, scale)  # one kernel
            return _standardize(x, loc, scale)
        if not (x.dtype.is_floating_point or loc.dtype.is_floating_point or scale.dtype.is_floating_point):
            x = x.to(torch.get_default_dtype())  # integers all round: the output is floating still
        if affine:
            return x * scale + loc
        return (x - loc) / scale

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return self._map(value, self.loc, self.scale, self.__dict__["_affine"])

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self.in_keys_inv and not self.initialized:
            raise RuntimeError(_NOT_INITIALIZED.format(keys=self.in_keys_inv, key=self.out_keys_inv[0]))
        return super()._inv_call(tensordict)

    def _inv_apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return self._map(value, self.loc, self.scale, not self.__dict__["_affine"])

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if self.initialized:
            for name, value in (("loc", self.loc), ("scale", self.scale)):
                try:
                    shape = torch.broadcast_shapes(value.shape, spec.shape)
                except RuntimeError:
                    shape = None
                if shape != spec.shape:
                    raise ValueError(
                        f"ObservationNorm: {name} has shape {tuple(value.shape)}, which does not broadcast to "
                        f"{key!r}'s shape {tuple(spec.shape)}. Fix: give {name} the entry's trailing shape."
                    )
            # the dtype the map gives the entry (with a batch dim, as data has): torch's promotion
            sample = torch.zeros((1, *spec.shape), dtype=spec.dtype)
            dtype = self._map(sample, self.loc.cpu(), self.scale.cpu(), True).dtype
        else:
            dtype = _out_dtype(spec.dtype)
        return Unbounded(shape=spec.shape, dtype=dtype, device=spec.device)

    _transform_inv_spec = _transform_spec

    # --- fitting -------------------------------------------------------------------------
    def init_stats(
        self,
        num_iter: int,
        reduce_dim: int | tuple[int, ...] = 0,
        cat_dim: int | None = None,
        key: NestedKey | None = None,
        keep_dims: tuple[int, ...] | None = None,
    ) -> None:
        """Fit ``loc`` and ``scale`` on a random rollout of the parent env.

        Runs the env this transform reads from (the base env plus the transforms before
        it) without a policy for at least ``num_iter`` steps, resetting finished
        episodes, and takes the mean and standard deviation of ``key`` over
        ``reduce_dim``. Dimensions that never vary get scale 1 (they come out as 0,
        and as their raw offset if they vary later). TorchRL divides such a dimension by
        ``eps`` instead (scale 1e6): on ``InvertedDoublePendulum-v4`` the cart's rail-limit
        force is 0 during a random rollout and up to 10 once a policy drives the cart into
        the rail, which TorchRL feeds to the networks as 1e7.

        Args:
            num_iter: how many steps to collect.
            reduce_dim: the dim(s) of the collected data (time first for an unbatched
                env: ``[num_iter, *obs_shape]``) to average over.
            cat_dim: the dim along which successive rollouts are concatenated (default
                ``reduce_dim``); must be part of ``reduce_dim``.
            key: the entry to fit (default the first in_key).
            keep_dims: reduced dims to keep as size-1 dims in loc and scale.

        Raises:
            RuntimeError: when the transform is not attached to an env.
            ValueError: for inconsistent dims, a key without variance, or non-finite data.
        """
        if num_iter < 1:
            raise ValueError(f"ObservationNorm.init_stats: num_iter must be >= 1, got {num_iter}.")
        if cat_dim is None:
            if not isinstance(reduce_dim, int):
                raise ValueError("ObservationNorm.init_stats: pass cat_dim when reduce_dim is a tuple.")
            cat_dim = reduce_dim
        reduce = [reduce_dim] if isinstance(reduce_dim, int) else list(reduce_dim)
        if key is None:
            if len(self.in_keys) > 1:
                raise ValueError(
                    f"ObservationNorm.init_stats: the transform has several in_keys {self.in_keys}; pass key= to "
                    f"say which one to fit."
                )
            key = self.in_keys[0]
        parent = self.parent
        if parent is None:
            raise RuntimeError(
                "ObservationNorm.init_stats needs the env: attach the transform first "
                "(TransformedEnv(env, ObservationNorm(...))), or pass loc= and scale= directly."
            )
        observations = parent.full_observation_spec
        if key in observations.keys(True, True):  # checked before the rollouts, when the spec says the dims
            # a rollout collects [*batch, time, *feature]; the spec's shape is [*batch, *feature]
            _check_cat_dim(cat_dim, reduce, len(observations[key].shape) + 1)
        data, collected = [], 0
        while collected < num_iter:
            rollout = parent.rollout(num_iter, break_when_any_done=False)
            collected += rollout.numel()
            data.append(rollout.get(key))
        _check_cat_dim(cat_dim, reduce, data[0].ndim)
        values = torch.cat(data, cat_dim)
        values = values.to(_out_dtype(values.dtype))
        dims = sorted(d if d < 0 else d - values.ndim for d in reduce)
        keep = [] if keep_dims is None else sorted(d if d < 0 else d - values.ndim for d in keep_dims)
        if not all(k in dims for k in keep):
            raise ValueError(
                f"ObservationNorm.init_stats: keep_dims {keep_dims} must be part of reduce_dim {reduce_dim}."
            )
        loc = values.mean(dims, keepdim=True)
        std = values.std(dims, keepdim=True)
        for d in dims:  # most negative first, so the remaining negative dims stay valid
            if d not in keep:
                loc, std = loc.squeeze(d), std.squeeze(d)
        if not (torch.isfinite(loc).all() and torch.isfinite(std).all()):
            raise ValueError(f"ObservationNorm.init_stats: {key!r} holds non-finite values; cannot fit loc/scale.")
        flat = std <= self.eps
        if bool(flat.all()):
            raise ValueError(_NO_VARIANCE.format(key=key, n=collected))
        std = torch.where(flat, torch.ones_like(std), std)
        if not self.__dict__["_affine"]:
            self.loc, self.scale = loc, std
        else:
            self.scale = 1.0 / std
            self.loc = -loc * self.scale
        self._notify_spec_change()

    def _extra_repr(self) -> str:
        if not self.initialized:
            return "loc=None, scale=None"
        standard_normal = not self.__dict__["_affine"]
        return f"loc={tuple(self.loc.shape)}, scale={tuple(self.scale.shape)}, standard_normal={standard_normal}"


def _standardize(x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``(x - loc) / scale`` for operands of one floating dtype, dividing the fresh difference in place.

    The same two kernels as ``(x - loc) / scale`` (so the same bits), one allocation fewer;
    when ``scale`` would broadcast the difference to a larger shape, the plain expression.
    """
    diff = x - loc
    if scale.ndim <= diff.ndim and scale.shape == diff.shape[diff.ndim - scale.ndim :]:
        return diff.div_(scale)
    return diff / scale


def _check_cat_dim(cat_dim: int, reduce: list, ndim: int) -> None:
    """Refuse a ``cat_dim`` that is not one of ``reduce`` (dims counted from the front or the back alike)."""
    if not all(-ndim <= d < ndim for d in (cat_dim, *reduce)):
        raise ValueError(
            f"ObservationNorm.init_stats: cat_dim ({cat_dim}) and reduce_dim ({reduce}) must be dims of the collected "
            f"data, which has {ndim} dims ([*batch, time, *feature])."
        )
    if cat_dim % ndim not in {d % ndim for d in reduce}:
        raise ValueError(f"ObservationNorm.init_stats: cat_dim ({cat_dim}) must be one of reduce_dim ({reduce}).")


class VecNorm(SharedStatsMixin, Transform):
    """Normalize entries with running mean and standard deviation, updated as data flows.

    The statistics are exponentially-decayed sums (``sum``, ``ssq``, ``count``) per key,
    kept in a TensorDict (:attr:`stats`). ``share_memory_()`` moves them to shared memory
    so that copies of the transform in worker processes update and read one set of
    statistics (a shared VecNorm stays shared when it is pickled or copied, e.g. into
    ``ParallelEnv`` workers, however they are started), and gives it a lock that travels
    with it, so that concurrent updates never lose one; ``freeze()`` stops the updates
    (evaluation), ``frozen_copy()`` gives a frozen transform for an evaluation env.

    Args:
        in_keys: entries to normalize (default ``["observation"]``).
        out_keys: where to write them (default ``in_keys``).
        shared_td: statistics to use (e.g. another VecNorm's ``stats``), updated in place.
        lock: a lock taken around each update of the statistics. By default
            ``share_memory_()`` creates one (an ``fcntl`` lock on an anonymous file, which
            reaches worker processes however they are started, pickled with the
            transform). Give one (e.g. ``other.lock``) when another VecNorm, built
            separately, updates the same ``shared_td``.
        decay: the weight of past statistics at each update.
        eps: the smallest variance used.
        new_api: ``True`` builds a :class:`~tdrl.envs.VecNormV2` instead, with the other
            arguments (as TorchRL's ``VecNorm(..., new_api=True)``); ``None``/``False`` this class.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> vn = VecNorm(in_keys=["x"], decay=1.0)
        >>> _ = vn(TensorDict({"x": torch.tensor([[0.0], [2.0]])}, [2]))
        >>> vn.stats["x", "count"]
        tensor([2.], dtype=torch.float64)
        >>> vn.freeze()(TensorDict({"x": torch.tensor([[3.0]])}, [1]))["x"]
        tensor([[2.]])
    """

    time_vectorizable = False  # each step updates the statistics the next step reads

    def __new__(cls, *args: Any, new_api: bool | None = None, **kwargs: Any) -> Any:
        # TorchRL's switch: VecNorm(..., new_api=True) builds a VecNormV2 (then __init__ is not run here)
        if new_api and cls is VecNorm:
            from tdrl.envs.transforms.vecnorm import VecNormV2

            return VecNormV2(*args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        shared_td: TensorDictBase | None = None,
        lock: Any = None,
        decay: float = 0.9999,
        eps: float = 1e-4,
        new_api: bool | None = None,
    ) -> None:
        super().__init__(["observation"] if in_keys is None else in_keys, out_keys)
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"VecNorm: decay must be in (0, 1], got {decay}.")
        if eps <= 0:
            raise ValueError(f"VecNorm: eps must be > 0, got {eps}.")
        self.decay = decay
        self.eps = eps
        self.lock = lock
        self.frozen = False
        self._batch_dims = 0
        self._shared = shared_td is not None and shared_td.is_shared()
        self._stats: TensorDictBase | None = shared_td

    @property
    def stats(self) -> TensorDictBase | None:
        """The running statistics, ``stats[key, "sum" | "ssq" | "count"]`` (float64)."""
        return self._stats

    # --- state ---------------------------------------------------------------------------
    def freeze(self) -> VecNorm:
        """Stop updating the statistics (they are still read). Returns self."""
        self.frozen = True
        return self

    def unfreeze(self) -> VecNorm:
        """Resume updating the statistics. Returns self."""
        self.frozen = False
        return self

    def frozen_copy(self, share_stats: bool = True) -> VecNorm:
        """A frozen VecNorm for evaluation, detached from any env.

        Args:
            share_stats: read this transform's live statistics (True) or a snapshot of them.
        """
        stats, lock = self._stats, self.lock
        self._stats, self.lock = None, None
        try:
            out = copy.deepcopy(self)
        finally:
            self._stats, self.lock = stats, lock
        out._stats = stats if (share_stats or stats is None) else stats.clone()
        out.frozen = True
        return out

    def share_memory_(self) -> VecNorm:
        """Put the statistics in shared memory (now, or as soon as they are created). Returns self.

        Also creates the lock that every copy takes around its updates (unless one was given).
        """
        self._shared = True
        if self.lock is None:
            self.lock = ProcessLock()
        if self._stats is not None:
            self._stats.share_memory_()
        return self

    def share_memory(self) -> VecNorm:
        super().share_memory()
        return self.share_memory_()

    def _ensure_stats(self, key: NestedKey, shape: torch.Size, device: torch.device) -> None:
        if self._stats is None:
            self._stats = TensorDict({}, batch_size=[])
        if self._stats.get((*_key_tuple(key), "count"), None) is not None:
            return
        zeros = torch.zeros(shape, dtype=torch.float64, device=device)
        self._stats.set((*_key_tuple(key), "sum"), zeros)
        self._stats.set((*_key_tuple(key), "ssq"), zeros.clone())
        self._stats.set((*_key_tuple(key), "count"), torch.zeros(1, dtype=torch.float64, device=device))
        if self._shared:
            self._stats.share_memory_()

    def get_extra_state(self) -> dict:
        return {"stats": None if self._stats is None else self._stats.to_dict(), "frozen": self.frozen}

    def set_extra_state(self, state: dict) -> None:
        self.frozen = bool(state.get("frozen", False))
        stats = state.get("stats")
        if stats is None:
            return
        loaded = TensorDict(stats, batch_size=[])
        if self._stats is None:
            self._stats = loaded
            if self._shared:
                self._stats.share_memory_()
        else:
            for key in loaded.keys(True, True):
                current = self._stats.get(key, None)
                if current is not None and current.shape == loaded.get(key).shape:
                    current.copy_(loaded.get(key))  # in place: shared memory stays shared
                else:
                    self._stats.set(key, loaded.get(key))

    # --- maps ----------------------------------------------------------------------------
    def _call(self, tensordict: TensorDictBase, mask: torch.Tensor | None = None) -> TensorDictBase:
        nbatch = tensordict.batch_dims
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            x = tensordict.get(in_key, None)
            if x is None:
                continue
            self._ensure_stats(in_key, x.shape[nbatch:], x.device)
            if not self.frozen:
                if mask is None:
                    self._update(in_key, x, nbatch)
                else:
                    self._update(in_key, x[mask], 1)
            tensordict.set(out_key, self._normalize(in_key, x))
        return tensordict

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        if mask is not None:
            mask = mask.reshape(tensordict_reset.batch_size)
            if bool(mask.all()):
                mask = None
        # a partial reset: only the sub-envs that restart bring new data to the statistics
        return self._call(tensordict_reset, mask)

    def _update(self, key: NestedKey, x: torch.Tensor, nbatch: int) -> None:
        node = cast(TensorDictBase, self._stats).get(key)  # _call ran _ensure_stats first
        xd = x.to(torch.float64)
        if nbatch:
            dims = tuple(range(nbatch))
            total, squares, n = xd.sum(dims), (xd * xd).sum(dims), float(x.shape[:nbatch].numel())
        else:
            total, squares, n = xd, xd * xd, 1.0
        if self.lock is not None:
            with self.lock:
                self._accumulate(node, total, squares, n)
        else:
            self._accumulate(node, total, squares, n)

    def _accumulate(self, node: TensorDictBase, total: torch.Tensor, squares: torch.Tensor, n: float) -> None:
        decay = self.decay
        node.get("sum").mul_(decay).add_(total)
        node.get("ssq").mul_(decay).add_(squares)
        node.get("count").mul_(decay).add_(n)

    def _normalize(self, key: NestedKey, x: torch.Tensor) -> torch.Tensor:
        node = cast(TensorDictBase, self._stats).get(key)  # _call ran _ensure_stats first
        count = node.get("count").clamp_min(1e-12)
        mean = node.get("sum") / count
        var = (node.get("ssq") / count - mean * mean).clamp_min(self.eps)
        dtype = _out_dtype(x.dtype)
        return ((x.to(torch.float64) - mean) / var.sqrt()).to(dtype)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        nbatch = self._batch_dims
        self._ensure_stats(key, spec.shape[nbatch:], spec.device)
        return Unbounded(shape=spec.shape, dtype=_out_dtype(spec.dtype), device=spec.device)

    def _transform_specs(self, output_spec: Any, input_spec: Any) -> tuple:
        self._batch_dims = len(output_spec.shape)
        return super()._transform_specs(output_spec, input_spec)

    def to_observation_norm(self) -> ObservationNorm:
        """A fixed ObservationNorm with the current mean and standard deviation (for deployment)."""
        if self._stats is None or len(self.in_keys) != 1:
            raise ValueError("VecNorm.to_observation_norm needs statistics for exactly one in_key.")
        node = self._stats.get(self.in_keys[0])
        count = node.get("count").clamp_min(1e-12)
        mean = node.get("sum") / count
        std = (node.get("ssq") / count - mean * mean).clamp_min(self.eps).sqrt()
        # in the default dtype (the statistics are float64): the output keeps the entry's dtype, as this one's does
        dtype = torch.get_default_dtype()
        return ObservationNorm(
            loc=mean.to(dtype), scale=std.to(dtype), in_keys=self.in_keys, out_keys=self.out_keys, standard_normal=True
        )

    def _extra_repr(self) -> str:
        return f"decay={self.decay}, eps={self.eps}, frozen={self.frozen}"
