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


def test_delta_is_the_transition_and_the_buffer_stores_only_it():
    t = NextObservationDelta()
    env = TransformedEnv(TransformTestEnv(batch_size=[2]), t)
    data = env.rollout(10, break_when_any_done=False)
    assert t.in_keys == ["observation"]  # pixels-free env: the float observation only
    delta = data["next", "delta", "observation"]
    assert delta.dtype == torch.float16
    torch.testing.assert_close(delta, (data["next", "observation"] - data["observation"]).half())
    rb = ReplayBuffer(storage=LazyTensorStorage(40), transform=t, batch_size=4)
    rb.extend(data.reshape(-1))
    stored = rb.storage[:]
    assert ("next", "observation") not in stored.keys(True, True)
    assert ("delta", "observation") not in stored.keys(True, True)
    rebuilt = rb[:]
    torch.testing.assert_close(
        rebuilt["next", "observation"], data["next", "observation"].reshape(20, 3), atol=2e-3, rtol=0
    )
    assert ("next", "delta") not in rebuilt.keys(True)
    assert rb.sample()["next", "observation"].dtype == torch.float32


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


def test_delta_through_a_collector_into_a_buffer():
    from tdrl.collectors import SyncDataCollector

    t = NextObservationDelta()
    env = TransformedEnv(TransformTestEnv(), t)
    collector = SyncDataCollector(env, None, frames_per_batch=16, total_frames=16)
    batch = next(iter(collector))
    collector.shutdown()
    assert batch["next", "delta", "observation"].dtype == torch.float16
    rb = ReplayBuffer(storage=LazyTensorStorage(32), transform=t, batch_size=8)
    rb.extend(batch)
    assert ("next", "observation") not in rb.storage[:].keys(True, True)
    torch.testing.assert_close(rb[:]["next", "observation"], batch["next", "observation"], atol=2e-3, rtol=0)
