"""MultiStep: n-step returns over collector batches, against TorchRL and a hand-written loop."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from tdrl.collectors import SyncDataCollector
from tdrl.data import LazyTensorStorage, ReplayBuffer, TensorDictReplayBuffer
from tdrl.data.postprocs import MultiStep
from tdrl.objectives.value import TD0Estimator
from tdrl.testing import CountingEnv


def _batch(batch_shape, steps, *, seed, p_end=0.2, obs_dim=3, with_mask=False):
    """A collector-like batch with terminations and truncations at random positions."""
    g = torch.Generator().manual_seed(seed)
    shape = (*batch_shape, steps)
    terminated = torch.rand(*shape, 1, generator=g) < p_end / 2
    truncated = (torch.rand(*shape, 1, generator=g) < p_end / 2) & ~terminated
    data = TensorDict(
        {
            "observation": torch.randn(*shape, obs_dim, generator=g),
            "action": torch.randn(*shape, 2, generator=g),
            "step_count": torch.randint(0, 100, (*shape, 1), generator=g),
            "next": {
                "observation": torch.randn(*shape, obs_dim, generator=g),
                "step_count": torch.randint(0, 100, (*shape, 1), generator=g),
                "reward": torch.randn(*shape, 1, generator=g),
                "terminated": terminated,
                "truncated": truncated,
                "done": terminated | truncated,
            },
        },
        list(shape),
    )
    if with_mask:
        data["collector", "mask"] = torch.rand(*shape, generator=g) < 0.8
    return data


def _hand_targets(data, gamma, n, value):
    """n-step targets by a plain loop over steps: sum rewards until n steps or an episode end,
    then bootstrap from the value of the observation reached unless that step terminated."""
    flat = data.reshape(-1, data.shape[-1])
    out = torch.zeros(flat.shape[0], flat.shape[1])
    for b in range(flat.shape[0]):
        for t in range(flat.shape[1]):
            ret, discount, j = 0.0, 1.0, t
            while True:
                ret += discount * flat["next", "reward"][b, j, 0].item()
                discount *= gamma
                if flat["next", "done"][b, j, 0] or j - t + 1 == n or j + 1 == flat.shape[1]:
                    break
                j += 1
            if not flat["next", "terminated"][b, j, 0]:
                ret += discount * value(flat["next", "observation"][b, j]).item()
            out[b, t] = ret
    return out.reshape(data.shape)


@pytest.mark.parametrize("n_steps", [1, 2, 3, 5])
@pytest.mark.parametrize("batch_shape", [(), (4,), (2, 3)])
def test_matches_torchrl_multistep(n_steps, batch_shape):
    torchrl_postprocs = pytest.importorskip("torchrl.data.postprocs")
    for seed in range(6):
        data = _batch(batch_shape, 17, seed=seed, with_mask=seed % 2 == 1)
        ours = MultiStep(gamma=0.93, n_steps=n_steps)(data.clone())
        theirs = torchrl_postprocs.MultiStep(gamma=0.93, n_steps=n_steps)(data.clone())
        assert set(ours.keys(True, True)) == set(theirs.keys(True, True))
        for key in theirs.keys(True, True):
            if key == ("next", "terminated"):
                continue
            a, b = ours.get(key), theirs.get(key)
            assert a.shape == b.shape, key
            assert a.dtype == b.dtype, key
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"{key}")
        # our documented difference: the termination flag of the last step summed
        last = torch.arange(17) + theirs["steps_to_next_obs"] - 1
        expected = data["next", "terminated"].squeeze(-1).gather(-1, last).unsqueeze(-1)
        assert torch.equal(ours["next", "terminated"], expected)


@pytest.mark.parametrize("n_steps", [1, 3, 4])
def test_td0_on_the_output_is_the_hand_computed_n_step_target(n_steps):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    value = TensorDictModule(net, ["observation"], ["state_value"])
    gamma = 0.9
    for seed in range(4):
        data = _batch((3,), 20, seed=seed, p_end=0.3)
        out = MultiStep(gamma=gamma, n_steps=n_steps)(data)
        with torch.no_grad():
            target = TD0Estimator(gamma=gamma, value_network=value)(out)["value_target"].squeeze(-1)
            expected = _hand_targets(data, gamma, n_steps, net)
        torch.testing.assert_close(target, expected, rtol=1e-5, atol=1e-5)


def test_the_input_is_left_as_it_was():
    data = _batch((2,), 9, seed=1)
    before = data.clone()
    MultiStep(0.9, 3)(data)
    assert (data == before).all()


def test_a_window_never_crosses_an_episode_end_and_truncation_keeps_the_bootstrap():
    done = torch.tensor([0, 0, 1, 0, 0, 0, 1, 0], dtype=torch.bool).view(8, 1)
    terminated = torch.tensor([0, 0, 1, 0, 0, 0, 0, 0], dtype=torch.bool).view(8, 1)  # step 6 is truncated
    data = TensorDict(
        {
            "observation": torch.arange(8.0).view(8, 1),
            "next": {
                "observation": torch.arange(1.0, 9.0).view(8, 1),
                "reward": torch.ones(8, 1),
                "done": done,
                "terminated": terminated,
                "truncated": done & ~terminated,
            },
        },
        [8],
    )
    out = MultiStep(gamma=0.5, n_steps=3)(data)
    assert out["steps_to_next_obs"].tolist() == [3, 2, 1, 3, 3, 2, 1, 1]
    assert out["next", "observation"].flatten().tolist() == [3, 3, 3, 6, 7, 7, 7, 8]
    assert out["next", "terminated"].flatten().tolist() == [True, True, True] + [False] * 5
    assert out["next", "done"].flatten().tolist() == done.flatten().tolist()  # boundaries stay


def test_as_a_collector_postproc():
    env = CountingEnv(max_steps=5)
    collector = SyncDataCollector(
        env, None, frames_per_batch=12, total_frames=24, postproc=MultiStep(gamma=1.0, n_steps=3)
    )
    for batch in collector:
        assert "steps_to_next_obs" in batch.keys()
        # CountingEnv's reward is 1 per step: the n-step reward counts the steps summed
        assert torch.equal(batch["next", "reward"].squeeze(-1), batch["steps_to_next_obs"].float())
    collector.shutdown()


def test_as_a_replay_buffer_transform_it_acts_on_writes_only():
    data = _batch((), 30, seed=3)
    rb = ReplayBuffer(storage=LazyTensorStorage(100), transform=MultiStep(0.9, 4))
    rb.extend(data)
    stored = rb[torch.arange(30)]
    expected = MultiStep(0.9, 4)(data)
    assert torch.equal(stored["next", "reward"], expected["next", "reward"])
    assert torch.equal(stored["steps_to_next_obs"], expected["steps_to_next_obs"])
    sample, info = rb.sample(8, return_info=True)  # a sample is not a trajectory: nothing is recomputed
    assert torch.equal(sample["next", "reward"], stored["next", "reward"][info["index"]])
    td_rb = TensorDictReplayBuffer(storage=LazyTensorStorage(100), transform=MultiStep(0.9, 4), batch_size=5)
    td_rb.extend(data)
    assert torch.equal(td_rb[torch.arange(30)]["next", "reward"], expected["next", "reward"])


@pytest.mark.parametrize(("kwargs", "match"), [({"n_steps": 0}, "n_steps"), ({"gamma": 1.5}, "gamma")])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiStep(**{"gamma": 0.9, "n_steps": 2, **kwargs})


def test_a_batch_without_time_is_refused():
    data = _batch((), 5, seed=0)
    data["next", "done"] = torch.zeros(5, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="one done flag per step"):
        MultiStep(0.9, 2)(data)
