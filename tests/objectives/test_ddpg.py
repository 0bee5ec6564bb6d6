"""DDPGLoss: numbers against TorchRL 0.14.1, errors, keys and target updates."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from tdrl.modules import Actor, ValueOperator
from tdrl.objectives import DDPGLoss, SoftUpdate

OBS, ACT, B = 3, 2, 32


class CatQ(nn.Module):
    """``Q(o, a)`` on the concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(OBS + ACT, 32), nn.Tanh(), nn.Linear(32, 1))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, act], -1))


def actor_net() -> nn.Module:
    return nn.Sequential(nn.Linear(OBS, 32), nn.Tanh(), nn.Linear(32, ACT), nn.Tanh())


def batch(n: int = B, seed: int = 0) -> TensorDict:
    gen = torch.Generator().manual_seed(seed)
    terminated = torch.rand(n, 1, generator=gen) < 0.2
    truncated = (torch.rand(n, 1, generator=gen) < 0.2) & ~terminated
    return TensorDict(
        {
            "observation": torch.randn(n, OBS, generator=gen),
            "action": torch.rand(n, ACT, generator=gen) * 2 - 1,
            "next": {
                "observation": torch.randn(n, OBS, generator=gen),
                "reward": torch.randn(n, 1, generator=gen),
                "done": terminated | truncated,
                "terminated": terminated,
                "truncated": truncated,
            },
        },
        [n],
    )


def parts(actor: nn.Module | None = None, q: nn.Module | None = None) -> tuple[Actor, ValueOperator]:
    return (
        Actor(actor if actor is not None else actor_net(), in_keys=["observation"]),
        ValueOperator(q if q is not None else CatQ(), in_keys=["observation", "action"]),
    )


def test_outputs_and_which_loss_trains_which_network():
    actor, value = parts()
    loss = DDPGLoss(actor, value)
    data = batch()
    out = loss(data)
    assert set(loss.out_keys) <= set(out.keys())
    out["loss_actor"].backward(retain_graph=True)
    assert all(p.grad is None for p in value.parameters())
    assert all(p.grad is not None for p in actor.parameters())
    out["loss_value"].backward()
    assert all(p.grad is not None for p in value.parameters())
    torch.testing.assert_close(data["td_error"], out["td_error"])
    assert out["pred_value_max"] == out["pred_value"].max()


def test_truncated_steps_bootstrap_and_terminated_ones_do_not():
    loss = DDPGLoss(*parts())
    loss.make_value_estimator("td0", gamma=0.5)
    data = batch()
    out = loss(data)
    with torch.no_grad():
        next_data = data["next"].select("observation").copy()
        loss.actor_network(next_data)
        next_q = loss.value_network(next_data)["state_action_value"].squeeze(-1)
    terminated = data["next", "terminated"].squeeze(-1)
    expected = data["next", "reward"].squeeze(-1) + 0.5 * (~terminated).float() * next_q
    torch.testing.assert_close(out["target_value"], expected)


def test_separate_losses_keep_shared_parameters_out_of_the_value_loss():
    trunk = nn.Linear(OBS, OBS)

    class SharedQ(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk, self.head = trunk, nn.Linear(OBS + ACT, 1)

        def forward(self, obs, act):
            return self.head(torch.cat([self.trunk(obs), act], -1))

    actor = Actor(nn.Sequential(trunk, nn.Tanh(), nn.Linear(OBS, ACT)), in_keys=["observation"])
    value = ValueOperator(SharedQ(), in_keys=["observation", "action"])
    out = DDPGLoss(actor, value, separate_losses=True)(batch())
    out["loss_value"].backward()
    assert trunk.weight.grad is None
    assert value.module.head.weight.grad is not None


def test_soft_update_drives_the_targets():
    loss = DDPGLoss(*parts(), delay_actor=True)
    assert sorted(loss._target_names) == ["actor_network", "value_network"]
    with torch.no_grad():
        loss.value_network.module.net[0].bias.add_(1.0)
    before = loss.target_value_network_params["module", "net", "0", "bias"].clone()
    SoftUpdate(loss, tau=0.5).step()
    live = loss.value_network.module.net[0].bias.detach()
    torch.testing.assert_close(
        loss.target_value_network_params["module", "net", "0", "bias"], 0.5 * before + 0.5 * live
    )


def test_set_keys_renames_the_value_and_the_signals():
    value = ValueOperator(CatQ(), in_keys=["observation", "action"], out_keys=["q"])
    loss = DDPGLoss(Actor(actor_net(), in_keys=["observation"]), value)
    assert loss.tensor_keys.state_action_value == "q"  # the value network's one output
    with pytest.raises(ValueError, match=r"must write 'other'.*out_keys are \['q'\]"):
        loss.set_keys(state_action_value="other")
    loss.set_keys(state_action_value="q", reward="r", priority="prio")
    data = batch()
    data["next"] = data["next"].rename_key_("reward", "r")
    loss(data)
    assert "prio" in data.keys()
    assert ("next", "r") in loss.in_keys


def test_errors():
    with pytest.raises(ValueError, match=r"must read the actor's output \(\['action'\]\)"):
        DDPGLoss(Actor(actor_net()), ValueOperator(nn.Linear(OBS, 1)))
    with pytest.raises(ValueError, match="loss_function='l3' is unknown"):
        DDPGLoss(*parts(), loss_function="l3")
    with pytest.raises(TypeError, match="make_value_estimator"):
        DDPGLoss(*parts(), gamma=0.9)

    class Concat(nn.Module):
        def forward(self, obs, act):
            return torch.cat([obs, act], -1)

    wide = ValueOperator(Concat(), in_keys=["observation", "action"])
    with pytest.raises(ValueError, match=r"shape \(32, 5\); expected \(32, 1\)"):
        DDPGLoss(Actor(actor_net()), wide)(batch())


@pytest.mark.parametrize("key", ["observation", "action", ("next", "observation"), ("next", "reward")])
def test_a_missing_input_is_named(key):
    data = batch()
    del data[key]
    with pytest.raises(KeyError, match=re.escape(f"key {key!r} not found in the input")):
        DDPGLoss(*parts())(data)


@pytest.mark.parametrize("estimator", ["td0", "td1", "td_lambda"])
@pytest.mark.parametrize(
    "options",
    [{}, {"delay_actor": True, "loss_function": "smooth_l1"}, {"reduction": "sum"}, {"delay_value": False}],
)
def test_ddpg_matches_torchrl(estimator, options):
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.modules import Actor as TRLActor
        from torchrl.modules import ValueOperator as TRLValue
        from torchrl.objectives import DDPGLoss as TRLDDPG
        from torchrl.objectives import ValueEstimators as TRLEstimators
    net, q = actor_net(), CatQ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TRLDDPG(
            TRLActor(net, in_keys=["observation"]), TRLValue(q, in_keys=["observation", "action"]), **options
        )
    ours = DDPGLoss(*parts(net, q), **options)
    with torch.no_grad():
        for name in ("actor_network", "value_network"):
            target = getattr(theirs, f"target_{name}_params", None)
            if getattr(ours, f"target_{name}_params", None) is not None:
                target.apply_(lambda t: t.add_(0.05 * torch.randn_like(t)))
                getattr(ours, f"target_{name}_params").data.update_(target.data)
    hp = {"gamma": 0.9, **({"lmbda": 0.8} if estimator == "td_lambda" else {})}
    names = {"td0": TRLEstimators.TD0, "td1": TRLEstimators.TD1, "td_lambda": TRLEstimators.TDLambda}
    theirs.make_value_estimator(names[estimator], **hp)
    ours.make_value_estimator(estimator, **hp)
    data = batch().set("priority_weight", torch.rand(B) + 0.5)
    d_theirs, d_ours = data.clone(), data.clone()
    out_theirs, out_ours = theirs(d_theirs), ours(d_ours)
    for key in [*theirs.out_keys, "td_error"]:
        torch.testing.assert_close(out_ours[key], out_theirs[key], atol=1e-5, rtol=1e-5, msg=key)
    torch.testing.assert_close(d_ours["td_error"], d_theirs["td_error"], atol=1e-5, rtol=1e-5)
    for loss_key, params in (("loss_actor", list(net.parameters())), ("loss_value", list(q.parameters()))):
        g_theirs = torch.autograd.grad(out_theirs[loss_key], params, allow_unused=True)
        g_ours = torch.autograd.grad(out_ours[loss_key], params, allow_unused=True)
        for a, b in zip(g_ours, g_theirs, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=loss_key)


def test_split_losses_match_torchrl_and_forward():
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.modules import Actor as TRLActor
        from torchrl.modules import ValueOperator as TRLValue
        from torchrl.objectives import DDPGLoss as TRLDDPG
    net, q = actor_net(), CatQ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TRLDDPG(TRLActor(net, in_keys=["observation"]), TRLValue(q, in_keys=["observation", "action"]))
    ours = DDPGLoss(*parts(net, q))
    data = batch()
    d_theirs, d_ours = data.clone(), data.clone()
    value_theirs, meta_theirs = theirs.loss_value(d_theirs)
    value_ours, meta_ours = ours.loss_value(d_ours)
    torch.testing.assert_close(value_ours, value_theirs, atol=1e-5, rtol=1e-5)
    assert sorted(meta_ours) == sorted(meta_theirs)
    for key in meta_theirs:
        torch.testing.assert_close(meta_ours[key], meta_theirs[key], atol=1e-5, rtol=1e-5, msg=key)
    torch.testing.assert_close(d_ours["td_error"], d_theirs["td_error"], atol=1e-5, rtol=1e-5)
    actor_theirs, _ = theirs.loss_actor(data.clone())
    actor_ours, meta = ours.loss_actor(data.clone())
    assert meta == {}
    torch.testing.assert_close(actor_ours, actor_theirs, atol=1e-5, rtol=1e-5)
    whole = ours(data.clone())
    torch.testing.assert_close(whole["loss_actor"], actor_ours)
    torch.testing.assert_close(whole["loss_value"], value_ours)
    # the actor's loss moves the actor only; the critic's the critic only
    assert all(g is None for g in torch.autograd.grad(actor_ours, list(q.parameters()), allow_unused=True))
    assert all(g is None for g in torch.autograd.grad(value_ours, list(net.parameters()), allow_unused=True))


N_AGENTS = 3


class CentralQ(nn.Module):
    """A MADDPG critic: each agent's ``Q`` reads every agent's observation and action of the group."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_AGENTS * (OBS + ACT), 32), nn.Tanh(), nn.Linear(32, N_AGENTS))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([obs, act], -1).flatten(-2, -1)  # [*B, n_agents * (obs + act)]
        return self.net(joint).unsqueeze(-1)  # [*B, n_agents, 1]: one value per agent


def group_batch(n: int = B, seed: int = 0) -> TensorDict:
    gen = torch.Generator().manual_seed(seed)
    terminated = torch.rand(n, N_AGENTS, 1, generator=gen) < 0.2
    truncated = (torch.rand(n, N_AGENTS, 1, generator=gen) < 0.2) & ~terminated
    team = {"observation": torch.randn(n, N_AGENTS, OBS, generator=gen)}
    nxt = {
        "observation": torch.randn(n, N_AGENTS, OBS, generator=gen),
        "reward": torch.randn(n, N_AGENTS, 1, generator=gen),
        "done": terminated | truncated,
        "terminated": terminated,
        "truncated": truncated,
    }
    return TensorDict(
        {
            "team": TensorDict({**team, "action": torch.rand(n, N_AGENTS, ACT, generator=gen) * 2 - 1}, [n, N_AGENTS]),
            "next": {"team": TensorDict(nxt, [n, N_AGENTS])},
        },
        [n],
    )


@pytest.mark.parametrize("estimator", ["td0", "td_lambda"])
@pytest.mark.parametrize("options", [{}, {"delay_actor": True}, {"separate_losses": True}])
def test_centralised_critic_on_group_keys_matches_torchrl(estimator, options):
    """MADDPG's loss: the critic reads the whole group's observations and actions, keys live in the group."""
    pytest.importorskip("torchrl")
    from tensordict.nn import TensorDictModule

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.objectives import DDPGLoss as TRLDDPG
        from torchrl.objectives import ValueEstimators as TRLEstimators
    net, q = actor_net(), CentralQ()
    obs, act, value = ("team", "observation"), ("team", "action"), ("team", "state_action_value")
    keys = {
        "state_action_value": value,
        "reward": ("team", "reward"),
        "done": ("team", "done"),
        "terminated": ("team", "terminated"),
    }
    losses = []
    for cls in (TRLDDPG, DDPGLoss):
        actor = TensorDictModule(net, in_keys=[obs], out_keys=[act])
        critic = TensorDictModule(q, in_keys=[obs, act], out_keys=[value])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss = cls(actor, critic, **options)
        loss.set_keys(**keys)
        hp = {"gamma": 0.9, **({"lmbda": 0.8} if estimator == "td_lambda" else {})}
        if cls is TRLDDPG:
            loss.make_value_estimator(TRLEstimators.TD0 if estimator == "td0" else TRLEstimators.TDLambda, **hp)
        else:
            loss.make_value_estimator(estimator, **hp)
        losses.append(loss)
    theirs, ours = losses
    with torch.no_grad():  # targets that differ from the live networks, the same in both
        for name in ("actor_network", "value_network"):
            if getattr(ours, f"target_{name}_params", None) is not None:  # TorchRL's alias the live ones otherwise
                target = getattr(theirs, f"target_{name}_params")
                target.apply_(lambda t: t.add_(0.05 * torch.randn_like(t)))
                getattr(ours, f"target_{name}_params").data.update_(target.data)
    data = group_batch()
    d_theirs, d_ours = data.clone(), data.clone()
    out_theirs, out_ours = theirs(d_theirs), ours(d_ours)
    assert out_ours["pred_value"].shape == out_theirs["pred_value"].shape == (B, N_AGENTS)
    for key in [*theirs.out_keys, "td_error"]:
        torch.testing.assert_close(out_ours[key], out_theirs[key], atol=1e-5, rtol=1e-5, msg=key)
    torch.testing.assert_close(d_ours["td_error"], d_theirs["td_error"], atol=1e-5, rtol=1e-5)
    for loss_key, params in (("loss_actor", list(net.parameters())), ("loss_value", list(q.parameters()))):
        g_theirs = torch.autograd.grad(out_theirs[loss_key], params, allow_unused=True)
        g_ours = torch.autograd.grad(out_ours[loss_key], params, allow_unused=True)
        for a, b in zip(g_ours, g_theirs, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=loss_key)
