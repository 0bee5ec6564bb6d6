"""VecNormV2: running normalization with exponential moving averages and bias correction.

TorchRL's second VecNorm. For each normalized entry it keeps the moving averages of the
values (``loc``) and of their squares (``var``), updated with weight ``1 - decay`` at every
step, and a per-entry update ``count``. Because the averages start from zero, they are
divided by ``1 - decay ** count`` (the bias correction) before use::

    bc = 1 - decay ** count
    scale = sqrt((var - loc ** 2) / bc).clamp_min(eps)
    out = (x - loc / bc) / scale

With ``decay=1`` the averages weigh every update equally (weight ``1 / count``) and need no
correction. The statistics are updated *before* the entry is normalized, as TorchRL does.

Two modes: **stateful** (the default) keeps the statistics in the transform (shareable
between processes through :meth:`share_memory_` or an :class:`~tdrl.envs.EnvCreator`);
**stateless** carries them in the data, under ``"_vecnorm_loc"``, ``"_vecnorm_var"`` and
``"_vecnorm_count"`` (observation entries, restarted from zero at each reset).

Examples:
    >>> import torch
    >>> from tdrl.envs import TransformedEnv, VecNorm, VecNormV2
    >>> from tdrl.testing import ContinuousActionMock
    >>> vn = VecNorm(in_keys=["observation"], decay=0.99, new_api=True)
    >>> type(vn).__name__
    'VecNormV2'
    >>> env = TransformedEnv(ContinuousActionMock(obs_dim=3), vn)
    >>> _ = env.rollout(5)  # one reset and five steps
    >>> int(vn.shared_data["count", "observation"]), vn.loc["observation"].shape
    (6, torch.Size([3]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
from tensordict import TensorDict, TensorDictBase

from tdrl._workers import ProcessLock
from tdrl.envs.transforms._shared_stats import SharedStatsMixin
from tdrl.envs.transforms.compose import Compose
from tdrl.envs.transforms.norm import ObservationNorm
from tdrl.envs.transforms.transforms import Transform, _key_tuple, _leaf, _slot
from tdrl.specs import Composite, NestedKey, TensorSpec, Unbounded

__all__ = ["VecNormV2"]

_SEP = ".-|-."  # TorchRL's separator in the flattened extra state: its state dicts load here

_NOT_INITIALIZED = (
    "VecNormV2.{what}: the statistics do not exist yet (no data seen and not attached to an env). "
    "Fix: attach the transform to an env (TransformedEnv(env, VecNormV2(...))) or run some data through it first."
)
_STATELESS = (
    "VecNormV2.{what} is only available with stateful=True: a stateless VecNormV2 keeps its statistics in "
    "the data (the '{prefix}_loc' / '{prefix}_var' / '{prefix}_count' entries). Fix: build it with stateful=True."
)


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


class VecNormV2(SharedStatsMixin, Transform):
    """Normalize entries with bias-corrected exponential moving averages of their mean and square.

    See the module docstring for the formula. ``VecNorm(..., new_api=True)`` builds one.

    Args:
        in_keys: the entries to normalize (observations and/or rewards).
        out_keys: where to write them (default ``in_keys``).
        lock: a lock taken around each update. By default :meth:`share_memory_` creates one
            that reaches worker processes; give one when another transform updates the same
            ``shared_data``.
        stateful: keep the statistics in the transform (True) or in the data (False).
        decay: the weight of the past at each update, in ``(0, 1]`` (``1``: plain average).
        eps: the smallest standard deviation used.
        shared_data: statistics to use, a TensorDict with ``"loc"``, ``"var"`` and ``"count"``
            (e.g. another VecNormV2's :attr:`shared_data`), updated in place. Stateful only.
        reduce_batch_dims: average a batch of data over the env's batch dims before updating
            (one set of statistics for all sub-envs, weighted by their number). Stateful only.

    Raises:
        ValueError: for a decay outside ``(0, 1]``, ``eps <= 0``, or ``reduce_batch_dims`` /
            ``shared_data`` with ``stateful=False``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> vn = VecNormV2(in_keys=["x"], decay=1.0)
        >>> out = vn(TensorDict({"x": torch.tensor([2.0])}))  # the first value: loc 2, scale eps
        >>> out = vn(TensorDict({"x": torch.tensor([4.0])}))
        >>> vn.loc["x"], vn.scale["x"]
        (tensor([3.]), tensor([1.]))
        >>> vn.freeze()(TensorDict({"x": torch.tensor([5.0])}))["x"]
        tensor([2.])
    """

    time_vectorizable = False  # each step updates the statistics the next step reads

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey],
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        *,
        lock: Any = None,
        stateful: bool = True,
        decay: float = 0.9999,
        eps: float = 1e-4,
        shared_data: TensorDictBase | None = None,
        reduce_batch_dims: bool = False,
    ) -> None:
        super().__init__(in_keys, out_keys)
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"VecNormV2: decay must be in (0, 1], got {decay}.")
        if eps <= 0:
            raise ValueError(f"VecNormV2: eps must be > 0, got {eps}.")
        if not stateful and (reduce_batch_dims or shared_data is not None):
            raise ValueError(
                "VecNormV2: reduce_batch_dims=True and shared_data need stateful=True (a stateless VecNormV2 keeps "
                "one set of statistics per batch element, in the data). Fix: drop them or pass stateful=True."
            )
        self.stateful = stateful
        self.decay = float(decay)
        self.eps = float(eps)
        self.lock = lock
        self.frozen = False
        self.reduce_batch_dims = reduce_batch_dims
        self.prefix = "_vecnorm"
        self._batch_dims = 0
        self._shared = False
        self._stats: TensorDictBase | None = None
        self._stateless_leaves: dict = {}  # stateless: key -> (shape, dtype, device), from the specs
        # whether the statistics exist; a buffer as in TorchRL, so that state dicts match
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool) if stateful else None)
        if shared_data is not None:
            self._stats = shared_data.select("loc", "var", "count")
            self._shared = all(t.is_shared() for t in self._stats.values(True, True))
            cast(torch.Tensor, self.initialized).fill_(True)

    # --- the statistics ------------------------------------------------------------------
    @property
    def shared_data(self) -> TensorDictBase | None:
        """The statistics, ``{"loc": ..., "var": ..., "count": ...}`` per key (None before any data)."""
        return self._stats

    @property
    def _loc(self) -> TensorDictBase | None:
        return None if self._stats is None else cast(TensorDictBase, self._stats.get("loc"))

    @property
    def _var(self) -> TensorDictBase | None:
        return None if self._stats is None else cast(TensorDictBase, self._stats.get("var"))

    @property
    def _count(self) -> TensorDictBase | None:
        return None if self._stats is None else cast(TensorDictBase, self._stats.get("count"))

    def _stat_shape(self, shape: torch.Size) -> torch.Size:
        return shape[self._batch_dims :] if self.reduce_batch_dims else shape

    def _ensure_stats(self, key: NestedKey, shape: torch.Size, dtype: torch.dtype, device: Any) -> None:
        if self._stats is None:
            self._stats = TensorDict({"loc": {}, "var": {}, "count": {}}, batch_size=[])
        if self._stats.get(("count", *_key_tuple(key)), None) is not None:
            return
        zeros = torch.zeros(shape, dtype=_float_dtype(dtype), device=device)
        self._stats.set(("loc", *_key_tuple(key)), zeros)
        self._stats.set(("var", *_key_tuple(key)), zeros.clone())
        self._stats.set(("count", *_key_tuple(key)), torch.zeros((), dtype=torch.int64, device=device))
        if self._shared:
            self._stats.share_memory_()
        cast(torch.Tensor, self.initialized).fill_(True)

    def freeze(self) -> VecNormV2:
        """Stop updating the statistics (they are still used). Returns self."""
        self.frozen = True
        return self

    def unfreeze(self) -> VecNormV2:
        """Resume updating the statistics. Returns self."""
        self.frozen = False
        return self

    def frozen_copy(self) -> VecNormV2:
        """A frozen copy holding a snapshot of the statistics (for an evaluation env).

        Raises:
            RuntimeError: in stateless mode, or before the statistics exist.
        """
        self._require_stats("frozen_copy")
        return self.clone().freeze()

    def clone(self) -> VecNormV2:
        """A deep copy (statistics copied, not shared), detached from any env."""
        stats, lock = self._stats, self.lock
        self._stats, self.lock = None, None
        try:
            out = cast(VecNormV2, super().clone())
        finally:
            self._stats, self.lock = stats, lock
        out._stats = None if stats is None else stats.clone()
        out._shared = False
        return out

    def share_memory_(self) -> VecNormV2:
        """Put the statistics in shared memory (now, or when they are created). Returns self.

        Copies of the transform pickled into worker processes then update the same
        statistics; a lock (unless one was given) keeps concurrent updates whole.
        """
        if not self.stateful:
            raise RuntimeError(_STATELESS.format(what="share_memory_", prefix=self.prefix))
        self._shared = True
        if self.lock is None:
            self.lock = ProcessLock()
        if self._stats is not None:
            self._stats.share_memory_()
        return self

    def _share_state(self) -> tuple[TensorDictBase | None, Any]:
        """The shared statistics and lock (for EnvCreator); a stateless VecNormV2 has none."""
        if not self.stateful:
            return None, None
        return super()._share_state()

    def _use_shared_state(self, stats: TensorDictBase | None, lock: Any) -> None:
        """Read and update ``stats`` (another copy's shared statistics) from now on (stateful only)."""
        if self.stateful:
            super()._use_shared_state(stats, lock)

    def get_extra_state(self) -> dict:
        if not self.stateful or self._stats is None:
            return {}
        return cast(dict, self._stats.flatten_keys(_SEP).to_dict())

    def set_extra_state(self, state: dict) -> None:
        if not self.stateful or not state:
            return
        loaded = TensorDict(state, batch_size=[]).unflatten_keys(_SEP)
        if self._stats is None:
            self._stats = loaded.select("loc", "var", "count")
            if self._shared:
                self._stats.share_memory_()
            cast(torch.Tensor, self.initialized).fill_(True)
            return
        for key in loaded.keys(True, True):
            value = cast(torch.Tensor, loaded.get(key))
            current = self._stats.get(key, None)
            if isinstance(current, torch.Tensor) and current.shape == value.shape:
                current.copy_(value)  # in place: shared statistics stay shared
            else:
                self._stats.set(key, value)

    # --- loc and scale ---------------------------------------------------------------------
    def _require_stats(self, what: str) -> TensorDictBase:
        if not self.stateful:
            raise RuntimeError(_STATELESS.format(what=what, prefix=self.prefix))
        if self._stats is None:
            raise RuntimeError(_NOT_INITIALIZED.format(what=what))
        return self._stats

    def _loc_scale(self, loc: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> tuple:
        if self.decay < 1.0:
            correction = (1 - (count * math.log(self.decay)).exp()).to(loc.dtype)
            var = (var - loc * loc) / correction
            loc = loc / correction
        else:
            var = var - loc * loc
        return loc, var.sqrt().clamp_min(self.eps)

    def _loc_scale_td(self) -> tuple[TensorDictBase, TensorDictBase]:
        stats = self._require_stats("loc/scale")
        locs, scales = TensorDict({}, batch_size=[]), TensorDict({}, batch_size=[])
        for key in cast(TensorDictBase, stats.get("loc")).keys(True, True):
            loc, scale = self._loc_scale(
                stats.get(("loc", *_key_tuple(key))),
                stats.get(("var", *_key_tuple(key))),
                stats.get(("count", *_key_tuple(key))),
            )
            locs.set(key, loc)
            scales.set(key, scale)
        return locs, scales

    @property
    def loc(self) -> TensorDictBase:
        """The bias-corrected means, a TensorDict keyed by the in_keys (computed at each read)."""
        return self._loc_scale_td()[0]

    @property
    def scale(self) -> TensorDictBase:
        """The standard deviations used (at least ``eps``), a TensorDict keyed by the in_keys."""
        return self._loc_scale_td()[1]

    @property
    def standard_normal(self) -> bool:
        """Whether the output is ``(x - loc) / scale`` (always, as ``ObservationNorm(standard_normal=True)``)."""
        return True

    def to_observation_norm(self) -> ObservationNorm | Compose:
        """Fixed :class:`~tdrl.envs.ObservationNorm` transforms with the current loc and scale (one per key).

        Raises:
            RuntimeError: in stateless mode, or before the statistics exist.
        """
        locs, scales = self._loc_scale_td()
        norms = [
            ObservationNorm(
                loc=locs.get(key), scale=scales.get(key), in_keys=[key], out_keys=[out], standard_normal=True
            )
            for key, out in zip(self.in_keys, self.out_keys)
        ]
        return norms[0] if len(norms) == 1 else Compose(*norms)

    def denorm(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Undo the normalization: read ``out_keys``, write ``x * scale + loc`` to ``in_keys`` (a shallow copy).

        Raises:
            RuntimeError: in stateless mode, or before the statistics exist.
        """
        locs, scales = self._loc_scale_td()
        out = tensordict.copy()
        for key, out_key in zip(self.in_keys, self.out_keys):
            value = out.get(out_key, None)
            if value is not None:
                out.set(key, value * scales.get(key) + locs.get(key))
        return out

    # --- maps ------------------------------------------------------------------------------
    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        if self.stateful:
            return self._stateful(next_tensordict, update=not self.frozen)
        return self._stateless(tensordict, next_tensordict)

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        if self.stateful:
            return self._stateful(tensordict_reset, update=not self.frozen)
        return self._stateless(tensordict_reset, tensordict_reset, at_reset=True)

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Outside an env (``forward``): update the statistics (unless frozen), then normalize."""
        if self.stateful:
            return self._stateful(tensordict, update=not self.frozen)
        return self._stateless(tensordict, tensordict)

    def _stateful(self, data: TensorDictBase, update: bool) -> TensorDictBase:
        nbatch = data.batch_dims
        if self.lock is not None:
            with self.lock:
                return self._stateful_locked(data, update, nbatch)
        return self._stateful_locked(data, update, nbatch)

    def _stateful_locked(self, data: TensorDictBase, update: bool, nbatch: int) -> TensorDictBase:
        for key, out_key in zip(self.in_keys, self.out_keys):
            x = data.get(key, None)
            if x is None:
                continue  # e.g. the reward at a reset
            if self._stats is None or self._stats.get(("count", *_key_tuple(key)), None) is None:
                # built from data (no env specs): the data's batch dims are the env's
                self._batch_dims = nbatch
                self._ensure_stats(key, self._stat_shape(x.shape), x.dtype, x.device)
            stats = cast(TensorDictBase, self._stats)
            loc = cast(torch.Tensor, stats.get(("loc", *_key_tuple(key))))
            var = cast(torch.Tensor, stats.get(("var", *_key_tuple(key))))
            count = cast(torch.Tensor, stats.get(("count", *_key_tuple(key))))
            xf = x.to(loc.dtype)
            # dims of the data that the statistics do not have (the env's batch dims with
            # reduce_batch_dims, a time dim in forward): averaged, as one update of n items
            kept = 0 if self.reduce_batch_dims else self._batch_dims
            extra = tuple(range(kept, xf.dim() - (loc.dim() - kept)))
            if extra and xf.shape[:kept] + xf.shape[extra[-1] + 1 :] != loc.shape:
                raise ValueError(
                    f"VecNormV2: entry {key!r} has shape {tuple(x.shape)}, which does not fit statistics of "
                    f"shape {tuple(loc.shape)}. Fix: pass data shaped like the env's output, [*batch, *time, "
                    f"*feature]."
                )
            if update:
                if extra:
                    n = int(torch.Size([xf.shape[d] for d in extra]).numel())
                    count += n
                    mean, square = xf.mean(extra), (xf * xf).mean(extra)
                    weight = 1 - self.decay**n if self.decay != 1.0 else n / int(count)
                else:
                    count += 1
                    mean, square = xf, xf * xf
                    weight = 1 - self.decay if self.decay != 1.0 else 1 / int(count)
                loc.lerp_(mean.to(loc.device), weight)
                var.lerp_(square.to(var.device), weight)
            m, s = self._loc_scale(loc, var, count)
            view = (*loc.shape[:kept], *([1] * len(extra)), *loc.shape[kept:])
            data.set(out_key, (xf - m.to(xf.device).view(view)) / s.to(xf.device).view(view))
        return data

    def _stateless(
        self, source: TensorDictBase, data: TensorDictBase, update: bool | None = None, at_reset: bool = False
    ) -> TensorDictBase:
        update = (not self.frozen) if update is None else update
        names = {name: f"{self.prefix}_{name}" for name in ("loc", "var", "count")}
        for key, out_key in zip(self.in_keys, self.out_keys):
            x = data.get(key, None)
            if x is None:
                if at_reset and key in self._stateless_leaves:  # e.g. the reward at a reset
                    shape, dtype, device = self._stateless_leaves[key]
                    zeros = torch.zeros(shape, dtype=dtype, device=device)
                    data.set((names["loc"], *_key_tuple(key)), zeros)
                    data.set((names["var"], *_key_tuple(key)), zeros.clone())
                    data.set((names["count"], *_key_tuple(key)), torch.zeros(shape, dtype=torch.int64, device=device))
                continue
            dtype = _float_dtype(x.dtype)
            loc = source.get((names["loc"], *_key_tuple(key)), None)
            if loc is None:  # a reset: the statistics restart from zero
                loc = torch.zeros(x.shape, dtype=dtype, device=x.device)
                var = torch.zeros_like(loc)
                count = torch.zeros(x.shape, dtype=torch.int64, device=x.device)
            else:
                var = source.get((names["var"], *_key_tuple(key)))
                count = source.get((names["count"], *_key_tuple(key)))
            xf = x.to(dtype)
            if update:
                count = count + 1
                weight = 1 - self.decay if self.decay != 1.0 else 1 / count
                loc = loc.lerp(xf, weight)
                var = var.lerp(xf * xf, weight)
            m, s = self._loc_scale(loc, var, count)
            data.set(out_key, (xf - m) / s)
            data.set((names["loc"], *_key_tuple(key)), loc)
            data.set((names["var"], *_key_tuple(key)), var)
            data.set((names["count"], *_key_tuple(key)), count)
        return data

    def _carried_keys(self) -> list:
        if self.stateful:
            return []
        return [f"{self.prefix}_{name}" for name in ("loc", "var", "count")]

    # --- specs -----------------------------------------------------------------------------
    def _transform_specs(self, output_spec: Any, input_spec: Any) -> tuple:
        self._batch_dims = len(output_spec.shape)
        return super()._transform_specs(output_spec, input_spec)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if self.stateful:
            self._ensure_stats(key, self._stat_shape(spec.shape), spec.dtype, spec.device)
        return Unbounded(shape=spec.shape, dtype=_float_dtype(spec.dtype), device=spec.device)

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        output_spec = super().transform_output_spec(output_spec)
        if self.stateful:
            return output_spec
        observation = _slot(output_spec, "full_observation_spec")
        rewards = _slot(output_spec, "full_reward_spec")
        for key in self.in_keys:
            source = observation if key in observation else rewards if key in rewards else None
            if source is None:
                continue
            leaf = _leaf(source, key)
            self._stateless_leaves[key] = (leaf.shape, _float_dtype(leaf.dtype), leaf.device)
            stat = Unbounded(shape=leaf.shape, dtype=_float_dtype(leaf.dtype), device=leaf.device)
            counter = Unbounded(shape=leaf.shape, dtype=torch.int64, device=leaf.device)
            for name, entry in (("loc", stat), ("var", stat.clone()), ("count", counter)):
                slot = f"{self.prefix}_{name}"
                if slot not in observation:
                    observation[slot] = Composite(shape=observation.shape, device=observation.device)
                observation[(slot, *_key_tuple(key))] = entry
        output_spec["full_observation_spec"] = observation
        return output_spec

    def _extra_repr(self) -> str:
        mode = "stateful" if self.stateful else "stateless"
        return f"{mode}, decay={self.decay}, eps={self.eps}, frozen={self.frozen}"
