from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

from tdrl.envs.libs.gym import GymEnv, GymWrapper, space_to_spec
from tdrl.envs.utils import check_env_specs
from tdrl.specs import Binary, Bounded, Categorical, Composite, MultiCategorical, MultiOneHot, OneHot, Unbounded
from tdrl.testing import EnvContractTests


class TestInvertedDoublePendulum(EnvContractTests):
    def make_env(self):
        return GymEnv("InvertedDoublePendulum-v4")


class TestCartPoleOneHot(EnvContractTests):
    def make_env(self):
        return GymEnv("CartPole-v1")


class TestPendulum(EnvContractTests):
    def make_env(self):
        return GymEnv("Pendulum-v1")


class TestCartPoleVector(EnvContractTests):
    def make_env(self):
        return GymEnv("CartPole-v1", num_envs=3, categorical_action_encoding=True)


@pytest.mark.parametrize(
    "name",
    [
        "InvertedDoublePendulum-v4",
        "InvertedDoublePendulum-v5",
        "HalfCheetah-v5",
        "Hopper-v5",
        "CartPole-v1",
        "Pendulum-v1",
    ],
)
def test_check_env_specs_on_registered_envs(name):
    env = GymEnv(name)
    check_env_specs(env, seed=0)
    env.close()


def test_mujoco_observation_stays_float64():
    env = GymEnv("InvertedDoublePendulum-v4")
    assert env.observation_spec["observation"].dtype == torch.float64
    assert env.reset()["observation"].dtype == torch.float64
    assert env.action_spec.space.low.item() == -1.0


def test_space_to_spec_all_space_types():
    spaces = gym.spaces
    assert isinstance(space_to_spec(spaces.Box(-1, 1, (2,))), Bounded)
    assert isinstance(space_to_spec(spaces.Box(-np.inf, np.inf, (2,))), Unbounded)
    assert isinstance(space_to_spec(spaces.Discrete(3)), OneHot)
    assert isinstance(space_to_spec(spaces.Discrete(3), categorical_action_encoding=True), Categorical)
    assert isinstance(space_to_spec(spaces.MultiDiscrete([2, 3])), MultiOneHot)
    assert isinstance(space_to_spec(spaces.MultiDiscrete([2, 3]), categorical_action_encoding=True), MultiCategorical)
    assert isinstance(space_to_spec(spaces.MultiBinary(4)), Binary)
    nested = space_to_spec(spaces.Dict({"a": spaces.Box(0, 1, (2,)), "b": spaces.Dict({"c": spaces.Discrete(2)})}))
    assert isinstance(nested, Composite)
    assert ("b", "c") in nested
    tup = space_to_spec(spaces.Tuple((spaces.Discrete(2), spaces.Box(0, 1, (3,)))), batch_size=[4])
    assert tup["1"].shape == (4, 3)
    with pytest.raises(TypeError, match="not supported"):
        space_to_spec(object())


def test_unknown_id_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown gymnasium id 'CartPol-v1'.*CartPole-v1"):
        GymEnv("CartPol-v1")


def test_seeding_reproduces_rollouts():
    outs = []
    for _ in range(2):
        env = GymEnv("Pendulum-v1")
        env.set_seed(3)
        torch.manual_seed(3)
        outs.append(env.rollout(20))
    assert torch.equal(outs[0]["next", "observation"], outs[1]["next", "observation"])
    env = GymEnv("Pendulum-v1")
    env.set_seed(4)
    assert not torch.equal(env.reset()["observation"], outs[0]["observation"][0])


def test_fast_rollout_matches_stepping_the_same_actions():
    env = GymEnv("InvertedDoublePendulum-v4")
    env.set_seed(1)
    fast = env.rollout(30, break_when_any_done=False)
    env.set_seed(1)
    td = env.reset()
    for t in range(30):
        td["action"] = fast["action"][t]
        td, td_next = env.step_and_maybe_reset(td)
        assert torch.equal(td["next", "observation"], fast["next", "observation"][t])
        assert torch.equal(td["observation"], fast["observation"][t])
        assert td["next", "reward"].item() == pytest.approx(fast["next", "reward"][t].item())
        td = td_next


def test_policy_rollout_uses_generic_loop():
    env = GymEnv("Pendulum-v1")
    ro = env.rollout(5, policy=lambda td: td.set("action", torch.zeros(1)).set("logits", torch.ones(2)))
    assert ro["logits"].shape == (5, 2)
    assert (ro["action"] == 0).all()


def test_vector_env_resets_finished_subenvs_without_leaking_frames():
    env = GymEnv("CartPole-v1", num_envs=4, categorical_action_encoding=True)
    env.set_seed(0)
    ro = env.rollout(60, break_when_any_done=False)
    done = ro["next", "done"].squeeze(-1)
    assert done.any()
    # after a done step, the next root observation is a fresh episode start (|x| small), not the final frame
    b, t = done[:, :-1].nonzero(as_tuple=True)
    starts = ro["observation"][b, t + 1]
    assert (starts.abs() <= 0.05).all()
    # and elsewhere, root(t+1) == next(t)
    keep = ~done[:, :-1]
    assert torch.equal(ro["observation"][:, 1:][keep], ro["next", "observation"][:, :-1][keep])
    env.close()


def test_vector_env_async_matches_sync():
    outs = []
    for mode in ("sync", "async"):
        env = GymEnv("CartPole-v1", num_envs=2, vectorization_mode=mode, categorical_action_encoding=True)
        env.set_seed(7)
        td = env.reset()
        obs = [td["observation"]]
        for _ in range(15):
            td["action"] = torch.tensor([0, 1])
            td, td = env.step_and_maybe_reset(td)
            obs.append(td["observation"])
        env.close()
        outs.append(torch.stack(obs))
    assert torch.equal(outs[0], outs[1])


def test_onehot_actions_step_discrete_env():
    env = GymEnv("CartPole-v1")
    td = env.reset()
    td["action"] = torch.tensor([0, 1])
    assert env.step(td)["next", "observation"].shape == (4,)


def test_frame_skip_sums_rewards():
    env = GymEnv("CartPole-v1", frame_skip=3, categorical_action_encoding=True)
    env.set_seed(0)
    td = env.rand_step(env.reset())
    assert td["next", "reward"].item() == 3.0
    with pytest.raises(ValueError, match="frame_skip"):
        GymEnv("CartPole-v1", frame_skip=0)


def test_info_keys_are_read_into_output():
    env = GymEnv("HalfCheetah-v5", info_keys=["x_position"])
    assert env.observation_spec["x_position"].dtype == torch.float64
    td = env.rand_step(env.reset())
    assert td["next", "x_position"].shape == (1,)
    check_env_specs(env)
    with pytest.raises(KeyError, match="not in the env's info dict"):
        GymEnv("HalfCheetah-v5", info_keys=["nope"])


def test_wrapper_rejects_vector_env_with_autoreset():
    vec = gym.make_vec("CartPole-v1", num_envs=2)
    with pytest.raises(ValueError, match="autoreset_mode"):
        GymWrapper(vec)
    vec.close()


def test_pixels_need_rgb_array_render_mode():
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        GymWrapper(gym.make("Pendulum-v1"), from_pixels=True)
    with pytest.raises(ValueError, match="pixels_only"):
        GymWrapper(gym.make("Pendulum-v1"), pixels_only=True)


def test_from_pixels_mujoco():
    try:
        env = GymEnv("InvertedPendulum-v5", from_pixels=True, width=32, height=32)
    except Exception as err:
        pytest.skip(f"offscreen rendering unavailable: {err}")
    td = env.rand_step(env.reset())
    assert td["next", "pixels"].shape == (32, 32, 3)
    assert td["next", "pixels"].dtype == torch.uint8
    assert "observation" not in td.keys()  # pixels_only=True by default, as TorchRL's GymEnv
    env.close()
    env = GymEnv("InvertedPendulum-v5", from_pixels=True, pixels_only=False, width=32, height=32)
    td = env.rand_step(env.reset())
    assert td["next", "pixels"].shape == (32, 32, 3)
    assert td["next", "observation"].shape == (4,)
    env.close()


def test_from_pixels_drops_the_observation_unless_pixels_only_is_false():
    # TorchRL 0.14.1: GymEnv(..., from_pixels=True) defaults to pixels_only=True; GymWrapper to False
    env = GymEnv("CartPole-v1", from_pixels=True)
    assert env.pixels_only
    assert sorted(env.observation_spec.keys()) == ["pixels"]
    assert sorted(env.reset().exclude("done", "terminated", "truncated").keys()) == ["pixels"]
    env.close()
    env = GymEnv("CartPole-v1", from_pixels=True, pixels_only=False)
    assert sorted(env.observation_spec.keys()) == ["observation", "pixels"]
    assert env.rollout(2)["next", "observation"].shape == (2, 4)
    env.close()
    wrapped = GymWrapper(gym.make("CartPole-v1", render_mode="rgb_array"), from_pixels=True)
    assert sorted(wrapped.observation_spec.keys()) == ["observation", "pixels"]
    wrapped.close()


def test_pixels_only_without_pixels_is_ignored_by_gym_env():
    env = GymEnv("CartPole-v1", pixels_only=True)  # TorchRL ignores it too (GymWrapper refuses it)
    assert not env.pixels_only
    assert sorted(env.observation_spec.keys()) == ["observation"]
    env.close()


def test_float_one_hot_action_is_accepted_but_float_index_is_not():
    env = GymEnv("CartPole-v1")
    td = env.reset()
    td["action"] = torch.tensor([0.0, 1.0])  # torch.distributions.OneHotCategorical samples floats
    assert env.step(td)["next", "observation"].shape == (4,)
    env = GymEnv("CartPole-v1", categorical_action_encoding=True)
    td = env.reset()
    td["action"] = torch.tensor(0.7)
    with pytest.raises(ValueError, match=r"dtype torch\.float32, expected torch\.int64"):
        env.step(td)


@pytest.mark.parametrize(
    "action",
    [[0.3, 0.7], [0.5, 0.5], [1.0, 1.0], [0.0, 0.0], [2.0, -1.0], [float("nan"), 1.0]],
    ids=["probabilities", "uniform", "two-ones", "no-one", "sums-to-one", "nan"],
)
def test_float_action_that_is_not_one_hot_is_refused_not_cast(action):
    # [0.3, 0.7] used to be cast to [0, 0], and CartPole ran action 0
    env = GymEnv("CartPole-v1")
    td = env.reset()
    td["action"] = torch.tensor(action)
    with pytest.raises(ValueError, match=r"GymEnv\.step: action 'action' must be one-hot") as info:
        env.step(td)
    message = str(info.value)
    assert "OneHotCategorical" in message
    assert "categorical_action_encoding=True" in message
    assert "got [" in message


def test_float_one_hot_rows_of_a_vector_env_are_checked_per_row():
    env = GymEnv("CartPole-v1", num_envs=3)
    td = env.reset()
    td["action"] = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.4, 0.6]])
    with pytest.raises(ValueError, match=r"got \[0\.4.*, 0\.6.*\] at batch index \[2\]"):
        env.step(td)
    td["action"] = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert env.step(td)["action"].tolist() == [[0, 1], [1, 0], [1, 0]]
    env.close()


def test_straight_through_one_hot_samples_run_the_sampled_action():
    # one_hot + probs - probs.detach() (OneHotCategorical.rsample) holds 0.99999994 where the sample is 1;
    # the cast to the spec's int64 truncated it to [0, 0] and CartPole ran action 0, on about a fifth of the rows
    almost_one = 1.0 - 2.0**-24
    env = GymEnv("CartPole-v1")
    td = env.reset()
    td["action"] = torch.tensor([0.0, almost_one])
    assert env.step(td)["action"].tolist() == [0, 1]
    env = GymEnv("CartPole-v1", num_envs=2)
    td = env.reset()
    td["action"] = torch.tensor([[almost_one, 0.0], [0.0, 1.0 + 2.0**-23]])
    assert env.step(td)["action"].tolist() == [[1, 0], [0, 1]]
    env.close()


def test_a_one_hot_action_steps_as_its_index():
    """One env with a one-hot action takes the lean step path: the same transitions as the index action."""
    one_hot_env = GymEnv("CartPole-v1")
    index_env = GymEnv("CartPole-v1", categorical_action_encoding=True)
    assert isinstance(one_hot_env.action_spec, OneHot)
    one_hot_env.set_seed(3)
    index_env.set_seed(3)
    a, b = one_hot_env.reset(), index_env.reset()
    for i in range(30):
        action = i * 7 % 3 % 2
        a["action"] = torch.nn.functional.one_hot(torch.tensor(action), 2).bool()
        b["action"] = torch.tensor(action)
        a, b = one_hot_env.step(a), index_env.step(b)
        for key in ("observation", "reward", "terminated", "truncated", "done"):
            assert torch.equal(a["next", key], b["next", key]), key
        if a["next", "done"]:
            break
        a, b = a["next"].clone(), b["next"].clone()


def test_available_envs_lists_gymnasium_registry_sorted():
    names = GymEnv.available_envs
    assert names == sorted(gym.envs.registry.keys())
    assert "CartPole-v1" in names
    assert GymWrapper.available_envs == names
    assert GymEnv("CartPole-v1").available_envs == names


def test_available_envs_match_torchrl():
    torchrl_gym = pytest.importorskip("torchrl.envs.libs.gym")
    assert GymEnv.available_envs == torchrl_gym.GymEnv.available_envs


@pytest.mark.parametrize("kwargs", [{}, {"pixels_only": True}, {"pixels_only": False}], ids=["default", "only", "both"])
def test_from_pixels_keys_match_torchrl(kwargs):
    torchrl_gym = pytest.importorskip("torchrl.envs.libs.gym")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torchrl_gym.GymEnv("CartPole-v1", from_pixels=True, **kwargs)
    ours = GymEnv("CartPole-v1", from_pixels=True, **kwargs)
    assert sorted(ours.observation_spec.keys(True, True)) == sorted(theirs.observation_spec.keys(True, True))
    assert sorted(ours.reset().keys(True, True)) == sorted(theirs.reset().keys(True, True))
    assert ours.pixels_only == theirs.pixels_only
    theirs.close()
    ours.close()


def test_public_attributes_of_the_gymnasium_env_are_read_through():
    env = GymEnv("CartPole-v1")
    assert env.spec.id == "CartPole-v1"  # gymnasium's EnvSpec, as TorchRL's wrapper forwards it
    env._env.foo = "bar"
    assert env.foo == "bar"
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        _ = env.nothing_here
