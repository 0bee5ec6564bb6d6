"""The per-step roads of the seed's transforms give exactly what the plain expressions give.

ObservationNorm divides a fresh difference in place, DoubleToFloat leaves float32 entries as
they are, StepCounter builds its zeros from the done flag, and Compose reads its members
from a plain reference: each is checked here against the result it replaces.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from tdrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
from tdrl.testing import CountingEnv


@pytest.mark.parametrize(
    ("x_shape", "stat_shape", "scale_shape"),
    [((4, 11), (11,), (11,)), ((11,), (11,), (3, 11)), ((4, 11), (), ()), ((2, 11), (11,), (1,))],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_standard_normal_gives_the_bits_of_the_plain_expression(x_shape, stat_shape, scale_shape, dtype):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(x_shape, generator=gen) * 7).to(dtype)
    loc = torch.randn(stat_shape, generator=gen).to(dtype)
    scale = (torch.rand(scale_shape, generator=gen) + 0.1).to(dtype)
    norm = ObservationNorm(loc=loc, scale=scale, in_keys=["obs"], standard_normal=True)
    out = norm(TensorDict({"obs": x.clone()}, []))["obs"]
    expected = (x - loc) / scale
    assert out.dtype == expected.dtype
    assert out.shape == expected.shape
    assert torch.equal(out, expected)


def test_standard_normal_keeps_torchs_promotion_for_mixed_dtypes():
    x = torch.tensor([3.0, 5.0, 7.0])
    loc, scale = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)
    out = ObservationNorm(loc=loc, scale=scale, in_keys=["obs"], standard_normal=True)(TensorDict({"obs": x}, []))
    assert out["obs"].dtype == torch.float64
    assert torch.equal(out["obs"], (x - loc) / scale)


def test_the_input_entry_is_not_written_in_place():
    x = torch.tensor([3.0, 5.0])
    td = TensorDict({"obs": x}, [])
    ObservationNorm(loc=1.0, scale=2.0, in_keys=["obs"], standard_normal=True)(td)
    assert torch.equal(x, torch.tensor([3.0, 5.0]))
    assert torch.equal(td["obs"], torch.tensor([1.0, 2.0]))


def test_double_to_float_leaves_float32_entries_as_they_are():
    single, double = torch.ones(2), torch.ones(2, dtype=torch.float64)
    td = TensorDict({"a": single, "b": double}, [])
    DoubleToFloat(in_keys=["a", "b"])(td)
    assert td["a"] is single
    assert td["b"].dtype == torch.float32
    assert torch.equal(td["b"], single)
    out = DoubleToFloat(in_keys=["a"], out_keys=["a32"])(TensorDict({"a": single}, []))
    assert out["a32"] is single  # written under the new key all the same


def test_step_counter_reset_writes_int64_zeros_shaped_like_done():
    env = TransformedEnv(CountingEnv(max_steps=3, batch_size=(2,)), StepCounter())
    td = env.reset()
    assert td["step_count"].dtype == torch.int64
    assert td["step_count"].shape == td["done"].shape
    td = env.rand_step(td)
    root = td["next"].clone()
    root.set("_reset", torch.tensor([[True], [False]]))
    after = env.reset(root)
    assert after["step_count"].squeeze(-1).tolist() == [0, 1]


def _counts(env: TransformedEnv) -> list:
    return sorted(k for k in env.reset().keys() if k.startswith("count"))


def test_a_compose_runs_the_members_it_holds_now():
    compose = Compose(StepCounter(step_count_key="count_a"))
    env = TransformedEnv(CountingEnv(), compose)
    compose.append(StepCounter(step_count_key="count_b"))
    assert _counts(env) == ["count_a", "count_b"]
    compose.transforms.append(StepCounter(step_count_key="count_c"))  # the ModuleList itself, mutated
    assert _counts(env) == ["count_a", "count_b", "count_c"]
    compose.transforms = nn.ModuleList([StepCounter(step_count_key="count_d")])  # replaced outright
    assert _counts(env) == ["count_d"]


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_compose_runs_its_own_members(how):
    env = TransformedEnv(CountingEnv(), Compose(StepCounter(step_count_key="count_a"), DoubleToFloat()))
    other = copy.deepcopy(env) if how == "deepcopy" else pickle.loads(pickle.dumps(env))
    assert other.transform._members is other.transform.transforms
    assert other.transform[0] is not env.transform[0]
    assert _counts(other) == ["count_a"]
    assert other.rollout(3)["next", "count_a"].squeeze(-1).tolist() == [1, 2, 3]
