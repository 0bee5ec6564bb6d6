"""Compact next observations: store ``("next", obs)`` as a delta, or rebuild it from the next row.

Stored transitions hold each observation twice: at the root of step ``t + 1`` and under
``"next"`` at step ``t``. Two ways to store it once:

- ``NextObservationDelta``: the env writes ``("next", "delta", k) = next - obs`` in a low
  precision dtype; rollouts and collector batches keep it instead of the full
  ``("next", k)``, and sampling from a replay buffer rebuilds ``k + delta`` (lossy, but
  exact at trajectory ends).
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
from typing import Literal, NamedTuple, cast

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read
from tdrl.envs.transforms.compose import Compose
from tdrl.envs.transforms.transforms import Transform, _key_tuple, _unravel
from tdrl.specs import Composite, NestedKey, TensorSpec

__all__ = ["NextObservationDelta", "NextStateReconstructor"]

_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)


def _next(key: NestedKey) -> tuple:
    return ("next", *_key_tuple(key))


class NextObservationDelta(Transform):
    """Keeps ``("next", k)`` as a low-precision delta ``("next", "delta", k) = (next_obs - obs).to(delta_dtype)``.

    In an env, each step writes the delta of every observation ``k`` of ``in_keys`` next
    to the full ``("next", k)``; ``env.step`` returns both. Rollouts
    (``env.rollout``, ``env.step_and_maybe_reset``) and collector batches then keep the
    delta only: ``("next", k)`` is left out of what they record, after it became the root
    ``k`` of the following step, so the policy always reads full-precision observations;
    the delta is not carried to that root either. The delta is not declared in the
    observation spec (``check_env_specs`` knows it). Attached to a replay buffer, the same
    instance (or one with the same ``in_keys``) rebuilds ``("next", k) = k + delta`` in
    sampled data (its forward call) and removes the delta when ``drop_delta``; the rebuilt
    value is exact up to ``delta_dtype``'s rounding of the transition, trajectory ends
    included. Keep it outside batched envs (``TransformedEnv(ParallelEnv(...),
    NextObservationDelta())``): the rollout layout is applied by the outermost env.

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
        >>> ("next", "observation") in data.keys(True, True), "delta" in data.keys()
        (False, False)
        >>> rb = ReplayBuffer(storage=LazyTensorStorage(10), transform=t)
        >>> _ = rb.extend(data)
        >>> rebuilt = rb[:]["next", "observation"]
        >>> bool(torch.allclose(rebuilt[:-1], data["observation"][1:], atol=1e-2))
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
                if spec.dtype in self.excluded_dtypes or not spec.dtype.is_floating_point:
                    continue
                chosen.append(_unravel(key))
            self.in_keys, self.out_keys = chosen, list(chosen)
        return observation_spec  # the delta is a next-only entry: no spec (as in TorchRL)

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        return reward_spec

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        for key in self.in_keys:
            obs, next_obs = td_read(tensordict, key), td_read(next_tensordict, key)
            if obs is not None and next_obs is not None:
                # subtract at full precision, then cast once (fewer bits lost than casting each side)
                next_tensordict.set(self._delta_key(key), (next_obs - obs).to(self.delta_dtype))
        return next_tensordict

    # --- replay-buffer side ----------------------------------------------------------------------
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


class _DeltaLayout(NamedTuple):
    """What rollouts and collector batches of an env with :class:`NextObservationDelta` leave out.

    Built by :func:`_delta_layout`; the rollout loop, ``step_and_maybe_reset``, the
    collectors and ``check_env_specs`` read it.

    Attributes:
        next_keys: the full ``("next", k)`` entries, kept as deltas only.
        root_keys: the delta entries not carried from ``"next"`` to the following root
            (``("delta",)`` as a whole when no spec declares a ``"delta"`` entry).
        delta_dtypes: the dtype of each delta, in the order of ``next_keys``.
    """

    next_keys: tuple[tuple, ...] = ()
    root_keys: tuple[tuple, ...] = ()
    delta_dtypes: tuple[torch.dtype, ...] = ()

    def recorded(self, stepped: TensorDictBase) -> TensorDictBase:
        """``stepped`` without the full next observations (a shallow copy; ``stepped`` is unchanged)."""
        return stepped.exclude(*self.next_keys) if self.next_keys else stepped

    def fake(self, fake: TensorDictBase) -> TensorDictBase:
        """``env.fake_tensordict()``'s layout: each ``("next", k)`` replaced by its delta (in place)."""
        for key, dtype in zip(self.next_keys, self.delta_dtypes):
            leaf = td_read(fake, key)
            if leaf is not None:
                fake.set(("next", "delta", *key[1:]), leaf.to(dtype))
                fake.del_(key)
        return fake

    def next_root(self, root: TensorDictBase) -> TensorDictBase:
        """The following step's root without the deltas."""
        if not self.root_keys:
            return root
        root = root.exclude(*self.root_keys)
        deltas = root.get("delta", None)
        if isinstance(deltas, TensorDictBase) and deltas.is_empty():
            root = root.exclude("delta")
        return root


_NO_LAYOUT = _DeltaLayout()


def _chain_transforms(env: object) -> list[Transform]:
    """The transforms of ``env`` and of the transformed envs it wraps, outermost first."""
    found: list[Transform] = []
    chain = getattr(env, "__dict__", {}).get("_chain")  # a TransformedEnv: (base env, transform)
    while chain is not None:
        base, transform = chain
        stack = [transform]
        while stack:
            t = stack.pop(0)
            if isinstance(t, Compose):
                stack[:0] = list(t.transforms)
            else:
                found.append(t)
        chain = getattr(base, "__dict__", {}).get("_chain")
    return found


def _delta_layout(env: object) -> _DeltaLayout:
    """The :class:`_DeltaLayout` of ``env``: empty unless its transforms hold a :class:`NextObservationDelta`.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> _delta_layout(TransformedEnv(CountingEnv(), NextObservationDelta(["observation"])))
        _DeltaLayout(next_keys=(('next', 'observation'),), root_keys=(('delta',),), delta_dtypes=(torch.float16,))
        >>> _delta_layout(CountingEnv()).next_keys
        ()
    """
    deltas = [t for t in _chain_transforms(env) if isinstance(t, NextObservationDelta)]
    if not deltas:
        return _NO_LAYOUT
    keys: list[tuple] = []
    dtypes: list[torch.dtype] = []
    for t in deltas:
        for key in map(_key_tuple, t.in_keys):
            if key not in keys:
                keys.append(key)
                dtypes.append(t.delta_dtype)
    declared = any(
        "delta" in cast(Composite, spec).keys()
        for spec in (getattr(env, "full_observation_spec", None), getattr(env, "full_state_spec", None))
        if spec is not None
    )
    root_keys = tuple(("delta", *k) for k in keys) if declared else (("delta",),)
    return _DeltaLayout(tuple(("next", *k) for k in keys), root_keys, tuple(dtypes))


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
