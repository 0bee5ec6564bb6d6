"""ModuleTransform: contract with an encoder and with an action map, spec changes, grad, errors."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from tdrl.envs import ModuleTransform, TransformedEnv, check_env_specs
from tdrl.specs import Bounded, Composite, Unbounded
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


def _encoder() -> TensorDictModule:
    torch.manual_seed(0)
    return TensorDictModule(torch.nn.Linear(3, 4), in_keys=["observation"], out_keys=["embedding"])


def _add_embedding(spec: Composite) -> Composite:
    spec["embedding"] = Unbounded(shape=(*spec.shape, 4))
    return spec


def _squash() -> TensorDictModule:
    return TensorDictModule(torch.tanh, in_keys=["raw_action"], out_keys=["action"])


def _raw_action_spec(spec: Composite) -> Composite:
    return Composite(raw_action=Unbounded(shape=(*spec.shape, 2)), shape=spec.shape)


class TestModuleEncoder(TransformContractTests):
    def make_transform(self):
        return ModuleTransform(module=_encoder(), no_grad=True, observation_spec_transform=_add_embedding)


class TestModuleInverse(TransformContractTests):
    has_inverse = True
    forward_matches_env = False  # the stored base action is not what the policy wrote

    def make_transform(self):
        return ModuleTransform(module_factory=_squash, inverse=True, action_spec_transform=_raw_action_spec)


def test_encoder_output_at_reset_and_step():
    env = TransformedEnv(
        TransformTestEnv(batch_size=[2]),
        ModuleTransform(module=_encoder(), no_grad=True, observation_spec_transform=_add_embedding),
    )
    check_env_specs(env)
    ro = env.rollout(3, break_when_any_done=False)
    expected = env.transform.module.module(ro["next", "observation"])
    torch.testing.assert_close(ro["next", "embedding"], expected)
    assert ro["embedding"].shape == (2, 3, 4)
    assert not ro["next", "embedding"].requires_grad


def test_grad_flows_without_no_grad():
    t = ModuleTransform(module=_encoder())
    out = t(TensorDict({"observation": torch.ones(2, 3)}, [2]))
    assert out["embedding"].requires_grad


def test_inverse_maps_the_policy_entry_for_the_base_env():
    t = ModuleTransform(module_factory=_squash, inverse=True, action_spec_transform=_raw_action_spec)
    env = TransformedEnv(TransformTestEnv(), t)
    assert set(env.full_action_spec.keys()) == {"raw_action"}
    td = env.reset()
    td.set("raw_action", torch.tensor([10.0, -10.0]))
    base = env.transform.inv(td)
    torch.testing.assert_close(base["action"], torch.tanh(torch.tensor([10.0, -10.0])))
    assert env.step(td)["next", "reward"].shape == (1,)


def test_a_spec_given_as_a_value_replaces_the_old_one():
    new = Composite(observation=Bounded(-5.0, 5.0, shape=(3,)))
    env = TransformedEnv(TransformTestEnv(), ModuleTransform(module=_encoder(), observation_spec_transform=new))
    assert isinstance(env.observation_spec["observation"], Bounded)
    assert "embedding" not in env.observation_spec.keys()


def test_argument_errors():
    with pytest.raises(ValueError, match="exactly one of module= and module_factory=, got neither"):
        ModuleTransform()
    with pytest.raises(ValueError, match="got both"):
        ModuleTransform(module=_encoder(), module_factory=_encoder)
    with pytest.raises(NotImplementedError, match="use_ray_service"):
        ModuleTransform(module=_encoder(), use_ray_service=True)
