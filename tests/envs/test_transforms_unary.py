"""UnaryTransform: contract on observations and actions, specs read off fn, errors."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import TransformedEnv, UnaryTransform, check_env_specs
from tdrl.specs import Unbounded
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


def _double64(x):
    return (x * 2).to(torch.float64)


def _half_clamped(x):
    return (x / 2).clamp(-1.0, 1.0).to(torch.float32)


class TestUnaryObservation(TransformContractTests):
    def make_transform(self):
        return UnaryTransform(in_keys=["observation", "reward"], out_keys=["obs2", "reward"], fn=_double64)


class TestUnaryAction(TransformContractTests):
    has_inverse = True
    forward_matches_env = False  # the stored base action is not what the policy wrote

    def make_transform(self):
        return UnaryTransform(
            in_keys=[], out_keys=[], in_keys_inv=["action"], out_keys_inv=["action"], fn=_double64, inv_fn=_half_clamped
        )


def test_specs_follow_fn_output():
    env = TransformedEnv(
        TransformTestEnv(batch_size=[2]),
        UnaryTransform(in_keys=["observation"], out_keys=["norm"], fn=lambda x: x.norm(dim=-1, keepdim=True)),
    )
    check_env_specs(env)
    spec = env.observation_spec["norm"]
    assert isinstance(spec, Unbounded)
    assert spec.shape == (2, 1)
    assert env.observation_spec["observation"].shape == (2, 3)  # the input stays


def test_inverse_maps_the_policy_entry_to_the_base_one():
    t = UnaryTransform(
        in_keys=[], out_keys=[], in_keys_inv=["action"], out_keys_inv=["action_x2"], fn=_double64, inv_fn=_half_clamped
    )
    env = TransformedEnv(TransformTestEnv(), t)
    assert "action_x2" in env.full_action_spec.keys()
    assert "action" not in env.full_action_spec.keys()
    assert env.full_action_spec["action_x2"].dtype == torch.float64
    td = env.reset()
    td.set("action_x2", torch.tensor([1.0, 4.0], dtype=torch.float64))
    assert torch.equal(env.transform.inv(td)["action"], torch.tensor([0.5, 1.0]))
    env.step(td)


def test_fn_must_keep_batch_dims_and_return_tensors():
    with pytest.raises(ValueError, match=r"changes the env's 1 batch dim"):
        TransformedEnv(CountingEnv(batch_size=[3]), UnaryTransform(["observation"], ["s"], fn=lambda x: x.sum()))
    with pytest.raises(TypeError, match="returned list"):
        TransformedEnv(CountingEnv(), UnaryTransform(["observation"], ["s"], fn=lambda x: x.tolist()))
    with pytest.raises(TypeError, match="callable"):
        UnaryTransform(["observation"], ["s"], fn=3)  # type: ignore[arg-type]


def test_called_on_data():
    t = UnaryTransform(["a"], ["b"], fn=torch.neg)
    td = t(TensorDict({"a": torch.ones(2), "next": {"a": torch.full((2,), 3.0)}}, []))
    assert td["b"].tolist() == [-1.0, -1.0]
    assert td["next", "b"].tolist() == [-3.0, -3.0]
