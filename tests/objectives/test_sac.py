"""SACLoss: numbers against TorchRL 0.14.1, the error paths, keys, targets, and learning."""

from __future__ import annotations

import copy
import math
import re
import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor, TensorDictModule
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.data import LazyTensorStorage, ReplayBuffer
from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import Categorical, OneHotCategorical, ProbabilisticActor, TanhNormal, ValueOperator
from tdrl.objectives import DiscreteSACLoss, HardUpdate, SACLoss, SoftUpdate
from tdrl.specs import Bounded, Composite
from tdrl.specs import Categorical as DiscreteSpec
from tdrl.testing import ContinuousActionMock

OBS, ACT, B = 3, 2, 32


class CatQ(nn.Module):
    """``Q(o, a)`` on the concatenation: a Q-network reading observation and action."""

    def __init__(self, obs: int = OBS, act: int = ACT, cells: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs + act, cells), nn.Tanh(), nn.Linear(cells, 1))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, act], -1))


def actor_net(obs: int = OBS, act: int = ACT) -> nn.Module:
    return nn.Sequential(nn.Linear(obs, 32), nn.Tanh(), nn.Linear(32, 2 * act), NormalParamExtractor())


def tdrl_actor(net: nn.Module | None = None, spec: bool = True) -> ProbabilisticActor:
    return ProbabilisticActor(
        TensorDictModule(net if net is not None else actor_net(), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=Bounded(-1.0, 1.0, shape=(ACT,)) if spec else None,
        distribution_class=TanhNormal,
    )


def qvalue(module: nn.Module | None = None) -> ValueOperator:
    return ValueOperator(module if module is not None else CatQ(), in_keys=["observation", "action"])


def batch(n: int = B, seed: int = 0) -> TensorDict:
    """Transitions with some terminated and some truncated (not terminated) steps."""
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


def total(out: TensorDict) -> torch.Tensor:
    return sum(v for k, v in out.items() if k.startswith("loss_"))


# ------------------------------------------------------------------------------ behaviour
def test_outputs_and_gradients_reach_every_trained_parameter():
    loss = SACLoss(tdrl_actor(), qvalue())
    data = batch()
    out = loss(data)
    assert sorted(out.keys()) == sorted(loss.out_keys)
    assert all(out[k].shape == () for k in out.keys())
    total(out).backward()
    for name, p in loss.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    assert data["td_error"].shape == (B,)
    assert not data["td_error"].requires_grad


def test_the_q_ensemble_has_one_parameter_set_per_network():
    q = qvalue()
    loss = SACLoss(tdrl_actor(), q, num_qvalue_nets=3)
    weight = loss.qvalue_network_params["module", "net", "0", "weight"]
    assert weight.shape == (3, 32, OBS + ACT)
    torch.testing.assert_close(weight[0], q.module.net[0].weight)  # the first keeps the module's values
    assert not torch.equal(weight[1], weight[2])
    # the module's own parameters are not trained by the loss (the stacked sets are)
    trained = {id(p) for p in loss.parameters()}
    assert all(id(p) not in trained for p in q.parameters())


def test_the_actor_loss_does_not_train_the_q_networks():
    loss = SACLoss(tdrl_actor(), qvalue())
    out = loss(batch())
    out["loss_actor"].backward()
    assert all(p.grad is None for p in loss.qvalue_network_params.values(True, True))


def test_the_qvalue_loss_reads_no_gradient_from_the_target():
    loss = SACLoss(tdrl_actor(), qvalue())
    out = loss(batch())
    out["loss_qvalue"].backward()
    assert all(p.grad is None for p in loss.actor_network.parameters())
    assert loss.log_alpha.grad is None


def test_truncated_steps_bootstrap_and_terminated_ones_do_not():
    loss = SACLoss(tdrl_actor(), qvalue(), fixed_alpha=True, alpha_init=1e-8)
    loss.make_value_estimator("td0", gamma=0.5)
    data = batch(4)
    data["next", "terminated"] = torch.tensor([[True], [False], [False], [False]])
    data["next", "truncated"] = torch.tensor([[False], [True], [False], [False]])
    data["next", "done"] = data["next", "terminated"] | data["next", "truncated"]
    torch.manual_seed(0)
    next_value = loss._next_state_value(data)
    target = loss._target(data, next_value)
    reward = data["next", "reward"].squeeze(-1)
    torch.testing.assert_close(target[0], reward[0])
    torch.testing.assert_close(target[1:], reward[1:] + 0.5 * next_value[1:].squeeze(-1))


def test_fixed_alpha_is_a_buffer_and_stays_put():
    loss = SACLoss(tdrl_actor(), qvalue(), fixed_alpha=True, alpha_init=0.3)
    assert "log_alpha" not in dict(loss.named_parameters())
    out = loss(batch())
    torch.testing.assert_close(out["alpha"], torch.tensor(0.3))
    assert not out["loss_alpha"].requires_grad


def test_alpha_is_clamped_into_its_bounds():
    loss = SACLoss(tdrl_actor(), qvalue(), alpha_init=1.0, min_alpha=0.1, max_alpha=0.5)
    assert loss(batch())["alpha"].item() == pytest.approx(0.5)
    with torch.no_grad():
        loss.log_alpha.fill_(-10.0)
    assert loss(batch())["alpha"].item() == pytest.approx(0.1)


def test_target_entropy_from_the_spec_or_given():
    assert SACLoss(tdrl_actor(), qvalue()).target_entropy.item() == -ACT
    spec = Composite(action=Bounded(-1.0, 1.0, shape=(4, 3)), shape=(4,))
    assert SACLoss(tdrl_actor(spec=False), qvalue(), action_spec=spec).target_entropy.item() == -3
    assert SACLoss(tdrl_actor(), qvalue(), target_entropy=-0.5).target_entropy.item() == -0.5


def test_reduction_none_gives_per_sample_losses():
    loss = SACLoss(tdrl_actor(), qvalue(), reduction="none", scalar_output_mode="exclude")
    out = loss(batch())
    assert out.batch_size == (B,)
    assert sorted(out.keys()) == ["loss_actor", "loss_alpha", "loss_qvalue"]
    with pytest.warns(UserWarning, match="left out of its output"):
        SACLoss(tdrl_actor(), qvalue(), reduction="none")
    kept = SACLoss(tdrl_actor(), qvalue(), reduction="none", scalar_output_mode="non_tensor")(batch())
    assert "alpha" in kept.keys()


def test_skip_done_states_zeroes_only_terminated_next_values():
    loss = SACLoss(tdrl_actor(), qvalue(), skip_done_states=True)
    data = batch(8)
    data["next", "observation"][data["next", "terminated"].squeeze(-1)] = float("nan")
    out = loss(data)
    assert torch.isfinite(out["loss_qvalue"])


def test_priority_weights_weight_the_mean():
    loss = SACLoss(tdrl_actor(), qvalue(), fixed_alpha=True)
    data = batch()
    torch.manual_seed(0)
    plain = loss(data.clone())
    weights = torch.zeros(B)
    weights[:4] = 1.0
    weighted_data = data.clone().set("priority_weight", weights)
    torch.manual_seed(0)
    weighted = loss(weighted_data)
    torch.manual_seed(0)
    first = SACLoss(tdrl_actor(), qvalue(), fixed_alpha=True)
    first.load_state_dict(loss.state_dict())
    per_sample = SACLoss(
        loss.actor_network, loss.qvalue_network, fixed_alpha=True, reduction="none", scalar_output_mode="exclude"
    )
    per_sample.load_state_dict(loss.state_dict())
    torch.manual_seed(0)
    none = per_sample(data.clone())
    torch.testing.assert_close(weighted["loss_qvalue"], none["loss_qvalue"][:4].mean())
    assert not torch.allclose(weighted["loss_qvalue"], plain["loss_qvalue"])
    off = SACLoss(tdrl_actor(), qvalue(), use_prioritized_weights=False)
    off.load_state_dict(loss.state_dict())
    torch.manual_seed(0)
    torch.testing.assert_close(off(weighted_data.clone())["loss_qvalue"], plain["loss_qvalue"])


# ------------------------------------------------------------------------------ keys and targets
def test_set_keys_renames_inputs_and_the_priority():
    q = ValueOperator(CatQ(), in_keys=["obs", "act"], out_keys=["q"])
    actor = ProbabilisticActor(
        TensorDictModule(actor_net(), ["obs"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        out_keys=["act"],
        distribution_class=TanhNormal,
    )
    loss = SACLoss(actor, q, action_spec=Bounded(-1.0, 1.0, shape=(ACT,)))
    loss.set_keys(state_action_value="q", priority="prio", reward="r", done="d", terminated="t")
    assert loss.tensor_keys.action == "act"  # read from the actor's sample key
    data = batch().rename_key_("observation", "obs").rename_key_("action", "act")
    data["next"] = data["next"].rename_key_("observation", "obs").rename_key_("reward", "r")
    data["next"] = data["next"].rename_key_("done", "d").rename_key_("terminated", "t")
    loss(data)
    assert "prio" in data.keys()
    assert set(loss.in_keys) >= {"act", ("next", "r"), ("next", "d"), ("next", "t"), "obs", ("next", "obs")}
    with pytest.raises(ValueError, match="unknown key name 'nope'"):
        loss.set_keys(nope="x")


def test_soft_and_hard_updates_drive_the_target_q_parameters():
    loss = SACLoss(tdrl_actor(), qvalue())
    live = loss.qvalue_network_params["module", "net", "0", "weight"]
    target = loss.target_qvalue_network_params["module", "net", "0", "weight"]
    torch.testing.assert_close(target, live.detach())
    assert target.shape == live.shape
    with torch.no_grad():
        live.add_(1.0)
    before = target.clone()
    SoftUpdate(loss, tau=0.25).step()
    torch.testing.assert_close(target, 0.75 * before + 0.25 * live.detach())
    HardUpdate(loss, value_network_update_interval=1).step()
    torch.testing.assert_close(target, live.detach())
    assert "target_qvalue_network_params.module.net.0.weight" in loss.state_dict()
    assert all("target" not in name for name, _ in loss.named_parameters())


def test_delay_actor_adds_target_actor_parameters():
    loss = SACLoss(tdrl_actor(), qvalue(), delay_actor=True)
    assert hasattr(loss, "target_actor_network_params")
    assert set(loss._target_names) == {"actor_network", "qvalue_network"}


def test_the_loss_follows_the_module_to_another_dtype():
    loss = SACLoss(tdrl_actor(), qvalue()).double()
    out = loss(batch().apply(lambda t: t.double() if t.is_floating_point() else t))
    assert out["loss_qvalue"].dtype == torch.float64


def _losses_and_grads(loss: SACLoss, data: TensorDict) -> tuple[dict, dict]:
    loss.zero_grad()
    torch.manual_seed(3)
    out = loss(data.clone())
    total(out).backward()
    return {k: v.detach().clone() for k, v in out.items()}, {n: p.grad.clone() for n, p in loss.named_parameters()}


def test_the_per_member_q_calls_match_the_vmap_call_and_follow_updates_of_the_parameters():
    # a plain ValueOperator runs once per member with its parameters swapped in; a forward
    # hook on it sends the loss through the general torch.vmap path, which must agree
    loss = SACLoss(tdrl_actor(), qvalue(), num_qvalue_nets=3)

    assert loss._q_loop is not None
    updater = SoftUpdate(loss, tau=0.5)
    optim = torch.optim.SGD(loss.parameters(), lr=0.1)
    data = batch()
    for _ in range(2):  # the second round reads parameters moved in place by the step and the update
        fast = _losses_and_grads(loss, data)
        handle = loss.qvalue_network.register_forward_hook(lambda *args: None)
        assert not loss._q_loop.usable()
        general = _losses_and_grads(loss, data)
        handle.remove()
        for got, expected in zip(fast, general):
            assert got.keys() == expected.keys()
            for key in got:
                torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)
        optim.step()
        updater.step()
    loss = loss.double()  # new parameter storage: the cached member views are rebuilt
    out = loss(data.apply(lambda t: t.double() if t.is_floating_point() else t))
    assert out["loss_qvalue"].dtype == torch.float64


# ------------------------------------------------------------------------------ errors
def test_constructor_errors_name_the_problem_and_the_fix():
    with pytest.raises(TypeError, match="get_dist"):
        SACLoss(TensorDictModule(nn.Linear(OBS, ACT), ["observation"], ["action"]), qvalue())
    with pytest.raises(ValueError, match=r"must read 'action'.*in_keys are \['observation'\]"):
        SACLoss(tdrl_actor(), ValueOperator(nn.Linear(OBS, 1), in_keys=["observation"]))
    with pytest.raises(ValueError, match=r"target_entropy='auto'.*action_spec=env\.action_spec"):
        SACLoss(tdrl_actor(spec=False), qvalue())
    with pytest.raises(TypeError, match=r"value_network.*not supported"):
        SACLoss(tdrl_actor(), qvalue(), ValueOperator(nn.Linear(OBS, 1)))
    with pytest.raises(TypeError, match="make_value_estimator"):
        SACLoss(tdrl_actor(), qvalue(), gamma=0.9)
    with pytest.raises(ValueError, match="loss_function='huber' is unknown"):
        SACLoss(tdrl_actor(), qvalue(), loss_function="huber")
    with pytest.raises(ValueError, match="reduction='avg' is unknown"):
        SACLoss(tdrl_actor(), qvalue(), reduction="avg")
    with pytest.raises(ValueError, match="num_qvalue_nets must be an int >= 1"):
        SACLoss(tdrl_actor(), qvalue(), num_qvalue_nets=0)
    with pytest.raises(ValueError, match="alpha_init must be > 0"):
        SACLoss(tdrl_actor(), qvalue(), alpha_init=0.0)
    with pytest.raises(ValueError, match="max_alpha must be None or > 0"):
        SACLoss(tdrl_actor(), qvalue(), min_alpha=0.1, max_alpha=0)
    with pytest.raises(ValueError, match="lazy parameters"):
        SACLoss(tdrl_actor(), ValueOperator(nn.LazyLinear(1), in_keys=["observation", "action"]))
    with pytest.raises(ValueError, match="does not support the GAE estimator"):
        SACLoss(tdrl_actor(), qvalue()).make_value_estimator("gae")


@pytest.mark.parametrize(
    ("key", "estimator"),
    [
        ("observation", "td0"),
        ("action", "td0"),
        (("next", "observation"), "td0"),
        (("next", "reward"), "td0"),
        # TD(0) needs 'terminated' only (with 'terminated' present, 'done' is not read); TD(lambda) needs both
        (("next", "done"), "td_lambda"),
    ],
)
def test_a_missing_input_is_named(key, estimator):
    data = batch()
    del data[key]
    loss = SACLoss(tdrl_actor(), qvalue()).make_value_estimator(estimator)
    with pytest.raises(KeyError, match=re.escape(f"key {key!r} not found in the input")):
        loss(data)


def test_td0_targets_do_not_need_done_when_terminated_is_there():
    data = batch()
    full = SACLoss(tdrl_actor(), qvalue())
    torch.manual_seed(1)
    expected = full(data.clone())["loss_qvalue"]
    del data["next", "done"]
    torch.manual_seed(1)
    assert torch.equal(full(data)["loss_qvalue"], expected)


def test_a_q_network_of_the_wrong_width_is_reported():
    wide = ValueOperator(CatQ(), in_keys=["observation", "action"])
    wide.module.net[-1] = nn.Linear(32, 3)
    with pytest.raises(ValueError, match=r"wrote 'state_action_value' with shape \(32, 3\).*expected \(32, 1\)"):
        SACLoss(tdrl_actor(), wide)(batch())


def test_an_actor_whose_distribution_cannot_be_reparameterized_is_reported():
    actor = ProbabilisticActor(
        TensorDictModule(nn.Linear(OBS, 4), ["observation"], ["logits"]),
        in_keys=["logits"],
        distribution_class=Categorical,
    )
    loss = SACLoss(actor, qvalue(CatQ(act=1)), target_entropy=-1.0)
    data = batch()
    data["action"] = torch.zeros(B, 1)
    with pytest.raises(TypeError, match="cannot be reparameterized"):
        loss(data)


def test_a_reward_of_the_wrong_shape_is_reported():
    data = batch()
    data["next", "reward"] = torch.zeros(B, 2)
    with pytest.raises(ValueError, match="shape"):
        SACLoss(tdrl_actor(), qvalue())(data)


def test_priority_weights_of_the_wrong_shape_are_reported():
    data = batch().set("priority_weight", torch.ones(B, 1))
    with pytest.raises(ValueError, match=r"'priority_weight' has shape \(32, 1\); expected \(32,\)"):
        SACLoss(tdrl_actor(), qvalue())(data)


# ------------------------------------------------------------------------------ TorchRL
def _torchrl_pair(share: bool = True, **kwargs):
    """The same SAC in TorchRL and tdrl: the same actor net (shared, or a copy), TorchRL's Q
    parameter sets copied into ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.data import Bounded as TRLBounded
        from torchrl.modules import ProbabilisticActor as TRLActor
        from torchrl.modules import TanhNormal as TRLTanhNormal
        from torchrl.modules import ValueOperator as TRLValue
        from torchrl.objectives import SACLoss as TRLSAC
    net, q = actor_net(), CatQ()
    theirs_actor = TRLActor(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=TRLBounded(-torch.ones(ACT), torch.ones(ACT), (ACT,)),
        distribution_class=TRLTanhNormal,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TRLSAC(theirs_actor, TRLValue(q, in_keys=["observation", "action"]), **kwargs)
    ours = SACLoss(tdrl_actor(net if share else copy.deepcopy(net)), qvalue(q), **kwargs)
    with torch.no_grad():
        theirs.target_qvalue_network_params.apply_(lambda t: t.add_(0.05 * torch.randn_like(t)))
        ours.qvalue_network_params.data.update_(theirs.qvalue_network_params.data)
        ours.target_qvalue_network_params.data.update_(theirs.target_qvalue_network_params.data)
    return theirs, ours, net


def _estimator(loss, name: str) -> None:
    from torchrl.objectives import ValueEstimators as TRLEstimators

    hp = {"gamma": 0.9, **({"lmbda": 0.8} if name == "td_lambda" else {})}
    if type(loss).__module__.startswith("torchrl"):
        loss.make_value_estimator(
            {"td0": TRLEstimators.TD0, "td1": TRLEstimators.TD1}.get(name, TRLEstimators.TDLambda), **hp
        )
    else:
        loss.make_value_estimator(name, **hp)


def _assert_same(theirs, ours, data, keys, grads_of):
    """Same outputs, written TD errors and gradients, with the same random draws."""
    d_theirs, d_ours = data.clone(), data.clone()
    torch.manual_seed(1)
    out_theirs = theirs(d_theirs)
    torch.manual_seed(1)
    out_ours = ours(d_ours)
    for key in keys:
        torch.testing.assert_close(out_ours[key], out_theirs[key], atol=1e-5, rtol=1e-5, msg=key)
    torch.testing.assert_close(d_ours["td_error"], d_theirs["td_error"], atol=1e-5, rtol=1e-5)
    for loss_key, params_of in grads_of.items():
        p_theirs, p_ours = params_of(theirs), params_of(ours)
        g_theirs = torch.autograd.grad(out_theirs[loss_key].sum(), p_theirs, allow_unused=True, retain_graph=True)
        g_ours = torch.autograd.grad(out_ours[loss_key].sum(), p_ours, allow_unused=True, retain_graph=True)
        for a, b in zip(g_ours, g_theirs, strict=True):
            if b is None:
                assert a is None or not a.abs().any(), loss_key
            else:
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=loss_key)


def _sac_grads(net):
    return {
        "loss_actor": lambda loss: list(net.parameters()),
        "loss_qvalue": lambda loss: list(loss.qvalue_network_params.values(True, True)),
        "loss_alpha": lambda loss: [loss.log_alpha],
    }


@pytest.mark.parametrize("estimator", ["td0", "td1", "td_lambda"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"fixed_alpha": True, "alpha_init": 0.2},
        {"alpha_init": 0.5, "min_alpha": 0.6, "loss_function": "l2", "target_entropy": -1.5},
        {"num_qvalue_nets": 3, "loss_function": "l1"},
        {"deactivate_vmap": True},
    ],
)
def test_sac_matches_torchrl(estimator, options):
    pytest.importorskip("torchrl")
    theirs, ours, net = _torchrl_pair(**options)
    _estimator(theirs, estimator)
    _estimator(ours, estimator)
    grads = _sac_grads(net)
    if options.get("fixed_alpha"):
        grads.pop("loss_alpha")
    _assert_same(theirs, ours, batch(), ["loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy"], grads)


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_sac_matches_torchrl_with_priority_weights(reduction):
    pytest.importorskip("torchrl")
    extra = {"scalar_output_mode": "exclude"} if reduction == "none" else {}
    theirs, ours, net = _torchrl_pair(reduction=reduction, **extra)
    data = batch().set("priority_weight", torch.rand(B) + 0.5)
    keys = ["loss_actor", "loss_qvalue", "loss_alpha"]
    _assert_same(theirs, ours, data, keys, _sac_grads(net))


def test_sac_training_steps_match_torchrl():
    """Three SGD steps with soft target updates end at the same parameters (Adam would turn
    float rounding in near-zero gradients into visible steps)."""
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.objectives import SoftUpdate as TRLSoftUpdate
    theirs, ours, net_theirs = _torchrl_pair(share=False)
    net = ours.actor_network.module[0].module
    updaters = [TRLSoftUpdate(theirs, tau=0.1), SoftUpdate(ours, tau=0.1)]
    updaters[1].init_()  # TorchRL's updater copies the live parameters into the targets when built
    optims = [torch.optim.SGD(loss.parameters(), lr=0.05) for loss in (theirs, ours)]
    for step in range(3):
        for loss, optim, updater in zip((theirs, ours), optims, updaters):
            torch.manual_seed(step)
            out = loss(batch(seed=step))
            optim.zero_grad()
            total(out).backward()
            optim.step()
            updater.step()
    for a, b in zip(net.parameters(), net_theirs.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.log_alpha, theirs.log_alpha, atol=1e-5, rtol=1e-4)
    for key, value in ours.target_qvalue_network_params.items(True, True):
        torch.testing.assert_close(value, theirs.target_qvalue_network_params.get(key), atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------ learning
@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sac_learns_the_tracking_task(one_thread):
    """Act to match the observation's first coordinate (ContinuousActionMock), from 2,048 frames."""
    env = ContinuousActionMock(obs_dim=2, action_dim=1, max_steps=10, batch_size=[8])
    env.set_seed(0)
    net = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 2), NormalParamExtractor())
    actor = ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=env.action_spec,
        distribution_class=TanhNormal,
    )
    q = ValueOperator(CatQ(2, 1, 64), in_keys=["observation", "action"])
    loss = SACLoss(actor, q, alpha_init=0.1)
    loss.make_value_estimator("td0", gamma=0.5)
    updater = SoftUpdate(loss, tau=0.05)
    optim = torch.optim.Adam(loss.parameters(), lr=3e-3)
    buffer = ReplayBuffer(storage=LazyTensorStorage(4096), batch_size=128)
    collector = SyncDataCollector(env, actor, frames_per_batch=64, total_frames=2048)
    for data in collector:
        buffer.extend(data.reshape(-1))
        for _ in range(16):
            out = loss(buffer.sample())
            optim.zero_grad()
            total(out).backward()
            optim.step()
            updater.step()
    collector.shutdown()
    obs = torch.linspace(-0.9, 0.9, 50).unsqueeze(-1).expand(50, 2).clone()
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        action = actor(TensorDict({"observation": obs}, [50]))["action"]
    error = (action[:, 0] - obs[:, 0]).abs().mean().item()
    assert error < 0.1, error  # a policy that ignores the observation scores about 0.45


# ------------------------------------------------------------------------------ discrete SAC
N_ACT = 4


def discrete_actor(net: nn.Module | None = None, one_hot: bool = True) -> ProbabilisticActor:
    return ProbabilisticActor(
        TensorDictModule(net if net is not None else nn.Linear(OBS, N_ACT), ["observation"], ["logits"]),
        in_keys=["logits"],
        distribution_class=OneHotCategorical if one_hot else Categorical,
    )


def action_values(module: nn.Module | None = None) -> ValueOperator:
    net = module if module is not None else nn.Sequential(nn.Linear(OBS, 32), nn.Tanh(), nn.Linear(32, N_ACT))
    return ValueOperator(net, in_keys=["observation"], out_keys=["action_value"])


def discrete_batch(one_hot: bool = True, n: int = B, seed: int = 0) -> TensorDict:
    data = batch(n, seed)
    index = torch.randint(N_ACT, (n,), generator=torch.Generator().manual_seed(seed))
    data["action"] = nn.functional.one_hot(index, N_ACT) if one_hot else index
    return data


def test_discrete_sac_trains_actor_q_and_alpha():
    loss = DiscreteSACLoss(discrete_actor(), action_values(), action_space="one-hot", num_actions=N_ACT)
    data = discrete_batch()
    out = loss(data)
    assert sorted(out.keys()) == sorted(loss.out_keys)
    total(out).backward()
    for name, p in loss.named_parameters():
        assert p.grad is not None, name
    assert data["td_error"].shape == (B,)
    torch.testing.assert_close(loss.target_entropy, torch.tensor(0.98 * math.log(N_ACT)))


def test_discrete_sac_reads_categorical_actions_with_or_without_a_trailing_dim():
    loss = DiscreteSACLoss(
        discrete_actor(one_hot=False), action_values(), action_space=DiscreteSpec(N_ACT), num_actions=N_ACT
    )
    data = discrete_batch(one_hot=False)
    torch.manual_seed(0)
    flat = loss(data.clone())["loss_qvalue"]
    data["action"] = data["action"].unsqueeze(-1)
    torch.manual_seed(0)
    torch.testing.assert_close(loss(data)["loss_qvalue"], flat)


def test_discrete_sac_errors():
    with pytest.warns(UserWarning, match="action_space was not given"):
        DiscreteSACLoss(discrete_actor(), action_values(), num_actions=N_ACT)
    with pytest.raises(ValueError, match="action_space='binary' is not supported"):
        DiscreteSACLoss(discrete_actor(), action_values(), action_space="binary", num_actions=N_ACT)
    with pytest.raises(ValueError, match="pass num_actions"):
        DiscreteSACLoss(discrete_actor(), action_values(), action_space="one-hot")
    with pytest.raises(ValueError, match=r"must write 'action_value'.*out_keys are \['state_value'\]"):
        DiscreteSACLoss(discrete_actor(), ValueOperator(nn.Linear(OBS, N_ACT)), action_space="one-hot", num_actions=4)
    one_hot_loss = DiscreteSACLoss(discrete_actor(), action_values(), action_space="one-hot", num_actions=N_ACT)
    with pytest.raises(ValueError, match="pass action_space='categorical'"):
        one_hot_loss(discrete_batch(one_hot=False))
    index_loss = DiscreteSACLoss(discrete_actor(), action_values(), action_space="categorical", num_actions=N_ACT)
    with pytest.raises(ValueError, match="pass action_space='one-hot'"):
        index_loss(discrete_batch(one_hot=True))
    data = discrete_batch()
    del data["next", "observation"]
    with pytest.raises(KeyError, match=re.escape("key ('next', 'observation') not found")):
        one_hot_loss(data)


@pytest.mark.parametrize("estimator", ["td0", "td_lambda"])
@pytest.mark.parametrize(
    "options",
    [
        {"action_space": "one-hot"},
        {"action_space": "categorical", "fixed_alpha": True, "alpha_init": 0.3, "loss_function": "l2"},
        {"action_space": "one-hot", "num_qvalue_nets": 3, "target_entropy": 0.5, "reduction": "sum"},
    ],
)
def test_discrete_sac_matches_torchrl(estimator, options):
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.modules import OneHotCategorical as TRLOneHot
        from torchrl.modules import ProbabilisticActor as TRLActor
        from torchrl.modules import ValueOperator as TRLValue
        from torchrl.objectives import DiscreteSACLoss as TRLDiscreteSAC
    one_hot = options["action_space"] == "one-hot"
    net, q = nn.Linear(OBS, N_ACT), nn.Sequential(nn.Linear(OBS, 32), nn.Tanh(), nn.Linear(32, N_ACT))
    dist_class = TRLOneHot if one_hot else torch.distributions.Categorical
    theirs_actor = TRLActor(
        TensorDictModule(net, ["observation"], ["logits"]), in_keys=["logits"], distribution_class=dist_class
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TRLDiscreteSAC(
            theirs_actor,
            TRLValue(q, in_keys=["observation"], out_keys=["action_value"]),
            num_actions=N_ACT,
            **options,
        )
    ours = DiscreteSACLoss(discrete_actor(net, one_hot), action_values(q), num_actions=N_ACT, **options)
    with torch.no_grad():
        theirs.target_qvalue_network_params.apply_(lambda t: t.add_(0.05 * torch.randn_like(t)))
        ours.qvalue_network_params.data.update_(theirs.qvalue_network_params.data)
        ours.target_qvalue_network_params.data.update_(theirs.target_qvalue_network_params.data)
    _estimator(theirs, estimator)
    _estimator(ours, estimator)
    grads = _sac_grads(net)
    if options.get("fixed_alpha"):
        grads.pop("loss_alpha")
    keys = ["loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy"]
    _assert_same(theirs, ours, discrete_batch(one_hot), keys, grads)
