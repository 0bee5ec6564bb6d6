"""LineariseRewards: contract on vector rewards, weighted sums, spec bounds, errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.envs import LineariseRewards, TransformedEnv, check_env_specs
from tdrl.specs import Bounded, Categorical, Composite, Unbounded
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


class VectorRewardEnv(TransformTestEnv):
    """TransformTestEnv with a two-objective reward: the action cost (in [-2, 0]) and a bonus in [0, 1]."""

    def __init__(self, batch_size: Any = (), bounded: bool = True) -> None:
        super().__init__(batch_size=batch_size)
        b = self.batch_size
        if bounded:
            self.reward_spec = Bounded(torch.tensor([-2.0, 0.0]), torch.tensor([0.0, 1.0]), shape=(*b, 2))
        else:
            self.reward_spec = Unbounded(shape=(*b, 2))

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        out = super()._step(tensordict)
        bonus = self.obs[..., :1].sigmoid()
        out.set("reward", torch.cat([out.get("reward"), bonus], -1))
        return out


class TestLinearise(TransformContractTests):
    def make_transform(self):
        return LineariseRewards(in_keys=["reward"], weights=[1.0, -2.0])

    def make_env(self):
        return VectorRewardEnv()

    def make_batched_env(self):
        return VectorRewardEnv(batch_size=[3])


class TestLineariseUnbounded(TestLinearise):
    def make_transform(self):
        return LineariseRewards(in_keys=["reward"], out_keys=["total"])

    def make_env(self):
        return VectorRewardEnv(bounded=False)

    def make_batched_env(self):
        return VectorRewardEnv(batch_size=[3], bounded=False)


def test_weighted_sum_and_bounds():
    env = TransformedEnv(VectorRewardEnv(batch_size=[2]), LineariseRewards(in_keys=["reward"], weights=[1.0, -2.0]))
    spec = env.reward_spec
    assert spec.shape == (2, 1)
    assert torch.equal(spec.space.low, torch.full((2, 1), -4.0))
    assert torch.equal(spec.space.high, torch.zeros(2, 1))
    raw = env.base_env.rollout(3, break_when_any_done=False)
    out = env.transform(raw.clone())
    torch.testing.assert_close(out["next", "reward"], raw["next", "reward"] @ torch.tensor([[1.0], [-2.0]]))


def test_unweighted_keeps_the_vector_under_another_key():
    env = TransformedEnv(VectorRewardEnv(bounded=False), LineariseRewards(in_keys=["reward"], out_keys=["total"]))
    check_env_specs(env)
    assert env.full_reward_spec["reward"].shape == (2,)
    assert isinstance(env.full_reward_spec["total"], Unbounded)
    ro = env.rollout(3)
    torch.testing.assert_close(ro["next", "total"], ro["next", "reward"].sum(-1, keepdim=True))


def test_weights_are_a_buffer():
    t = LineariseRewards(in_keys=["reward"], weights=torch.tensor([0.5, 0.5]))
    assert set(t.state_dict()) == {"weights"}


def test_errors_name_the_reward_and_the_fix():
    with pytest.raises(ValueError, match="one-dimensional"):
        LineariseRewards(in_keys=["reward"], weights=[[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"'reward' has 2 entries.*3 weights"):
        TransformedEnv(VectorRewardEnv(), LineariseRewards(in_keys=["reward"], weights=[1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="3 weights"):
        LineariseRewards(in_keys=["r"], weights=[1.0, 1.0, 1.0])(TensorDict({"r": torch.ones(2)}, []))
    with pytest.raises(NotImplementedError, match="discrete"):
        LineariseRewards(in_keys=["r"]).transform_reward_spec(Composite(r=Categorical(3, shape=(2,))))
