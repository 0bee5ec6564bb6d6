"""PPO, A2C and REINFORCE learn a tiny task within a fixed frame budget (SB3 identity-test style).

The task: observe a one-hot class among ``K``, get reward 1 for naming it. Episodes last
``EP_LEN`` steps (terminated at the end), so the estimators see several trajectories per
batch row. A continuous twin (match a scalar observation with a TanhNormal action) checks
PPO with a distribution that has no closed-form entropy.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import Categorical, NormalParamExtractor, ProbabilisticActor, TanhNormal, ValueOperator
from tdrl.objectives import A2CLoss, ClipPPOLoss, ReinforceLoss
from tdrl.objectives.value import GAE

K, EP_LEN, N_ENVS, T = 4, 4, 16, 16  # 256 frames per batch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: a second intra-op thread only adds contention on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _discrete_actor() -> ProbabilisticActor:
    net = nn.Sequential(nn.Linear(K, 32), nn.Tanh(), nn.Linear(32, K))
    return ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["logits"]),
        in_keys=["logits"],
        distribution_class=Categorical,
        return_log_prob=True,
    )


def _critic(obs_dim: int) -> ValueOperator:
    return ValueOperator(nn.Sequential(nn.Linear(obs_dim, 32), nn.Tanh(), nn.Linear(32, 1)), in_keys=["observation"])


def _episode_ends() -> torch.Tensor:
    """``[N_ENVS, T, 1]``: every ``EP_LEN``-th step terminates its episode."""
    return ((torch.arange(T) + 1) % EP_LEN == 0).expand(N_ENVS, T).unsqueeze(-1).clone()


def _rollout(actor: nn.Module, gen: torch.Generator, continuous: bool = False) -> TensorDict:
    """One ``[N_ENVS, T]`` batch; ``next`` observations are the following step's."""
    if continuous:
        obs = torch.rand(N_ENVS, T + 1, 1, generator=gen) * 1.6 - 0.8
    else:
        idx = torch.randint(K, (N_ENVS, T + 1), generator=gen)
        obs = nn.functional.one_hot(idx, K).float()
    data = TensorDict({"observation": obs[:, :T]}, [N_ENVS, T])
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        actor(data)
    if continuous:
        reward = -(data["action"] - obs[:, :T]).abs()
    else:
        reward = (data["action"] == idx[:, :T]).float().unsqueeze(-1)
    ends = _episode_ends()
    data["next"] = TensorDict(
        {"observation": obs[:, 1:], "reward": reward, "done": ends, "terminated": ends.clone()}, [N_ENVS, T]
    )
    return data


def _greedy_score(actor: nn.Module, continuous: bool = False) -> float:
    """Deterministic-policy score: accuracy (discrete) or minus the mean error (continuous)."""
    if continuous:
        obs = torch.linspace(-0.8, 0.8, 64).unsqueeze(-1)
    else:
        obs = torch.eye(K).repeat(16, 1)
    data = TensorDict({"observation": obs}, [obs.shape[0]])
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        action = actor(data)["action"]
    if continuous:
        return -(action - obs).abs().mean().item()
    return (action == obs.argmax(-1)).float().mean().item()


def _train_on_policy(loss, actor, gae, iters, epochs, minibatch, lr, continuous=False) -> float:
    gen = torch.Generator().manual_seed(0)
    optim = torch.optim.Adam(loss.parameters(), lr)
    for _ in range(iters):
        data = _rollout(actor, gen, continuous)
        for _ in range(epochs):
            if gae is not None:
                gae(data)
            flat = data.reshape(-1)
            for idx in torch.randperm(flat.shape[0], generator=gen).split(minibatch):
                out = loss(flat[idx])
                total = sum(v for k, v in out.items() if k.startswith("loss_"))
                total.backward()
                nn.utils.clip_grad_norm_(loss.parameters(), 1.0)
                optim.step()
                optim.zero_grad()
    return _greedy_score(actor, continuous)


@pytest.mark.slow
def test_ppo_learns_discrete_identity():
    torch.manual_seed(0)
    actor, critic = _discrete_actor(), _critic(K)
    loss = ClipPPOLoss(
        actor, critic, clip_epsilon=0.2, entropy_coef=1e-3, critic_coef=1.0, loss_critic_type="smooth_l1"
    )
    gae = GAE(gamma=0.9, lmbda=0.95, value_network=critic, average_gae=True)
    assert _train_on_policy(loss, actor, gae, iters=12, epochs=4, minibatch=64, lr=1e-2) >= 0.95


@pytest.mark.slow
def test_ppo_learns_continuous_identity_with_tanh_normal():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 2), NormalParamExtractor())
    actor = ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )
    critic = _critic(1)
    loss = ClipPPOLoss(actor, critic, entropy_coeff=1e-4, critic_coeff=1.0, samples_mc_entropy=1)
    gae = GAE(gamma=0.9, lmbda=0.95, value_network=critic, average_gae=True)
    score = _train_on_policy(loss, actor, gae, iters=15, epochs=4, minibatch=64, lr=1e-2, continuous=True)
    assert score >= -0.1  # mean |action - observation| below 0.1


@pytest.mark.slow
def test_a2c_learns_discrete_identity():
    torch.manual_seed(0)
    actor, critic = _discrete_actor(), _critic(K)
    loss = A2CLoss(actor, critic, entropy_coeff=1e-3, normalize_advantage=True)
    gae = GAE(gamma=0.9, lmbda=0.95, value_network=critic)
    assert _train_on_policy(loss, actor, gae, iters=40, epochs=1, minibatch=N_ENVS * T, lr=1e-2) >= 0.95


@pytest.mark.slow
def test_reinforce_without_baseline_learns_discrete_identity():
    torch.manual_seed(0)
    actor = _discrete_actor()
    loss = ReinforceLoss(actor, gamma=0.9, normalize_advantage=True)
    gen = torch.Generator().manual_seed(0)
    optim = torch.optim.Adam(loss.parameters(), 1e-2)
    for _ in range(40):
        out = loss(_rollout(actor, gen))  # [N_ENVS, T]: reward-to-go along time
        out["loss_actor"].backward()
        optim.step()
        optim.zero_grad()
    assert _greedy_score(actor) >= 0.95


@pytest.mark.slow
def test_reinforce_with_baseline_learns_discrete_identity():
    torch.manual_seed(0)
    actor, critic = _discrete_actor(), _critic(K)
    loss = ReinforceLoss(actor, critic, loss_critic_type="l2").make_value_estimator("td1", gamma=0.9)
    gen = torch.Generator().manual_seed(0)
    optim = torch.optim.Adam(loss.parameters(), 1e-2)
    for _ in range(40):
        out = loss(_rollout(actor, gen))  # the loss runs its TD(1) estimator
        (out["loss_actor"] + out["loss_value"]).backward()
        optim.step()
        optim.zero_grad()
    assert _greedy_score(actor) >= 0.95
