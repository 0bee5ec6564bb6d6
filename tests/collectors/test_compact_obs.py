"""``compact_obs=True``: the observation and state entries are left out of ``"next"``, nothing else changes.

Each compact batch equals the full batch (same seed) without the observation/state leaves
under ``"next"``; the dropped values are the root of the following step within a
trajectory, so ``NextStateReconstructor`` rebuilds them; the same keys are dropped as by
TorchRL 0.14.1 (differential, on the venv where it is installed).
"""

from __future__ import annotations

import functools

import pytest
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from tdrl.collectors import MultiSyncDataCollector, SyncDataCollector
from tdrl.collectors._compact import compact_next_keys
from tdrl.data import LazyTensorStorage, ReplayBuffer
from tdrl.envs import Compose, InitTracker, SerialEnv, StepCounter, TransformedEnv
from tdrl.envs.transforms import NextStateReconstructor
from tdrl.testing import ContinuousActionMock, CountingEnv, NestedKeyMock


def _env(max_steps: int = 4, batch: tuple = ()) -> TransformedEnv:
    return TransformedEnv(
        ContinuousActionMock(obs_dim=3, action_dim=2, max_steps=max_steps, batch_size=batch),
        Compose(InitTracker(), StepCounter()),
    )


def _policy() -> TensorDictModule:
    torch.manual_seed(1)
    return TensorDictModule(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), ["observation"], ["action"])


def _batches(compact: bool, make_env=_env, policy=None, **kwargs) -> list:
    torch.manual_seed(0)
    collector = SyncDataCollector(
        make_env(), policy, frames_per_batch=6, total_frames=18, compact_obs=compact, **kwargs
    )
    out = [b.clone() for b in collector]
    collector.shutdown()
    return out


@pytest.mark.parametrize("policy", [None, "module"], ids=["random", "module"])
def test_compact_batches_are_full_batches_without_the_next_observations(policy):
    pol = _policy() if policy == "module" else None
    full = _batches(False, policy=pol)
    compact = _batches(True, policy=_policy() if policy == "module" else None)
    dropped = {("next", "observation"), ("next", "is_init"), ("next", "step_count")}
    for f, c in zip(full, compact):
        assert set(f.keys(True, True)) - set(c.keys(True, True)) == dropped
        assert set(c.keys(True, True)) <= set(f.keys(True, True))
        for key in c.keys(True, True):
            torch.testing.assert_close(c[key], f[key], msg=f"{key} differs")


def test_dropped_entries_are_the_next_root_within_a_trajectory():
    (full,) = _batches(False)[:1]
    nxt, root = full["next", "observation"][:-1], full["observation"][1:]
    same_traj = ~full["next", "done"][:-1].squeeze(-1)
    torch.testing.assert_close(nxt[same_traj], root[same_traj])


def test_reward_and_done_flags_stay():
    (batch,) = _batches(True)[:1]
    assert set(batch["next"].keys()) == {"reward", "done", "terminated", "truncated"}


def test_next_state_reconstructor_rebuilds_them():
    (full,) = _batches(False)[:1]
    (compact,) = _batches(True)[:1]
    rb = ReplayBuffer(storage=LazyTensorStorage(6), transform=NextStateReconstructor(), batch_size=6)
    rb.extend(compact)
    assert ("next", "observation") not in rb.storage[:].keys(True, True)
    rebuilt = NextStateReconstructor()(rb.storage[:])  # the stored steps, in order
    has_next = ~torch.isnan(rebuilt["next", "observation"]).any(-1)
    last_or_done = torch.zeros(6, dtype=torch.bool)
    last_or_done[-1] = True
    last_or_done |= full["next", "done"].squeeze(-1)
    assert torch.equal(has_next, ~last_or_done)
    torch.testing.assert_close(rebuilt["next", "observation"][has_next], full["next", "observation"][has_next])


def test_nested_observations_and_batched_envs():
    make = functools.partial(SerialEnv, 2, functools.partial(NestedKeyMock, max_steps=3))
    torch.manual_seed(0)
    collector = SyncDataCollector(make(), None, frames_per_batch=8, total_frames=8, compact_obs=True)
    batch = next(iter(collector))
    assert ("data", "states") in batch.keys(True, True)
    assert ("next", "data", "states") not in batch.keys(True, True)
    assert "data" not in batch["next"].keys()  # the sub-TensorDict left with nothing is not recorded
    assert batch.batch_size == (2, 4)
    collector.shutdown()


def test_recurrent_states_under_next_are_dropped_and_still_carried():
    from tdrl.modules import GRUModule

    gru = GRUModule(input_size=3, hidden_size=4, in_key="observation", out_key="features")
    policy = TensorDictSequential(gru, TensorDictModule(nn.Linear(4, 2), ["features"], ["action"]))

    def make():
        return _env(max_steps=4).append_transform(gru.make_tensordict_primer())

    torch.manual_seed(0)
    full = SyncDataCollector(make(), policy, frames_per_batch=8, total_frames=8)
    torch.manual_seed(0)
    compact = SyncDataCollector(make(), policy, frames_per_batch=8, total_frames=8, compact_obs=True)
    f, c = next(iter(full)), next(iter(compact))
    assert ("next", "recurrent_state") not in c.keys(True, True)
    torch.testing.assert_close(c["recurrent_state"], f["recurrent_state"])  # carried step to step as before
    assert f["recurrent_state"].abs().sum() > 0


def test_compact_next_keys_lists_observation_and_state_leaves():
    assert compact_next_keys(CountingEnv()) == (("next", "observation"),)
    assert compact_next_keys(NestedKeyMock()) == (("next", "data", "states"),)


def test_multi_process_collectors_pass_it_to_their_workers():
    collector = MultiSyncDataCollector(
        [functools.partial(CountingEnv, max_steps=3)] * 2, None, frames_per_batch=4, total_frames=4, compact_obs=True
    )
    try:
        batch = next(iter(collector))
    finally:
        collector.shutdown()
    assert ("next", "observation") not in batch.keys(True, True)
    assert ("next", "reward") in batch.keys(True, True)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_non_bool_compact_obs_is_refused(value):
    with pytest.raises(TypeError, match=r"compact_obs must be True or False, got"):
        SyncDataCollector(CountingEnv(), None, frames_per_batch=2, total_frames=2, compact_obs=value)
    with pytest.raises(TypeError, match=r"compact_obs must be True or False, got"):
        MultiSyncDataCollector([CountingEnv], None, frames_per_batch=2, total_frames=2, compact_obs=value)


def test_same_keys_dropped_as_torchrl():
    torchrl_collectors = pytest.importorskip("torchrl.collectors")
    torchrl_envs = pytest.importorskip("torchrl.envs")
    pytest.importorskip("gymnasium")
    from tdrl.envs.libs.gym import GymEnv

    def tdrl_env():
        return TransformedEnv(GymEnv("CartPole-v1"), Compose(InitTracker(), StepCounter()))

    def torchrl_env():
        return torchrl_envs.TransformedEnv(
            torchrl_envs.GymEnv("CartPole-v1"),
            torchrl_envs.Compose(torchrl_envs.InitTracker(), torchrl_envs.StepCounter()),
        )

    ours = next(iter(SyncDataCollector(tdrl_env(), None, frames_per_batch=8, total_frames=8, compact_obs=True)))
    theirs_collector = torchrl_collectors.Collector(
        torchrl_env(), None, frames_per_batch=8, total_frames=8, compact_obs=True
    )
    theirs = next(iter(theirs_collector))
    theirs_collector.shutdown()
    assert set(ours["next"].keys(True, True)) == set(theirs["next"].keys(True, True))
    assert set(ours.keys(True, True)) == set(theirs.keys(True, True))
