"""Group keys in the off-policy losses (DDPG, TD3, SAC, DQN): per-agent Q-values and targets (MADDPG, ...)."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictSequential
from torch import nn

from tdrl.modules import MultiAgentMLP, ProbabilisticActor, QValueModule, TanhDelta, TanhNormal
from tdrl.objectives import DDPGLoss, DQNLoss, SACLoss, TD3Loss, ValueEstimators
from tdrl.specs import Bounded, Categorical

B, N, OBS, ACT = 16, 3, 4, 2
OBS_KEY, ACTION = ("agents", "observation"), ("agents", "action")
FLAGS = {"reward": ("agents", "reward"), "done": ("agents", "done"), "terminated": ("agents", "terminated")}


@pytest.fixture(autouse=True)
def _seed():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.set_rng_state(state)


def _transitions(action: torch.Tensor) -> TensorDict:
    terminated = torch.rand(B, N, 1) < 0.3
    return TensorDict(
        {
            "agents": TensorDict({"observation": torch.randn(B, N, OBS), "action": action}, [B, N]),
            "next": {
                "agents": TensorDict(
                    {
                        "observation": torch.randn(B, N, OBS),
                        "reward": torch.randn(B, N, 1),
                        "done": terminated.clone(),
                        "terminated": terminated,
                    },
                    [B, N],
                ),
            },
        },
        [B],
    )


def _deterministic_actor() -> ProbabilisticActor:
    net = MultiAgentMLP(OBS, ACT, N, centralized=False, share_params=True, depth=1, num_cells=16)
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=[OBS_KEY], out_keys=[("agents", "param")]),
        in_keys=[("agents", "param")],
        out_keys=[ACTION],
        distribution_class=TanhDelta,
        distribution_kwargs={"low": -1.0, "high": 1.0},
    )


def _stochastic_actor() -> ProbabilisticActor:
    net = nn.Sequential(
        MultiAgentMLP(OBS, 2 * ACT, N, centralized=False, share_params=True, depth=1, num_cells=16),
        NormalParamExtractor(),
    )
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=[OBS_KEY], out_keys=[("agents", "loc"), ("agents", "scale")]),
        in_keys={"loc": ("agents", "loc"), "scale": ("agents", "scale")},
        out_keys=[ACTION],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
        log_prob_key=("agents", "sample_log_prob"),
    )


class _CentralQ(nn.Module):
    """A centralised critic: each agent's Q reads every agent's observation and action."""

    def __init__(self) -> None:
        super().__init__()
        self.net = MultiAgentMLP(OBS + ACT, 1, N, centralized=True, share_params=False, depth=1, num_cells=16)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(obs, action)


def _q() -> TensorDictModule:
    return TensorDictModule(_CentralQ(), in_keys=[OBS_KEY, ACTION], out_keys=[("agents", "state_action_value")])


def _loss(name: str):
    spec = Bounded(-1.0, 1.0, shape=(N, ACT))
    if name == "DDPG":
        loss = DDPGLoss(_deterministic_actor(), _q(), delay_value=True, loss_function="l2")
    elif name == "TD3":
        loss = TD3Loss(_deterministic_actor(), _q(), action_spec=spec, loss_function="l2")
    else:
        loss = SACLoss(_stochastic_actor(), _q(), action_spec=spec)
    loss.set_keys(**FLAGS, state_action_value=("agents", "state_action_value"))
    loss.make_value_estimator(ValueEstimators.TD0, gamma=0.9)
    return loss


@pytest.mark.parametrize("name", ["DDPG", "TD3", "SAC"])
def test_actor_critic_losses_train_on_group_keys(name):
    loss = _loss(name)
    if name != "DDPG":  # DDPG reads no action key: its critic's in_keys hold it
        assert loss.tensor_keys.action == ACTION  # read from the actor, as a renamed single-agent action is
    data = _transitions(torch.rand(B, N, ACT) * 2 - 1)
    out = loss(data)
    critic_loss = out["loss_value"] if name == "DDPG" else out["loss_qvalue"]
    (out["loss_actor"] + critic_loss).backward()
    grads = [p.grad for p in loss.actor_network.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_ddpg_critic_loss_is_the_per_agent_td_error():
    loss = _loss("DDPG")
    data = _transitions(torch.rand(B, N, ACT) * 2 - 1)
    out = loss(data.clone())
    # by hand: Q_i(s, a) against r_i + gamma * (1 - terminated_i) * Q'_i(s', mu'(s'))
    with torch.no_grad():
        critic = loss.value_network
        q = critic(data.clone()).get(("agents", "state_action_value"))
        nxt = data.get("next").clone()
        loss.actor_network(nxt)  # delay_actor=False (the default): the live actor picks the next action
        with loss.target_value_network_params.to_module(critic):
            next_q = critic(nxt).get(("agents", "state_action_value"))
        reward = data.get(("next", "agents", "reward"))
        alive = (~data.get(("next", "agents", "terminated"))).float()
        target = reward + 0.9 * alive * next_q
    torch.testing.assert_close(out["loss_value"], (q - target).square().mean())
    assert out["pred_value"].shape == (B, N)


def test_dqn_follows_the_group_keys_of_its_q_head():
    spec = Categorical(5, shape=(N,))
    net = TensorDictModule(
        MultiAgentMLP(OBS, 5, N, centralized=False, share_params=True, depth=1, num_cells=16),
        in_keys=[OBS_KEY],
        out_keys=[("agents", "action_value")],
    )
    head = QValueModule(
        action_value_key=("agents", "action_value"),
        out_keys=[ACTION, ("agents", "action_value"), ("agents", "chosen_action_value")],
        spec=spec,
    )
    loss = DQNLoss(TensorDictSequential(net, head), action_space=spec, delay_value=False, loss_function="l2")
    assert loss.tensor_keys.action_value == ("agents", "action_value")
    loss.set_keys(**FLAGS)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=0.9)
    data = _transitions(torch.randint(0, 5, (B, N)))
    out = loss(data.clone())
    with torch.no_grad():  # by hand, per agent: Q(s, a) against r + gamma * (1 - terminated) * max_a' Q(s', a')
        q = net(data.clone()).get(("agents", "action_value")).gather(-1, data.get(ACTION).unsqueeze(-1))
        next_q = net(data.get("next").clone()).get(("agents", "action_value")).max(-1, keepdim=True).values
        target = data.get(("next", "agents", "reward")) + 0.9 * (~data.get(("next", "agents", "terminated"))) * next_q
    torch.testing.assert_close(out["loss"], (q - target).square().mean())
