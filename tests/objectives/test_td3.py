"""TD3Loss: numbers against TorchRL 0.14.1, target smoothing, errors, keys, targets, learning."""

from __future__ import annotations

import copy
import re
import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.data import LazyTensorStorage, ReplayBuffer
from tdrl.modules import Actor, AdditiveGaussianModule, ValueOperator
from tdrl.objectives import HardUpdate, SoftUpdate, TD3Loss
from tdrl.specs import Bounded, Composite, Unbounded
from tdrl.testing import ContinuousActionMock

OBS, ACT, B = 3, 2, 32


class CatQ(nn.Module):
    """``Q(o, a)`` on the concatenation."""

    def __init__(self, obs: int = OBS, act: int = ACT, cells: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs + act, cells), nn.Tanh(), nn.Linear(cells, 1))

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, act], -1))


def actor_net(obs: int = OBS, act: int = ACT) -> nn.Module:
    return nn.Sequential(nn.Linear(obs, 32), nn.Tanh(), nn.Linear(32, act), nn.Tanh())


def actor(net: nn.Module | None = None) -> Actor:
    return Actor(net if net is not None else actor_net(), in_keys=["observation"])


def qvalue(module: nn.Module | None = None) -> ValueOperator:
    return ValueOperator(module if module is not None else CatQ(), in_keys=["observation", "action"])


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


SPEC = Bounded(-1.0, 1.0, shape=(ACT,))


# ------------------------------------------------------------------------------ behaviour
def test_outputs_shapes_and_gradients():
    loss = TD3Loss(actor(), qvalue(), action_spec=SPEC)
    data = batch()
    out = loss(data)
    assert sorted(out.keys()) == sorted(loss.out_keys)
    assert out["pred_value"].shape == out["state_action_value_actor"].shape == (2, B)
    assert out["next_state_value"].shape == out["target_value"].shape == (B,)
    (out["loss_actor"] + out["loss_qvalue"]).backward()
    for name, p in loss.named_parameters():
        assert p.grad is not None, name
    assert data["td_error"].shape == (B,)


def test_the_actor_loss_uses_the_first_q_and_does_not_train_the_qs():
    loss = TD3Loss(actor(), qvalue(), action_spec=SPEC)
    out = loss(batch())
    torch.testing.assert_close(out["loss_actor"], -out["state_action_value_actor"][0].mean())
    out["loss_actor"].backward()
    assert all(p.grad is None for p in loss.qvalue_network_params.values(True, True))


def test_the_target_action_is_smoothed_clipped_and_clamped():
    """With huge noise clipped at noise_clip, the target action is mu'(s') +- noise_clip, in the bounds."""
    seen = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q = CatQ()

        def forward(self, obs, act):
            seen.append(act.detach().clone())
            return self.q(obs, act)

    zero_actor = Actor(lambda obs: torch.zeros(*obs.shape[:-1], ACT), in_keys=["observation"])
    loss = TD3Loss(
        zero_actor, qvalue(Spy()), bounds=(-0.25, 0.25), policy_noise=100.0, noise_clip=0.3, deactivate_vmap=True
    )
    loss(batch())
    actor_call, _, target_1, target_2, *_ = seen
    assert actor_call.abs().max() == 0
    assert target_1.abs().max() == pytest.approx(0.25)  # 0.3 of noise clamped to the bound
    torch.testing.assert_close(target_1, target_2)  # the same smoothed action for both critics


def test_truncated_steps_bootstrap_and_terminated_ones_do_not():
    loss = TD3Loss(actor(), qvalue(), action_spec=SPEC)
    loss.make_value_estimator("td0", gamma=0.5)
    data = batch()
    out = loss(data)
    reward = data["next", "reward"].squeeze(-1)
    terminated = data["next", "terminated"].squeeze(-1)
    assert (data["next", "truncated"].squeeze(-1) & ~terminated).any()
    expected = reward + 0.5 * (~terminated).float() * out["next_state_value"]
    torch.testing.assert_close(out["target_value"], expected)


def test_bounds_from_a_composite_spec_of_a_batched_env():
    spec = Composite(action=Bounded(-2.0, 3.0, shape=(4, ACT)), shape=(4,))
    loss = TD3Loss(actor(), qvalue(), action_spec=spec)
    torch.testing.assert_close(loss.min_action, torch.full((ACT,), -2.0))
    torch.testing.assert_close(loss.max_action, torch.full((ACT,), 3.0))


def test_delay_actor_false_uses_the_live_actor_for_the_target():
    loss = TD3Loss(actor(), qvalue(), action_spec=SPEC, delay_actor=False)
    assert loss._target_names == ["qvalue_network"]
    loss(batch())


def test_set_keys_and_in_keys():
    net = actor_net()
    act = Actor(net, in_keys=["obs"], out_keys=["act"])
    q = ValueOperator(CatQ(), in_keys=["obs", "act"], out_keys=["q"])
    loss = TD3Loss(act, q, action_spec=SPEC).set_keys(state_action_value="q", priority="prio", reward="r")
    assert loss.tensor_keys.action == "act"  # the actor's one output
    data = batch().rename_key_("observation", "obs").rename_key_("action", "act")
    data["next"] = data["next"].rename_key_("observation", "obs").rename_key_("reward", "r")
    out = loss(data)
    assert torch.isfinite(out["loss_qvalue"])
    assert "prio" in data.keys()
    assert set(loss.in_keys) >= {"act", "obs", ("next", "obs"), ("next", "r")}


def test_soft_update_drives_both_targets():
    loss = TD3Loss(actor(), qvalue(), action_spec=SPEC)
    assert loss._target_names == ["actor_network", "qvalue_network"]
    with torch.no_grad():
        loss.actor_network.module[0].bias.add_(1.0)
    before = loss.target_actor_network_params["module", "0", "bias"].clone()
    SoftUpdate(loss, tau=0.5).step()
    live = loss.actor_network.module[0].bias.detach()
    torch.testing.assert_close(loss.target_actor_network_params["module", "0", "bias"], 0.5 * before + 0.5 * live)
    HardUpdate(loss, value_network_update_interval=1).step()
    torch.testing.assert_close(
        loss.target_qvalue_network_params["module", "net", "0", "weight"],
        loss.qvalue_network_params["module", "net", "0", "weight"].detach(),
    )


# ------------------------------------------------------------------------------ errors
def test_constructor_errors():
    with pytest.raises(ValueError, match="exactly one of action_spec"):
        TD3Loss(actor(), qvalue())
    with pytest.raises(ValueError, match="exactly one of action_spec"):
        TD3Loss(actor(), qvalue(), action_spec=SPEC, bounds=(-1, 1))
    with pytest.raises(ValueError, match=r"must be Bounded.*got Unbounded"):
        TD3Loss(actor(), qvalue(), action_spec=Unbounded(shape=(ACT,)))
    with pytest.raises(ValueError, match="low bound is above"):
        TD3Loss(actor(), qvalue(), bounds=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"actor_network must write 'action'.*out_keys are \['loc'\]"):
        TD3Loss(TensorDictModule(actor_net(), ["observation"], ["loc"]), qvalue(), action_spec=SPEC)
    with pytest.raises(ValueError, match="qvalue_network must read 'action'"):
        TD3Loss(actor(), ValueOperator(nn.Linear(OBS, 1)), action_spec=SPEC)
    with pytest.raises(ValueError, match="policy_noise and noise_clip must be >= 0"):
        TD3Loss(actor(), qvalue(), action_spec=SPEC, noise_clip=-1.0)
    with pytest.raises(TypeError, match="make_value_estimator"):
        TD3Loss(actor(), qvalue(), action_spec=SPEC, gamma=0.99)


@pytest.mark.parametrize("key", ["observation", "action", ("next", "observation"), ("next", "reward")])
def test_a_missing_input_is_named(key):
    data = batch()
    del data[key]
    with pytest.raises(KeyError, match=re.escape(f"key {key!r} not found in the input")):
        TD3Loss(actor(), qvalue(), action_spec=SPEC)(data)


# ------------------------------------------------------------------------------ TorchRL
def _torchrl_pair(share: bool = True, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.data import Bounded as TRLBounded
        from torchrl.modules import Actor as TRLActor
        from torchrl.modules import ValueOperator as TRLValue
        from torchrl.objectives import TD3Loss as TRLTD3
    net, q = actor_net(), CatQ()
    spec = TRLBounded(-torch.ones(ACT), torch.ones(ACT), (ACT,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = TRLTD3(
            TRLActor(net, in_keys=["observation"]),
            TRLValue(q, in_keys=["observation", "action"]),
            action_spec=spec,
            **kwargs,
        )
    ours = TD3Loss(actor(net if share else copy.deepcopy(net)), qvalue(q), action_spec=SPEC, **kwargs)
    with torch.no_grad():
        theirs.target_qvalue_network_params.apply_(lambda t: t.add_(0.05 * torch.randn_like(t)))
        ours.qvalue_network_params.data.update_(theirs.qvalue_network_params.data)
        ours.target_qvalue_network_params.data.update_(theirs.target_qvalue_network_params.data)
        if kwargs.get("delay_actor", True):
            theirs.target_actor_network_params.apply_(lambda t: t.add_(0.05 * torch.randn_like(t)))
            ours.target_actor_network_params.data.update_(theirs.target_actor_network_params.data)
    return theirs, ours, net


def _estimator(loss, name: str) -> None:
    from torchrl.objectives import ValueEstimators as TRLEstimators

    hp = {"gamma": 0.9, **({"lmbda": 0.8} if name == "td_lambda" else {})}
    if type(loss).__module__.startswith("torchrl"):
        names = {"td0": TRLEstimators.TD0, "td1": TRLEstimators.TD1, "td_lambda": TRLEstimators.TDLambda}
        loss.make_value_estimator(names[name], **hp)
    else:
        loss.make_value_estimator(name, **hp)


@pytest.mark.parametrize("estimator", ["td0", "td1", "td_lambda"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"delay_actor": False, "policy_noise": 0.5, "noise_clip": 0.2, "loss_function": "l2"},
        {"num_qvalue_nets": 3, "reduction": "sum"},
    ],
)
def test_td3_matches_torchrl(estimator, options):
    pytest.importorskip("torchrl")
    theirs, ours, net = _torchrl_pair(**options)
    _estimator(theirs, estimator)
    _estimator(ours, estimator)
    data = batch().set("priority_weight", torch.rand(B) + 0.5)
    d_theirs, d_ours = data.clone(), data.clone()
    torch.manual_seed(1)
    out_theirs = theirs(d_theirs)
    torch.manual_seed(1)
    out_ours = ours(d_ours)
    for key in theirs.out_keys:
        torch.testing.assert_close(out_ours[key], out_theirs[key], atol=1e-5, rtol=1e-5, msg=key)
    torch.testing.assert_close(d_ours["td_error"], d_theirs["td_error"], atol=1e-5, rtol=1e-5)
    g_theirs = torch.autograd.grad(out_theirs["loss_actor"], list(net.parameters()))
    g_ours = torch.autograd.grad(out_ours["loss_actor"], list(net.parameters()))
    q_theirs = list(theirs.qvalue_network_params.values(True, True))
    q_ours = list(ours.qvalue_network_params.values(True, True))
    g_theirs += torch.autograd.grad(out_theirs["loss_qvalue"], q_theirs)
    g_ours += torch.autograd.grad(out_ours["loss_qvalue"], q_ours)
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_td3_training_steps_match_torchrl():
    """Three SGD steps with delayed actor updates and soft target updates end at the same weights."""
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.objectives import SoftUpdate as TRLSoftUpdate
    theirs, ours, net_theirs = _torchrl_pair(share=False)
    updaters = [TRLSoftUpdate(theirs, tau=0.1), SoftUpdate(ours, tau=0.1)]
    updaters[1].init_()  # TorchRL's updater copies the live parameters into the targets when built
    optims = [torch.optim.SGD(loss.parameters(), lr=0.05) for loss in (theirs, ours)]
    for step in range(4):
        for loss, optim, updater in zip((theirs, ours), optims, updaters):
            torch.manual_seed(step)
            out = loss(batch(seed=step))
            optim.zero_grad()
            (out["loss_qvalue"] + (out["loss_actor"] if step % 2 == 0 else 0)).backward()
            optim.step()
            if step % 2 == 0:
                updater.step()
    for a, b in zip(ours.actor_network.parameters(), net_theirs.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for key, value in ours.target_qvalue_network_params.items(True, True):
        torch.testing.assert_close(value, theirs.target_qvalue_network_params.get(key), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("options", [{}, {"num_qvalue_nets": 3, "reduction": "none", "loss_function": "l2"}])
def test_the_split_losses_match_torchrl_s(options):
    """actor_loss / value_loss, as TorchRL's TD3 example calls them: values, metadata and gradients."""
    pytest.importorskip("torchrl")
    theirs, ours, net = _torchrl_pair(**options)
    _estimator(theirs, "td0")
    _estimator(ours, "td0")
    data = batch().set("priority_weight", torch.rand(B) + 0.5)
    d_theirs, d_ours = data.clone(), data.clone()
    torch.manual_seed(3)
    q_theirs, info_theirs = theirs.value_loss(d_theirs)
    a_theirs, actor_info_theirs = theirs.actor_loss(d_theirs)
    torch.manual_seed(3)
    q_ours, info_ours = ours.value_loss(d_ours)
    a_ours, actor_info_ours = ours.actor_loss(d_ours)
    assert set(info_ours) == set(info_theirs)
    assert set(actor_info_ours) == set(actor_info_theirs)
    for key in info_theirs:
        torch.testing.assert_close(info_ours[key], info_theirs[key], atol=1e-5, rtol=1e-5, msg=key)
    torch.testing.assert_close(
        actor_info_ours["state_action_value_actor"], actor_info_theirs["state_action_value_actor"], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(q_ours, q_theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a_ours, a_theirs, atol=1e-5, rtol=1e-5)
    assert "td_error" not in d_ours.keys()  # only forward writes the priority
    g_theirs = torch.autograd.grad(a_theirs.sum(), list(net.parameters()))
    g_ours = torch.autograd.grad(a_ours.sum(), list(net.parameters()))
    g_theirs += torch.autograd.grad(q_theirs.sum(), list(theirs.qvalue_network_params.values(True, True)))
    g_ours += torch.autograd.grad(q_ours.sum(), list(ours.qvalue_network_params.values(True, True)))
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_forward_is_the_two_split_losses_with_the_same_draws():
    loss = TD3Loss(actor(), qvalue(), action_spec=SPEC)
    data = batch()
    torch.manual_seed(5)
    out = loss(data.clone())
    torch.manual_seed(5)
    loss_actor, _ = loss.actor_loss(data)
    loss_qvalue, info = loss.value_loss(data)
    torch.testing.assert_close(out["loss_actor"], loss_actor)
    torch.testing.assert_close(out["loss_qvalue"], loss_qvalue)
    torch.testing.assert_close(out["target_value"], info["target_value"])
    with pytest.raises(KeyError, match=re.escape("key 'observation' not found in the input")):
        loss.actor_loss(TensorDict(batch_size=[4]))


# ------------------------------------------------------------------------------ learning
@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_td3_learns_the_tracking_task(one_thread):
    """Act to match the observation's first coordinate (ContinuousActionMock), from 2,048 frames."""
    env = ContinuousActionMock(obs_dim=2, action_dim=1, max_steps=10, batch_size=[8])
    env.set_seed(0)
    policy = Actor(nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 1), nn.Tanh()), in_keys=["observation"])
    explore = TensorDictSequential(policy, AdditiveGaussianModule(env.action_spec, sigma_init=0.3, sigma_end=0.3))
    q = ValueOperator(CatQ(2, 1, 64), in_keys=["observation", "action"])
    loss = TD3Loss(policy, q, bounds=(-1.0, 1.0))  # env.action_spec has the env batch dim
    loss.make_value_estimator("td0", gamma=0.5)
    updater = SoftUpdate(loss, tau=0.05)
    optim = torch.optim.Adam(loss.parameters(), lr=3e-3)
    buffer = ReplayBuffer(storage=LazyTensorStorage(4096), batch_size=128)
    collector = SyncDataCollector(env, explore, frames_per_batch=64, total_frames=2048)
    for data in collector:
        buffer.extend(data.reshape(-1))
        for update in range(16):
            out = loss(buffer.sample())
            optim.zero_grad()
            (out["loss_qvalue"] + (out["loss_actor"] if update % 2 == 0 else 0)).backward()
            optim.step()
            if update % 2 == 0:
                updater.step()
    collector.shutdown()
    obs = torch.linspace(-0.9, 0.9, 50).unsqueeze(-1).expand(50, 2).clone()
    with torch.no_grad():
        action = policy(TensorDict({"observation": obs}, [50]))["action"]
    error = (action[:, 0] - obs[:, 0]).abs().mean().item()
    assert error < 0.1, error  # a policy that ignores the observation scores about 0.45


@pytest.mark.slow
def test_td3_swings_the_pendulum_up_within_8k_frames(one_thread):
    """TorchRL's TD3 recipe on Pendulum-v1 (an MLP then TanhModule, Gaussian exploration noise,
    value_loss every update and actor_loss every second one) lifts the deterministic policy's
    return from about -1,000 or below to above -500 within 8,000 frames, 1,000 of them random
    (64-unit networks, so that it takes ~40 s of CPU). Seeds 0-4 of this test reached -81, -52,
    -360, -60 and -62 (from -1,337, -957, -1,049, -1,209 and -1,049); the 5-seed figure at full
    size is benchmarks/bench_sac_td3_pendulum.py's."""
    pytest.importorskip("gymnasium")
    from tdrl.envs.libs.gym import GymEnv
    from tdrl.envs.utils import ExplorationType, set_exploration_type
    from tdrl.modules import MLP, TanhModule

    torch.manual_seed(0)
    env = GymEnv("Pendulum-v1")
    env.set_seed(0)
    spec = env.action_spec
    net = MLP(in_features=3, out_features=1, num_cells=[64, 64], activation_class=nn.ReLU)
    policy = TensorDictSequential(
        TensorDictModule(net, in_keys=["observation"], out_keys=["param"]),
        TanhModule(["param"], ["action"], spec=spec),
    )
    explore = TensorDictSequential(policy, AdditiveGaussianModule(spec, sigma_init=1.0, sigma_end=1.0, std=0.1))
    q = ValueOperator(
        MLP(in_features=4, out_features=1, num_cells=[64, 64], activation_class=nn.ReLU),
        in_keys=["observation", "action"],
    )
    loss = TD3Loss(policy, q, action_spec=spec, loss_function="l2")
    loss.make_value_estimator("td0", gamma=0.98)
    updater = SoftUpdate(loss, tau=0.005)
    actor_optim = torch.optim.Adam(net.parameters(), lr=1e-3)
    critic_optim = torch.optim.Adam(loss.qvalue_network_params.values(True, True), lr=1e-3)
    buffer = ReplayBuffer(storage=LazyTensorStorage(8000), batch_size=128)
    collector = SyncDataCollector(env, explore, frames_per_batch=50, total_frames=8000, init_random_frames=1000)
    eval_env = GymEnv("Pendulum-v1")

    def evaluate() -> float:
        eval_env.set_seed(1000)
        with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
            return sum(eval_env.rollout(200, policy)["next", "reward"].sum().item() for _ in range(5)) / 5

    before = evaluate()
    updates = 0
    for data in collector:
        buffer.extend(data.reshape(-1))
        if len(buffer) <= 1000:
            continue
        for _ in range(data.numel()):  # one update per frame
            sample = buffer.sample()
            loss_qvalue, _ = loss.value_loss(sample)
            critic_optim.zero_grad()
            loss_qvalue.backward()
            critic_optim.step()
            updates += 1
            if updates % 2 == 0:
                loss_actor, _ = loss.actor_loss(sample)
                actor_optim.zero_grad()
                loss_actor.backward()
                actor_optim.step()
                updater.step()
    collector.shutdown()
    after = evaluate()
    assert updates == 7000
    assert before < -800, before  # an untrained policy does not swing the pendulum up
    assert after > -500, (before, after)
