"""ObservationNorm against TorchRL 0.14.1's: the same outputs, dtypes and state_dicts."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict

import tdrl.envs

torchrl = pytest.importorskip("torchrl")

_CASES = {
    "f32-numbers": (torch.float32, 1.0, 2.0),
    "f64-numbers": (torch.float64, 1.0, 2.0),
    "f32-f64vec": (torch.float32, torch.ones(3, dtype=torch.float64), torch.full((3,), 2.0, dtype=torch.float64)),
    "f32-f64scalar": (torch.float32, torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)),
    "f64-f32vec": (torch.float64, torch.ones(3), torch.full((3,), 2.0)),
    "u8-numbers": (torch.uint8, 1.0, 2.0),
    "u8-f64vec": (torch.uint8, torch.ones(3, dtype=torch.float64), torch.full((3,), 2.0, dtype=torch.float64)),
    "i64-f64scalar": (torch.int64, torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)),
    "f16-numbers": (torch.float16, 1.0, 2.0),
    "f32-f16vec": (torch.float32, torch.ones(3, dtype=torch.float16), torch.full((3,), 2.0, dtype=torch.float16)),
}


def _both(**kwargs):
    from torchrl.envs import ObservationNorm as TorchRLObservationNorm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TorchRLObservationNorm(**kwargs), tdrl.envs.ObservationNorm(**kwargs)


@pytest.mark.parametrize("standard_normal", [False, True])
@pytest.mark.parametrize("case", list(_CASES))
def test_same_output_and_dtype_as_torchrl(case, standard_normal):
    dtype, loc, scale = _CASES[case]
    x = torch.tensor([[3, 4, 5], [6, 7, 8]]).to(dtype)
    theirs, ours = _both(loc=loc, scale=scale, in_keys=["obs"], standard_normal=standard_normal)
    want = theirs(TensorDict({"obs": x.clone()}, [2]))["obs"]
    got = ours(TensorDict({"obs": x.clone()}, [2]))["obs"]
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("standard_normal", [False, True])
def test_same_inverse_as_torchrl(standard_normal):
    kwargs = {"loc": torch.tensor([0.5, -1.0]), "scale": torch.tensor([2.0, 4.0]), "standard_normal": standard_normal}
    theirs, ours = _both(in_keys=["obs"], in_keys_inv=["action"], **kwargs)
    action = torch.tensor([[1.0, 2.0], [3.0, -5.0]])
    want = theirs.inv(TensorDict({"action": action.clone()}, [2]))["action"]
    got = ours.inv(TensorDict({"action": action.clone()}, [2]))["action"]
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("standard_normal", [False, True])
def test_state_dicts_load_both_ways(standard_normal):
    loc, scale = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([2.0, 4.0, 0.5])
    theirs, ours = _both(loc=loc, scale=scale, in_keys=["obs"], standard_normal=standard_normal)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    other_theirs, other_ours = _both(
        loc=torch.zeros(3), scale=torch.ones(3), in_keys=["obs"], standard_normal=not standard_normal
    )
    other_ours.load_state_dict(theirs.state_dict())  # strict: every key matches
    other_theirs.load_state_dict(ours.state_dict())
    x = TensorDict({"obs": torch.tensor([1.0, 2.0, 3.0])}, [])
    torch.testing.assert_close(other_ours(x.clone())["obs"], theirs(x.clone())["obs"])
    torch.testing.assert_close(other_theirs(x.clone())["obs"], ours(x.clone())["obs"])


def test_same_eps_default_as_torchrl():
    for scale in (1.0, torch.ones(2), torch.ones(2, dtype=torch.float64)):
        loc = 0.0 if isinstance(scale, float) else torch.zeros_like(scale)
        theirs, ours = _both(loc=loc, scale=scale, in_keys=["obs"])
        assert ours.eps == theirs.eps
