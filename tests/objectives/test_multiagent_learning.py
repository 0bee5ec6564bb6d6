"""Multi-agent algorithms learn the cooperative mock task: MAPPO, IPPO and MADDPG with group keys end to end.

The set-up is TorchRL's multi-agent tutorials' (MultiAgentMLP actor and critic, ProbabilisticActor,
GAE / TD(0) and the loss with group keys, SyncDataCollector) on ``MultiAgentNavigationMock``.
The bar is set by the task's known optimum: each agent stepping straight toward its target.
"""

from __future__ import annotations

import pytest
import torch
from tensordict.nn import NormalParamExtractor, TensorDictModule, TensorDictSequential
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.data import LazyTensorStorage, ReplayBuffer
from tdrl.envs import ExplorationType, set_exploration_type
from tdrl.modules import AdditiveGaussianModule, MultiAgentMLP, ProbabilisticActor, TanhDelta, TanhNormal
from tdrl.objectives import ClipPPOLoss, DDPGLoss, SoftUpdate, ValueEstimators
from tdrl.objectives.value import GAE
from tdrl.testing import MultiAgentNavigationMock

N_AGENTS, STEPS = 2, 10
OBS, ACTION = ("agents", "observation"), ("agents", "action")
FLAGS = {"reward": ("agents", "reward"), "done": ("agents", "done"), "terminated": ("agents", "terminated")}


@pytest.fixture(autouse=True)
def _seed():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.set_rng_state(state)


def _env() -> MultiAgentNavigationMock:
    return MultiAgentNavigationMock(n_agents=N_AGENTS, batch_size=[16], max_steps=STEPS)


def _team_return(policy) -> float:
    """The mean per-agent return of ``policy`` (deterministic) over 16 fixed episodes."""
    env = _env()
    env.set_seed(123)
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        data = env.rollout(STEPS, policy, break_when_any_done=False)
    return data.get(("next", "agents", "reward")).sum(-3).mean().item()


def _optimum() -> float:
    return _team_return(lambda td: td.set(ACTION, td.get(OBS)[..., 2:].clamp(-1, 1)))


@pytest.mark.parametrize("centralised_critic", [True, False], ids=["MAPPO", "IPPO"])
def test_mappo_and_ippo_learn_the_cooperative_task(centralised_critic):
    policy_net = nn.Sequential(
        MultiAgentMLP(4, 4, N_AGENTS, centralized=False, share_params=True, depth=1, num_cells=32),
        NormalParamExtractor(),
    )
    actor = ProbabilisticActor(
        TensorDictModule(policy_net, in_keys=[OBS], out_keys=[("agents", "loc"), ("agents", "scale")]),
        in_keys={"loc": ("agents", "loc"), "scale": ("agents", "scale")},
        out_keys=[ACTION],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
        log_prob_key=("agents", "sample_log_prob"),
    )
    critic = TensorDictModule(
        MultiAgentMLP(4, 1, N_AGENTS, centralized=centralised_critic, share_params=True, depth=1, num_cells=32),
        in_keys=[OBS],
        out_keys=[("agents", "state_value")],
    )
    value_keys = {
        **FLAGS,
        "value": ("agents", "state_value"),
        "advantage": ("agents", "advantage"),
        "value_target": ("agents", "value_target"),
    }
    gae = GAE(gamma=0.9, lmbda=0.9, value_network=critic, average_gae=False)
    gae.set_keys(**value_keys)
    loss = ClipPPOLoss(actor, critic, clip_epsilon=0.2, entropy_coef=1e-3)
    loss.set_keys(**value_keys, action=ACTION, sample_log_prob=("agents", "sample_log_prob"))
    optim = torch.optim.Adam(loss.parameters(), 3e-3)
    optimum, before = _optimum(), _team_return(actor)
    collector = SyncDataCollector(_env(), actor, frames_per_batch=320, total_frames=320 * 12)
    for batch in collector:
        with torch.no_grad():
            gae(batch)
        flat = batch.reshape(-1)
        for _ in range(4):
            for idx in torch.randperm(flat.shape[0]).split(64):
                out = loss(flat[idx])
                optim.zero_grad()
                (out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]).backward()
                optim.step()
    after = _team_return(actor)
    assert before < 0.2 * optimum
    assert after > 0.7 * optimum, (before, after, optimum)


def test_maddpg_improves_on_the_cooperative_task():
    actor = ProbabilisticActor(
        TensorDictModule(
            MultiAgentMLP(4, 2, N_AGENTS, centralized=False, share_params=True, depth=1, num_cells=32),
            in_keys=[OBS],
            out_keys=[("agents", "param")],
        ),
        in_keys=[("agents", "param")],
        out_keys=[ACTION],
        distribution_class=TanhDelta,
        distribution_kwargs={"low": -1.0, "high": 1.0},
    )
    spec = _env().full_action_spec_unbatched[ACTION]
    explore = TensorDictSequential(
        actor, AdditiveGaussianModule(spec=spec, sigma_init=0.5, sigma_end=0.5, action_key=ACTION)
    )

    class CentralQ(nn.Module):  # each agent's Q reads every agent's observation and action
        def __init__(self) -> None:
            super().__init__()
            self.net = MultiAgentMLP(6, 1, N_AGENTS, centralized=True, share_params=True, depth=2, num_cells=64)

        def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
            return self.net(obs, action)

    critic = TensorDictModule(CentralQ(), in_keys=[OBS, ACTION], out_keys=[("agents", "state_action_value")])
    loss = DDPGLoss(actor, critic, delay_value=True, loss_function="l2")
    loss.set_keys(**FLAGS, state_action_value=("agents", "state_action_value"))
    loss.make_value_estimator(ValueEstimators.TD0, gamma=0.9)
    target_update = SoftUpdate(loss, tau=0.05)
    actor_optim = torch.optim.Adam(loss.actor_network.parameters(), 1e-3)
    critic_optim = torch.optim.Adam(loss.value_network.parameters(), 3e-3)
    buffer = ReplayBuffer(storage=LazyTensorStorage(10_000), batch_size=128)
    optimum, before = _optimum(), _team_return(actor)
    for batch in SyncDataCollector(_env(), explore, frames_per_batch=160, total_frames=160 * 20):
        buffer.extend(batch.reshape(-1))
        for _ in range(10):
            sample = buffer.sample()
            critic_loss, _ = loss.loss_value(sample)
            critic_optim.zero_grad()
            critic_loss.backward()
            critic_optim.step()
            actor_loss, _ = loss.loss_actor(sample)
            actor_optim.zero_grad()
            actor_loss.backward()
            actor_optim.step()
            target_update.step()
    after = _team_return(actor)
    assert after > before + 0.4 * optimum, (before, after, optimum)
    assert after > 0.4 * optimum, (before, after, optimum)
