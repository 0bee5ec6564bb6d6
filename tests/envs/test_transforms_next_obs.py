"""NextObservationDelta and NextStateReconstructor: next observations stored once, rebuilt when sampled."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.data import LazyTensorStorage, ReplayBuffer, SliceSampler
from tdrl.envs import NextObservationDelta, NextStateReconstructor, TransformedEnv
from tdrl.testing.masked import MaskedDiscreteEnv
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


class TestNextObservationDelta(TransformContractTests):
    forward_matches_env = False  # forward rebuilds next observations from deltas (the env keeps both)

    def make_transform(self):
        return NextObservationDelta()


class TestNextObservationDeltaFloat64(TransformContractTests):
    forward_matches_env = False

    def make_transform(self):
        return NextObservationDelta(["observation"], delta_dtype=torch.float32, restore_dtype=torch.float64)

    def make_env(self):
        return TransformTestEnv(dtype=torch.float64, pixels=(2, 2))

    def make_batched_env(self):
        return TransformTestEnv(dtype=torch.float64, pixels=(2, 2), batch_size=[3])


class _Replay:
    """A policy writing recorded actions ``[*batch, T, ...]``, one step at a time."""

    def __init__(self, actions):
        self.actions, self.t = actions, 0

    def __call__(self, td):
        td.set("action", self.actions[:, self.t])
        self.t += 1
        return td


def test_delta_is_the_transition_and_rollouts_keep_only_it():
    base = TransformTestEnv(batch_size=[2])
    base.set_seed(0)
    plain = base.rollout(10, break_when_any_done=False)  # the full next observations
    t = NextObservationDelta()
    env = TransformedEnv(TransformTestEnv(batch_size=[2]), t)
    env.set_seed(0)
    data = env.rollout(10, _Replay(plain["action"]), break_when_any_done=False)
    assert t.in_keys == ["observation"]  # pixels-free env: the float observation only
    assert ("next", "observation") not in data.keys(True, True)
    assert "delta" not in data.keys()  # the delta is not carried to the root
    assert "delta" not in env.observation_spec.keys()
    assert "delta" not in env.reset().keys()
    assert torch.equal(data["observation"], plain["observation"])
    next_obs = plain["next", "observation"]
    delta = data["next", "delta", "observation"]
    assert delta.dtype == torch.float16
    assert torch.equal(delta, (next_obs - data["observation"]).half())
    # the buffer stores what the rollout holds and rebuilds k + delta, trajectory ends included
    rb = ReplayBuffer(storage=LazyTensorStorage(40), transform=t, batch_size=4)
    rb.extend(data.reshape(-1))
    assert set(rb.storage[:].keys(True, True)) == set(data.keys(True, True))
    rebuilt = rb[:]
    assert torch.equal(rebuilt["next", "observation"], (data["observation"] + delta.float()).reshape(20, 3))
    torch.testing.assert_close(rebuilt["next", "observation"], next_obs.reshape(20, 3), atol=2e-3, rtol=0)
    assert ("next", "delta") not in rebuilt.keys(True)
    assert rb.sample()["next", "observation"].dtype == torch.float32


def test_env_step_keeps_both_and_step_and_maybe_reset_drops():
    env = TransformedEnv(TransformTestEnv(), NextObservationDelta())
    td = env.rand_action(env.reset())
    stepped = env.step(td.clone())
    assert ("next", "observation") in stepped.keys(True, True)
    assert ("next", "delta", "observation") in stepped.keys(True, True)
    env.set_seed(0)
    td = env.rand_action(env.reset())
    out, root = env.step_and_maybe_reset(td)
    assert ("next", "observation") not in out.keys(True, True)
    assert ("next", "delta", "observation") in out.keys(True, True)
    assert "delta" not in root.keys()
    assert "observation" in root.keys()
    fake = env.fake_tensordict()
    assert ("next", "observation") not in fake.keys(True, True)
    assert fake["next", "delta", "observation"].dtype == torch.float16


def test_integer_observations_are_left_alone_and_bad_dtypes_refused():
    env = TransformedEnv(MaskedDiscreteEnv(), NextObservationDelta())
    assert env.transform.in_keys == ["observation"]  # not the bool action_mask
    with pytest.raises(ValueError, match="delta_dtype must be a floating dtype"):
        NextObservationDelta(delta_dtype=torch.int32)
    with pytest.raises(ValueError, match="restore_dtype"):
        NextObservationDelta(restore_dtype=torch.int64)


def _flat():
    return TensorDict(
        {
            "observation": torch.arange(10.0).unsqueeze(-1),
            "step_count": torch.tensor([0, 1, 2, 0, 1, 2, 3, 0, 1, 5]).unsqueeze(-1),
            "next": {"done": torch.tensor([0, 0, 1, 0, 0, 0, 1, 0, 0, 0]).bool().unsqueeze(-1)},
            "collector": {"traj_ids": torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])},
        },
        [10],
    )


def test_reconstructor_follows_trajectories_dones_and_step_counts():
    out = NextStateReconstructor(step_count_key="step_count")(_flat())["next", "observation"].squeeze(-1)
    expected = torch.tensor([1, 2, float("nan"), 4, 5, 6, float("nan"), 8, float("nan"), float("nan")])
    torch.testing.assert_close(out, expected, equal_nan=True)
    out = NextStateReconstructor(traj_key=None, done_key=None)(_flat())["next", "observation"].squeeze(-1)
    torch.testing.assert_close(out[:-1], torch.arange(1.0, 10.0))
    out = NextStateReconstructor(fill_value=-1.0)(_flat())["next", "observation"].squeeze(-1)
    assert out[2] == -1
    assert out[8] == 9


def test_reconstructor_with_a_slice_sampler_matches_the_full_data():
    data = _flat()
    data["next", "observation"] = torch.cat([data["observation"][1:], torch.zeros(1, 1)])
    rb = ReplayBuffer(
        storage=LazyTensorStorage(20),
        sampler=SliceSampler(slice_len=3, traj_key=("collector", "traj_ids")),
        transform=NextStateReconstructor(),
        batch_size=6,
    )
    rb.extend(data.exclude(("next", "observation")))
    sample = rb.sample()
    index = sample["index"] if "index" in sample.keys() else None
    rebuilt = sample["next", "observation"]
    known = ~torch.isnan(rebuilt)
    assert known.any()
    if index is not None:
        torch.testing.assert_close(rebuilt[known], data["next", "observation"][index][known])


def test_reconstructor_errors_name_the_fix():
    with pytest.raises(ValueError, match="must be flat"):
        NextStateReconstructor()(_flat().reshape(2, 5))
    with pytest.raises(KeyError, match="strict=False"):
        NextStateReconstructor()(_flat().exclude("collector"))
    assert ("next", "observation") in NextStateReconstructor(strict=False)(_flat().exclude("collector")).keys(True)
    integer = _flat()
    integer["observation"] = integer["observation"].long()
    with pytest.raises(TypeError, match="integer fill_value"):
        NextStateReconstructor()(integer)
    out = NextStateReconstructor(fill_value=0)(integer)["next", "observation"]
    assert out.dtype == torch.int64


@pytest.mark.parametrize("compact_obs", [False, True])
def test_delta_through_a_collector_into_a_buffer(compact_obs):
    from tdrl.collectors import SyncDataCollector

    t = NextObservationDelta()
    env = TransformedEnv(TransformTestEnv(), t)
    collector = SyncDataCollector(env, None, frames_per_batch=16, total_frames=16, compact_obs=compact_obs)
    batch = next(iter(collector))
    collector.shutdown()
    assert batch["next", "delta", "observation"].dtype == torch.float16
    assert ("next", "observation") not in batch.keys(True, True)
    assert "delta" not in batch.keys()
    # within a trajectory, the delta is the step to the next root
    same = ~batch["next", "done"].squeeze(-1)[:-1]
    step = (batch["observation"][1:] - batch["observation"][:-1]).half()
    assert torch.equal(batch["next", "delta", "observation"][:-1][same], step[same])
    rb = ReplayBuffer(storage=LazyTensorStorage(32), transform=t, batch_size=8)
    rb.extend(batch)
    rebuilt = rb[:]["next", "observation"]
    torch.testing.assert_close(rebuilt[:-1][same], batch["observation"][1:][same], atol=2e-3, rtol=0)


def _gym_pair(name, first_reset=True):
    """The same Gym env with ``NextObservationDelta`` in TorchRL and in tdrl, seeded alike."""
    pytest.importorskip("torchrl")
    pytest.importorskip("gymnasium")
    import warnings

    import torchrl.envs as rl_envs

    import tdrl.envs as td_envs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = rl_envs.TransformedEnv(rl_envs.GymEnv(name), rl_envs.NextObservationDelta())
        ours = td_envs.TransformedEnv(td_envs.GymEnv(name), td_envs.NextObservationDelta())
    theirs.set_seed(0)
    ours.set_seed(0)
    if first_reset:  # TorchRL's set_seed resets the gym env once: tdrl's next reset is TorchRL's first
        ours.reset()
    return theirs, ours


class _Actions:
    """A deterministic policy of the step count, the same in both libraries (one-hot for CartPole)."""

    def __init__(self, name):
        self.name, self.count = name, 0

    def __call__(self, td):
        if self.name == "CartPole-v1":
            action = torch.zeros(2, dtype=torch.long)
            action[1] = 1  # always right: episodes end within about ten steps and reset
        else:
            action = torch.full((1,), ((self.count * 7) % 5 - 2) * 0.5)
        self.count += 1
        td.set("action", action)
        return td


def _assert_same_data(theirs, ours):
    keys = set(theirs.keys(True, True))
    assert set(ours.keys(True, True)) == keys
    for key in keys:
        a, b = theirs.get(key), ours.get(key)
        assert a.dtype == b.dtype, key
        assert a.shape == b.shape, key
        if key[0] != "collector":
            torch.testing.assert_close(b, a, rtol=0, atol=0, msg=f"{key!r} differs")


@pytest.mark.parametrize("name", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("break_when_any_done", [True, False])
def test_rollout_layout_and_values_match_torchrl(break_when_any_done, name):
    pytest.importorskip("torchrl")
    from torchrl.data import LazyTensorStorage as RLStorage
    from torchrl.data import ReplayBuffer as RLReplayBuffer
    from torchrl.envs import NextObservationDelta as RLDelta

    out = [env.rollout(30, _Actions(name), break_when_any_done=break_when_any_done) for env in _gym_pair(name)]
    theirs, ours = out
    _assert_same_data(theirs, ours)
    # the replay-buffer side rebuilds the same next observations from the same stored data
    rl_rb = RLReplayBuffer(storage=RLStorage(40), transform=RLDelta(["observation"]))
    rl_rb.extend(theirs)
    rb = ReplayBuffer(storage=LazyTensorStorage(40), transform=NextObservationDelta(["observation"]))
    rb.extend(ours)
    _assert_same_data(rl_rb[:].exclude("index"), rb[:].exclude("index"))


@pytest.mark.parametrize("name", ["Pendulum-v1", "CartPole-v1"])
def test_collector_batch_layout_and_values_match_torchrl(name):
    pytest.importorskip("torchrl")
    from torchrl.collectors import Collector as RLCollector

    from tdrl.collectors import Collector

    batches = []
    for env, cls in zip(_gym_pair(name, first_reset=False), (RLCollector, Collector)):
        collector = cls(env, _Actions(name), frames_per_batch=24, total_frames=24)
        batches.append(next(iter(collector)))
        collector.shutdown()
    _assert_same_data(*batches)
    assert ("next", "observation") not in batches[1].keys(True, True)
