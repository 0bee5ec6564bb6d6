"""Compact next observations: store ``("next", obs)`` as a delta, or rebuild it from the next row.

Stored transitions hold each observation twice: at the root of step ``t + 1`` and under
``"next"`` at step ``t``. Two ways to store it once:

- ``NextObservationDelta``: the env writes ``("next", "delta", k) = next - obs`` in a low
  precision dtype; in a replay buffer, writing drops the full ``("next", k)`` and sampling
  rebuilds it as ``k + delta`` (lossy, but exact at trajectory ends).
- ``NextStateReconstructor``: the data is stored without ``("next", k)`` (e.g. a
  collector's ``postproc=lambda td: td.exclude(("next", "observation"))``) and sampling
  rebuilds it from row ``i + 1`` of the same trajectory, ``fill_value`` (NaN) where there
  is none.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> data = TensorDict({"observation": torch.arange(4.0).unsqueeze(-1),
    ...                    "next": {"done": torch.tensor([[False], [True], [False], [False]])}}, [4])
    >>> NextStateReconstructor(traj_key=None)(data)["next", "observation"].squeeze(-1)
    tensor([1., nan, 3., nan])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read
from tdrl.envs.transforms.transforms import Transform, _key_tuple, _unravel
from tdrl.specs import Composite, NestedKey, TensorSpec, Unbounded

__all__ = ["NextObservationDelta", "NextStateReconstructor"]

_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)


def _next(key: NestedKey) -> tuple:
    return ("next", *_key_tuple(key))


class NextObservationDelta(Transform):
    """Writes ``("next", "delta", k) = (next_obs - obs).to(delta_dtype)``; a replay buffer stores only the delta.

    In an env, each step writes the delta of every observation ``k`` of ``in_keys`` (a
    reset writes zeros; the entries are declared in the observation spec). The full
    ``("next", k)`` stays in env rollouts, so the policy and ``step_mdp`` see full-precision
    observations. Attached to a replay buffer, the same instance (or one with the same
    ``in_keys``) drops ``("next", k)`` when data is written (its ``inv``) and rebuilds it as
    ``(k + delta)`` when data is sampled (its forward call), removing the delta when
    ``drop_delta``. (TorchRL drops ``("next", k)`` already in the rollout, through a
    post-``step_mdp`` hook of its collectors; tdrl drops it on the way into the buffer.)

    Args:
        in_keys: the observations (default: every floating-point observation of the env,
            found at attach time; a replay buffer needs them given).
        delta_dtype: the dtype of the stored delta (a floating dtype; default ``float16``).
        restore_dtype: the dtype of the rebuilt observation, or ``"root"`` (that of ``k``).
        drop_delta: remove the delta from sampled data after rebuilding (default True).
        excluded_dtypes: dtypes never chosen by default (integers and bool).

    Raises:
        ValueError: when ``delta_dtype`` or ``restore_dtype`` is not a floating dtype.

    Examples:
        >>> import torch
        >>> from tdrl.data import LazyTensorStorage, ReplayBuffer
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.envs.libs.gym import GymEnv
        >>> t = NextObservationDelta()
        >>> env = TransformedEnv(GymEnv("Pendulum-v1"), t)
        >>> data = env.rollout(5)
        >>> data["next", "delta", "observation"].dtype
        torch.float16
        >>> rb = ReplayBuffer(storage=LazyTensorStorage(10), transform=t)
        >>> _ = rb.extend(data)
        >>> ("next", "observation") in rb.storage[:].keys(True, True)  # stored: the delta only
        False
        >>> rebuilt = rb[:]["next", "observation"]
        >>> bool(torch.allclose(rebuilt, data["next", "observation"], atol=1e-2))
        True
    """

    time_vectorizable = False

    def __init__(
        self,
        in_keys: Sequence[NestedKey] | None = None,
        *,
        delta_dtype: torch.dtype = torch.float16,
        restore_dtype: torch.dtype | Literal["root"] = "root",
        drop_delta: bool = True,
        excluded_dtypes: tuple[torch.dtype, ...] = _INTEGER_DTYPES,
    ) -> None:
        if not delta_dtype.is_floating_point:
            raise ValueError(f"NextObservationDelta: delta_dtype must be a floating dtype, got {delta_dtype}.")
        if restore_dtype != "root" and not (isinstance(restore_dtype, torch.dtype) and restore_dtype.is_floating_point):
            raise ValueError(
                f"NextObservationDelta: restore_dtype must be a floating dtype or 'root', got {restore_dtype!r}."
            )
        super().__init__(in_keys, in_keys)
        self._given_keys = in_keys is not None
        self.delta_dtype = delta_dtype
        self.restore_dtype = restore_dtype
        self.drop_delta = drop_delta
        self.excluded_dtypes = tuple(excluded_dtypes)

    @staticmethod
    def _delta_key(key: NestedKey) -> tuple:
        return ("delta", *_key_tuple(key))

    # --- env side ------------------------------------------------------------------------------
    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        if not self._given_keys:
            chosen = []
            for key in observation_spec.keys(True, True):
                spec = cast(TensorSpec, observation_spec[key])
                if _key_tuple(key)[0] == "delta" or spec.dtype in self.excluded_dtypes:
                    continue
                if spec.dtype.is_floating_point:
                    chosen.append(_unravel(key))
            self.in_keys, self.out_keys = chosen, list(chosen)
        for key in self.in_keys:
            if key in observation_spec.keys(True, True):
                spec = cast(TensorSpec, observation_spec[key])
                observation_spec[self._delta_key(key)] = Unbounded(
                    shape=spec.shape, dtype=self.delta_dtype, device=spec.device
                )
        return observation_spec

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        return reward_spec

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        for key in self.in_keys:
            obs = td_read(tensordict_reset, key)
            if obs is not None:
                tensordict_reset.set(self._delta_key(key), torch.zeros_like(obs, dtype=self.delta_dtype))
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        for key in self.in_keys:
            obs, next_obs = td_read(tensordict, key), td_read(next_tensordict, key)
            if obs is not None and next_obs is not None:
                # subtract at full precision, then cast once (fewer bits lost than casting each side)
                next_tensordict.set(self._delta_key(key), (next_obs - obs).to(self.delta_dtype))
        return next_tensordict

    # --- replay-buffer side ----------------------------------------------------------------------
    def inv(self, tensordict: TensorDictBase) -> TensorDictBase:
        """On write: drop each ``("next", k)`` whose delta is present (and the root copy of the delta)."""
        out = tensordict.copy()
        for key in self.in_keys:
            if td_read(out, _next(self._delta_key(key))) is None:
                continue
            out = out.exclude(_next(key), self._delta_key(key))
        return out

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """On sample: ``("next", k) = k + ("next", "delta", k)`` (entries missing either side are skipped)."""
        for key in self.in_keys:
            obs = td_read(tensordict, key)
            delta_key = _next(self._delta_key(key))
            delta = td_read(tensordict, delta_key)
            if obs is None or delta is None:
                continue
            dtype = obs.dtype if self.restore_dtype == "root" else self.restore_dtype
            tensordict.set(_next(key), obs.to(dtype) + delta.to(dtype))
            if self.drop_delta:
                tensordict.pop(delta_key)
                deltas = tensordict.get(("next", "delta"), None)
                if deltas is not None and deltas.is_empty():
                    tensordict.pop(("next", "delta"))
        return tensordict

    def __repr__(self) -> str:
        keys = self.in_keys if self._given_keys else None
        return f"NextObservationDelta(in_keys={keys}, delta_dtype={self.delta_dtype})"


class NextStateReconstructor(Transform):
    """Rebuilds ``("next", k)`` of a sampled flat batch from row ``i + 1``, when it is the next step.

    Row ``i + 1`` counts as the next step of row ``i`` when it exists, shares its
    trajectory id (``traj_key``), row ``i`` is not done (``done_key``), and, if given, the
    step counts follow (``step_count_key``). Elsewhere ``("next", k)`` is ``fill_value``.
    Pair it with data stored without ``("next", k)`` and a sampler that keeps trajectories
    contiguous (``SliceSampler``); with a random sampler most rows get ``fill_value``.

    Args:
        keys: the root entries whose ``"next"`` counterparts are rebuilt (default ``("observation",)``).
        traj_key: the trajectory ids (default ``("collector", "traj_ids")``; None: one trajectory).
        done_key: the done flags (default ``("next", "done")``; None: not checked).
        step_count_key: step counts that must increase by one (default None: not checked).
        fill_value: the value where there is no next step (default NaN; integer data needs a number).
        strict: raise when a marker key above is missing from the batch (default True); else skip that check.

    Raises:
        ValueError: when the batch is not flat ``[B]``.
        KeyError: (``strict``) when a marker key is missing.
        TypeError: for NaN filling of an integer entry.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data import LazyTensorStorage, ReplayBuffer, SliceSampler
        >>> sampler = SliceSampler(slice_len=4, traj_key=("collector", "traj_ids"))
        >>> rb = ReplayBuffer(storage=LazyTensorStorage(20), sampler=sampler,
        ...                   transform=NextStateReconstructor(), batch_size=8)
        >>> data = TensorDict({"observation": torch.arange(8.0).unsqueeze(-1),
        ...                    "next": {"done": torch.tensor([0, 0, 0, 1, 0, 0, 0, 1]).bool().unsqueeze(-1)},
        ...                    "collector": {"traj_ids": torch.tensor([0] * 4 + [1] * 4)}}, [8])
        >>> _ = rb.extend(data)
        >>> sample = rb.sample()
        >>> nxt = sample["next", "observation"].squeeze(-1)
        >>> bool(torch.isnan(nxt[3::4]).all()), torch.equal(nxt[0:3], sample["observation"][1:4].squeeze(-1))
        (True, True)
    """

    time_vectorizable = False

    def __init__(
        self,
        keys: Sequence[NestedKey] = ("observation",),
        *,
        traj_key: NestedKey | None = ("collector", "traj_ids"),
        done_key: NestedKey | None = ("next", "done"),
        step_count_key: NestedKey | None = None,
        fill_value: float = float("nan"),
        strict: bool = True,
    ) -> None:
        super().__init__()
        self.keys = tuple(_unravel(k) for k in ([keys] if isinstance(keys, str) else keys))  # a sequence of keys
        self.traj_key = traj_key
        self.done_key = done_key
        self.step_count_key = step_count_key
        self.fill_value = fill_value
        self.strict = strict

    def _marker(self, tensordict: TensorDictBase, key: NestedKey, what: str, size: int) -> torch.Tensor | None:
        value = td_read(tensordict, key)
        if value is None:
            if self.strict:
                raise KeyError(
                    f"NextStateReconstructor: the {what} {key!r} is not in the sampled batch (keys "
                    f"{sorted(map(str, tensordict.keys(True, True)))}). Fix: pass its key, None to skip the check, "
                    f"or strict=False."
                )
            return None
        return value.reshape(size, -1)[:, 0]

    def _has_next(self, tensordict: TensorDictBase, size: int) -> torch.Tensor:
        """``[B]`` bool: row ``i + 1`` is the next step of row ``i``."""
        follows = torch.zeros(size, dtype=torch.bool, device=tensordict.device)
        follows[:-1] = True
        if self.traj_key is not None:
            traj = self._marker(tensordict, self.traj_key, "trajectory key", size)
            if traj is not None:
                follows[:-1] &= traj[1:] == traj[:-1]
        if self.done_key is not None:
            done = self._marker(tensordict, self.done_key, "done key", size)
            if done is not None:
                follows[:-1] &= ~done[:-1].bool()
        if self.step_count_key is not None:
            count = self._marker(tensordict, self.step_count_key, "step-count key", size)
            if count is not None:
                follows[:-1] &= count[1:] == count[:-1] + 1
        return follows

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Write ``("next", k)`` for each key (see the class docstring)."""
        if tensordict.batch_dims != 1:
            raise ValueError(
                f"NextStateReconstructor: the sample must be flat [B]; got batch_size {tuple(tensordict.batch_size)}. "
                f"Fix: reshape(-1) the sample, or use a 1-d storage."
            )
        size = tensordict.batch_size[0]
        if size == 0:
            return tensordict
        follows = self._has_next(tensordict, size)
        for key in self.keys:
            root = tensordict.get(key)
            if (
                not root.is_floating_point()
                and isinstance(self.fill_value, float)
                and self.fill_value != self.fill_value
            ):
                raise TypeError(
                    f"NextStateReconstructor: {key!r} has dtype {root.dtype}, which cannot hold NaN. Fix: pass an "
                    f"integer fill_value (e.g. fill_value=0)."
                )
            shifted = torch.cat([root[1:], root[:1]])
            mask = follows.reshape(size, *([1] * (root.ndim - 1)))
            tensordict.set(_next(key), torch.where(mask, shifted, root.new_full((), self.fill_value)))
        return tensordict

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        return observation_spec

    def __repr__(self) -> str:
        return (
            f"NextStateReconstructor(keys={list(self.keys)}, traj_key={self.traj_key!r}, fill_value={self.fill_value})"
        )
