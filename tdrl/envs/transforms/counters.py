"""Transforms that label steps with bookkeeping: TrajCounter (a trajectory id), Timer (time spent).

Both act only while an env steps: they count resets and measure the clock, which a
stored rollout no longer holds, so calling them on a plain TensorDict is refused.

Examples:
    >>> from tdrl.envs import StepCounter, TransformedEnv
    >>> from tdrl.testing import CountingEnv
    >>> env = TransformedEnv(CountingEnv(max_steps=2), TrajCounter())
    >>> env.rollout(5, break_when_any_done=False)["next", "traj_count"].squeeze(-1)
    tensor([0, 0, 1, 1, 2])
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read, td_write
from tdrl.envs.transforms.transforms import Transform, _key_tuple, _slot, _unravel
from tdrl.specs import Bounded, Composite, NestedKey, Unbounded

__all__ = ["TrajCounter", "Timer"]

_ONLY_IN_ENV = (
    "{name} labels steps while an env runs (it counts resets or reads the clock); a stored TensorDict "
    "holds neither. Fix: attach it to the env (TransformedEnv(env, {name}(...))) instead of calling it on data."
)
_LOCK_TIMEOUT_S = 30.0


class TrajCounter(Transform):
    """Number every trajectory: ``traj_count`` holds a global id that changes at each reset.

    Each reset (of the whole env, or of the sub-envs a ``"_reset"`` mask selects) takes the
    next ids from a counter, and every step of that trajectory carries its id. The counter
    is shared by the clones of the transform (``transform.clone()``), also across worker
    processes started with ``fork``, so sub-envs built from one clone never share an id.
    A pickled or deep-copied transform gets its own counter, starting from the current count.

    Args:
        out_key: where to write the id (default ``"traj_count"``). A nested key
            (``("agents", "traj_count")``) counts the resets of the done flags under
            the same prefix.
        repeats: accepted for TorchRL's signature; kept as an attribute.

    Raises:
        KeyError: when the env has no done flag under ``out_key``'s prefix (when attached).
        RuntimeError: when called on a TensorDict outside an env, or stepped before a reset.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(max_steps=3), TrajCounter())
        >>> ro = env.rollout(7, break_when_any_done=False)
        >>> ro["traj_count"].squeeze(-1), env.transform.state_dict()["traj_count"]
        (tensor([0, 0, 0, 1, 1, 1, 2]), tensor(3))
    """

    time_vectorizable = False
    traj_count: torch.Tensor

    def __init__(self, out_key: NestedKey = "traj_count", *, repeats: int | None = None) -> None:
        super().__init__(in_keys=[], out_keys=[])
        self.out_keys = [_unravel(out_key)]
        self.repeats = 0 if repeats is None else int(repeats)
        self._count: Any = multiprocessing.get_context().Value("q", 0)
        self.register_buffer("traj_count", torch.zeros((), dtype=torch.int64))
        self.register_state_dict_pre_hook(self._refresh_buffer)
        self.register_load_state_dict_post_hook(self._load_buffer)
        self._initialized = False
        self._current: torch.Tensor | None = None

    @property
    def _prefix(self) -> tuple:
        return _key_tuple(self.out_keys[0])[:-1]

    # --- the shared counter -------------------------------------------------------------------
    def _take(self, n: int) -> int:
        """Reserve ``n`` ids; returns the first."""
        lock = self._count.get_lock()
        if not lock.acquire(timeout=_LOCK_TIMEOUT_S):
            raise RuntimeError(
                f"TrajCounter: the shared trajectory counter stayed locked for {_LOCK_TIMEOUT_S:.0f} s "
                "(a process holding it died?). Fix: rebuild the env, or give each env its own TrajCounter()."
            )
        try:
            first = int(self._count.value)
            self._count.value = first + n
        finally:
            lock.release()
        return first

    def clone(self) -> TrajCounter:
        """A copy detached from any env that shares this transform's counter (ids stay unique across both)."""
        other = super().clone()
        assert isinstance(other, TrajCounter)  # super().clone() deep-copies self
        other._count = self._count
        return other

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_count"] = int(self._count.value)  # a shared Value cannot be pickled: carry the count
        return state

    def __setstate__(self, state: dict) -> None:
        count = state.pop("_count")
        super().__setstate__(state)
        self._count = multiprocessing.get_context().Value("q", int(count))

    # the count is saved as the buffer "traj_count" (TorchRL's state_dict key), refreshed from the shared counter
    def _refresh_buffer(self, *args: Any) -> None:
        self.traj_count.fill_(int(self._count.value))

    def _load_buffer(self, *args: Any) -> None:
        lock = self._count.get_lock()
        if not lock.acquire(timeout=_LOCK_TIMEOUT_S):
            raise RuntimeError("TrajCounter: the shared trajectory counter stayed locked; cannot load a state.")
        try:
            self._count.value = int(self.traj_count)
        finally:
            lock.release()

    # --- env hooks ----------------------------------------------------------------------------
    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        self._initialized = True
        done = td_read(tensordict_reset, (*self._prefix, "done"))
        if done is None:
            done = tensordict_reset.get((*self._prefix, "done"))  # (the KeyError naming the key)
        mask = None
        if tensordict is not None:
            mask = tensordict.get((*self._prefix, "_reset"), None)
        if mask is None:
            mask = torch.ones(done.shape, dtype=torch.bool, device=done.device)
        mask = mask.reshape(done.shape)
        n = int(mask.sum())
        first = self._take(n)
        ids = torch.arange(first, first + n, dtype=torch.int64, device=done.device)
        counts = torch.zeros(done.shape, dtype=torch.int64, device=done.device).masked_scatter(mask, ids)
        previous = self._current if self._current is not None and self._current.shape == counts.shape else counts
        self._current = torch.where(
            mask, counts, previous
        )  # for a step whose input lacks the id (a batched env's worker)
        td_write(tensordict_reset, self.out_keys[0], counts)
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        current = td_read(tensordict, self.out_keys[0])
        if current is None:
            current = self._current
        if current is None or not self._initialized:
            raise RuntimeError(
                f"TrajCounter: no trajectory id for {self.out_keys[0]!r}; the env was stepped before a reset "
                "through this transform. Fix: call env.reset() first (env.rollout does)."
            )
        td_write(next_tensordict, self.out_keys[0], current)
        return next_tensordict

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise RuntimeError(_ONLY_IN_ENV.format(name="TrajCounter"))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise RuntimeError(_ONLY_IN_ENV.format(name="TrajCounter"))

    def _carried_keys(self) -> list:
        return [self.out_keys[0]]

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        done_spec = _slot(output_spec, "full_done_spec")
        done_key = _unravel((*self._prefix, "done"))
        if done_key not in done_spec.keys(True, True):
            raise KeyError(
                f"TrajCounter: out_key {self.out_keys[0]!r} counts the resets of {done_key!r}, which the env's done "
                f"spec lacks (it has {sorted(map(str, done_spec.keys(True, True)))}). Fix: pass an out_key under "
                "the prefix of one of those flags."
            )
        flag = done_spec[done_key]
        _slot(output_spec, "full_observation_spec")[self.out_keys[0]] = Bounded(
            0, torch.iinfo(torch.int64).max, shape=flag.shape, dtype=torch.int64, device=flag.device
        )
        return output_spec

    def _extra_repr(self) -> str:
        return f"out_key={self.out_keys[0]!r}"

    def __repr__(self) -> str:
        return f"TrajCounter({self._extra_repr()})"


class Timer(Transform):
    """Write how long the env's steps, resets and the policy between them took, in seconds.

    - ``"<time_key>_step"``: under ``"next"``, the time of the step (from the action
      reaching the transform to the step's output coming back); 0 at the root after a reset.
    - ``"<time_key>_policy"``: under ``"next"``, the time from the previous step's (or
      reset's) output to this step's action, i.e. what the policy took; 0 at the root after a reset.
    - ``"<time_key>_reset"``: at the root after a reset, the time the reset took;
      0 under ``"next"``.

    Values are ``torch.get_default_dtype()`` scalars expanded to the env's batch.

    Args:
        out_keys: the three entries ``[step, policy, reset]``; default built from ``time_key``.
        time_key: the prefix of the default entries (default ``"time"``).

    Raises:
        TypeError: when ``out_keys`` does not hold three keys.
        RuntimeError: when called on a TensorDict outside an env.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(), Timer())
        >>> ro = env.rollout(3)
        >>> bool((ro["next", "time_step"] > 0).all()), ro["time_policy"][0].item()
        (True, 0.0)
    """

    time_vectorizable = False

    def __init__(self, out_keys: Sequence[NestedKey] | None = None, time_key: str = "time") -> None:
        if out_keys is None:
            out_keys = [f"{time_key}_step", f"{time_key}_policy", f"{time_key}_reset"]
        elif isinstance(out_keys, (str, tuple)) or len(out_keys) != 3:
            raise TypeError(
                f"Timer: out_keys must hold three keys (step, policy, reset), got {out_keys!r}. "
                "Fix: pass three keys, or time_key='prefix' for the default names."
            )
        super().__init__(in_keys=[], out_keys=[])
        self.out_keys = [_unravel(k) for k in out_keys]
        self.time_key = time_key
        self.time_step_key, self.time_policy_key, self.time_reset_key = self.out_keys
        self.last_inv_time: float | None = None
        self.last_call_time: float | None = None
        self.last_reset_time: float | None = None
        self._policy_time = 0.0

    def _has_inverse(self) -> bool:
        return True  # the action's arrival marks the end of the policy's time and the start of the step's

    def _set_time(self, tensordict: TensorDictBase, key: NestedKey, seconds: float) -> None:
        key_t = _key_tuple(key)
        parent = tensordict.get(key_t[:-1]) if len(key_t) > 1 else tensordict
        value = torch.tensor(seconds, dtype=torch.get_default_dtype(), device=tensordict.device)
        parent.set(key_t[-1], value.expand(parent.batch_size).clone())

    def _reset_env_preprocess(self, tensordict: TensorDictBase | None) -> TensorDictBase | None:
        self.last_reset_time = self.last_inv_time = time.perf_counter()
        return tensordict

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        now = time.perf_counter()
        started = self.last_reset_time if self.last_reset_time is not None else now
        self._set_time(tensordict_reset, self.time_reset_key, now - started)
        self._set_time(tensordict_reset, self.time_step_key, 0.0)
        self._set_time(tensordict_reset, self.time_policy_key, 0.0)
        self.last_call_time = now
        return tensordict_reset

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        now = time.perf_counter()
        self._policy_time = now - self.last_call_time if self.last_call_time is not None else 0.0
        self.last_inv_time = now
        return tensordict

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        now = time.perf_counter()
        if self.last_inv_time is not None:
            self._set_time(next_tensordict, self.time_step_key, now - self.last_inv_time)
            self._set_time(next_tensordict, self.time_reset_key, 0.0)
        self.last_call_time = now
        self._set_time(next_tensordict, self.time_policy_key, self._policy_time)
        return next_tensordict

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise RuntimeError(_ONLY_IN_ENV.format(name="Timer"))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise RuntimeError(_ONLY_IN_ENV.format(name="Timer"))

    def inv(self, tensordict: TensorDictBase) -> TensorDictBase:
        """The input unchanged: the policy's time is written by the env's own step, not by a standalone call."""
        return tensordict

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        for key in self.out_keys:
            observation_spec[key] = Unbounded(
                shape=observation_spec.shape, dtype=torch.get_default_dtype(), device=observation_spec.device
            )
        return observation_spec

    def __repr__(self) -> str:
        return f"Timer(out_keys={self.out_keys})"
