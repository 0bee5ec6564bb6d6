"""Group keys in value estimators and policy-gradient losses: per-agent advantages ``[*B, T, n_agents, 1]``."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn

from tdrl.modules import ProbabilisticActor, TanhNormal
from tdrl.objectives import A2CLoss, ClipPPOLoss, KLPENPPOLoss
from tdrl.objectives.value import GAE, TD0Estimator, TD1Estimator, TDLambdaEstimator

B, T, N, OBS, ACT = 2, 9, 3, 4, 2
GROUP_KEYS = {
    "reward": ("agents", "reward"),
    "done": ("agents", "done"),
    "terminated": ("agents", "terminated"),
    "value": ("agents", "state_value"),
    "advantage": ("agents", "advantage"),
    "value_target": ("agents", "value_target"),
}


@pytest.fixture(autouse=True)
def _seed():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.set_rng_state(state)


def _batch() -> TensorDict:
    """A [B, T] batch of N agents: per-agent observation, reward and flags; env-level flags (agents end together)."""
    done = torch.rand(B, T, 1) < 0.2
    terminated = done & (torch.rand(B, T, 1) < 0.5)
    per_agent = {
        "done": done.unsqueeze(-2).expand(B, T, N, 1),
        "terminated": terminated.unsqueeze(-2).expand(B, T, N, 1),
    }
    return TensorDict(
        {
            "agents": TensorDict({"observation": torch.randn(B, T, N, OBS)}, [B, T, N]),
            "next": {
                "agents": TensorDict(
                    {"observation": torch.randn(B, T, N, OBS), "reward": torch.randn(B, T, N, 1), **per_agent},
                    [B, T, N],
                ),
                "done": done,
                "terminated": terminated,
            },
        },
        [B, T],
    )


def _critic(net: nn.Module) -> TensorDictModule:
    return TensorDictModule(net, in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")])


ESTIMATORS = [
    (GAE, {"gamma": 0.9, "lmbda": 0.8, "average_gae": False}),
    (TD0Estimator, {"gamma": 0.9}),
    (TD1Estimator, {"gamma": 0.9}),
    (TDLambdaEstimator, {"gamma": 0.9, "lmbda": 0.8}),
]


@pytest.mark.parametrize(("cls", "kwargs"), ESTIMATORS)
def test_estimators_give_one_advantage_per_agent(cls, kwargs):
    net = nn.Linear(OBS, 1)
    data = _batch()
    estimator = cls(value_network=_critic(net), **kwargs)
    estimator.set_keys(**GROUP_KEYS)
    out = estimator(data.clone())
    advantage = out.get(("agents", "advantage"))
    assert advantage.shape == (B, T, N, 1)
    # independently: agent i's advantage is the single-agent estimate on agent i's slice
    single = cls(value_network=TensorDictModule(net, in_keys=["observation"], out_keys=["state_value"]), **kwargs)
    for agent in range(N):
        flat = TensorDict(
            {
                "observation": data.get(("agents", "observation"))[:, :, agent],
                "next": {
                    "observation": data.get(("next", "agents", "observation"))[:, :, agent],
                    "reward": data.get(("next", "agents", "reward"))[:, :, agent],
                    "done": data.get(("next", "done")),
                    "terminated": data.get(("next", "terminated")),
                },
            },
            [B, T],
        )
        expected = single(flat).get("advantage")
        torch.testing.assert_close(advantage[:, :, agent], expected)


def test_env_level_flags_with_per_agent_values_say_how_to_fix():
    estimator = GAE(gamma=0.9, lmbda=0.8, value_network=_critic(nn.Linear(OBS, 1)))
    estimator.set_keys(**{**GROUP_KEYS, "done": "done", "terminated": "terminated"})
    with pytest.raises(ValueError, match=r"read the group's per-agent flags"):
        estimator(_batch())


def _actor(net: nn.Module) -> ProbabilisticActor:
    module = TensorDictModule(
        nn.Sequential(net, NormalParamExtractor()),
        in_keys=[("agents", "observation")],
        out_keys=[("agents", "loc"), ("agents", "scale")],
    )
    return ProbabilisticActor(
        module,
        in_keys={"loc": ("agents", "loc"), "scale": ("agents", "scale")},
        out_keys=[("agents", "action")],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
        log_prob_key=("agents", "sample_log_prob"),
    )


def _collected(actor: ProbabilisticActor) -> TensorDict:
    data = _batch()
    with torch.no_grad():
        actor(data)
    return data


LOSS_KEYS = {**GROUP_KEYS, "action": ("agents", "action"), "sample_log_prob": ("agents", "sample_log_prob")}


@pytest.mark.parametrize("cls", [ClipPPOLoss, KLPENPPOLoss, A2CLoss])
def test_policy_gradient_losses_take_a_per_agent_advantage(cls):
    policy_net = nn.Linear(OBS, 2 * ACT)
    actor, critic = _actor(policy_net), _critic(nn.Linear(OBS, 1))
    data = _collected(actor)
    assert data.get(("agents", "sample_log_prob")).shape == (B, T, N)
    loss = cls(actor, critic, entropy_coef=0.01)
    loss.set_keys(**LOSS_KEYS)
    loss.make_value_estimator(gamma=0.9, lmbda=0.9)
    with torch.no_grad():
        loss.value_estimator(data)
    assert data.get(("agents", "advantage")).shape == (B, T, N, 1)
    with torch.no_grad():
        policy_net.weight.add_(0.1 * torch.randn_like(policy_net.weight))  # a ratio other than 1
    out = loss(data)
    total = sum(v for k, v in out.items() if k.startswith("loss_"))
    total.backward()
    assert policy_net.weight.grad is not None
    assert torch.isfinite(policy_net.weight.grad).all()


def test_objective_is_the_mean_over_agents_of_the_per_agent_objective():
    policy_net = nn.Linear(OBS, 2 * ACT)
    actor = _actor(policy_net)
    data = _collected(actor)
    data.set(("agents", "advantage"), torch.randn(B, T, N, 1))
    with torch.no_grad():
        policy_net.weight.add_(0.2 * torch.randn_like(policy_net.weight))
    loss = ClipPPOLoss(actor, critic_coeff=None, entropy_bonus=False)
    loss.set_keys(**LOSS_KEYS)
    out = loss(data)
    # by hand: ratio per agent from the log-probs, clipped surrogate, mean over everything
    dist = actor.get_dist(data)
    log_prob = dist.log_prob(data.get(("agents", "action")))
    ratio = (log_prob - data.get(("agents", "sample_log_prob"))).exp().unsqueeze(-1)
    advantage = data.get(("agents", "advantage"))
    expected = -torch.minimum(ratio * advantage, ratio.clamp(0.8, 1.2) * advantage).mean()
    torch.testing.assert_close(out["loss_objective"], expected)


def test_advantage_that_does_not_match_the_log_prob_is_refused():
    actor = _actor(nn.Linear(OBS, 2 * ACT))
    data = _collected(actor)
    loss = ClipPPOLoss(actor, critic_coeff=None)
    loss.set_keys(**{**LOSS_KEYS, "advantage": "advantage"})
    data.set("advantage", torch.randn(B, T, N + 1, 1))  # one per agent, but for 4 agents
    with pytest.raises(ValueError, match=r"has shape \(2, 9, 3\) per sample but 'advantage' has shape \(2, 9, 4, 1\)"):
        loss(data)
    data.set("advantage", torch.randn(B, T, N, 2))
    with pytest.raises(ValueError, match=r"'n_agents', 1\) for a group of agents"):
        loss(data)


# ------------------------------------------------------------------------------ TorchRL
def _torchrl():
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchrl.modules as modules
        import torchrl.objectives as objectives
        import torchrl.objectives.value as value
    return modules, objectives, value


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("GAE", {"lmbda": 0.8, "average_gae": False}), ("TDLambdaEstimator", {"lmbda": 0.8}), ("TD0Estimator", {})],
)
def test_estimators_match_torchrl_on_a_multi_agent_batch(name, kwargs):
    _, _, value = _torchrl()
    import tdrl.objectives.value as ours_value

    net = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 1))
    data = _batch()
    outs = []
    for lib in (ours_value, value):
        # the values are in the data, computed with grad: the gradients flow through the estimator
        net.zero_grad()
        batch = data.clone()
        batch.set(("agents", "state_value"), net(batch.get(("agents", "observation"))))
        batch.set(("next", "agents", "state_value"), net(batch.get(("next", "agents", "observation"))))
        estimator = getattr(lib, name)(gamma=0.95, value_network=None, differentiable=True, **kwargs)
        estimator.set_keys(**GROUP_KEYS)
        out = estimator(batch)
        out.get(("agents", "advantage")).square().sum().backward()
        outs.append((out, [p.grad.clone() for p in net.parameters()]))
    (ours, ours_grads), (theirs, theirs_grads) = outs
    for key in (("agents", "advantage"), ("agents", "value_target")):
        torch.testing.assert_close(ours.get(key).detach(), theirs.get(key).detach(), rtol=1e-5, atol=1e-5)
    for a, b in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("normalize_advantage", [False, True])
def test_clip_ppo_matches_torchrl_on_a_multi_agent_batch(normalize_advantage):
    modules, objectives, _ = _torchrl()
    policy_net = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 2 * ACT))
    value_net = nn.Sequential(nn.Linear(OBS * N, 16), nn.Tanh(), nn.Linear(16, 1))

    class Central(nn.Module):  # a centralised critic: every agent reads all observations
        def forward(self, obs):
            joint = value_net(obs.flatten(-2))
            return joint.unsqueeze(-2).expand(*obs.shape[:-1], 1)

    ours_actor = _actor(policy_net)
    theirs_actor = modules.ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(policy_net, NormalParamExtractor()),
            in_keys=[("agents", "observation")],
            out_keys=[("agents", "loc"), ("agents", "scale")],
        ),
        in_keys=[("agents", "loc"), ("agents", "scale")],
        out_keys=[("agents", "action")],
        distribution_class=modules.TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
        log_prob_key=("agents", "sample_log_prob"),
    )
    data = _collected(ours_actor)
    with torch.no_grad():
        GAE(gamma=0.95, lmbda=0.9, value_network=_critic(Central())).set_keys(**GROUP_KEYS)(data)
        policy_net[0].weight.add_(0.2 * torch.randn_like(policy_net[0].weight))
    data = data.reshape(-1)  # a PPO minibatch: [B * T] transitions, each with its agents
    common = {
        "clip_epsilon": 0.2,
        "entropy_coeff": 0.01,
        "critic_coeff": 1.0,
        "normalize_advantage": normalize_advantage,
    }
    losses = {
        "ours": ClipPPOLoss(ours_actor, _critic(Central()), **common),
        "theirs": objectives.ClipPPOLoss(theirs_actor, _critic(Central()), **common),
    }
    outs, grads = {}, {}
    params = [*policy_net.parameters(), *value_net.parameters()]
    for name, loss in losses.items():
        loss.set_keys(**LOSS_KEYS)
        out = loss(data.clone())
        total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
        grads[name] = torch.autograd.grad(total, params)
        outs[name] = out
    # (ESS is left out: TorchRL reduces it over dim 0 only, a [n_agents] tensor here)
    for key in ("loss_objective", "loss_critic", "clip_fraction", "kl_approx"):
        torch.testing.assert_close(
            outs["ours"][key].detach(), outs["theirs"][key].detach().reshape(()), rtol=1e-5, atol=1e-5
        )
    # the entropy is a Monte-Carlo estimate for TanhNormal: compare it only through a closed-form-free check
    assert torch.isfinite(outs["ours"]["loss_entropy"])
    for a, b in zip(grads["ours"][-4:], grads["theirs"][-4:]):  # the critic's grads do not involve the entropy draw
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
