"""ExpandAs: contract, the multi-agent done, resets without the reference, errors."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import ExpandAs, TransformedEnv, check_env_specs
from tdrl.testing.multiagent import MultiAgentNavigationMock
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


class TestExpandReward(TransformContractTests):
    def make_transform(self):
        return ExpandAs("reward", "observation", out_key="reward_obs")


class TestExpandDoneToAgents(TransformContractTests):
    def make_transform(self):
        return ExpandAs("done", ("agents", "reward"), out_key=("agents", "done_all"))

    def make_env(self):
        return MultiAgentNavigationMock(n_agents=3)

    def make_batched_env(self):
        return MultiAgentNavigationMock(n_agents=3, batch_size=[2])


def test_global_done_takes_the_agents_shape():
    env = TransformedEnv(
        MultiAgentNavigationMock(n_agents=3, batch_size=[2]),
        ExpandAs("done", ("agents", "reward"), out_key=("agents", "done_all")),
    )
    check_env_specs(env)
    assert env.observation_spec["agents", "done_all"].shape == (2, 3, 1)
    assert env.observation_spec["agents", "done_all"].dtype == torch.bool
    ro = env.rollout(4, break_when_any_done=False)
    assert ro["agents", "done_all"].shape == (2, 4, 3, 1)  # at reset too, where no reward is written
    expected = ro["next", "done"].unsqueeze(-2).expand(2, 4, 3, 1)
    assert torch.equal(ro["next", "agents", "done_all"], expected)


def test_forward_on_data_needs_both_entries_side_by_side():
    t = ExpandAs("a", "b")
    td = TensorDict({"a": torch.tensor([1, 2]), "next": {"a": torch.tensor([3, 4]), "b": torch.zeros(2, 2)}}, [2])
    out = t(td)
    assert out["a"].tolist() == [1, 2]  # no "b" at the root: left alone
    assert out["next", "a"].tolist() == [[3, 3], [4, 4]]
    with pytest.raises(KeyError, match="holds both"):
        t(TensorDict({"a": torch.ones(2)}, [2]))


def test_shapes_that_do_not_expand_are_refused():
    with pytest.raises(ValueError, match=r"cannot be expanded on the right"):
        TransformedEnv(TransformTestEnv(), ExpandAs("observation", "reward", out_key="x"))
    with pytest.raises(KeyError, match="'nope' is not an output"):
        TransformedEnv(TransformTestEnv(), ExpandAs("nope", "reward"))
