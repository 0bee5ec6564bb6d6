"""PPOLoss / ClipPPOLoss / KLPENPPOLoss: values, options, diagnostics, bad input, TorchRL parity."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import (
    NormalParamExtractor,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
)
from torch import nn

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from tdrl.objectives import ClipPPOLoss, KLPENPPOLoss, PPOLoss, ValueEstimators
from tdrl.objectives.value import GAE, TD0Estimator

OBS, ACT, N = 5, 2, 32


def tdrl_actor() -> ProbabilisticActor:
    net = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 2 * ACT), NormalParamExtractor())
    return ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )


def normal_actor() -> ProbabilisticTensorDictSequential:
    """tensordict.nn's own modules with a factorized torch Normal (log-prob per action dim)."""
    net = nn.Sequential(nn.Linear(OBS, 2 * ACT), NormalParamExtractor())
    return ProbabilisticTensorDictSequential(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        ProbabilisticTensorDictModule(
            in_keys=["loc", "scale"],
            out_keys=["action"],
            distribution_class=torch.distributions.Normal,
            return_log_prob=True,
        ),
    )


def critic() -> ValueOperator:
    return ValueOperator(nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 1)), in_keys=["observation"])


def batch(actor, n: int = N, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    data = TensorDict({"observation": torch.randn(n, OBS, generator=g)}, [n])
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        actor(data)
    data["advantage"] = torch.randn(n, 1, generator=g)
    data["value_target"] = torch.randn(n, 1, generator=g)
    data["state_value"] = torch.randn(n, 1, generator=g)
    return data


def perturb(module: nn.Module, scale: float = 0.3) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def test_seed_call_returns_scalar_losses_and_detached_diagnostics():
    actor, value = tdrl_actor(), critic()
    loss = ClipPPOLoss(
        actor_network=actor,
        critic_network=value,
        clip_epsilon=0.2,
        entropy_bonus=True,
        entropy_coef=1e-4,
        critic_coef=1.0,
        loss_critic_type="smooth_l1",
        log_explained_variance=True,
    )
    out = loss(batch(actor))
    total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
    total.backward()
    for key in out.keys():
        assert out[key].shape == (), key
        if key.startswith("loss_"):
            assert out[key].requires_grad, key
        else:
            assert not out[key].requires_grad, key
    assert set(out.keys()) == set(loss.out_keys)
    assert {"entropy", "clip_fraction", "kl_approx", "ESS", "explained_variance"} <= set(out.keys())
    # On-policy data: ratio 1, nothing clipped, ESS 1.
    assert out["clip_fraction"].item() == 0.0
    assert out["ESS"].item() == pytest.approx(1.0)
    assert out["kl_approx"].item() == pytest.approx(0.0, abs=1e-5)
    assert all(p.grad is not None for p in actor.parameters())
    assert all(p.grad is not None for p in value.parameters())


def test_both_coefficient_spellings():
    actor, value = tdrl_actor(), critic()
    a = ClipPPOLoss(actor, value, entropy_coef=0.5, critic_coef=2.0)
    b = ClipPPOLoss(actor, value, entropy_coeff=0.5, critic_coeff=2.0)
    assert a.entropy_coeff.item() == b.entropy_coeff.item() == 0.5
    assert a.critic_coeff.item() == b.critic_coeff.item() == 2.0
    with pytest.raises(ValueError, match="disagree"):
        ClipPPOLoss(actor, value, entropy_coef=0.1, entropy_coeff=0.2)
    data = batch(actor)
    torch.manual_seed(0)
    out_a = a(data)
    torch.manual_seed(0)
    out_b = b(data)
    for key in ("loss_objective", "loss_critic", "loss_entropy"):
        torch.testing.assert_close(out_a[key], out_b[key])


def test_clip_objective_formula():
    actor, value = tdrl_actor(), critic()
    data = batch(actor)
    perturb(actor)
    loss = ClipPPOLoss(actor, value, clip_epsilon=0.1, entropy_bonus=False)
    out = loss(data)
    with torch.no_grad():
        lp = actor.get_dist(data.select("observation")).log_prob(data["action"])
        ratio = (lp - data["sample_log_prob"]).exp().unsqueeze(-1)
        adv = data["advantage"]
        expected = -torch.minimum(ratio * adv, ratio.clamp(0.9, 1.1) * adv).mean()
        frac = ((ratio < 0.9) | (ratio > 1.1)).float().mean()
    torch.testing.assert_close(out["loss_objective"].detach(), expected)
    torch.testing.assert_close(out["clip_fraction"], frac)
    assert 0 < frac < 1
    plain = PPOLoss(actor, value, entropy_bonus=False)(data)
    torch.testing.assert_close(plain["loss_objective"].detach(), -(ratio * adv).mean())


@pytest.mark.parametrize("kind", ["l1", "l2", "smooth_l1"])
def test_critic_loss_types(kind):
    actor, value = tdrl_actor(), critic()
    data = batch(actor)
    out = ClipPPOLoss(actor, value, loss_critic_type=kind, critic_coeff=0.5)(data)
    v = value(data.select("observation"))["state_value"].detach()
    fn = {"l1": nn.functional.l1_loss, "l2": nn.functional.mse_loss, "smooth_l1": nn.functional.smooth_l1_loss}[kind]
    torch.testing.assert_close(out["loss_critic"].detach(), 0.5 * fn(v, data["value_target"]))


def test_clip_value_is_pessimistic():
    actor, value = tdrl_actor(), critic()
    data = batch(actor)
    out = ClipPPOLoss(actor, value, clip_value=0.05, loss_critic_type="l2")(data)
    unclipped = ClipPPOLoss(actor, value, loss_critic_type="l2")(data)
    assert out["loss_critic"] >= unclipped["loss_critic"]
    assert 0 < out["value_clip_fraction"] <= 1
    assert ClipPPOLoss(actor, value, clip_epsilon=0.3, clip_value=True).clip_value == pytest.approx(0.3)
    no_old = batch(actor)
    del no_old["state_value"]
    with pytest.raises(KeyError, match=r"clip_value=0\.05 clips around"):
        ClipPPOLoss(actor, value, clip_value=0.05)(no_old)


def test_normalize_advantage_and_reductions():
    actor, value = tdrl_actor(), critic()
    data = batch(actor)
    perturb(actor)
    norm = ClipPPOLoss(actor, value, normalize_advantage=True, entropy_bonus=False)(data)
    scaled = data.clone()
    scaled["advantage"] = data["advantage"] * 7 + 3
    norm2 = ClipPPOLoss(actor, value, normalize_advantage=True, entropy_bonus=False)(scaled)
    torch.testing.assert_close(norm["loss_objective"], norm2["loss_objective"])
    none = ClipPPOLoss(actor, value, reduction="none", entropy_coeff=0.1)(data)
    mean = ClipPPOLoss(actor, value, reduction="mean", entropy_coeff=0.1)(data)
    total = ClipPPOLoss(actor, value, reduction="sum", entropy_coeff=0.1)(data)
    assert none["loss_objective"].shape == none["loss_critic"].shape == none["loss_entropy"].shape == (N,)
    torch.testing.assert_close(none["loss_objective"].mean(), mean["loss_objective"])
    torch.testing.assert_close(none["loss_critic"].sum(), total["loss_critic"])
    with pytest.raises(ValueError, match="reduction='max' is unknown"):
        ClipPPOLoss(actor, value, reduction="max")


def test_tanh_normal_uses_monte_carlo_entropy():
    actor, value = tdrl_actor(), critic()
    data = batch(actor)
    loss = ClipPPOLoss(actor, value, samples_mc_entropy=2000, entropy_coeff=1.0)
    ent = loss(data)["entropy"]
    with torch.no_grad():
        dist = actor.get_dist(data.select("observation"))
        ref = -dist.log_prob(dist.sample((4000,))).mean()
    assert ent.item() == pytest.approx(ref.item(), abs=0.05)
    # the MC entropy is reparameterized: it has a gradient
    out = loss(data)
    out["loss_entropy"].backward()
    assert actor.module[0].module[0].weight.grad is not None


def test_works_with_tensordict_nn_and_factorized_normal():
    actor, value = normal_actor(), critic()
    data = batch(actor)
    assert "action_log_prob" in data.keys()
    assert data["action_log_prob"].shape == (N, ACT)
    out = ClipPPOLoss(actor, value)(data)
    dist = torch.distributions.Normal(data["loc"], data["scale"])
    torch.testing.assert_close(out["entropy"], dist.entropy().sum(-1).mean())
    assert out["kl_approx"].item() == pytest.approx(0.0, abs=1e-6)


def test_advantage_computed_inside_when_missing():
    actor, value = tdrl_actor(), critic()
    data = batch(actor, n=10).unsqueeze(0)  # [1, T]
    del data["advantage"], data["value_target"]
    data["next"] = TensorDict(
        {
            "observation": torch.randn(1, 10, OBS),
            "reward": torch.randn(1, 10, 1),
            "done": torch.zeros(1, 10, 1, dtype=torch.bool),
            "terminated": torch.zeros(1, 10, 1, dtype=torch.bool),
        },
        [1, 10],
    )
    loss = ClipPPOLoss(actor, value)
    out = loss(data)
    assert isinstance(loss.value_estimator, GAE)
    assert "advantage" not in data.keys()  # the input is not modified
    expected = GAE(gamma=0.99, lmbda=0.95, value_network=value)(data.clone())
    ref = ClipPPOLoss(actor, value)(expected)
    torch.testing.assert_close(out["loss_critic"], ref["loss_critic"])
    loss.make_value_estimator(ValueEstimators.TD0, gamma=0.5)
    assert isinstance(loss.value_estimator, TD0Estimator)
    assert loss.value_estimator.gamma.item() == 0.5
    loss(data)


def test_set_keys_renames_inputs_and_estimator():
    actor, value = tdrl_actor(), critic()
    data = batch(actor)
    data.rename_key_("advantage", "adv")
    data.rename_key_("value_target", "ret")
    loss = ClipPPOLoss(actor, value).set_keys(advantage="adv", value_target_key="ret")
    loss(data)
    loss.make_value_estimator("gae")
    assert loss.value_estimator.tensor_keys.advantage == "adv"
    with pytest.raises(ValueError, match="unknown key name 'foo'"):
        loss.set_keys(foo="bar")


def test_separate_losses_keeps_critic_gradients_off_shared_layers():
    shared = nn.Linear(OBS, 8)
    actor_net = nn.Sequential(shared, nn.Tanh(), nn.Linear(8, 2 * ACT), NormalParamExtractor())
    actor = ProbabilisticActor(
        TensorDictModule(actor_net, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        return_log_prob=True,
    )
    value = ValueOperator(nn.Sequential(shared, nn.Tanh(), nn.Linear(8, 1)), in_keys=["observation"])
    data = batch(actor)
    sep = ClipPPOLoss(actor, value, separate_losses=True)
    sep(data)["loss_critic"].backward()
    assert shared.weight.grad is None
    assert value.module[2].weight.grad is not None
    value.zero_grad()
    ClipPPOLoss(actor, value)(data)["loss_critic"].backward()
    assert shared.weight.grad is not None


def test_klpen_adapts_beta():
    actor, value = tdrl_actor(), critic()
    data = batch(actor)
    loss = KLPENPPOLoss(actor, value, beta=1.0, dtarg=0.01, increment=2.0, decrement=0.5)
    out = loss(data)  # same policy: KL 0 < dtarg / 1.5
    assert out["kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert loss.beta.item() == 0.5
    perturb(actor, 1.0)
    out = loss(data)
    assert out["kl"].item() > 0.015
    assert loss.beta.item() == 1.0
    out["loss_objective"].backward()  # the in-place beta update does not break the graph
    loss.reset()
    assert loss.beta.item() == 1.0
    no_params = batch(actor).exclude("loc", "scale")
    with pytest.raises(KeyError, match="distribution parameters"):
        loss(no_params)


# ------------------------------------------------------------------------------ bad input
def test_missing_advantage_says_which_estimator_writes_it():
    actor = tdrl_actor()
    data = batch(actor).exclude("advantage")
    with pytest.raises(KeyError, match=r"'advantage' not found.*GAE\(gamma=.*value_network=critic\)"):
        ClipPPOLoss(actor, critic_coeff=None)(data)


def test_missing_log_prob_says_which_actor_option_writes_it():
    actor, value = tdrl_actor(), critic()
    data = batch(actor).exclude("sample_log_prob", "action_log_prob")
    with pytest.raises(KeyError, match=r"'sample_log_prob' not found.*return_log_prob=True"):
        ClipPPOLoss(actor, value)(data)


def test_log_prob_synonyms():
    actor, value = tdrl_actor(), critic()
    data = batch(actor).exclude("sample_log_prob")
    out = ClipPPOLoss(actor, value)(data)  # reads "action_log_prob"
    assert out["ESS"].item() == pytest.approx(1.0)


def test_missing_value_target_and_action():
    actor, value = tdrl_actor(), critic()
    with pytest.raises(KeyError, match=r"'value_target' not found.*GAE"):
        ClipPPOLoss(actor, value)(batch(actor).exclude("value_target"))
    with pytest.raises(KeyError, match="'action' not found"):
        ClipPPOLoss(actor, value)(batch(actor).exclude("action"))


def test_critic_with_wrong_output_shape():
    actor = tdrl_actor()
    bad = ValueOperator(nn.Linear(OBS, 3), in_keys=["observation"])
    with pytest.raises(ValueError, match=r"critic wrote 'state_value' with shape \(32, 3\); expected \(32, 1\)"):
        ClipPPOLoss(actor, bad)(batch(actor))


@pytest.mark.parametrize("key", ["advantage", "sample_log_prob", "value_target", "observation"])
def test_nan_input_raises_naming_the_key(key):
    actor, value = tdrl_actor(), critic()
    data = batch(actor)
    data.exclude("action_log_prob", inplace=True)
    data[key][3] = float("nan")
    with pytest.raises(ValueError, match=f"input '{key}' holds [0-9]+ non-finite value"):
        ClipPPOLoss(actor, value)(data)


def test_nan_from_the_network_is_reported_too():
    actor, value = tdrl_actor(), critic()
    data = batch(actor)
    with torch.no_grad():
        value.module[0].weight.fill_(float("inf"))
    with pytest.raises(ValueError, match="networks' outputs diverged"):
        ClipPPOLoss(actor, value)(data)
    # opting out returns the NaN loss
    assert not torch.isfinite(ClipPPOLoss(actor, value, check_finite=False)(data)["loss_critic"])


def test_constructor_errors():
    with pytest.raises(TypeError, match="get_dist"):
        ClipPPOLoss(nn.Linear(2, 2), critic())
    with pytest.raises(TypeError, match="needs a critic_network"):
        ClipPPOLoss(tdrl_actor(), critic_coeff=1.0)
    with pytest.raises(ValueError, match="loss_critic_type='huber' is unknown"):
        ClipPPOLoss(tdrl_actor(), critic(), loss_critic_type="huber")
    with pytest.raises(ValueError, match="clip_epsilon"):
        ClipPPOLoss(tdrl_actor(), critic(), clip_epsilon=1.5)


def test_network_params_for_the_value_estimator():
    """TorchRL's ``GAE(data, params=loss.critic_network_params, target_params=loss.target_critic_network_params)``."""
    torch.manual_seed(0)
    actor, value = tdrl_actor(), critic()
    loss = ClipPPOLoss(actor, value)
    keys = set(loss.critic_network_params.keys(True, True))
    assert keys == {tuple(name.split(".")) for name, _ in value.named_parameters()}
    # the entries are the critic's own tensors; the targets hold the same values, detached
    for name, p in value.named_parameters():
        key = tuple(name.split("."))
        assert loss.critic_network_params.get(key) is p
        target = loss.target_critic_network_params.get(key)
        assert not target.requires_grad
        assert target.data_ptr() == p.data_ptr()
    for name, p in actor.named_parameters():
        key = tuple(name.split("."))
        assert loss.actor_network_params.get(key) is p
        assert not loss.target_actor_network_params.get(key).requires_grad

    g = torch.Generator().manual_seed(1)
    data = TensorDict(
        {
            "observation": torch.randn(4, 6, OBS, generator=g),
            "next": {
                "observation": torch.randn(4, 6, OBS, generator=g),
                "reward": torch.randn(4, 6, 1, generator=g),
                "done": torch.rand(4, 6, 1, generator=g) < 0.2,
                "terminated": torch.zeros(4, 6, 1, dtype=torch.bool),
            },
        },
        [4, 6],
    )
    gae = GAE(gamma=0.9, lmbda=0.8, value_network=value)
    plain = gae(data.clone())
    with_params = gae(data.clone(), params=loss.critic_network_params, target_params=loss.target_critic_network_params)
    torch.testing.assert_close(with_params["advantage"], plain["advantage"])
    torch.testing.assert_close(with_params["value_target"], plain["value_target"])
    # live: a change to the critic shows in the next read, and in what the estimator computes
    perturb(value)
    changed = gae(data.clone(), params=loss.critic_network_params, target_params=loss.target_critic_network_params)
    torch.testing.assert_close(changed["advantage"], gae(data.clone())["advantage"])
    assert not torch.allclose(changed["advantage"], plain["advantage"])
    assert ClipPPOLoss(actor, critic_coeff=None).critic_network_params is None
    assert ClipPPOLoss(actor, critic_coeff=None).target_critic_network_params is None


# ------------------------------------------------------------------------------ TorchRL
@pytest.mark.parametrize("options", [{}, {"clip_value": 0.1}, {"normalize_advantage": True, "loss_critic_type": "l2"}])
def test_clip_ppo_matches_torchrl(options):
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.data import Bounded
        from torchrl.modules import ProbabilisticActor as TRLActor
        from torchrl.modules import TanhNormal as TRLTanhNormal
        from torchrl.modules import ValueOperator as TRLValue
        from torchrl.objectives import ClipPPOLoss as TRLClip
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(OBS, 32), nn.Tanh(), nn.Linear(32, 2 * ACT), NormalParamExtractor())
    value_net = nn.Sequential(nn.Linear(OBS, 32), nn.Tanh(), nn.Linear(32, 1))
    spec = Bounded(-torch.ones(ACT), torch.ones(ACT), (ACT,))
    trl_actor = TRLActor(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        spec=spec,
        in_keys=["loc", "scale"],
        distribution_class=TRLTanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )
    trl_value = TRLValue(value_net, in_keys=["observation"])
    our_actor = ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )
    our_value = ValueOperator(value_net, in_keys=["observation"])
    data = batch(our_actor, n=64)
    perturb(net, 0.1)
    trl_loss = TRLClip(
        trl_actor,
        trl_value,
        clip_epsilon=0.2,
        entropy_coeff=1e-4,
        critic_coeff=1.0,
        loss_critic_type=options.get("loss_critic_type", "smooth_l1"),
        clip_value=options.get("clip_value"),
        normalize_advantage=options.get("normalize_advantage", False),
    )
    ours = ClipPPOLoss(our_actor, our_value, clip_epsilon=0.2, entropy_coef=1e-4, critic_coef=1.0, **options)
    theirs_out = trl_loss(data.clone())
    ours_out = ours(data.clone())
    for key in ("loss_objective", "loss_critic", "clip_fraction", "kl_approx", "ESS"):
        torch.testing.assert_close(ours_out[key].detach(), theirs_out[key].detach().reshape(()), atol=1e-5, rtol=1e-5)
    assert "explained_variance" not in ours_out.keys()  # opt-in here
    ev = ClipPPOLoss(our_actor, our_value, log_explained_variance=True, **options)(data.clone())
    torch.testing.assert_close(
        ev["explained_variance"], theirs_out["explained_variance"].reshape(()), atol=1e-5, rtol=1e-5
    )
    assert 0 < ours_out["clip_fraction"] < 1
    # and the gradients of the objective agree
    g_ours = torch.autograd.grad(ours_out["loss_objective"], list(net.parameters()))
    g_theirs = torch.autograd.grad(theirs_out["loss_objective"], list(net.parameters()))
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_network_params_match_torchrl():
    """The same entries as TorchRL's ``critic_network_params`` / ``target_critic_network_params``, and the same GAE."""
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.modules import ProbabilisticActor as TRLActor
        from torchrl.modules import TanhNormal as TRLTanhNormal
        from torchrl.objectives import ClipPPOLoss as TRLClip
        from torchrl.objectives.value import GAE as TRLGAE
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 2 * ACT), NormalParamExtractor())
    value = critic()
    kwargs = {"in_keys": ["loc", "scale"], "distribution_kwargs": {"low": -1.0, "high": 1.0}, "return_log_prob": True}
    theirs = TRLClip(
        TRLActor(TensorDictModule(net, ["observation"], ["loc", "scale"]), distribution_class=TRLTanhNormal, **kwargs),
        value,
    )
    ours = ClipPPOLoss(
        ProbabilisticActor(
            TensorDictModule(net, ["observation"], ["loc", "scale"]), distribution_class=TanhNormal, **kwargs
        ),
        value,
    )
    for name in ("critic_network_params", "target_critic_network_params"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert set(a.keys(True, True)) == set(b.keys(True, True)), name
        for key in a.keys(True, True):
            torch.testing.assert_close(a.get(key), b.get(key))
            assert a.get(key).requires_grad == b.get(key).requires_grad, (name, key)
    g = torch.Generator().manual_seed(2)
    data = TensorDict(
        {
            "observation": torch.randn(3, 7, OBS, generator=g),
            "next": {
                "observation": torch.randn(3, 7, OBS, generator=g),
                "reward": torch.randn(3, 7, 1, generator=g),
                "done": torch.rand(3, 7, 1, generator=g) < 0.3,
                "terminated": torch.rand(3, 7, 1, generator=g) < 0.2,
            },
        },
        [3, 7],
    )
    data["next", "done"] |= data["next", "terminated"]
    with torch.no_grad():
        mine = GAE(gamma=0.9, lmbda=0.8, value_network=value)(
            data.clone(), params=ours.critic_network_params, target_params=ours.target_critic_network_params
        )
        ref = TRLGAE(gamma=0.9, lmbda=0.8, value_network=value)(
            data.clone(), params=theirs.critic_network_params, target_params=theirs.target_critic_network_params
        )
    torch.testing.assert_close(mine["advantage"], ref["advantage"])
    torch.testing.assert_close(mine["value_target"], ref["value_target"])


def test_critic_coeff_changed_in_place_after_a_call_scales_the_critic_loss():
    # critic_coeff == 1 skips its multiply; a coefficient written later must still count
    actor, value = tdrl_actor(), critic()
    loss = ClipPPOLoss(actor, value, critic_coeff=1.0)
    data = batch(actor)
    unit = loss(data)["loss_critic"].detach()
    loss.critic_coeff.fill_(0.25)
    torch.testing.assert_close(loss(data)["loss_critic"], 0.25 * unit)
    loss.load_state_dict({**loss.state_dict(), "critic_coeff": torch.tensor(1.0)})
    torch.testing.assert_close(loss(data)["loss_critic"], unit)


def test_diagnostics_reduced_together_match_their_definitions():
    actor, value = tdrl_actor(), critic()
    loss = ClipPPOLoss(actor, value, clip_epsilon=0.1)
    data = batch(actor)
    perturb(actor)
    out = loss(data)
    with torch.no_grad():
        log_weight = actor.get_dist(data.select("observation")).log_prob(data["action"]) - data["sample_log_prob"]
    weight = log_weight.exp()
    torch.testing.assert_close(out["kl_approx"], -log_weight.mean())
    torch.testing.assert_close(out["ESS"], weight.mean() ** 2 / (weight**2).mean())
    torch.testing.assert_close(out["clip_fraction"], ((weight - 1).abs() > 0.1).float().mean())
    assert all(not out[k].requires_grad for k in ("kl_approx", "ESS", "clip_fraction", "entropy"))
