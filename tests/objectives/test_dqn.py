"""DQNLoss and DistributionalDQNLoss: TorchRL parity, options, keys, targets, priorities, bad input, learning."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import nn

from tdrl.data.replay_buffers import TensorDictPrioritizedReplayBuffer
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.modules import MLP, DistributionalQValueActor, QValueActor, QValueModule
from tdrl.objectives import DistributionalDQNLoss, DQNLoss, HardUpdate, SoftUpdate
from tdrl.objectives.value import TD0Estimator, TD1Estimator, TDLambdaEstimator
from tdrl.specs import Categorical, OneHot, Unbounded

OBS, N_ACT, N = 4, 3, 24
SPACES = ["one_hot", "categorical"]


def q_net() -> nn.Module:
    return nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, N_ACT))


def spec_of(space: str):
    return OneHot(N_ACT) if space == "one_hot" else Categorical(N_ACT)


def transitions(space: str, n: int = N, seed: int = 0) -> TensorDict:
    """``n`` time-ordered steps of a few episodes: a termination at 7, a truncation at 15."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n + 1, OBS, generator=g)
    idx = torch.randint(N_ACT, (n,), generator=g)
    action = nn.functional.one_hot(idx, N_ACT) if space == "one_hot" else idx
    terminated = torch.zeros(n, 1, dtype=torch.bool)
    truncated = torch.zeros(n, 1, dtype=torch.bool)
    terminated[7] = True
    truncated[15] = True
    return TensorDict(
        {
            "observation": obs[:-1],
            "action": action,
            "next": {
                "observation": obs[1:],
                "reward": torch.randn(n, 1, generator=g),
                "done": terminated | truncated,
                "terminated": terminated,
                "truncated": truncated,
            },
        },
        [n],
    )


def perturb(module: nn.Module, scale: float = 0.3) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def grads(module: nn.Module) -> list[torch.Tensor]:
    out = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    return out


# --- TorchRL parity ------------------------------------------------------------------------------
def _torchrl():
    pytest.importorskip("torchrl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchrl.data as trl_data
        import torchrl.modules as trl_modules
        import torchrl.objectives as trl_objectives
    return trl_data, trl_modules, trl_objectives


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("double_dqn", [False, True])
@pytest.mark.parametrize("estimator", ["td0", "td1", "td_lambda"])
@pytest.mark.parametrize("loss_function", ["l2", "l1", "smooth_l1"])
def test_dqn_matches_torchrl(space, double_dqn, estimator, loss_function):
    trl_data, trl_modules, trl_objectives = _torchrl()
    torch.manual_seed(0)
    net = q_net()
    trl_spec = trl_data.OneHot(N_ACT) if space == "one_hot" else trl_data.Categorical(N_ACT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = trl_objectives.DQNLoss(
            trl_modules.QValueActor(net, in_keys=["observation"], spec=trl_spec),
            loss_function=loss_function,
            double_dqn=double_dqn,
            action_space=trl_spec,
        )
        member = {"td0": "TD0", "td1": "TD1", "td_lambda": "TDLambda"}[estimator]
        hyperparams = {"lmbda": 0.8} if estimator == "td_lambda" else {}
        theirs.make_value_estimator(getattr(trl_objectives.ValueEstimators, member), gamma=0.9, **hyperparams)
    ours = DQNLoss(
        QValueActor(net, in_keys=["observation"], spec=spec_of(space)),
        loss_function=loss_function,
        double_dqn=double_dqn,
    )
    ours.make_value_estimator(estimator, gamma=0.9, **hyperparams)
    perturb(net)  # the targets keep the construction-time weights: live and target differ
    data = transitions(space)

    trl_data_in = data.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs(trl_data_in)["loss"]
    expected.backward()
    expected_grads = grads(net)
    our_data = data.clone()
    got = ours(our_data)["loss"]
    got.backward()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for g, e in zip(grads(net), expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(our_data["td_error"], trl_data_in["td_error"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_dqn_reductions_and_importance_weights_match_torchrl(reduction, weighted):
    trl_data, trl_modules, trl_objectives = _torchrl()
    net = q_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = trl_objectives.DQNLoss(
            trl_modules.QValueActor(net, in_keys=["observation"], spec=trl_data.OneHot(N_ACT)),
            action_space="one_hot",
            reduction=reduction,
        )
    ours = DQNLoss(QValueActor(net, spec=OneHot(N_ACT)), reduction=reduction)
    perturb(net)
    data = transitions("one_hot")
    if weighted:
        data["priority_weight"] = torch.rand(N) + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs(data.clone())["loss"]
    got = ours(data.clone())["loss"]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_dqn_without_a_target_network_matches_torchrl():
    trl_data, trl_modules, trl_objectives = _torchrl()
    net = q_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = trl_objectives.DQNLoss(
            trl_modules.QValueActor(net, in_keys=["observation"], spec=trl_data.Categorical(N_ACT)),
            action_space="categorical",
            delay_value=False,
        )
        expected = theirs(transitions("categorical"))["loss"]
    expected.backward()
    expected_grads = grads(net)
    got = DQNLoss(QValueActor(net, spec=Categorical(N_ACT)), delay_value=False)(transitions("categorical"))["loss"]
    got.backward()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for g, e in zip(grads(net), expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


ATOMS = 11


def dist_net() -> nn.Module:
    return MLP(in_features=OBS, out_features=(ATOMS, N_ACT), num_cells=[16])


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("delay_value", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_distributional_dqn_matches_torchrl(space, delay_value, reduction):
    trl_data, trl_modules, trl_objectives = _torchrl()
    torch.manual_seed(0)
    net = dist_net()
    support = torch.linspace(-3.0, 3.0, ATOMS)
    trl_spec = trl_data.OneHot(N_ACT) if space == "one_hot" else trl_data.Categorical(N_ACT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = trl_objectives.DistributionalDQNLoss(
            trl_modules.DistributionalQValueActor(net, support=support, in_keys=["observation"], spec=trl_spec),
            gamma=0.9,
            delay_value=delay_value,
            reduction=reduction,
        )
    ours = DistributionalDQNLoss(
        DistributionalQValueActor(net, support=support, spec=spec_of(space)),
        gamma=0.9,
        delay_value=delay_value,
        reduction=reduction,
    )
    perturb(net)
    data = transitions(space)
    data["next", "reward"] = data["next", "reward"] * 3  # some shifted atoms fall off the support
    data["next", "reward"][3] = 0.0  # r + gamma * z exactly on the grid: the l == u case
    trl_in = data.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs(trl_in)["loss"]
    expected.sum().backward()
    expected_grads = grads(net)
    our_in = data.clone()
    got = ours(our_in)["loss"]
    got.sum().backward()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for g, e in zip(grads(net), expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(our_in["td_error"], trl_in["td_error"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("space", SPACES)
def test_distributional_actor_acts_as_torchrls(space):
    trl_data, trl_modules, _ = _torchrl()
    net = dist_net()
    support = torch.linspace(-3.0, 3.0, ATOMS)
    trl_spec = trl_data.OneHot(N_ACT) if space == "one_hot" else trl_data.Categorical(N_ACT)
    theirs = trl_modules.DistributionalQValueActor(net, support=support, in_keys=["observation"], spec=trl_spec)
    ours = DistributionalQValueActor(net, support=support, spec=spec_of(space))
    data = TensorDict(observation=torch.randn(50, OBS), batch_size=[50])
    expected, got = theirs(data.clone()), ours(data.clone())
    torch.testing.assert_close(got["action_value"], expected["action_value"])
    assert torch.equal(got["action"].long(), expected["action"].long())


# --- semantics checked by hand ---------------------------------------------------------------------
def test_td0_target_bootstraps_on_truncation_but_not_on_termination():
    net = nn.Linear(OBS, N_ACT)
    loss = DQNLoss(net, action_space="categorical", delay_value=False, reduction="none", loss_function="l1")
    loss.make_value_estimator("td0", gamma=0.5)
    data = transitions("categorical")
    with torch.no_grad():
        q = net(data["observation"]).gather(-1, data["action"].unsqueeze(-1)).squeeze(-1)
        next_max = net(data["next", "observation"]).max(-1).values
    target = data["next", "reward"].squeeze(-1) + 0.5 * next_max * (~data["next", "terminated"].squeeze(-1))
    out = loss(data)["loss"]
    torch.testing.assert_close(out, (q - target).abs())
    assert target[15] != data["next", "reward"][15, 0]  # truncated: bootstrapped
    assert target[7] == data["next", "reward"][7, 0]  # terminated: not
    torch.testing.assert_close(data["td_error"].squeeze(-1), (q - target) ** 2)


def test_double_dqn_values_the_online_argmax_with_the_target_network():
    net = nn.Linear(OBS, N_ACT)
    loss = DQNLoss(net, action_space="categorical", double_dqn=True, reduction="none", loss_function="l1")
    loss.make_value_estimator("td0", gamma=1.0)
    target_net = nn.Linear(OBS, N_ACT)
    target_net.load_state_dict(net.state_dict())
    perturb(net)
    data = transitions("categorical")
    with torch.no_grad():
        q = net(data["observation"]).gather(-1, data["action"].unsqueeze(-1)).squeeze(-1)
        next_obs = data["next", "observation"]
        a_star = net(next_obs).argmax(-1, keepdim=True)
        next_v = target_net(next_obs).gather(-1, a_star).squeeze(-1)
    target = data["next", "reward"].squeeze(-1) + next_v * (~data["next", "terminated"].squeeze(-1))
    torch.testing.assert_close(loss(data)["loss"], (q - target).abs())


def test_the_estimator_follows_make_value_estimator_and_the_constructor_gamma():
    loss = DQNLoss(nn.Linear(OBS, N_ACT), action_space="one_hot", gamma=0.7)
    assert isinstance(loss.value_estimator, TD0Estimator)
    assert loss.value_estimator.gamma.item() == pytest.approx(0.7)
    assert isinstance(loss.make_value_estimator("td1").value_estimator, TD1Estimator)
    est = loss.make_value_estimator("td_lambda", lmbda=0.5).value_estimator
    assert isinstance(est, TDLambdaEstimator)
    assert est.lmbda.item() == 0.5
    assert est.tensor_keys.value == "chosen_action_value"
    with pytest.raises(ValueError, match="does not support the GAE estimator"):
        loss.make_value_estimator("gae")


def test_set_keys_renames_what_the_loss_reads_and_writes():
    net = QValueActor(nn.Linear(OBS, N_ACT), spec=Categorical(N_ACT), action_key="act")
    loss = DQNLoss(net)
    with pytest.raises(KeyError, match=r"reads \['action'\]"):
        DQNLoss(net, double_dqn=True)  # the network writes its greedy action to 'act'
    loss.set_keys(action="act", reward="r", done="d", terminated="t", priority="prio")
    assert loss.value_estimator.tensor_keys.reward == "r"
    data = transitions("categorical")
    data.rename_key_("action", "act")
    for old, new in (("reward", "r"), ("done", "d"), ("terminated", "t")):
        data["next"].rename_key_(old, new)
    loss(data)
    assert "prio" in data.keys()
    assert "td_error" not in data.keys()
    assert "act" in loss.in_keys
    assert ("next", "r") in loss.in_keys
    with pytest.raises(ValueError, match="unknown key name 'bogus'"):
        loss.set_keys(bogus="x")
    with pytest.raises(KeyError, match=r"reads \['q'\] from it"):
        loss.set_keys(action_value="q")


def test_priority_key_in_the_constructor():
    loss = DQNLoss(nn.Linear(OBS, N_ACT), action_space="categorical", priority_key="prio")
    data = transitions("categorical")
    loss(data)
    assert data["prio"].shape == (N, 1)


def test_a_module_writing_action_values_or_a_qvalue_sequence_is_accepted():
    data = transitions("one_hot")
    plain = TensorDictModule(nn.Linear(OBS, N_ACT), ["observation"], ["action_value"])
    loss = DQNLoss(plain, action_space=OneHot(N_ACT), double_dqn=True)
    assert loss.action_space == "one_hot"
    loss(data.clone())["loss"].backward()
    seq = TensorDictSequential(plain, QValueModule(spec=OneHot(N_ACT)))
    loss = DQNLoss(seq)  # the action space is read from the QValueModule inside
    assert loss.value_network is seq
    loss(data.clone())["loss"].backward()


def test_soft_and_hard_updates_drive_the_target_parameters():
    net = nn.Linear(OBS, N_ACT)
    loss = DQNLoss(net, action_space="categorical")
    target = loss.target_value_network_params
    before = target.clone()
    perturb(net)
    updater = SoftUpdate(loss, eps=0.75)
    updater.step()
    live = loss.value_network_params.data
    expected = before.apply(lambda t, s: 0.75 * t + 0.25 * s, live)
    assert all(torch.allclose(target.get(k), expected.get(k)) for k in target.keys(True, True))
    hard = HardUpdate(loss, value_network_update_interval=2)
    hard.step()
    assert not torch.equal(target["module", "0", "module", "weight"], net.weight)
    hard.step()
    assert torch.equal(target["module", "0", "module", "weight"], net.weight)
    with pytest.raises(ValueError, match="has no target parameters"):
        SoftUpdate(DQNLoss(net, action_space="categorical", delay_value=False), eps=0.9)


def test_the_target_network_changes_the_loss_only_through_its_parameters():
    net = nn.Linear(OBS, N_ACT)
    loss = DQNLoss(net, action_space="categorical")
    data = transitions("categorical")
    first = loss(data.clone())["loss"]
    with torch.no_grad():
        loss.target_value_network_params.apply_(lambda t: t.add_(1.0))
    second = loss(data.clone())["loss"]
    assert not torch.allclose(first, second)
    assert all(p.grad is None for p in net.parameters())


def test_the_td_error_feeds_a_prioritized_buffer():
    rb = TensorDictPrioritizedReplayBuffer(alpha=1.0, beta=1.0, storage=LazyTensorStorage(100), batch_size=16)
    rb.extend(transitions("categorical", n=64))
    loss = DQNLoss(nn.Linear(OBS, N_ACT), action_space="categorical")
    sample = rb.sample()
    assert "priority_weight" in sample.keys()
    loss(sample)
    assert sample["td_error"].shape == (16, 1)
    rb.update_tensordict_priority(sample)
    assert rb.sampler.default_priority == pytest.approx(sample["td_error"].max().item())  # the largest one seen


def test_use_prioritized_weights_true_needs_the_weights():
    loss = DQNLoss(nn.Linear(OBS, N_ACT), action_space="categorical", use_prioritized_weights=True)
    with pytest.raises(KeyError, match="'priority_weight' not found"):
        loss(transitions("categorical"))
    data = transitions("categorical")
    data["priority_weight"] = torch.zeros(N)
    data["priority_weight"][0] = 1.0
    net = loss.value_network
    per_sample = DQNLoss(net, reduction="none", delay_value=False, use_prioritized_weights=False)(data.clone())["loss"]
    weighted_per_sample = DQNLoss(net, reduction="none", delay_value=False)(data.clone())["loss"]
    torch.testing.assert_close(weighted_per_sample, per_sample * data["priority_weight"])
    weighted = DQNLoss(loss.value_network, use_prioritized_weights=True, delay_value=False)(data)["loss"]
    torch.testing.assert_close(weighted, per_sample[0])
    ignored = DQNLoss(loss.value_network, use_prioritized_weights=False, delay_value=False)(data)["loss"]
    torch.testing.assert_close(ignored, per_sample.mean())


def test_padding_of_split_trajectories_is_masked_out():
    net = nn.Linear(OBS, N_ACT)
    data = transitions("categorical")
    mask = torch.ones(N, 1, dtype=torch.bool)
    mask[-5:] = False
    data["collector", "mask"] = mask
    per_sample = DQNLoss(net, action_space="categorical", reduction="none")(data.clone())["loss"]
    assert (per_sample[-5:] == 0).all()
    mean = DQNLoss(net, action_space="categorical")(data)["loss"]
    torch.testing.assert_close(mean, per_sample[:-5].mean())


# --- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"loss_function": "huber"}, ValueError, r"loss_function='huber' is unknown"),
        ({"reduction": "max"}, ValueError, r"reduction='max' is unknown"),
        ({"double_dqn": True, "delay_value": False}, ValueError, "double_dqn=True needs delay_value=True"),
        ({"use_prioritized_weights": "yes"}, ValueError, "use_prioritized_weights must be"),
        ({"action_space": "continuous"}, ValueError, r"action_space='continuous' is unknown"),
        ({"action_space": Unbounded(shape=(3,))}, ValueError, "needs a discrete action space"),
        ({"action_space": "categorical"}, ValueError, r"contradicts the value network's action space 'one_hot'"),
    ],
)
def test_bad_constructor_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        DQNLoss(QValueActor(nn.Linear(OBS, N_ACT), spec=OneHot(N_ACT)), **kwargs)


def test_an_action_space_that_cannot_be_inferred_is_a_clear_error():
    with pytest.raises(ValueError, match=r"could not be read from the value network.*action_space='one_hot'"):
        DQNLoss(nn.Linear(OBS, N_ACT))
    with pytest.raises(TypeError, match=r"value_network must be an nn\.Module"):
        DQNLoss(lambda x: x, action_space="one_hot")
    with pytest.raises(KeyError, match="not the action values 'action_value'"):
        DQNLoss(TensorDictModule(nn.Linear(OBS, N_ACT), ["observation"], ["logits"]), action_space="one_hot")


def test_missing_entries_are_named():
    loss = DQNLoss(nn.Linear(OBS, N_ACT), action_space="categorical")
    data = transitions("categorical")
    with pytest.raises(KeyError, match=r"key 'action' not found in the input"):
        loss(data.exclude("action"))
    with pytest.raises(KeyError, match=r"reads \['observation'\] under 'next'"):
        loss(data.exclude(("next", "observation")))
    with pytest.raises(KeyError, match=r"reads \['observation'\] at the root"):
        loss(data.exclude("observation"))
    with pytest.raises(KeyError, match="'reward' not found"):
        loss(data.exclude(("next", "reward")))


def test_an_action_of_the_wrong_form_is_refused():
    data = transitions("categorical")
    with pytest.raises(ValueError, match=r"a one_hot action must have the shape of the action values"):
        DQNLoss(nn.Linear(OBS, N_ACT), action_space="one_hot")(data)
    data = transitions("one_hot")
    with pytest.raises(ValueError, match="A one-hot action needs action_space='one_hot'"):
        DQNLoss(nn.Linear(OBS, N_ACT), action_space="categorical")(data)
    data = transitions("categorical")
    data["action"] = data["action"].float()
    with pytest.raises(TypeError, match="must hold integer indices"):
        DQNLoss(nn.Linear(OBS, N_ACT), action_space="categorical")(data)


def test_distributional_bad_input():
    support = torch.linspace(-1, 1, ATOMS)
    actor = DistributionalQValueActor(dist_net(), support=support, spec=OneHot(N_ACT))
    with pytest.raises(TypeError, match="must be a DistributionalQValueActor"):
        DistributionalDQNLoss(nn.Linear(OBS, N_ACT), gamma=0.9)
    with pytest.raises(ValueError, match="supports only the TD0 estimator"):
        DistributionalDQNLoss(actor, gamma=0.9).make_value_estimator("td_lambda")
    loss = DistributionalDQNLoss(actor, gamma=0.9)
    with pytest.raises(ValueError, match=r"expected a \[B\] batch"):
        loss(transitions("one_hot").reshape(4, 6))
    with pytest.raises(ValueError, match="a one-hot action must have shape"):
        loss(transitions("categorical"))
    data = transitions("one_hot")
    data["next", "reward"][2] = float("nan")
    with pytest.raises(ValueError, match="holds NaN; check the rewards"):
        loss(data)
    with pytest.raises(ValueError, match="support must be a 1-D tensor"):
        DistributionalQValueActor(dist_net(), support=torch.tensor(1.0), spec=OneHot(N_ACT))


def test_distributional_gamma_from_make_value_estimator():
    support = torch.linspace(-1, 1, ATOMS)
    loss = DistributionalDQNLoss(DistributionalQValueActor(dist_net(), support=support, spec=OneHot(N_ACT)), gamma=0.9)
    loss.make_value_estimator("td0", gamma=0.5)
    assert loss.gamma.item() == 0.5
    data = transitions("one_hot")
    other = DistributionalDQNLoss(loss.value_network, gamma=0.5)
    other.target_value_network_params.update_(loss.target_value_network_params)
    torch.testing.assert_close(loss(data.clone())["loss"], other(data.clone())["loss"])


# --- learning --------------------------------------------------------------------------------------
def test_dqn_learns_the_identity_task():
    """Observe a one-hot class among K, get reward 1 for naming it (SB3's identity test)."""
    from tdrl.envs.utils import ExplorationType, set_exploration_type
    from tdrl.modules import EGreedyModule
    from tdrl.testing import IdentityEnv

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        env = IdentityEnv(n=4, episode_length=8, batch_size=(16,))
        actor = QValueActor(MLP(out_features=4, num_cells=[32], activation_class=nn.ReLU), spec=env.action_spec)
        actor(env.reset())
        policy = TensorDictSequential(actor, EGreedyModule(env.action_spec, eps_init=0.3, eps_end=0.3))
        loss = DQNLoss(actor, double_dqn=True)
        loss.make_value_estimator("td0", gamma=0.5)
        updater = SoftUpdate(loss, eps=0.9)
        optim = torch.optim.Adam(loss.parameters(), lr=1e-2)
        for _ in range(40):
            batch = env.rollout(16, policy, break_when_any_done=False)
            for _ in range(4):
                loss(batch)["loss"].backward()
                optim.step()
                optim.zero_grad()
                updater.step()
        with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
            ret = env.rollout(16, actor, break_when_any_done=False)["next", "reward"].mean().item()
        assert ret > 0.95
    finally:
        torch.set_num_threads(threads)


def test_the_target_network_follows_its_parameters_when_they_are_replaced():
    net = nn.Linear(OBS, N_ACT)
    loss = DQNLoss(net, action_space="categorical")
    online = DQNLoss(net, action_space="categorical", delay_value=False)
    perturb(net)
    data = transitions("categorical")
    before = loss(data.clone())["loss"]
    assert not torch.allclose(before, online(data.clone())["loss"])
    HardUpdate(loss, value_network_update_interval=1).step()  # in place: target == live
    torch.testing.assert_close(loss(data.clone())["loss"], online(data.clone())["loss"])
    loss.double()  # new target tensors
    online.double()
    data = data.apply(lambda t: t.double() if t.is_floating_point() else t)
    torch.testing.assert_close(loss(data.clone())["loss"], online(data.clone())["loss"])
