"""Stack: contract on entries and on per-agent groups (with the inverse on actions), specs, errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.envs import Compose, EnvBase, Stack, TransformedEnv, UnaryTransform, check_env_specs
from tdrl.specs import Bounded, Categorical, Composite, Unbounded
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


class TwoAgentGroups(EnvBase):
    """Each agent has its own group: ("agent_i", "observation"/"action"/"reward"); agent 1's action is bounded wider."""

    def __init__(self, batch_size: Any = ()) -> None:
        super().__init__(batch_size=batch_size)
        b = self.batch_size
        self.observation_spec = Composite(
            {f"agent_{i}": Composite(observation=Unbounded(shape=(*b, 2)), shape=b) for i in range(2)}, shape=b
        )
        self.action_spec = Composite(
            {f"agent_{i}": Composite(action=Bounded(-1.0 - i, 1.0 + i, shape=(*b, 2)), shape=b) for i in range(2)},
            shape=b,
        )
        self.reward_spec = Composite(
            {f"agent_{i}": Composite(reward=Unbounded(shape=(*b, 1)), shape=b) for i in range(2)}, shape=b
        )
        flag = Categorical(2, shape=(*b, 1), dtype=torch.bool)
        self.full_done_spec = Composite(done=flag, terminated=flag.clone(), truncated=flag.clone(), shape=b)
        self.pos = torch.zeros(2, *b, 2)
        self.count = 0

    def _out(self) -> dict:
        return {f"agent_{i}": {"observation": self.pos[i].clone()} for i in range(2)}

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        self.pos.zero_()
        self.count = 0
        return TensorDict(self._out(), self.batch_size)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self.count += 1
        out = self._out()
        for i in range(2):
            action = tensordict.get((f"agent_{i}", "action"))
            self.pos[i] = self.pos[i] + action
            out[f"agent_{i}"] = {"observation": self.pos[i].clone(), "reward": -self.pos[i].abs().sum(-1, keepdim=True)}
        done = torch.full((*self.batch_size, 1), self.count % 5 == 0)
        out.update(done=done, terminated=done.clone(), truncated=torch.zeros_like(done))
        return TensorDict(out, self.batch_size)

    def _set_seed(self, seed: int | None) -> None:
        pass


def _twice():
    return UnaryTransform(["observation"], ["twice"], fn=lambda x: 2 * x)


class TestStackEntries(TransformContractTests):
    def make_transform(self):
        return Compose(_twice(), Stack(in_keys=["observation", "twice"], out_key="both", dim=-2))


class TestStackGroups(TransformContractTests):
    has_inverse = True
    forward_matches_env = False  # the policy writes the stacked group; a base rollout holds the split ones

    def make_transform(self):
        return Stack(["agent_0", "agent_1"], "agents", in_key_inv="agents", out_keys_inv=["agent_0", "agent_1"])

    def make_env(self):
        return TwoAgentGroups()

    def make_batched_env(self):
        return TwoAgentGroups(batch_size=[3])


def test_groups_become_one_group_with_an_agent_dim():
    env = TransformedEnv(
        TwoAgentGroups(batch_size=[3]),
        Stack(["agent_0", "agent_1"], "agents", in_key_inv="agents", out_keys_inv=["agent_0", "agent_1"]),
    )
    check_env_specs(env)
    assert set(env.observation_spec.keys()) == {"agents"}
    assert env.observation_spec["agents", "observation"].shape == (3, 2, 2)
    action = env.full_action_spec["agents", "action"]
    assert action.shape == (3, 2, 2)
    assert torch.equal(action.space.high[0, :, 0], torch.tensor([1.0, 2.0]))  # each agent keeps its bounds
    td = env.reset()
    td.set(("agents", "action"), torch.tensor([0.5, -1.5]).view(1, 2, 1).expand(3, 2, 2).clone())
    td = env.step(td)
    torch.testing.assert_close(td["next", "agents", "observation"][0, :, 0], torch.tensor([0.5, -1.5]))
    assert td["next", "agents", "reward"].shape == (3, 2, 1)


def test_keeping_the_inputs():
    td = TensorDict({"a": torch.zeros(2), "b": torch.ones(2)}, [])
    out = Stack(["a", "b"], "ab", del_keys=False)(td)
    assert sorted(out.keys()) == ["a", "ab", "b"]
    assert out["ab"].tolist() == [[0.0, 1.0], [0.0, 1.0]]


def test_argument_and_spec_errors():
    with pytest.raises(ValueError, match="positive dim"):
        Stack(["a", "b"], "c", dim=0)
    with pytest.raises(ValueError, match="go together"):
        Stack(["a", "b"], "c", in_key_inv="c")
    with pytest.raises(ValueError, match="among in_keys"):
        Stack(["a", "b"], "a")
    as_double = UnaryTransform(["observation"], ["obs64"], fn=lambda x: x.double())
    with pytest.raises(ValueError, match=r"specs of \['observation', 'obs64'\] differ"):
        TransformedEnv(TransformTestEnv(), Compose(as_double, Stack(["observation", "obs64"], "x")))
    with pytest.raises(KeyError, match=r"\['reward'\] are not where \['observation'\] are"):
        TransformedEnv(TransformTestEnv(), Stack(["observation", "reward"], "x"))
