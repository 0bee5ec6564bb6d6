"""The seed tutorial's policy and value modules on real envs, and determinism under MEAN."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from tdrl.testing import ContinuousActionMock


@pytest.fixture(autouse=True)
def _seed():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


def _float_obs() -> TensorDictModule:
    """Gym's MuJoCo observations are float64; the seed casts them with DoubleToFloat."""
    return TensorDictModule(lambda x: x.float(), in_keys=["observation"], out_keys=["observation_f"])


def _seed_modules(env, obs_key: str = "observation", num_cells: int = 64, bound_names=("min", "max")):
    actor_net = nn.Sequential(
        nn.LazyLinear(num_cells),
        nn.Tanh(),
        nn.LazyLinear(num_cells),
        nn.Tanh(),
        nn.LazyLinear(num_cells),
        nn.Tanh(),
        nn.LazyLinear(2 * env.action_spec.shape[-1]),
        NormalParamExtractor(),
    )
    policy_module = TensorDictModule(actor_net, in_keys=[obs_key], out_keys=["loc", "scale"])
    if obs_key != "observation":
        policy_module = TensorDictSequential(_float_obs(), policy_module)
    policy_module = ProbabilisticActor(
        module=policy_module,
        spec=env.action_spec,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={bound_names[0]: env.action_spec.space.low, bound_names[1]: env.action_spec.space.high},
        return_log_prob=True,
    )
    value_net = nn.Sequential(nn.LazyLinear(num_cells), nn.Tanh(), nn.LazyLinear(1))
    value_module = ValueOperator(module=value_net, in_keys=[obs_key])
    if obs_key != "observation":
        value_module = TensorDictSequential(_float_obs(), value_module)
    return policy_module, value_module


def _gym_env():
    pytest.importorskip("mujoco")
    from tdrl.envs.libs.gym import GymEnv

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GymEnv("InvertedDoublePendulum-v4")


@pytest.mark.parametrize("bound_names", [("min", "max"), ("low", "high")])
def test_seed_snippet_on_inverted_double_pendulum(bound_names):
    env = _gym_env()
    policy_module, value_module = _seed_modules(env, obs_key="observation_f", bound_names=bound_names)
    td = policy_module(env.reset())
    assert env.action_spec.is_in(td["action"])
    assert td["sample_log_prob"].shape == ()
    assert value_module(env.reset())["state_value"].shape == (1,)
    with set_exploration_type(ExplorationType.MEAN), torch.no_grad():
        rollout = env.rollout(50, policy_module)
    assert rollout["action"].shape[-1] == env.action_spec.shape[-1]
    assert env.action_spec.is_in(rollout["action"])
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        rollout = env.rollout(20, policy_module)
    assert torch.isfinite(rollout["sample_log_prob"]).all()


def test_mean_rollout_is_deterministic_given_the_seed_on_gym():
    env = _gym_env()
    policy_module, _ = _seed_modules(env, obs_key="observation_f")
    rollouts = []
    for _ in range(2):
        env.set_seed(7)
        with set_exploration_type(ExplorationType.MEAN), torch.no_grad():
            rollouts.append(env.rollout(100, policy_module))
    a, b = rollouts
    assert a.batch_size == b.batch_size
    torch.testing.assert_close(a["action"], b["action"], rtol=0, atol=0)
    torch.testing.assert_close(a["next", "observation"], b["next", "observation"], rtol=0, atol=0)


def test_random_rollouts_differ_and_stay_in_bounds_on_a_batched_mock():
    env = ContinuousActionMock(obs_dim=4, action_dim=2, max_steps=50, batch_size=(3,))
    policy_module, value_module = _seed_modules(env)
    with set_exploration_type(ExplorationType.RANDOM), torch.no_grad():
        env.set_seed(0)
        r1 = env.rollout(30, policy_module, break_when_any_done=False)
        env.set_seed(0)
        r2 = env.rollout(30, policy_module, break_when_any_done=False)
    assert r1["action"].shape == (3, 30, 2)
    assert not torch.equal(r1["action"], r2["action"])
    assert env.action_spec.space.low.min() <= r1["action"].min()
    assert r1["action"].max() <= 1.0
    with torch.no_grad():
        assert value_module(r1)["state_value"].shape == (3, 30, 1)
    with set_exploration_type(ExplorationType.MEAN), torch.no_grad():
        env.set_seed(0)
        m1 = env.rollout(30, policy_module, break_when_any_done=False)
        env.set_seed(0)
        m2 = env.rollout(30, policy_module, break_when_any_done=False)
    assert torch.equal(m1["action"], m2["action"])
