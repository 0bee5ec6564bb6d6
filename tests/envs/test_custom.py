"""Native torch envs (tdrl.envs.custom): the env contract, statelessness, resets and the fast rollout."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs.custom import PendulumEnv, angle_normalize
from tdrl.envs.utils import check_env_specs, step_mdp
from tdrl.testing import EnvContractTests


@pytest.fixture(autouse=True)
def _restore_rng():
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


class TestPendulumContract(EnvContractTests):
    def make_env(self):
        return PendulumEnv()


class TestBatchedPendulumContract(EnvContractTests):
    def make_env(self):
        return PendulumEnv(batch_size=[4], max_episode_steps=3)


class TestFloat32PendulumContract(EnvContractTests):
    def make_env(self):
        return PendulumEnv(batch_size=[2, 3], dtype=torch.float32)


def _replay(env: PendulumEnv, start: TensorDict, actions: torch.Tensor, break_when_any_done: bool) -> list:
    """Step ``env`` through ``actions`` ([*B, T, 1]) with the generic step/reset API."""
    td, steps = start, []
    for t in range(actions.shape[env.batch_dims]):
        td["action"] = actions.select(env.batch_dims, t)
        td = env.step(td)
        steps.append(td.clone())
        if break_when_any_done and td["next", "done"].any():
            break
        td = env._next_root(td)
    return steps


@pytest.mark.parametrize("break_when_any_done", [True, False])
@pytest.mark.parametrize("batch_size", [[], [3]])
def test_fast_rollout_matches_step_by_step(batch_size, break_when_any_done):
    env = PendulumEnv(batch_size=batch_size, max_episode_steps=4)
    env.set_seed(3)
    ro = env.rollout(10, break_when_any_done=break_when_any_done)
    assert ro.batch_size == (*batch_size, 4 if break_when_any_done else 10)
    env.set_seed(3)
    steps = _replay(env, env.reset(), ro["action"], break_when_any_done)
    slow = torch.stack(steps, len(batch_size))
    assert set(slow.keys(True, True)) == set(ro.keys(True, True))
    for key in ro.keys(True, True):
        torch.testing.assert_close(ro[key], slow[key], msg=str(key), rtol=0, atol=0)


def test_fast_rollout_and_generic_loop_agree_on_structure():
    env = PendulumEnv(batch_size=[2], max_episode_steps=3)
    fast = env.rollout(5, break_when_any_done=False)
    slow = env.rollout(5, policy=env.rand_action, break_when_any_done=False)
    assert fast.batch_size == slow.batch_size
    for key in slow.keys(True, True):
        assert fast[key].dtype == slow[key].dtype, key
        assert fast[key].shape == slow[key].shape, key
    # after a truncation the root holds a fresh episode (step count back to 0)
    assert (fast["steps"][:, 3] == 0).all()
    assert (fast["next", "truncated"][:, 2]).all()


def test_dynamics_one_step_by_hand():
    env = PendulumEnv()
    th = torch.tensor([0.5], dtype=torch.float64)
    thdot = torch.tensor([-0.3], dtype=torch.float64)
    u = torch.tensor([1.5])
    new_th, new_thdot, reward = env.dynamics(th, thdot, u)
    expected_thdot = -0.3 + (3 * 10.0 / 2 * math.sin(0.5) + 3.0 * 1.5) * 0.05
    assert new_thdot.item() == pytest.approx(expected_thdot)
    assert new_th.item() == pytest.approx(0.5 + expected_thdot * 0.05)
    assert reward.item() == pytest.approx(-(0.5**2 + 0.1 * 0.09 + 0.001 * 1.5**2), rel=1e-6)


def test_torque_and_speed_are_clipped():
    env = PendulumEnv()
    th = torch.tensor([1.0], dtype=torch.float64)
    thdot = torch.tensor([7.9], dtype=torch.float64)
    a = env.dynamics(th, thdot, torch.tensor([5.0]))
    b = env.dynamics(th, thdot, torch.tensor([2.0]))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert a[1].item() == 8.0


def test_angle_normalize_wraps_into_pi_range():
    x = torch.linspace(-20, 20, 101)
    y = angle_normalize(x)
    assert ((y >= -math.pi) & (y < math.pi)).all()
    torch.testing.assert_close(torch.sin(y), torch.sin(x), atol=1e-5, rtol=0)


def test_reset_distribution_and_observation():
    env = PendulumEnv(batch_size=[4096])
    td = env.reset()
    th, thdot = td["th"], td["thdot"]
    assert th.abs().max() <= math.pi
    assert thdot.abs().max() <= 1.0
    assert th.min() < -3.0
    assert th.max() > 3.0
    obs = td["observation"]
    assert obs.dtype == torch.float32
    assert obs.shape == (4096, 3)
    torch.testing.assert_close(obs, torch.cat([th.cos(), th.sin(), thdot], -1).float())
    assert (td["steps"] == 0).all()


def test_stateless_step_reads_the_state_from_the_tensordict():
    env = PendulumEnv(batch_size=[2])
    td = env.reset()
    state = TensorDict(
        th=torch.tensor([[0.1], [2.0]], dtype=torch.float64),
        thdot=torch.tensor([[0.0], [-1.0]], dtype=torch.float64),
        steps=torch.tensor([[0], [7]]),
        action=torch.tensor([[1.0], [-1.0]]),
        batch_size=[2],
    )
    out = env.step(state.clone())["next"]
    th, thdot, reward = env.dynamics(state["th"], state["thdot"], state["action"])
    torch.testing.assert_close(out["th"], th)
    torch.testing.assert_close(out["thdot"], thdot)
    torch.testing.assert_close(out["reward"], reward.float())
    assert out["steps"].squeeze(-1).tolist() == [1, 8]
    # the same input gives the same output: the env's own state plays no part
    again = env.step(state.clone())["next"]
    assert torch.equal(again["th"], out["th"])
    # two interleaved trajectories stay independent
    a, b = td.clone(), env.reset()
    b_alone = env.step(b.clone().set("action", torch.ones(2, 1)))["next", "th"]
    env.step(a.set("action", -torch.ones(2, 1)))
    b_after = env.step(b.clone().set("action", torch.ones(2, 1)))["next", "th"]
    assert torch.equal(b_alone, b_after)


def test_step_without_state_falls_back_to_the_last_state():
    env = PendulumEnv()
    td = env.reset()
    full = env.step(td.clone().set("action", torch.ones(1)))["next", "th"]
    env.reset()  # the env forgets ``td``'s episode...
    env._state = {k: td[k] for k in ("th", "thdot", "steps")}  # ...until we put it back
    bare = TensorDict(observation=td["observation"], action=torch.ones(1))
    assert torch.equal(env.step(bare)["next", "th"], full)


def test_partial_reset_keeps_the_other_envs():
    env = PendulumEnv(batch_size=[4])
    td = env.reset()
    for _ in range(3):
        td = step_mdp(env.step(env.rand_action(td)))
    mask = torch.tensor([[True], [False], [True], [False]])
    out = env.reset(td.clone().set("_reset", mask))
    keep = ~mask.squeeze(-1)
    for key in ("th", "thdot", "steps", "observation"):
        assert torch.equal(out[key][keep], td[key][keep]), key
    assert (out["steps"][mask.squeeze(-1)] == 0).all()
    assert (td["steps"][mask.squeeze(-1)] == 3).all()


def test_truncation_at_max_episode_steps():
    env = PendulumEnv()
    ro = env.rollout(250)
    assert ro.batch_size == (200,)
    assert ro["next", "truncated"][-1].item()
    assert not ro["next", "terminated"].any()
    assert not ro["next", "done"][:-1].any()
    assert PendulumEnv(max_episode_steps=None).rollout(250).batch_size == (250,)


def test_seed_gives_the_same_initial_states():
    a, b = PendulumEnv(batch_size=[5]), PendulumEnv(batch_size=[5])
    a.set_seed(11)
    b.set_seed(11)
    assert torch.equal(a.reset()["th"], b.reset()["th"])
    b.set_seed(12)
    a.set_seed(11)
    assert not torch.equal(a.reset()["th"], b.reset()["th"])


def test_specs_and_check_env_specs():
    env = PendulumEnv(batch_size=[3])
    check_env_specs(env)
    assert env.action_spec.shape == (3, 1)
    assert env.action_spec.space.high.flatten().tolist() == [2.0, 2.0, 2.0]
    assert set(env.state_spec.keys()) == {"th", "thdot", "steps"}
    assert env.observation_keys == ["observation"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_episode_steps": 0}, "max_episode_steps must be >= 1"),
        ({"dtype": torch.int64}, "dtype must be a float dtype"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PendulumEnv(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda():
    env = PendulumEnv(batch_size=[8], device="cuda")
    ro = env.rollout(5)
    assert ro["next", "observation"].device.type == "cuda"
    check_env_specs(env)
