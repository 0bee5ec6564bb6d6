"""RandomCropTensorDict: random windows of sampled trajectories."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.data import LazyTensorStorage, ReplayBuffer
from tdrl.envs import RandomCropTensorDict, TransformedEnv
from tdrl.testing import CountingEnv


def _trajectories(count, steps):
    step = torch.arange(steps).expand(count, steps)
    return TensorDict({"step": step, "traj": torch.arange(count).unsqueeze(-1).expand(count, steps)}, [count, steps])


def test_windows_are_contiguous_inside_one_trajectory_and_every_start_is_drawn():
    crop = RandomCropTensorDict(3)
    torch.manual_seed(0)
    starts = set()
    for _ in range(200):
        out = crop(_trajectories(4, 6))
        assert out.batch_size == (4, 3)
        assert (out["step"].diff(dim=-1) == 1).all()
        assert (out["traj"] == torch.arange(4).unsqueeze(-1)).all()
        starts.update(out["step"][:, 0].tolist())
    assert starts == {0, 1, 2, 3}  # the last start (6 - 3) too
    assert crop(_trajectories(2, 3))["step"].tolist() == [[0, 1, 2], [0, 1, 2]]


def test_the_mask_keeps_windows_among_valid_steps():
    data = _trajectories(3, 8)
    data["mask"] = data["step"] < torch.tensor([[4], [8], [5]])
    torch.manual_seed(0)
    for _ in range(100):
        out = RandomCropTensorDict(4, mask_key="mask")(data)
        assert out["mask"].all()


def test_sample_dim_selects_the_time_dim():
    data = _trajectories(5, 6).transpose(0, 1)  # time first: [6, 5]
    out = RandomCropTensorDict(2, sample_dim=0)(data)
    assert out.batch_size == (2, 5)
    assert (out["step"].diff(dim=0) == 1).all()
    assert (out["traj"] == torch.arange(5)).all()


def test_in_a_buffer_of_trajectories():
    rb = ReplayBuffer(storage=LazyTensorStorage(10), transform=RandomCropTensorDict(4), batch_size=3)
    rb.extend(_trajectories(5, 9))
    assert rb.sample()["step"].shape == (3, 4)


def test_errors_say_what_to_change():
    with pytest.raises(ValueError, match="sub_seq_len"):
        RandomCropTensorDict(0)
    with pytest.raises(ValueError, match="lower sub_seq_len"):
        RandomCropTensorDict(5)(_trajectories(2, 4))
    with pytest.raises(TypeError, match="replay-buffer transform"):
        TransformedEnv(CountingEnv(), RandomCropTensorDict(2)).reset()
