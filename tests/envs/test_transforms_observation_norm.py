"""ObservationNorm: the standard_normal buffer, the output dtype (torch's promotion) and a spec that says it."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import ObservationNorm, TransformedEnv
from tdrl.testing import ContinuousActionMock


def _obs(dtype=torch.float32):
    return TensorDict({"obs": (torch.arange(3) + 3).to(dtype)}, [])


def test_standard_normal_is_a_saved_bool_buffer():
    t = ObservationNorm(loc=1.0, scale=2.0, in_keys=["obs"], standard_normal=True)
    assert sorted(t.state_dict()) == ["loc", "scale", "standard_normal"]
    assert t.standard_normal.dtype == torch.bool
    assert bool(t.standard_normal)


def test_loading_a_state_switches_the_map():
    affine = ObservationNorm(loc=1.0, scale=2.0, in_keys=["obs"])
    standard = ObservationNorm(loc=1.0, scale=2.0, in_keys=["obs"], standard_normal=True)
    assert affine(_obs())["obs"].tolist() == [7.0, 9.0, 11.0]
    affine.load_state_dict(standard.state_dict())
    assert affine(_obs())["obs"].tolist() == [1.0, 1.5, 2.0]


def test_assigning_standard_normal_switches_the_map():
    t = ObservationNorm(loc=1.0, scale=2.0, in_keys=["obs"])
    t.standard_normal = True  # a bool (TorchRL takes a tensor only)
    assert t(_obs())["obs"].tolist() == [1.0, 1.5, 2.0]
    t.standard_normal = torch.tensor(False)
    assert t(_obs())["obs"].tolist() == [7.0, 9.0, 11.0]
    assert "standard_normal" in t.state_dict()


def test_a_state_saved_without_standard_normal_still_loads():
    t = ObservationNorm(loc=1.0, scale=2.0, in_keys=["obs"], standard_normal=True)
    old = {"loc": torch.tensor(0.0), "scale": torch.tensor(4.0)}  # as saved before it was a buffer
    t.load_state_dict(old)
    assert t(_obs())["obs"].tolist() == [0.75, 1.0, 1.25]


@pytest.mark.parametrize(
    ("obs_dtype", "loc", "expected"),
    [
        (torch.float32, torch.zeros(3, dtype=torch.float64), torch.float64),  # a vector promotes
        (torch.float32, torch.tensor(0.0, dtype=torch.float64), torch.float32),  # a 0-dim tensor does not
        (torch.float64, 0.0, torch.float64),
        (torch.uint8, 0.0, torch.float32),  # integers come out floating
        (torch.int64, torch.tensor(0, dtype=torch.int64), torch.float32),
    ],
)
def test_the_output_dtype_is_torchs_promotion(obs_dtype, loc, expected):
    scale = torch.ones_like(loc) if isinstance(loc, torch.Tensor) else 1.0
    t = ObservationNorm(loc=loc, scale=scale, in_keys=["obs"], standard_normal=True)
    assert t(_obs(obs_dtype))["obs"].dtype == expected


def test_the_spec_says_the_promoted_dtype_the_data_has():
    t = ObservationNorm(loc=torch.zeros(3, dtype=torch.float64), scale=torch.ones(3, dtype=torch.float64))
    env = TransformedEnv(ContinuousActionMock(obs_dim=3), t)
    assert env.observation_spec["observation"].dtype == torch.float64
    rollout = env.rollout(3)
    assert rollout["next", "observation"].dtype == torch.float64
    assert env.observation_spec["observation"].is_in(rollout[0]["next", "observation"])


def test_zero_scale_is_refused_only_where_it_divides():
    t = ObservationNorm(loc=1.0, scale=torch.zeros(3), in_keys=["obs"])  # x * 0 + 1: a constant
    assert t(_obs())["obs"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"scale must be non-zero.*standard_normal=True"):
        ObservationNorm(loc=1.0, scale=torch.zeros(3), in_keys=["obs"], standard_normal=True)


def test_eps_defaults_to_the_scales_machine_epsilon():
    assert ObservationNorm(loc=0.0, scale=1.0).eps == 1e-6
    scale64 = torch.ones(2, dtype=torch.float64)
    assert ObservationNorm(loc=torch.zeros(2), scale=scale64).eps == torch.finfo(torch.float64).eps
    assert ObservationNorm(eps=1e-3).eps == 1e-3
