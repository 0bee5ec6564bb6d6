"""GymWrapper's per-step conversions, on its lean path (one env, array observation) and its general one.

A probe env records the actions and reset arguments gymnasium hands it and returns
observations of a chosen dtype, so each test can check what went in (the action's python
type and value, as TorchRL passes them) and what came out (keys, dtypes, shapes, values, and
fresh tensors at every step, since the collectors keep each step's tensors until they stack them).
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeLimit

from tdrl.envs.libs.gym import GymWrapper

S = gym.spaces
FLAGS = ("done", "terminated", "truncated")


class _Probe(gym.Env):
    """Observation ``[t, t, t]`` at step ``t``; terminated at ``horizon``; records actions and resets."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, action_space=None, obs_dtype=np.float32, horizon=5, reward=1.0, reuse_buffer=False):
        self.action_space = action_space if action_space is not None else S.Discrete(3)
        low, high = (0, 255) if np.issubdtype(obs_dtype, np.integer) else (-1e3, 1e3)
        self.observation_space = S.Box(low, high, (3,), obs_dtype)
        self.horizon, self.reward, self.reuse = horizon, reward, reuse_buffer
        self.buffer = np.zeros(3, obs_dtype)
        self.actions: list = []
        self.resets: list = []
        self.t = 0

    def _obs(self) -> np.ndarray:
        if self.reuse:  # an env that rewrites and returns the same array at every step
            self.buffer[:] = self.t
            return self.buffer
        return np.full(3, self.t, self.observation_space.dtype)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.resets.append((seed, options))
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.actions.append(action)
        self.t += 1
        return self._obs(), self.reward, self.t >= self.horizon, False, {}


def _expected_action(space, action: torch.Tensor):
    """The index (or array) gymnasium should receive for the tdrl action ``action``."""
    if isinstance(space, S.Discrete):
        return int(action.argmax()) if action.ndim else int(action)
    if isinstance(space, S.MultiDiscrete) and action.shape[-1] != len(space.nvec):  # one-hot blocks
        return np.array([int(p.argmax()) for p in action.split(list(space.nvec))])
    return action.numpy()


ACTION_CASES = [
    # (space, categorical_action_encoding, frame_skip, python type gymnasium receives)
    (S.Discrete(3), False, 1, int),
    (S.Discrete(3), True, 1, int),
    (S.Discrete(3), False, 2, int),
    (S.Discrete(3), True, 2, int),
    (S.MultiDiscrete([2, 3]), False, 1, np.ndarray),
    (S.MultiDiscrete([2, 3]), True, 1, np.ndarray),
    (S.Box(-1.0, 1.0, (2,), np.float32), False, 1, np.ndarray),
    (S.Box(-1.0, 1.0, (2,), np.float32), False, 2, np.ndarray),
    (S.MultiBinary(3), False, 1, np.ndarray),
]
ACTION_IDS = [
    *("one-hot", "index", "one-hot-skip", "index-skip"),
    *("multi-one-hot", "multi-index", "box", "box-skip", "bin"),
]


@pytest.mark.parametrize(("space", "categorical", "frame_skip", "kind"), ACTION_CASES, ids=ACTION_IDS)
def test_gymnasium_receives_the_decoded_action(space, categorical, frame_skip, kind):
    probe = _Probe(space, horizon=1000)
    env = GymWrapper(probe, categorical_action_encoding=categorical, frame_skip=frame_skip)
    # the lean path takes one env, one step per action and any action but multi-one-hot
    assert env._lean == (frame_skip == 1 and not (isinstance(space, S.MultiDiscrete) and not categorical))
    td = env.reset()
    for _ in range(6):
        td = env.rand_action(td)
        env.step(td)
        sent = probe.actions[-frame_skip:]
        assert len(sent) == frame_skip
        for got in sent:
            assert type(got) is kind
            np.testing.assert_array_equal(got, _expected_action(space, td["action"]))
            if kind is np.ndarray:
                assert got.dtype == np.dtype(space.dtype)


def test_straight_through_one_hot_reaches_gymnasium_as_its_index_on_the_collectors_call():
    # the collectors call env._step directly, with the policy's action as it is (float, requiring grad)
    probe = _Probe(S.Discrete(3), horizon=1000)
    env = GymWrapper(probe)
    td = env.reset()
    probs = torch.tensor([0.2, 0.5, 0.3], requires_grad=True)
    td["action"] = torch.tensor([0.0, 0.0, 1.0]) + probs - probs.detach()
    env._step(td)
    assert probe.actions == [2]
    assert type(probe.actions[0]) is int
    td["action"] = torch.tensor([True, False, False])
    env._step(td)
    assert probe.actions[-1] == 0


def _general(env: GymWrapper) -> GymWrapper:
    env._lean = False  # the same env through the general conversion path
    return env


@pytest.mark.parametrize("obs_dtype", [np.float32, np.float64, np.int64, np.uint8])
@pytest.mark.parametrize("reward", [1.0, np.float64(0.25), 2, np.float32(-3.5)], ids=["float", "f64", "int", "f32"])
def test_lean_and_general_paths_return_the_same_tensors(obs_dtype, reward):
    lean = GymWrapper(_Probe(obs_dtype=obs_dtype, horizon=3, reward=reward), categorical_action_encoding=True)
    general = _general(GymWrapper(_Probe(obs_dtype=obs_dtype, horizon=3, reward=reward), True))
    assert lean._lean
    a, b = lean.reset(), general.reset()
    for step in range(3):
        for td in (a, b):
            td["action"] = torch.tensor(step % 3)
        x, y = lean._step(a), general._step(b)
        assert set(x.keys()) == set(y.keys()) == {"observation", "reward", *FLAGS}
        for key in x.keys():
            assert (x[key].dtype, x[key].shape) == (y[key].dtype, y[key].shape), key
            assert torch.equal(x[key], y[key]), key
        assert x["observation"].dtype == torch.from_numpy(np.zeros(1, obs_dtype)).dtype
        assert x["observation"].tolist() == [step + 1] * 3
        assert x["reward"].dtype == torch.float32
        assert x["reward"].tolist() == [float(np.float32(reward))]
        for key in FLAGS:
            assert x[key].dtype == torch.bool
            assert x[key].shape == (1,)
        assert x["terminated"].item() == x["done"].item() == (step == 2)
        assert not x["truncated"].item()
    for out in (lean.reset(), general.reset()):
        assert out["observation"].tolist() == [0, 0, 0]
        assert all(out[key].dtype == torch.bool and out[key].shape == (1,) and not out[key].item() for key in FLAGS)


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "general"])
def test_every_step_returns_fresh_tensors_even_when_gymnasium_reuses_its_array(lean):
    probe = _Probe(horizon=1000, reuse_buffer=True)
    env = GymWrapper(probe, categorical_action_encoding=True)
    if not lean:
        _general(env)
    root = env.reset()
    root["action"] = torch.tensor(1)
    first, second = env._step(root), env._step(root)
    assert first["observation"].tolist() == [1, 1, 1]
    assert second["observation"].tolist() == [2, 2, 2]
    probe.buffer[:] = -7  # gymnasium's array changes later: the tensors already returned do not
    assert first["observation"].tolist() == [1, 1, 1]
    assert root["observation"].tolist() == [0, 0, 0]
    for key in first.keys():
        assert first[key].data_ptr() != second[key].data_ptr(), key
    ptrs = [first[key].data_ptr() for key in first.keys()]
    assert len(set(ptrs)) == len(ptrs)  # done does not share terminated's memory


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "general"])
def test_reset_passes_the_seed_once_and_options_every_time(lean):
    probe = _Probe()
    env = GymWrapper(probe, categorical_action_encoding=True)
    if not lean:
        _general(env)
    env.set_seed(7)
    env.reset(options={"level": 2})
    env.reset()
    env.reset(options={"level": 3})
    assert probe.resets == [(7, {"level": 2}), (None, None), (None, {"level": 3})]


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "general"])
def test_time_limit_truncation_and_termination_flags(lean):
    truncating = GymWrapper(TimeLimit(_Probe(horizon=100), max_episode_steps=3), categorical_action_encoding=True)
    terminating = GymWrapper(_Probe(horizon=2), categorical_action_encoding=True)
    for env, ends_at, flag in ((truncating, 3, "truncated"), (terminating, 2, "terminated")):
        if not lean:
            _general(env)
        td = env.reset()
        for step in range(1, ends_at + 1):
            td["action"] = torch.tensor(0)
            nxt = env.step(td)["next"]
            assert nxt["done"].item() == (step == ends_at)
            assert nxt[flag].item() == (step == ends_at)
            other = "terminated" if flag == "truncated" else "truncated"
            assert not nxt[other].item()
            td = nxt.clone()


def test_rollouts_restart_finished_episodes_from_the_reset_observation():
    # the policy-free fast rollout and the generic loop (with a policy) reset after each done alike
    env = GymWrapper(TimeLimit(_Probe(horizon=100), max_episode_steps=3), categorical_action_encoding=True)

    def policy(td):
        td["action"] = torch.tensor(0)
        return td

    fast = env.rollout(7, break_when_any_done=False)
    generic = env.rollout(7, policy, break_when_any_done=False)
    for ro in (fast, generic):
        assert ro["next", "truncated"].reshape(-1).tolist() == [False, False, True] * 2 + [False]
        assert ro["observation"][:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]
        assert ro["next", "observation"][:, 0].tolist() == [1, 2, 3, 1, 2, 3, 1]


@pytest.mark.parametrize(("space", "categorical", "frame_skip", "kind"), ACTION_CASES, ids=ACTION_IDS)
def test_actions_and_outputs_match_torchrl(space, categorical, frame_skip, kind):
    torchrl_gym = pytest.importorskip("torchrl.envs.libs.gym")
    ours_probe, theirs_probe = _Probe(space, horizon=4), _Probe(space, horizon=4)
    ours = GymWrapper(ours_probe, categorical_action_encoding=categorical, frame_skip=frame_skip)
    theirs = torchrl_gym.GymWrapper(theirs_probe, categorical_action_encoding=categorical, frame_skip=frame_skip)
    a, b = ours.reset(), theirs.reset()
    for _ in range(6):
        action = ours.action_spec.rand()
        a["action"], b["action"] = action, action.clone()
        a, root_a = ours.step_and_maybe_reset(a)
        b, root_b = theirs.step_and_maybe_reset(b)
        for key in ("observation", "reward", *FLAGS):
            x, y = a["next", key], b["next", key]
            assert (x.dtype, x.shape) == (y.dtype, y.shape), key
            assert torch.equal(x, y), key
        a, b = root_a, root_b
    assert len(ours_probe.actions) == len(theirs_probe.actions)
    for got, want in zip(ours_probe.actions, theirs_probe.actions, strict=True):
        assert type(got) is type(want) is kind
        np.testing.assert_array_equal(got, want)
    assert ours_probe.resets == theirs_probe.resets


@pytest.mark.parametrize("categorical", [False, True], ids=["one-hot", "index"])
def test_policy_free_rollout_hands_gymnasium_python_ints(categorical):
    probe = _Probe(S.Discrete(3), horizon=1000)
    env = GymWrapper(probe, categorical_action_encoding=categorical)
    ro = env.rollout(5)
    assert all(type(a) is int for a in probe.actions)
    indices = ro["action"].argmax(-1) if not categorical else ro["action"]
    assert probe.actions == indices.tolist()
