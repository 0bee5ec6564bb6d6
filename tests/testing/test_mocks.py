from __future__ import annotations

import pytest
import torch

from tdrl.testing import (
    ContinuousActionMock,
    CountingEnv,
    EnvContractTests,
    FailingEnv,
    IdentityEnv,
    NestedKeyMock,
    TransformTestEnv,
)


class TestCountingEnv(EnvContractTests):
    def make_env(self):
        return CountingEnv(max_steps=3)


class TestCountingEnvBatched(EnvContractTests):
    def make_env(self):
        return CountingEnv(max_steps=3, batch_size=[4])


class TestContinuousActionMock(EnvContractTests):
    def make_env(self):
        return ContinuousActionMock(batch_size=[2])


class TestIdentityEnvDiscrete(EnvContractTests):
    def make_env(self):
        return IdentityEnv(n=3)


class TestIdentityEnvContinuous(EnvContractTests):
    def make_env(self):
        return IdentityEnv(n=2, continuous=True, batch_size=[3])


class TestNestedKeyMock(EnvContractTests):
    def make_env(self):
        return NestedKeyMock()


def test_identity_env_rewards_matching_action():
    env = IdentityEnv(n=4, categorical=True, batch_size=[5])
    td = env.reset()
    td["action"] = td["observation"].argmax(-1)
    assert (env.step(td)["next", "reward"] == 1).all()
    td = env.reset()
    td["action"] = (td["observation"].argmax(-1) + 1) % 4
    assert (env.step(td)["next", "reward"] == 0).all()


def test_failing_env_raises_at_step():
    env = FailingEnv(fail_after=3)
    td = env.rand_step(env.reset())
    env.rand_step(td)
    with pytest.raises(RuntimeError, match="step 3"):
        env.rand_step(td)


def test_continuous_mock_validates_dims():
    with pytest.raises(ValueError, match="action_dim"):
        ContinuousActionMock(obs_dim=1, action_dim=2)


def test_counting_env_partial_reset_keeps_others():
    env = CountingEnv(max_steps=10, batch_size=[3])
    td = env.reset()
    for _ in range(2):
        td = env.rand_step(td)
        td = td["next"].clone()
    td.set("_reset", torch.tensor([[True], [False], [False]]))
    out = env.reset(td)
    assert out["observation"].squeeze(-1).tolist() == [0.0, 2.0, 2.0]


@pytest.mark.parametrize(
    "make", [CountingEnv, ContinuousActionMock, IdentityEnv, NestedKeyMock, FailingEnv, TransformTestEnv]
)
def test_mock_reset_takes_the_keyword_arguments_envbase_passes_on(make):
    env = make()
    td = env.reset(options=None)  # EnvBase.reset hands its **kwargs to _reset, as for the real envs
    assert td.batch_size == env.batch_size
