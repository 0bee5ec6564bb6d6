"""Returns as data: Reward2GoTransform (reward-to-go of stored trajectories) and TargetReturn.

- ``Reward2GoTransform`` works on whole trajectories, so it runs where data is written: as a
  replay-buffer transform (its inverse runs on ``extend``) or as a collector's
  ``postproc=t.inv``. It refuses to be attached to an env.
- ``TargetReturn`` conditions a policy on the return still to collect (Decision
  Transformer): set at reset, reduced by each reward.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> t = Reward2GoTransform(gamma=0.5, out_keys=["reward_to_go"])
    >>> done = torch.tensor([False, True, False, True]).unsqueeze(-1)
    >>> data = TensorDict({"next": {"reward": torch.ones(4, 1), "done": done}}, [4])
    >>> t.inv(data)["reward_to_go"].squeeze(-1)
    tensor([1.5000, 1.0000, 1.5000, 1.0000])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from tensordict import TensorDictBase

from tdrl._compat import td_read
from tdrl.envs.transforms.transforms import Transform, _as_key_list, _key_tuple, _slot
from tdrl.objectives.value.functional import reward2go
from tdrl.specs import Composite, NestedKey, TensorSpec, Unbounded

__all__ = ["Reward2GoTransform", "TargetReturn"]

_R2G_IN_ENV = (
    "Reward2GoTransform needs whole trajectories, which an env step does not have. Fix: append it to a replay "
    "buffer (ReplayBuffer(..., transform=t); it runs when data is written), or pass postproc=t.inv to a collector."
)


class Reward2GoTransform(Transform):
    """Writes the discounted reward-to-go of each trajectory when data is written.

    ``out[t] = reward[t] + gamma * out[t+1]``, restarting after each step whose
    ``("next", done_key)`` is set; the end of the time dim (the last batch dim but for the
    feature dims, i.e. ``-2`` of ``[*B, T, 1]`` rewards) also ends a trajectory. Only the
    inverse does work (a replay buffer calls it on ``extend``; a collector takes
    ``postproc=t.inv``); the forward call returns its input unchanged.

    Args:
        gamma: the discount (default 1.0).
        in_keys: the rewards (default ``[("next", "reward")]``).
        out_keys: where the rewards-to-go go (default ``in_keys``: in place).
        done_key: the done entry under ``"next"`` (default ``"done"``).

    Raises:
        ValueError: when attached to an env.
        RuntimeError: (on ``inv``) when a row of the data holds no trajectory end.
        KeyError: (on ``inv``) when none of ``in_keys`` is in the data, or the done entry is missing.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from tdrl.data import LazyTensorStorage, ReplayBuffer
        >>> rb = ReplayBuffer(storage=LazyTensorStorage(10), transform=Reward2GoTransform(0.9, out_keys=["r2g"]))
        >>> done = torch.tensor([[False, False, True]]).unsqueeze(-1)
        >>> _ = rb.extend(TensorDict({"next": {"reward": torch.ones(1, 3, 1), "done": done}}, [1, 3]))
        >>> rb[:]["r2g"].squeeze(-1)
        tensor([[2.7100, 1.9000, 1.0000]])
    """

    time_vectorizable = False

    def __init__(
        self,
        gamma: float | torch.Tensor | None = 1.0,
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        done_key: NestedKey | None = "done",
    ) -> None:
        keys = _as_key_list(in_keys) if in_keys is not None else [("next", "reward")]
        outs = _as_key_list(out_keys) if out_keys is not None else list(keys)
        super().__init__(keys, None, keys, outs)
        self.done_key = "done" if done_key is None else done_key
        self.register_buffer("gamma", torch.as_tensor(1.0 if gamma is None else gamma))

    def set_container(self, container: Any) -> None:
        from tdrl.envs.common import EnvBase

        if isinstance(container, EnvBase):
            raise ValueError(_R2G_IN_ENV)
        super().set_container(container)

    def _transform_specs(self, output_spec: Composite, input_spec: Composite) -> tuple[Composite, Composite]:
        raise ValueError(_R2G_IN_ENV)  # called only when the chain holding it is attached to an env

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        raise ValueError(_R2G_IN_ENV)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase:
        if self._env_of_chain() is not None:
            raise ValueError(_R2G_IN_ENV)
        done_key = ("next", *_key_tuple(self.done_key))
        done = td_read(tensordict, done_key)
        if done is None:
            raise KeyError(
                f"Reward2GoTransform: no done entry {done_key!r} in the data (keys "
                f"{sorted(map(str, tensordict.keys(True, True)))}). "
                "Fix: pass done_key naming the done flag under 'next'."
            )
        if not bool(done.any(-2).all()):
            raise RuntimeError(
                "Reward2GoTransform: a row of the data holds no trajectory end (no True in "
                f"{done_key!r} along the time dim), so its reward-to-go is unknown. Fix: write whole trajectories "
                "(frames_per_batch larger than an episode, or split_trajs=True)."
            )
        found = False
        for in_key, out_key in zip(self.in_keys_inv, self.out_keys_inv):
            reward = td_read(tensordict, in_key)
            if reward is None:
                continue
            found = True
            tensordict.set(
                out_key, reward2go(reward, done.expand_as(reward), cast(torch.Tensor, self.gamma).to(reward.dtype))
            )
        if not found:
            raise KeyError(
                f"Reward2GoTransform: none of the rewards {self.in_keys_inv} is in the data. Fix: pass in_keys "
                f"naming the reward entries."
            )
        return tensordict

    def _extra_repr(self) -> str:
        return f"gamma={float(cast(torch.Tensor, self.gamma)):g}"


class TargetReturn(Transform):
    """Adds the return the agent should still collect: set at reset, reduced by each reward.

    At reset, ``out_key`` is ``target_return`` (per sub-env for a partial reset). At each
    step the root's value is carried to ``"next"`` and, with ``mode="reduce"``, the step's
    reward is subtracted; ``mode="constant"`` keeps it. The entry is declared in the
    observation spec (so ``step_mdp`` carries it to the next root, where a policy reads it).

    Args:
        target_return: the return to reach.
        mode: ``"reduce"`` (default) or ``"constant"``.
        in_keys: the rewards (default: the env's reward keys).
        out_keys: the targets (default: each reward key with its last name replaced by
            ``"target_return"``).
        reset_key: kept for TorchRL compatibility; partial resets are read from the reset
            input's ``"_reset"`` entry.

    Raises:
        ValueError: for another ``mode``; (at attach time) when the default out_keys collide.

    Examples:
        >>> from tdrl.envs import TransformedEnv
        >>> from tdrl.testing import CountingEnv
        >>> env = TransformedEnv(CountingEnv(max_steps=4), TargetReturn(10.0))
        >>> env.rollout(5)["target_return"].squeeze(-1)  # CountingEnv's reward is 1 per step
        tensor([10.,  9.,  8.,  7.])
    """

    MODES = ("reduce", "constant")
    time_vectorizable = False

    def __init__(
        self,
        target_return: float,
        mode: str = "reduce",
        in_keys: Sequence[NestedKey] | None = None,
        out_keys: Sequence[NestedKey] | None = None,
        reset_key: NestedKey | None = None,
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"TargetReturn: mode must be 'reduce' or 'constant', got {mode!r}.")
        super().__init__()
        self.in_keys = _as_key_list(in_keys)  # the env's reward keys when empty (filled at attach time)
        self.out_keys = _as_key_list(out_keys)  # derived from the in_keys when not given
        if in_keys is not None and out_keys is not None:
            self._check_key_lengths()
        self._given_out_keys = out_keys is not None
        self.target_return = float(target_return)
        self.mode = mode
        self.reset_key = reset_key
        self._specs: dict = {}  # out_key -> the spec of its values (the reward's shape and dtype)
        self._reward_specs: Composite | None = None  # the incoming reward specs, while the specs are transformed

    def _transform_specs(self, output_spec: Composite, input_spec: Composite) -> tuple[Composite, Composite]:
        if not self.in_keys:
            self.in_keys = list(_slot(output_spec, "full_reward_spec").keys(True, True))
        if not self._given_out_keys:
            self.out_keys = _as_key_list([(*_key_tuple(k)[:-1], "target_return") for k in self.in_keys])
            if len(set(self.out_keys)) < len(self.out_keys):
                raise ValueError(
                    f"TargetReturn: the rewards {self.in_keys} sit at the same level, so their default targets "
                    f"collide ({self.out_keys}). Fix: pass out_keys, one per reward."
                )
        self._check_key_lengths()
        return super()._transform_specs(output_spec, input_spec)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        parent_rewards = self._reward_specs if self._reward_specs is not None else Composite()
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            reward = cast(TensorSpec, parent_rewards[in_key]) if in_key in parent_rewards else None
            if reward is None and in_key in observation_spec:
                reward = cast(TensorSpec, observation_spec[in_key])
            if reward is None:
                continue
            spec = Unbounded(shape=reward.shape, dtype=reward.dtype, device=reward.device)
            self._specs[out_key] = spec
            observation_spec[out_key] = spec
        return observation_spec

    def transform_output_spec(self, output_spec: Composite) -> Composite:
        self._reward_specs = _slot(output_spec, "full_reward_spec")
        return super().transform_output_spec(output_spec)

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        return reward_spec

    def _reset(self, tensordict: TensorDictBase | None, tensordict_reset: TensorDictBase) -> TensorDictBase:
        for out_key in self.out_keys:
            spec = self._specs.get(out_key)
            if spec is not None:
                value = torch.full(spec.shape, self.target_return, dtype=spec.dtype, device=spec.device)
            else:
                shape = (*tensordict_reset.batch_size, 1)
                value = torch.full(shape, self.target_return, dtype=torch.float32, device=tensordict_reset.device)
            tensordict_reset.set(out_key, value)  # sub-envs not reset get their old value back from EnvBase.reset
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            target = td_read(tensordict, out_key)
            if target is None:
                raise KeyError(
                    f"TargetReturn: the root holds no {out_key!r}; it is written at reset. Fix: step from the "
                    f"tensordict env.reset() returned (or its step_mdp successor)."
                )
            reward = td_read(next_tensordict, in_key)
            if self.mode == "reduce" and reward is not None:
                if reward.shape != target.shape:
                    raise ValueError(
                        f"TargetReturn: the reward {in_key!r} has shape {tuple(reward.shape)} and the target "
                        f"{out_key!r} {tuple(target.shape)}; they must match."
                    )
                target = target - reward
            next_tensordict.set(out_key, target)
        return next_tensordict

    def _call(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Refused, as in TorchRL: the target depends on the reset, which a stored tensordict does not replay."""
        raise NotImplementedError(
            "TargetReturn runs inside an env (TransformedEnv(env, TargetReturn(...))); it has no forward call on "
            "stored data."
        )

    def _carried_keys(self) -> list:
        return list(self.out_keys)

    def _rewritten_keys(self) -> set:
        return set(self.out_keys)

    def _extra_repr(self) -> str:
        return f"target_return={self.target_return}, mode={self.mode!r}"
