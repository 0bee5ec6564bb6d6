"""RandomTruncationTransform: give each sub-env its own random horizon, so that batched envs do not reset in step.

Examples:
    >>> import torch
    >>> from tdrl.envs import Compose, StepCounter, TransformedEnv
    >>> from tdrl.testing import CountingEnv
    >>> _ = torch.manual_seed(0)
    >>> chain = Compose(StepCounter(), RandomTruncationTransform(1, 5))
    >>> env = TransformedEnv(CountingEnv(max_steps=100, batch_size=[4]), chain)
    >>> ro = env.rollout(5, break_when_any_done=False)
    >>> bool((ro["next", "truncated"].sum(1) >= 1).all())  # every sub-env was cut within its horizon
    True
"""

from __future__ import annotations

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read
from tdrl.envs.transforms.transforms import Transform, _key_tuple, _slot, _unravel
from tdrl.specs import Categorical, Composite, NestedKey

__all__ = ["RandomTruncationTransform"]


def _next_to(key: tuple, leaf: NestedKey) -> NestedKey:
    """``leaf`` beside ``key`` (same prefix), or ``leaf`` itself when it is a tuple (an exact key)."""
    if isinstance(leaf, tuple):
        return leaf
    return _unravel((*key[:-1], leaf))


class RandomTruncationTransform(Transform):
    """Truncate episodes at a random horizon per sub-env, to spread the resets of a batched env over time.

    At the first reset each sub-env draws its horizon uniformly in ``[1, max_horizon]``, so
    the sub-envs leave step at once. At each later reset of a sub-env, with probability
    ``prob`` (``first_episode_prob`` for its first full episode) it draws a horizon in
    ``[min_horizon, max_horizon]``, else it runs to ``max_horizon``. A step whose count
    reaches the horizon sets ``truncated`` and ``done``. Draws use torch's global RNG. A
    reset without input (``env.reset()``) after the first keeps the horizons, as TorchRL's.

    Place it after a :class:`StepCounter` (it reads the step count); ``truncated`` and
    ``done`` are read and written beside the count (``("agents", "truncated")`` for a
    count ``("agents", "step_count")``).

    Args:
        min_horizon: the shortest random horizon (inclusive).
        max_horizon: the longest (inclusive); the horizon when no random one is drawn,
            typically the env's own episode limit.
        prob: the probability of a random horizon at each later reset (default 0: only
            the initial spread).
        first_episode_prob: the same for each sub-env's first episode after the spread
            (default ``prob``).
        step_count_key: the StepCounter's entry; a string matches the last part of a
            nested key.
        truncated_key: the flag to set (beside the count unless a tuple).
        done_key: the done flag to set (beside the count unless a tuple).

    Raises:
        ValueError: for probabilities outside ``[0, 1]`` or horizons not ``1 <= min <= max``.
        RuntimeError: when no StepCounter before it writes ``step_count_key`` (when attached).

    Examples:
        >>> import torch
        >>> from tdrl.envs import Compose, StepCounter, TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> _ = torch.manual_seed(1)
        >>> t = RandomTruncationTransform(min_horizon=2, max_horizon=3, prob=1.0)
        >>> env = TransformedEnv(CountingEnv(max_steps=100, batch_size=[3]), Compose(StepCounter(), t))
        >>> lengths = env.rollout(12, break_when_any_done=False)["next", "step_count"]
        >>> int(lengths.max()) <= 3
        True
    """

    time_vectorizable = False

    def __init__(
        self,
        min_horizon: int,
        max_horizon: int,
        prob: float = 0.0,
        first_episode_prob: float | None = None,
        *,
        step_count_key: NestedKey = "step_count",
        truncated_key: NestedKey = "truncated",
        done_key: NestedKey = "done",
    ) -> None:
        first_episode_prob = prob if first_episode_prob is None else first_episode_prob
        for name, p in (("prob", prob), ("first_episode_prob", first_episode_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"RandomTruncationTransform: {name} must be in [0, 1], got {p}.")
        if not 1 <= min_horizon <= max_horizon:
            raise ValueError(
                f"RandomTruncationTransform: horizons must satisfy 1 <= min_horizon <= max_horizon, got "
                f"min_horizon={min_horizon}, max_horizon={max_horizon}."
            )
        super().__init__()
        self.min_horizon, self.max_horizon = int(min_horizon), int(max_horizon)
        self.prob, self.first_episode_prob = float(prob), float(first_episode_prob)
        self.step_count_key = _unravel(step_count_key)
        self.truncated_key = _unravel(truncated_key)
        self.done_key = _unravel(done_key)
        self._count_key: NestedKey | None = None  # the step count found in the specs
        self._horizons: torch.Tensor | None = None
        self._first_episode = torch.ones(0, dtype=torch.bool)  # sized at the first reset

    def _flags(self) -> tuple[NestedKey, NestedKey]:
        key = _key_tuple(self._count_key if self._count_key is not None else self.step_count_key)
        return _next_to(key, self.truncated_key), _next_to(key, self.done_key)

    def _find_count(self, keys: list) -> NestedKey | None:
        if self.step_count_key in keys:
            return self.step_count_key
        if isinstance(self.step_count_key, str):
            for key in keys:
                if _key_tuple(key)[-1] == self.step_count_key:
                    return key
        return None

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        observations = _slot(output_spec, "full_observation_spec")
        self._count_key = self._find_count(observations.keys(True, True))
        if self._count_key is None:
            raise RuntimeError(
                f"RandomTruncationTransform reads the step count {self.step_count_key!r}, which no transform before "
                "it writes. Fix: Compose(StepCounter(), RandomTruncationTransform(...)), with the same "
                "step_count_key as the StepCounter's."
            )
        truncated_key, _ = self._flags()
        done_spec = _slot(output_spec, "full_done_spec")
        if truncated_key not in done_spec.keys(True, True):
            shape = observations[self._count_key].shape
            done_spec[truncated_key] = Categorical(2, shape=shape, dtype=torch.bool, device=observations.device)
        return output_spec

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        count_key = self._count_key
        count = td_read(tensordict_reset, count_key) if count_key is not None else None
        if count is None or count_key is None:
            return tensordict_reset
        truncated_key, done_key = self._flags()
        done = td_read(tensordict_reset, done_key)
        if done is not None:
            tensordict_reset.set(truncated_key, torch.zeros_like(done))
        if self._horizons is None or self._horizons.shape != count.shape:
            self._horizons = torch.randint(1, self.max_horizon + 1, count.shape, device=count.device)
            self._first_episode = torch.ones(count.shape, dtype=torch.bool, device=count.device)
            return tensordict_reset
        if tensordict is None:
            return tensordict_reset  # a fresh env.reset() keeps the horizons (as TorchRL's)
        reset_key = _next_to(_key_tuple(count_key), "_reset")
        mask = tensordict.get(reset_key, None)
        if mask is None:
            mask = tensordict.get("_reset", None)
        # no mask on a reset that has an input: an unbatched env starting its next episode
        mask = torch.ones_like(self._horizons, dtype=torch.bool) if mask is None else mask.reshape(count.shape).bool()
        self._redraw(mask, self._horizons, self._first_episode)
        return tensordict_reset

    def _redraw(self, mask: torch.Tensor, horizons: torch.Tensor, first: torch.Tensor) -> None:
        """New horizons (in place) for the sub-envs ``mask`` selects."""
        n = int(mask.sum())
        if n == 0:
            return
        if self.prob == 0.0 and self.first_episode_prob == 0.0:
            horizons[mask] = self.max_horizon
        else:
            new = torch.randint(self.min_horizon, self.max_horizon + 1, (n,), device=horizons.device)
            p = torch.where(
                first[mask],
                torch.tensor(self.first_episode_prob, device=horizons.device),
                torch.tensor(self.prob, device=horizons.device),
            )
            new[torch.rand(n, device=horizons.device) > p] = self.max_horizon
            horizons[mask] = new
        first[mask] = False

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        count = td_read(next_tensordict, self._count_key) if self._count_key is not None else None
        if count is None or self._horizons is None:
            return next_tensordict
        cut = count >= self._horizons
        truncated_key, done_key = self._flags()
        for key in (truncated_key, done_key):
            current = td_read(next_tensordict, key)
            next_tensordict.set(key, cut if current is None else current | cut)
        return next_tensordict

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise RuntimeError(
            "RandomTruncationTransform acts on an env's steps (it draws horizons at resets). Fix: attach it to the "
            "env, after a StepCounter."
        )

    forward = _call

    def _rewritten_keys(self) -> set:
        return set(self._flags())

    def __repr__(self) -> str:
        return (
            f"RandomTruncationTransform(min_horizon={self.min_horizon}, max_horizon={self.max_horizon}, "
            f"prob={self.prob}, first_episode_prob={self.first_episode_prob})"
        )
