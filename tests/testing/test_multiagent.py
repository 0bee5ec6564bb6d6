"""MultiAgentNavigationMock: TorchRL's group layout, per-agent and env-level done flags, and a learnable reward."""

from __future__ import annotations

import pytest
import torch

from tdrl.envs.utils import check_env_specs
from tdrl.testing import EnvContractTests, MultiAgentNavigationMock

OBS, ACTION, REWARD = ("agents", "observation"), ("agents", "action"), ("agents", "reward")


class TestContract(EnvContractTests):
    def make_env(self):
        return MultiAgentNavigationMock(n_agents=3)


class TestBatchedDiscreteContract(EnvContractTests):
    def make_env(self):
        return MultiAgentNavigationMock(n_agents=2, categorical_actions=True, batch_size=[4])


@pytest.mark.parametrize("categorical", [False, True])
@pytest.mark.parametrize("batch_size", [(), (5,)])
def test_layout_is_torchrl_group_layout(categorical, batch_size):
    env = MultiAgentNavigationMock(n_agents=3, categorical_actions=categorical, batch_size=batch_size)
    check_env_specs(env)
    data = env.rollout(4, break_when_any_done=False)
    b = (*batch_size, 4)
    assert data.get(("next", *OBS)).shape == (*b, 3, 4)
    assert data.get(ACTION).shape == ((*b, 3) if categorical else (*b, 3, 2))
    assert data.get(("next", *REWARD)).shape == (*b, 3, 1)
    for flag in ("done", "terminated", "truncated"):
        assert data.get(("next", "agents", flag)).shape == (*b, 3, 1)
        assert data.get(("next", flag)).shape == (*b, 1)
    assert data.get("agents").batch_size == (*b, 3)
    assert env.group_map == {"agents": ["agent_0", "agent_1", "agent_2"]}


def _toward_target(td):
    return td.set(ACTION, td.get(OBS)[..., 2:].clamp(-1, 1))


def test_stepping_toward_the_target_beats_random():
    env = MultiAgentNavigationMock(n_agents=2, batch_size=[64], max_steps=10)
    env.set_seed(1)
    greedy = env.rollout(10, _toward_target, break_when_any_done=False).get(("next", *REWARD)).sum(-3).mean()
    env.set_seed(1)
    random = env.rollout(10, break_when_any_done=False).get(("next", *REWARD)).sum(-3).mean()
    assert greedy > 0.5
    assert greedy > random + 0.5


def test_episodes_end_when_all_agents_arrive_or_at_max_steps():
    env = MultiAgentNavigationMock(n_agents=2, batch_size=[32], max_steps=8)
    data = env.rollout(8, _toward_target, break_when_any_done=False)
    arrived = data.get(("next", "agents", "terminated"))
    assert torch.equal(data.get(("next", "terminated")), arrived.all(-2))
    done = data.get(("next", "done")).squeeze(-1)
    lengths = done.float().argmax(-1) + 1
    assert lengths.unique().numel() > 1, "episodes should vary in length"
    # an agent that arrived stays still and gets no reward of its own (only the team's share)
    obs = data.get(("next", *OBS))
    stay = arrived[:, :-1].squeeze(-1) & ~done[:, :-1].unsqueeze(-1)
    assert torch.equal(obs[:, 1:][stay][..., :2], obs[:, :-1][stay][..., :2])


def test_discrete_moves_are_vmas_order():
    env = MultiAgentNavigationMock(n_agents=1, categorical_actions=True, step_size=0.1)
    td = env.reset()
    start = td.get(OBS)[..., :2].clone()
    td.set(ACTION, torch.tensor([1]))
    nxt = env.step(td).get(("next", *OBS))
    torch.testing.assert_close(nxt[..., :2] - start, torch.tensor([[0.1, 0.0]]))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="n_agents must be >= 1"):
        MultiAgentNavigationMock(n_agents=0)
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        MultiAgentNavigationMock(max_steps=0)
