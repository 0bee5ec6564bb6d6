"""MultiAgentGAE: team signals repeated over the agents, per-agent standardization, TorchRL parity."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.objectives.value import GAE, MultiAgentGAE

B, T, N, OBS = 2, 9, 3, 4


def _data(seed: int = 0, per_agent_reward: bool = False) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    terminated = torch.rand(B, T, 1, generator=g) < 0.15
    truncated = (torch.rand(B, T, 1, generator=g) < 0.15) & ~terminated
    reward_shape = (B, T, N, 1) if per_agent_reward else (B, T, 1)
    return TensorDict(
        {
            "observation": torch.randn(B, T, N, OBS, generator=g),
            "next": {
                "observation": torch.randn(B, T, N, OBS, generator=g),
                "reward": torch.randn(reward_shape, generator=g),
                "done": terminated | truncated,
                "terminated": terminated,
            },
        },
        [B, T],
    )


def _critic() -> TensorDictModule:
    torch.manual_seed(0)
    return TensorDictModule(nn.Linear(OBS, 1), ["observation"], ["state_value"])


def test_each_agent_gets_the_gae_of_the_team_signals():
    data = _data()
    out = MultiAgentGAE(gamma=0.9, lmbda=0.8, value_network=_critic())(data.clone())
    assert out["advantage"].shape == (B, T, N, 1)
    for agent in range(N):
        alone = data.clone()
        alone["observation"] = data["observation"][:, :, agent]
        alone["next", "observation"] = data["next", "observation"][:, :, agent]
        expected = GAE(gamma=0.9, lmbda=0.8, value_network=_critic())(alone)
        torch.testing.assert_close(out["advantage"][:, :, agent], expected["advantage"])
        torch.testing.assert_close(out["value_target"][:, :, agent], expected["value_target"])


def test_average_gae_standardizes_each_agent_alone():
    out = MultiAgentGAE(gamma=0.9, lmbda=0.8, value_network=_critic(), average_gae=True)(_data())
    advantage = out["advantage"].transpose(0, 2).reshape(N, -1)
    torch.testing.assert_close(advantage.mean(-1), torch.zeros(N), atol=1e-5, rtol=0)
    torch.testing.assert_close(advantage.std(-1), torch.ones(N))


def test_a_signal_of_the_wrong_rank_names_both_shapes():
    data = _data()
    data["next", "reward"] = torch.zeros(B, T)
    data["next", "done"] = data["next", "terminated"] = torch.zeros(B, T, dtype=torch.bool)
    with pytest.raises(ValueError, match="expected"):
        MultiAgentGAE(gamma=0.9, lmbda=0.8, value_network=_critic())(data)


@pytest.mark.parametrize("per_agent_reward", [False, True])
@pytest.mark.parametrize("average_gae", [False, True])
def test_same_numbers_as_torchrl(per_agent_reward, average_gae):
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.objectives.value import MultiAgentGAE as TrlMultiAgentGAE
    data = _data(seed=3, per_agent_reward=per_agent_reward)
    kwargs = {"gamma": 0.95, "lmbda": 0.9, "average_gae": average_gae}
    ours = MultiAgentGAE(value_network=_critic(), **kwargs)(data.clone())
    theirs = TrlMultiAgentGAE(value_network=_critic(), **kwargs)(data.clone())
    torch.testing.assert_close(ours["advantage"], theirs["advantage"])
    torch.testing.assert_close(ours["value_target"], theirs["value_target"])
