"""Reward transforms: RewardSum (episode return), RewardScaling, RewardClipping, LineariseRewards.

Examples:
    >>> from tdrl.envs import TransformedEnv
    >>> from tdrl.testing import CountingEnv
    >>> env = TransformedEnv(CountingEnv(max_steps=3), RewardSum())
    >>> env.rollout(5, break_when_any_done=False)["next", "episode_reward"].squeeze(-1)
    tensor([1., 2., 3., 1., 2.])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase

from tdrl.envs.transforms.step import _NOT_FROM_RESET, _trajectory_starts
from tdrl.envs.transforms.transforms import Transform, _leaf, _slot
from tdrl.specs import Bounded, Composite, NestedKey, TensorSpec, Unbounded

__all__ = ["RewardSum", "RewardScaling", "RewardClipping", "LineariseRewards"]


class RewardSum(Transform):
    """Accumulate the reward of the current episode in ``episode_reward``.

    The root holds the return so far (0 after reset) and ``"next"`` the return
    including this step's reward.

    A reward inside a group (``("agents", "reward")``, ``[*B, n_agents, 1]``) is summed per
    agent into the group (``("agents", "episode_reward")``); the sums restart when the env
    resets (a partial reset of a batched env restarts only the sub-envs it resets).

    Args:
        in_keys: the rewards to sum (default ``["reward"]``).
        out_keys: where to write the sums (default ``["episode_reward"]``).
        reset_keys: TorchRL's reset entry of each reward (``"_reset"``, or a group's
            ``("agents", "_reset")``), one per ``in_key``. tdrl's envs reset all the agents
            of a sub-env together, so the sums restart with the env's reset whatever is given;
            the argument is checked and kept for compatibility.

    Keyword Args:
        reward_spec: TorchRL's option to declare the sums in the reward spec; only ``False``
            (they are observations) is supported.

    Raises:
        ValueError: ``reset_keys`` does not give one key per reward, or ``reward_spec=True``.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(max_steps=2), RewardSum())
        >>> env.rollout(3)["next", "episode_reward"].squeeze(-1)
        tensor([1., 2.])
    """

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        reset_keys: Sequence[NestedKey] | None = None,
        *,
        reward_spec: bool = False,
    ) -> None:
        super().__init__(["reward"] if in_keys is None else in_keys, out_keys)
        if reset_keys is not None:
            reset_keys = [reset_keys] if isinstance(reset_keys, (str, tuple)) else list(reset_keys)
            if len(reset_keys) != len(self.in_keys):
                raise ValueError(
                    f"RewardSum: reset_keys={reset_keys} must give one reset key per reward of in_keys="
                    f"{self.in_keys} (e.g. ['_reset'] or [('agents', '_reset')]), or be left out."
                )
        if reward_spec:
            raise ValueError(
                "RewardSum: reward_spec=True (the sums as rewards) is not supported; the sums are observations "
                "(e.g. ('next', 'episode_reward')). Leave reward_spec=False."
            )
        self.reset_keys = reset_keys
        self.reward_spec = reward_spec
        if out_keys is None:  # "reward" -> "episode_reward"
            self.out_keys = [
                (*k[:-1], f"episode_{k[-1]}") if isinstance(k, tuple) else f"episode_{k}" for k in self.in_keys
            ]
        self._zero_like: dict = {}

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        for out_key in self.out_keys:
            spec = self._zero_like.get(out_key)
            if spec is None:
                done = tensordict_reset.get("done")
                value = torch.zeros(done.shape, dtype=torch.get_default_dtype(), device=done.device)
            else:
                value = spec.zero()
            tensordict_reset.set(out_key, value)
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            total = tensordict.get(out_key, None)
            if total is None:
                raise KeyError(_NOT_FROM_RESET.format(name="RewardSum", key=out_key))
            next_tensordict.set(out_key, total + next_tensordict.get(in_key))
        return next_tensordict

    def _carried_keys(self) -> list:
        return list(self.out_keys)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Write the running episode returns of a trajectory (time along the last batch dim)."""
        starts, tdim = _trajectory_starts(tensordict, "RewardSum")
        nxt = tensordict.get("next")
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            reward = nxt.get(in_key)
            start = starts.view(*starts.shape, *([1] * (reward.ndim - starts.ndim)))
            before = torch.empty_like(reward)
            after = torch.empty_like(reward)
            running = torch.zeros_like(reward.select(tdim, 0))
            zero = torch.zeros_like(running)
            for t in range(reward.shape[tdim]):  # sequential, so the sums equal stepping's to the bit
                running = torch.where(start.select(tdim, t), zero, running)
                before.select(tdim, t).copy_(running)
                running = running + reward.select(tdim, t)
                after.select(tdim, t).copy_(running)
            tensordict.set(out_key, before)
            nxt.set(out_key, after)
        return tensordict

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        rewards = _slot(output_spec, "full_reward_spec")
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            if in_key not in rewards:
                raise KeyError(
                    f"RewardSum: in_key {in_key!r} is not a reward of the env (rewards: {rewards.keys(True, True)}). "
                    f"Fix: pass in_keys naming a reward entry."
                )
            reward = _leaf(rewards, in_key)
            spec = Unbounded(shape=reward.shape, dtype=reward.dtype, device=reward.device)
            _slot(output_spec, "full_observation_spec")[out_key] = spec
            self._zero_like[out_key] = spec
        return output_spec


class RewardScaling(Transform):
    """Affine reward map: ``reward * scale + loc`` (or ``(reward - loc) / scale`` with ``standard_normal``).

    Args:
        loc: the shift.
        scale: the scale.
        in_keys: the rewards (default ``["reward"]``).
        out_keys: where to write them (default ``in_keys``).
        standard_normal: use ``(reward - loc) / scale``.

    Raises:
        ValueError: when ``scale`` is 0 with ``standard_normal``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> RewardScaling(loc=1.0, scale=0.5)(TensorDict({"reward": torch.tensor([4.0])}, []))["reward"]
        tensor([3.])
    """

    # buffers (registered in __init__)
    loc: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        loc: float | torch.Tensor = 0.0,
        scale: float | torch.Tensor = 1.0,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        standard_normal: bool = False,
    ) -> None:
        super().__init__(["reward"] if in_keys is None else in_keys, out_keys)
        loc_t = torch.as_tensor(loc, dtype=torch.get_default_dtype())
        scale_t = torch.as_tensor(scale, dtype=torch.get_default_dtype())
        if standard_normal and (scale_t == 0).any():
            raise ValueError("RewardScaling: scale must be non-zero with standard_normal=True.")
        self.standard_normal = standard_normal
        self.register_buffer("loc", loc_t)
        self.register_buffer("scale", scale_t)

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        loc, scale = self.loc.to(value.dtype), self.scale.to(value.dtype)
        if self.standard_normal:
            return (value - loc) / scale
        return torch.addcmul(loc, value, scale)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        return Unbounded(shape=spec.shape, dtype=spec.dtype, device=spec.device)

    def _extra_repr(self) -> str:
        return f"loc={self.loc.tolist()}, scale={self.scale.tolist()}, standard_normal={self.standard_normal}"


class RewardClipping(Transform):
    """Clamp rewards into ``[clamp_min, clamp_max]`` (either may be omitted).

    Args:
        clamp_min: the lower bound.
        clamp_max: the upper bound.
        in_keys: the rewards (default ``["reward"]``).
        out_keys: where to write them (default ``in_keys``).

    Raises:
        ValueError: when ``clamp_min > clamp_max`` or both are missing.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> RewardClipping(-1.0, 1.0)(TensorDict({"reward": torch.tensor([4.0])}, []))["reward"]
        tensor([1.])
    """

    def __init__(
        self,
        clamp_min: float | None = None,
        clamp_max: float | None = None,
        in_keys: NestedKey | Sequence[NestedKey] | None = None,
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
    ) -> None:
        if clamp_min is None and clamp_max is None:
            raise ValueError("RewardClipping: give clamp_min, clamp_max or both.")
        if clamp_min is not None and clamp_max is not None and clamp_min > clamp_max:
            raise ValueError(f"RewardClipping: clamp_min ({clamp_min}) must be <= clamp_max ({clamp_max}).")
        super().__init__(["reward"] if in_keys is None else in_keys, out_keys)
        self.clamp_min = clamp_min
        self.clamp_max = clamp_max

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return value.clamp(self.clamp_min, self.clamp_max)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if self.clamp_min is None or self.clamp_max is None:
            return Unbounded(shape=spec.shape, dtype=spec.dtype, device=spec.device)
        return Bounded(self.clamp_min, self.clamp_max, shape=spec.shape, dtype=spec.dtype, device=spec.device)

    def _extra_repr(self) -> str:
        return f"clamp_min={self.clamp_min}, clamp_max={self.clamp_max}"


class LineariseRewards(Transform):
    """Turn a vector of rewards (multi-objective, ``[..., n]``) into one reward, their weighted sum (``[..., 1]``).

    The reward spec follows: an unbounded reward stays unbounded (its last dim becomes 1);
    a bounded one gets the bounds of the weighted sum (each weight takes the low or high
    bound that minimizes or maximizes its term). The same weights apply to every entry of
    ``in_keys``.

    Args:
        in_keys: the reward vectors.
        out_keys: where to write the sums (default ``in_keys``, replacing them).
        weights: one weight per reward (default all ones); a list or a 1-D tensor.

    Raises:
        ValueError: for weights of more than one dim, or (when attached or called) a
            reward whose last dim does not match the number of weights.
        NotImplementedError: for a discrete reward spec (a sum of categories has no spec).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> t = LineariseRewards(in_keys=["reward"], weights=[1.0, -0.5])
        >>> t(TensorDict({"reward": torch.tensor([[2.0, 2.0], [0.0, 4.0]])}, [2]))["reward"]
        tensor([[ 1.],
                [-2.]])
        >>> from tdrl.specs import Bounded, Composite
        >>> spec = t.transform_reward_spec(Composite(reward=Bounded(0.0, 1.0, shape=(2,))))["reward"]
        >>> spec.shape, spec.space.low, spec.space.high
        (torch.Size([1]), tensor([-0.5000]), tensor([1.]))
    """

    weights: torch.Tensor | None

    def __init__(
        self,
        in_keys: NestedKey | Sequence[NestedKey],
        out_keys: NestedKey | Sequence[NestedKey] | None = None,
        *,
        weights: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        super().__init__(in_keys, out_keys)
        if weights is None:
            self.weights = None
        else:
            w = weights if isinstance(weights, torch.Tensor) else torch.tensor(weights)
            if w.ndim >= 2:
                raise ValueError(
                    f"LineariseRewards: weights must be one-dimensional (one weight per reward), got shape "
                    f"{tuple(w.shape)}. Fix: pass a list or a 1-D tensor; for per-group weights, chain one "
                    "LineariseRewards per group."
                )
            self.register_buffer("weights", w)

    def _check_count(self, n: int, key: NestedKey | None) -> None:
        if self.weights is not None and self.weights.numel() != n:
            where = f" {key!r}" if key is not None else ""
            raise ValueError(
                f"LineariseRewards: the reward{where} has {n} entries in its last dim but {self.weights.numel()} "
                "weights were given. Fix: pass one weight per reward entry."
            )

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        self._check_count(value.shape[-1], None)
        if self.weights is None:
            return value.sum(dim=-1, keepdim=True)
        return (self.weights * value).sum(dim=-1, keepdim=True)

    def _transform_spec(self, spec: TensorSpec, key: NestedKey) -> TensorSpec:
        if not isinstance(spec, (Bounded, Unbounded)) or not spec.dtype.is_floating_point:
            raise NotImplementedError(
                f"LineariseRewards: {key!r} has a discrete spec ({type(spec).__name__}, {spec.dtype}); only "
                "continuous rewards can be summed. Fix: cast it first (DTypeCastTransform) or leave it out of in_keys."
            )
        if not spec.shape:
            raise ValueError(f"LineariseRewards: {key!r} has no reward dim (shape ()). Fix: pass reward vectors.")
        self._check_count(spec.shape[-1], key)
        shape = torch.Size([*spec.shape[:-1], 1])
        if isinstance(spec, Unbounded):
            return Unbounded(shape=shape, dtype=spec.dtype, device=spec.device)
        low, high = spec.space.low, spec.space.high
        w = (
            torch.ones(spec.shape[-1], dtype=spec.dtype, device=spec.device)
            if self.weights is None
            else self.weights.to(device=spec.device)
        )
        w_pos, w_neg = w.clamp(min=0), w.clamp(max=0)
        new_low = (w_pos * low + w_neg * high).sum(-1, keepdim=True).to(spec.dtype)
        new_high = (w_pos * high + w_neg * low).sum(-1, keepdim=True).to(spec.dtype)
        return Bounded(new_low, new_high, shape=shape, dtype=spec.dtype, device=spec.device)

    def _extra_repr(self) -> str:
        return f"weights={None if self.weights is None else self.weights.tolist()}"
