"""dm_control backend: specs, rollouts against raw dm_control, done flags, seeding, pixels, errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch


def _import_suite():
    """dm_control's suite with headless rendering (EGL) if it loads, else without a renderer.

    The OpenGL backend is chosen when dm_control is first imported; if EGL cannot load
    here, only the pixel test is skipped, not the whole module.
    """
    if importlib.util.find_spec("dm_control") is None:
        pytest.skip('dm_control is not installed (pip install "tdrl[dm_control]")', allow_module_level=True)
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        from dm_control import suite
    except Exception:
        os.environ["MUJOCO_GL"] = "disable"
        for name in [m for m in sys.modules if m.startswith("dm_control")]:
            del sys.modules[name]
        from dm_control import suite
    return suite


suite = _import_suite()
import dm_env  # noqa: E402
from dm_env import specs  # noqa: E402

from tdrl.envs.libs.dm_control import DMControlEnv, DMControlWrapper, dm_spec_to_spec  # noqa: E402
from tdrl.envs.utils import check_env_specs, step_mdp  # noqa: E402
from tdrl.specs import Bounded, Categorical, Composite, Unbounded  # noqa: E402
from tdrl.testing import EnvContractTests  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_rng():
    state = torch.get_rng_state()
    yield
    torch.set_rng_state(state)


class TestDMControlContract(EnvContractTests):
    def make_env(self):
        return DMControlEnv("cartpole", "swingup")


class TestDMControlConcatContract(EnvContractTests):
    def make_env(self):
        return DMControlEnv("cheetah", "run", concat_observations=True, frame_skip=2)


class _CountdownEnv(dm_env.Environment):
    """A generic dm_env: nested and scalar observations, a discrete action, terminal at step 3."""

    def __init__(self, terminal_discount: float = 0.0) -> None:
        self.t = 0
        self.terminal_discount = terminal_discount

    def observation_spec(self):
        return {
            "count": specs.Array((), np.int64, name="count"),
            "body": {"pos": specs.BoundedArray((2,), np.float64, -10.0, 10.0, name="pos")},
        }

    def action_spec(self):
        return specs.DiscreteArray(3, name="action")

    def _obs(self):
        return {"count": np.int64(self.t), "body": {"pos": np.array([self.t, -self.t], dtype=np.float64)}}

    def reset(self):
        self.t = 0
        return dm_env.restart(self._obs())

    def step(self, action):
        assert np.asarray(action).dtype == np.int32  # the dm spec's dtype, converted by the wrapper
        self.t += 1
        if self.t >= 3:
            if self.terminal_discount == 0.0:
                return dm_env.termination(float(action), self._obs())
            return dm_env.truncation(float(action), self._obs(), self.terminal_discount)
        return dm_env.transition(float(action), self._obs())


class TestGenericDMEnvContract(EnvContractTests):
    def make_env(self):
        return DMControlWrapper(_CountdownEnv())

    def test_seed_reproducible(self):
        pytest.skip("a generic dm_env exposes no seed; set_seed raises (see test_generic_env_cannot_be_seeded)")


def test_spec_conversion():
    assert dm_spec_to_spec(specs.Array((), np.float64)) == Unbounded(shape=(1,), dtype=torch.float64)
    bounded = dm_spec_to_spec(specs.BoundedArray((2,), np.float64, [-1.0, 0.0], [1.0, 3.0]), dtype=torch.float32)
    assert isinstance(bounded, Bounded)
    assert bounded.dtype == torch.float32
    assert bounded.space.high.tolist() == [1.0, 3.0]
    assert dm_spec_to_spec(specs.BoundedArray((1,), np.float64, -np.inf, np.inf)) == Unbounded(
        shape=(1,), dtype=torch.float64
    )
    assert dm_spec_to_spec(specs.DiscreteArray(5)) == Categorical(5, shape=())
    nested = dm_spec_to_spec({"a": {"b": specs.Array((3,), np.float32)}})
    assert isinstance(nested, Composite)
    assert nested["a", "b"].shape == (3,)
    with pytest.raises(TypeError, match="StringArray is not supported"):
        dm_spec_to_spec(specs.StringArray(()))


def test_specs_of_a_suite_task():
    env = DMControlEnv("cartpole", "swingup")
    raw = suite.load("cartpole", "swingup")
    for name, dm in raw.observation_spec().items():
        spec = env.observation_spec[name]
        assert spec.shape == dm.shape, name
        assert spec.dtype == torch.float64, name
    assert env.action_spec == Bounded(-1.0, 1.0, shape=(1,), dtype=torch.float32)
    assert env.reward_spec == Unbounded(shape=(1,))
    assert sorted(env.observation_spec.keys()) == ["position", "velocity"]  # no "discount", as in TorchRL
    check_env_specs(env)


def test_rollout_matches_raw_dm_control_under_the_same_actions():
    env = DMControlEnv("cartpole", "swingup", seed=7)
    raw = suite.load("cartpole", "swingup", task_kwargs={"random": 7})
    ro = env.rollout(20)
    ts = raw.reset()
    np.testing.assert_array_equal(ro["position"][0].numpy(), ts.observation["position"])
    for t in range(20):
        ts = raw.step(ro["action"][t].numpy().astype(np.float64))
        np.testing.assert_array_equal(ro["next", "position"][t].numpy(), ts.observation["position"])
        np.testing.assert_array_equal(ro["next", "velocity"][t].numpy(), ts.observation["velocity"])
        assert ro["next", "reward"][t].item() == pytest.approx(ts.reward, rel=1e-6)


def test_concatenated_observation_matches_the_named_entries():
    named = DMControlEnv("walker", "walk", seed=1)
    cat = DMControlEnv("walker", "walk", seed=1, concat_observations=True)
    a, b = named.reset(), cat.reset()
    parts = [a[k].reshape(-1) for k in named.observation_keys]
    torch.testing.assert_close(b["observation"], torch.cat(parts))
    assert cat.observation_keys == ["observation"]


def test_time_limit_is_a_truncation():
    env = DMControlEnv("cartpole", "balance", task_kwargs={"time_limit": 0.1})  # 10 steps of 0.01 s
    ro = env.rollout(50)
    assert ro.batch_size == (10,)
    assert ro["next", "truncated"][-1].item()
    assert not ro["next", "terminated"].any()


def test_terminal_step_with_zero_discount_is_terminated():
    env = DMControlWrapper(_CountdownEnv())
    ro = env.rollout(10)
    assert ro.batch_size == (3,)
    assert ro["next", "terminated"][-1].item()
    assert not ro["next", "truncated"].any()
    cut = DMControlWrapper(_CountdownEnv(terminal_discount=0.5)).rollout(10)
    assert cut["next", "truncated"][-1].item()
    assert not cut["next", "terminated"].any()


def test_generic_env_nested_and_scalar_observations():
    env = DMControlWrapper(_CountdownEnv())
    assert env.observation_spec["count"] == Unbounded(shape=(1,), dtype=torch.int64)
    assert env.observation_spec["body", "pos"].shape == (2,)
    assert env.action_spec == Categorical(3, shape=())
    td = env.reset()
    td["action"] = torch.tensor(2)
    td = step_mdp(env.step(td))
    assert td["count"].tolist() == [1]
    assert td["body", "pos"].tolist() == [1.0, -1.0]
    assert env.step(td.set("action", torch.tensor(1)))["next", "reward"].item() == 1.0
    cat = DMControlWrapper(_CountdownEnv(), concat_observations=True)
    assert cat.observation_spec["observation"] == Unbounded(shape=(3,), dtype=torch.float64)


def test_generic_env_cannot_be_seeded():
    with pytest.raises(RuntimeError, match="task_kwargs"):
        DMControlWrapper(_CountdownEnv()).set_seed(0)


def test_seeding_reproduces_initial_states():
    env = DMControlEnv("cartpole", "swingup")
    env.set_seed(3)
    first = env.reset()["position"]
    env.reset()
    env.set_seed(3)
    assert torch.equal(env.reset()["position"], first)
    env.set_seed(4)
    assert not torch.equal(env.reset()["position"], first)


def test_frame_skip_sums_rewards():
    env = DMControlEnv("cartpole", "swingup", seed=0, frame_skip=3)
    raw = suite.load("cartpole", "swingup", task_kwargs={"random": 0})
    td = env.reset()
    raw.reset()
    td["action"] = torch.full((1,), 0.5)
    out = env.step(td)["next"]
    rewards = [raw.step(np.array([0.5])).reward for _ in range(3)]
    assert out["reward"].item() == pytest.approx(sum(rewards), rel=1e-6)
    np.testing.assert_array_equal(out["position"].numpy(), raw._task.get_observation(raw.physics)["position"])


def test_pixels():
    try:
        env = DMControlEnv("cartpole", "swingup", from_pixels=True, render_kwargs={"height": 32, "width": 48})
    except RuntimeError as err:
        pytest.skip(f"offscreen rendering is unavailable here: {err}")
    assert env.observation_spec["pixels"] == Bounded(0, 255, shape=(32, 48, 3), dtype=torch.uint8)
    check_env_specs(env)
    ro = env.rollout(5)
    assert ro["next", "pixels"].shape == (5, 32, 48, 3)
    assert ro["next", "pixels"].dtype == torch.uint8
    assert ro["next", "pixels"].float().std() > 0
    only = DMControlEnv(
        "cartpole", "swingup", from_pixels=True, pixels_only=True, render_kwargs={"height": 16, "width": 16}
    )
    assert only.observation_keys == ["pixels"]
    check_env_specs(only)


def test_unknown_domain_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown domain 'cheeta'\. Did you mean \['cheetah'\]\?.*'walker'"):
        DMControlEnv("cheeta", "run")


def test_unknown_task_lists_the_domain_tasks():
    with pytest.raises(ValueError, match=r"domain 'cartpole' has no task 'run'.*'swingup'"):
        DMControlEnv("cartpole", "run")


def test_torchrl_argument_names():
    env = DMControlEnv(env_name="cartpole", task_name="balance")
    assert (env.env_name, env.task_name) == ("cartpole", "balance")
    with pytest.raises(TypeError, match="needs a domain and a task"):
        DMControlEnv("cartpole")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"frame_skip": 0}, "frame_skip must be >= 1"), ({"pixels_only": True}, "pixels_only=True needs from_pixels")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DMControlEnv("cartpole", "balance", **kwargs)


def test_missing_dm_control_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dm_control", None)
    with pytest.raises(ImportError, match=r'pip install "tdrl\[dm_control\]"'):
        DMControlEnv("cartpole", "balance")


def test_libs_import_without_dm_control():
    code = (
        "import sys; sys.modules['dm_control'] = None; sys.modules['dm_env'] = None\n"
        "import tdrl.envs.libs as libs\n"
        "print(libs.GymEnv('Pendulum-v1').batch_size)\n"
        "try:\n    libs.DMControlEnv('cartpole', 'balance')\n"
        "except ImportError as err:\n    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'pip install "tdrl[dm_control]"' in out.stdout


def test_all_observation_entries_concatenate_as_in_torchrl_tutorials():
    from tdrl.envs import CatTensors, TransformedEnv

    env = DMControlEnv("cheetah", "run", seed=0)
    keys = list(env.observation_spec.keys())
    cat = TransformedEnv(env, CatTensors(keys, "observation_vector"))
    check_env_specs(cat)
    ro = cat.rollout(3)
    assert ro["next", "observation_vector"].shape == (3, 17)
    assert ro["next", "observation_vector"].dtype == torch.float64


def test_available_envs_pairs_each_domain_with_its_tasks():
    pairs = DMControlEnv.available_envs
    listed = {(domain, task) for domain, tasks in pairs for task in tasks}
    assert listed == set(suite.ALL_TASKS)
    assert [domain for domain, _ in pairs][:3] == ["acrobot", "ball_in_cup", "cartpole"]
    assert DMControlWrapper.available_envs == pairs
    assert DMControlEnv("cartpole", "balance").available_envs == pairs


def test_observation_spec_and_available_envs_match_torchrl():
    torchrl_dm = pytest.importorskip("torchrl.envs.libs.dm_control")
    assert DMControlEnv.available_envs == torchrl_dm.DMControlEnv.available_envs
    for domain, task in [("cartpole", "swingup"), ("cheetah", "run"), ("walker", "walk")]:
        ours = DMControlEnv(domain, task).observation_spec
        theirs = torchrl_dm.DMControlEnv(domain, task).observation_spec
        assert list(ours.keys()) == list(theirs.keys()), (domain, task)
        for key in theirs.keys():
            assert ours[key].shape == theirs[key].shape, (domain, task, key)
            assert ours[key].dtype == theirs[key].dtype, (domain, task, key)
