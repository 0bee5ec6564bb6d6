"""ProbabilisticActor, Actor and ValueOperator on plain TensorDicts."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import (
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
    TensorDictSequential,
)
from torch import nn

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import (
    Actor,
    Categorical,
    IndependentNormal,
    NormalParamExtractor,
    ProbabilisticActor,
    TanhNormal,
    ValueOperator,
    get_log_prob,
)
from tdrl.specs import Bounded, Composite
from tdrl.specs import Categorical as CategoricalSpec

OBS, ACT = 5, 2


@pytest.fixture(autouse=True)
def _seed():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


def seed_actor(bound_names=("min", "max"), low=-2.0, high=3.0, **kwargs):
    """The seed tutorial's actor: lazy MLP + NormalParamExtractor + TanhNormal."""
    spec = Bounded(low=torch.full((ACT,), low), high=torch.full((ACT,), high))
    net = nn.Sequential(
        nn.LazyLinear(16),
        nn.Tanh(),
        nn.LazyLinear(16),
        nn.Tanh(),
        nn.LazyLinear(2 * spec.shape[-1]),
        NormalParamExtractor(),
    )
    module = TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"])
    return ProbabilisticActor(
        module=module,
        spec=spec,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={bound_names[0]: spec.space.low, bound_names[1]: spec.space.high},
        return_log_prob=True,
        **kwargs,
    )


def obs_td(*batch):
    return TensorDict(observation=torch.randn(*batch, OBS), batch_size=list(batch))


@pytest.mark.parametrize("names", [("min", "max"), ("low", "high")])
def test_seed_actor_writes_action_and_log_prob(names):
    actor = seed_actor(names)
    assert isinstance(actor, ProbabilisticTensorDictSequential)
    td = actor(obs_td())
    assert td["action"].shape == (ACT,)
    assert td["sample_log_prob"].shape == ()
    assert td["action_log_prob"] is td["sample_log_prob"]
    assert set(actor.out_keys) >= {"loc", "scale", "action", "sample_log_prob"}
    assert actor.log_prob_key == "sample_log_prob"


@pytest.mark.parametrize("etype", [ExplorationType.RANDOM, ExplorationType.MEAN, ExplorationType.DETERMINISTIC])
def test_actions_in_spec_and_log_prob_matches_get_dist(etype):
    actor = seed_actor()
    td = obs_td(64)
    with set_exploration_type(etype), torch.no_grad():
        actor(td)
        dist = actor.get_dist(td.clone())
    assert actor.spec["action"].is_in(td["action"])
    torch.testing.assert_close(dist.log_prob(td["action"]), td["sample_log_prob"])


def test_mean_is_deterministic_and_random_is_not():
    actor = seed_actor()
    td = obs_td(8)
    with torch.no_grad():
        with set_exploration_type(ExplorationType.MEAN):
            a, b = actor(td.clone())["action"], actor(td.clone())["action"]
        with set_exploration_type(ExplorationType.MODE):
            c = actor(td.clone())["action"]
        with set_exploration_type(ExplorationType.RANDOM):
            r1, r2 = actor(td.clone())["action"], actor(td.clone())["action"]
    torch.testing.assert_close(a, b)
    assert not torch.equal(r1, r2)
    with torch.no_grad():
        dist = actor.get_dist(actor.module[0](td.clone()))
        # MEAN is the expectation of the action (as TorchRL), MODE the squashed location
        torch.testing.assert_close(a, dist.mean)
        torch.testing.assert_close(c, dist.deterministic_sample)
        # outside any block: the default interaction type (DETERMINISTIC, as TorchRL)
        torch.testing.assert_close(actor(td.clone())["action"], c)


def test_default_interaction_type_random():
    actor = seed_actor(default_interaction_type=ExplorationType.RANDOM)
    td = obs_td(4)
    with torch.no_grad():
        assert not torch.equal(actor(td.clone())["action"], actor(td.clone())["action"])


def test_lean_path_equals_tensordict_path():
    actor = seed_actor()
    td = obs_td(6)
    actor(td.clone())  # initialise the lazy layers (which draws from the RNG)
    for etype in (ExplorationType.RANDOM, ExplorationType.MEAN):
        with set_exploration_type(etype), torch.no_grad():
            torch.manual_seed(3)
            lean = actor(td.clone())
            torch.manual_seed(3)
            full = ProbabilisticTensorDictSequential.forward(actor, td.clone())
        for key in ("loc", "scale", "action", "sample_log_prob", "action_log_prob"):
            torch.testing.assert_close(lean[key], full[key])


def test_hook_on_inner_module_forces_full_path():
    actor = seed_actor()
    calls = []
    actor.module[0].register_forward_hook(lambda *args: calls.append(1))
    actor(obs_td())
    assert calls == [1]


def test_get_dist_for_losses_has_gradients():
    actor = seed_actor()
    td = obs_td(16)
    with torch.no_grad():
        actor(td)
    dist = actor.get_dist(td.exclude("loc", "scale"))
    lp = dist.log_prob(td["action"])
    lp.sum().backward()
    assert all(p.grad is not None for p in actor.parameters())
    torch.testing.assert_close(lp.detach(), td["sample_log_prob"])


def test_in_keys_as_dict():
    net = nn.Sequential(nn.Linear(OBS, 2 * ACT), NormalParamExtractor())
    module = TensorDictModule(net, in_keys=["observation"], out_keys=["mu", "sigma"])
    actor = ProbabilisticActor(
        module, in_keys={"loc": "mu", "scale": "sigma"}, distribution_class=IndependentNormal, return_log_prob=True
    )
    td = actor(obs_td(3))
    assert td["action"].shape == (3, ACT)
    assert td["sample_log_prob"].shape == (3,)


def test_composite_spec_and_safe_projection():
    spec = Composite(action=Bounded(-0.1, 0.1, shape=(ACT,)))
    net = nn.Sequential(nn.Linear(OBS, 2 * ACT), NormalParamExtractor())
    actor = ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=spec,
        safe=True,
        distribution_class=IndependentNormal,
    )
    with set_exploration_type(ExplorationType.RANDOM):
        td = actor(obs_td(100))
    assert td["action"].abs().max() <= 0.1
    assert actor.spec is spec


def test_custom_log_prob_key_and_no_alias():
    actor = seed_actor(log_prob_key="lp", log_prob_alias=None)
    td = actor(obs_td())
    assert "lp" in td.keys()
    assert "sample_log_prob" not in td.keys()
    assert "action_log_prob" not in td.keys()
    assert get_log_prob(td, "lp") is td["lp"]


def _group_actor(**kwargs):
    net = nn.Sequential(nn.Linear(OBS, 2 * ACT), NormalParamExtractor())
    return ProbabilisticActor(
        TensorDictModule(net, [("agents", "observation")], [("agents", "loc"), ("agents", "scale")]),
        in_keys=[("agents", "loc"), ("agents", "scale")],
        out_keys=[("agents", "action")],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
        **kwargs,
    )


def test_grouped_action_log_prob_goes_in_the_group():
    """An action under a group gets its per-agent log-prob in that group, where TorchRL writes it
    (("agents", "action_log_prob")), not at the root, where two groups' actors would collide."""
    actor = _group_actor()
    data = TensorDict({"agents": TensorDict(observation=torch.randn(4, 3, OBS), batch_size=[4, 3])}, [4])
    td = actor(data)
    assert actor.log_prob_key == ("agents", "sample_log_prob")
    assert td["agents", "sample_log_prob"].shape == (4, 3)
    assert td["agents", "action_log_prob"] is td["agents", "sample_log_prob"]
    assert "sample_log_prob" not in td.keys()
    assert "action_log_prob" not in td.keys()
    assert ("agents", "action_log_prob") in actor.out_keys
    dist = actor.get_dist(td)
    torch.testing.assert_close(dist.log_prob(td["agents", "action"]), td["agents", "sample_log_prob"])
    # keys the caller chose are kept
    data = TensorDict({"agents": TensorDict(observation=torch.randn(4, 3, OBS), batch_size=[4, 3])}, [4])
    own = _group_actor(log_prob_key="lp", log_prob_alias=None)(data)
    assert own["lp"].shape == (4, 3)
    assert ("agents", "action_log_prob") not in own.keys(True)


def test_grouped_action_log_prob_keys_match_torchrl():
    pytest.importorskip("torchrl")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.modules import ProbabilisticActor as TRLActor
        from torchrl.modules import TanhNormal as TRLTanhNormal
    net = nn.Sequential(nn.Linear(OBS, 2 * ACT), NormalParamExtractor())
    theirs = TRLActor(
        TensorDictModule(net, [("agents", "observation")], [("agents", "loc"), ("agents", "scale")]),
        in_keys=[("agents", "loc"), ("agents", "scale")],
        out_keys=[("agents", "action")],
        distribution_class=TRLTanhNormal,
        return_log_prob=True,
    )
    data = TensorDict({"agents": TensorDict(observation=torch.randn(4, 3, OBS), batch_size=[4, 3])}, [4])
    ref = theirs(data.clone())
    ours = _group_actor()(data.clone())
    for key in ref.keys(True, True):
        assert key in ours.keys(True, True), key
        assert ours.get(key).shape == ref.get(key).shape, key


def test_get_log_prob_reads_either_name():
    td = TensorDict(sample_log_prob=torch.ones(2), batch_size=[2])
    assert get_log_prob(td) is td["sample_log_prob"]
    with pytest.raises(KeyError, match="return_log_prob=True"):
        get_log_prob(TensorDict())


def test_categorical_actor_deterministic_is_argmax():
    logits_net = TensorDictModule(nn.Linear(OBS, 4), in_keys=["observation"], out_keys=["logits"])
    actor = ProbabilisticActor(
        logits_net, in_keys=["logits"], distribution_class=Categorical, spec=CategoricalSpec(4), return_log_prob=True
    )
    td = obs_td(10)
    with set_exploration_type(ExplorationType.MEAN):
        actor(td)
    torch.testing.assert_close(td["action"], td["logits"].argmax(-1))


def test_works_with_a_tensordict_sequential_and_kwargs_call():
    seq = TensorDictSequential(
        TensorDictModule(nn.Linear(OBS, 8), in_keys=["observation"], out_keys=["hidden"]),
        TensorDictModule(
            nn.Sequential(nn.Linear(8, 2 * ACT), NormalParamExtractor()), in_keys=["hidden"], out_keys=["loc", "scale"]
        ),
    )
    actor = ProbabilisticActor(seq, in_keys=["loc", "scale"], distribution_class=TanhNormal)
    assert actor._lean_steps is not None
    assert len(actor._lean_steps) == 2
    assert actor(obs_td(3))["action"].shape == (3, ACT)


def test_unknown_module_type_uses_full_path():
    class Custom(TensorDictModule):
        pass

    net = nn.Sequential(nn.Linear(OBS, 2 * ACT), NormalParamExtractor())
    actor = ProbabilisticActor(
        Custom(net, ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        return_log_prob=True,
    )
    assert actor._lean_steps is None
    td = actor(obs_td(2))
    assert td["action_log_prob"] is td["sample_log_prob"]


# --- bad input ------------------------------------------------------------------------------
def test_missing_in_key_lists_keys_present():
    actor = seed_actor()
    actor(obs_td())  # initialise the lazy layers
    with pytest.raises(KeyError, match=r"'observation'.*\['obs'\]"):
        actor(TensorDict(obs=torch.randn(OBS)))


def test_missing_distribution_param_lists_keys_present():
    actor = seed_actor()
    with pytest.raises(KeyError, match=r"'loc'.*keys are \['action'"):
        actor.dist_module.get_dist(TensorDict(action=torch.zeros(ACT)))


def test_unknown_distribution_kwarg_raises():
    module = TensorDictModule(nn.Linear(OBS, 2 * ACT), in_keys=["observation"], out_keys=["loc"])
    with pytest.raises(TypeError, match=r"'lowest'.*TanhNormal"):
        ProbabilisticActor(
            module, in_keys=["loc", "scale"], distribution_class=TanhNormal, distribution_kwargs={"lowest": -1.0}
        )
    with pytest.raises(TypeError, match=r"in_key 'mu'"):
        ProbabilisticActor(module, in_keys=["mu", "scale"], distribution_class=TanhNormal)
    with pytest.raises(TypeError, match=r"'temperature'"):
        ProbabilisticActor(
            module,
            in_keys=["loc", "scale"],
            distribution_class=torch.distributions.Normal,
            distribution_kwargs={"temperature": 1.0},
        )


def test_low_not_below_high_raises_at_construction():
    with pytest.raises(ValueError, match="low must be < high"):
        seed_actor(low=1.0, high=1.0)
    module = TensorDictModule(nn.Linear(OBS, 2 * ACT), in_keys=["observation"], out_keys=["loc"])
    with pytest.raises(ValueError, match="low must be < high"):
        ProbabilisticActor(
            module,
            in_keys=["loc", "scale"],
            distribution_class=TanhNormal,
            distribution_kwargs={"low": torch.tensor([0.0, 2.0]), "high": torch.tensor([1.0, 1.0])},
        )


def test_spec_shape_mismatch_raises_on_first_call():
    spec = Bounded(-1.0, 1.0, shape=(3,))
    net = nn.Sequential(nn.Linear(OBS, 2 * ACT), NormalParamExtractor())
    actor = ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["loc", "scale"]),
        spec=spec,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
    )
    with pytest.raises(ValueError, match=r"shape \(2,\).*spec has shape \(3,\).*2 \* 3"):
        actor(obs_td())


def test_safe_without_spec_and_bad_module_raise():
    module = TensorDictModule(nn.Linear(OBS, ACT), in_keys=["observation"], out_keys=["loc"])
    with pytest.raises(ValueError, match="spec"):
        ProbabilisticActor(module, in_keys=["param"], safe=True)
    with pytest.raises(TypeError, match="TensorDictModule"):
        ProbabilisticActor(nn.Linear(OBS, ACT), in_keys=["loc"])
    with pytest.raises(TypeError, match="distribution_kwargs"):
        ProbabilisticActor(module, in_keys=["loc"], low=-1.0)


# --- ValueOperator and Actor -------------------------------------------------------------------
def test_value_operator_keys():
    value = ValueOperator(nn.Linear(OBS, 1), in_keys=["observation"])
    td = value(obs_td(4))
    assert td["state_value"].shape == (4, 1)
    q = ValueOperator(lambda o, a: torch.cat([o, a], -1).sum(-1, keepdim=True), in_keys=["observation", "action"])
    assert q.out_keys == ["state_action_value"]
    td = obs_td(3).set("action", torch.ones(3, ACT))
    torch.testing.assert_close(q(td)["state_action_value"], td["observation"].sum(-1, keepdim=True) + ACT)


def test_value_operator_lazy_seed_usage_and_grad():
    value_net = nn.Sequential(nn.LazyLinear(16), nn.Tanh(), nn.LazyLinear(1))
    value = ValueOperator(module=value_net, in_keys=["observation"])
    td = value(obs_td(7))
    td["state_value"].sum().backward()
    assert all(p.grad is not None for p in value.parameters())


def test_value_operator_missing_key():
    value = ValueOperator(nn.Linear(OBS, 1))
    with pytest.raises(KeyError, match=r"'observation'.*\['pixels'\]"):
        value(TensorDict(pixels=torch.zeros(3)))


def test_actor_safe_projection_and_tensordict_semantics():
    spec = Bounded(-1.0, 1.0, shape=(ACT,))
    actor = Actor(nn.Linear(OBS, ACT), spec=spec, safe=True)
    td = obs_td(20)
    td["observation"] *= 100
    actor(td)
    assert spec.is_in(td["action"])
    assert actor.spec["action"] is spec
    plain = Actor(nn.Linear(OBS, ACT))
    assert plain(obs_td(2))["action"].shape == (2, ACT)
    # the kwargs-call form of tensordict modules still works
    out = plain(observation=torch.randn(OBS))
    assert out.shape == (ACT,)


def test_distribution_module_is_a_tensordict_probabilistic_module():
    actor = seed_actor()
    assert isinstance(actor.dist_module, ProbabilisticTensorDictModule)
    assert actor.dist_module is actor.module[-1]


def test_value_operator_and_actor_lean_paths_equal_tensordict_paths():
    net = nn.Linear(OBS, 1)
    value = ValueOperator(net)
    td = obs_td(4)
    torch.testing.assert_close(
        value(td.clone())["state_value"], TensorDictModule.forward(value, td.clone())["state_value"]
    )
    actor = Actor(nn.Linear(OBS, ACT), spec=Bounded(-0.1, 0.1, shape=(ACT,)), safe=True)
    assert actor._lean is not None
    td = actor(obs_td(50))
    assert actor.spec["action"].is_in(td["action"])


def test_actor_survives_deepcopy_and_pickle():
    import copy
    import pickle

    actor = seed_actor()
    td = obs_td(3)
    actor(td)
    with set_exploration_type(ExplorationType.MEAN):
        expected = actor(td.clone())["action"]
        for clone in (copy.deepcopy(actor), pickle.loads(pickle.dumps(actor))):
            torch.testing.assert_close(clone(td.clone())["action"], expected)
            # the clone's fast path runs the clone's own network
            assert clone._lean_steps[0].net is clone.module[0].module


def test_composite_spec_without_the_action_key_raises():
    module = TensorDictModule(nn.Linear(OBS, ACT), in_keys=["observation"], out_keys=["param"])
    with pytest.raises(KeyError, match=r"without the action entry 'action'"):
        ProbabilisticActor(module, in_keys=["param"], spec=Composite(other=Bounded(-1.0, 1.0, shape=(ACT,))))
    with pytest.raises(KeyError, match=r"without the action entry 'action'"):
        Actor(nn.Linear(OBS, ACT), spec=Composite(other=Bounded(-1.0, 1.0, shape=(ACT,))))
