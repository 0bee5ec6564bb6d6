"""Epsilon-greedy, additive Gaussian and Ornstein-Uhlenbeck exploration."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torch import nn

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import (
    Actor,
    AdditiveGaussianModule,
    EGreedyModule,
    OrnsteinUhlenbeckProcessModule,
    QValueActor,
)
from tdrl.specs import Bounded, Categorical, Composite, OneHot

DETERMINISTIC_TYPES = [ExplorationType.MEAN, ExplorationType.MODE, ExplorationType.DETERMINISTIC]


@pytest.fixture(autouse=True)
def _seed():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


def test_egreedy_annealing():
    module = EGreedyModule(Categorical(4), eps_init=1.0, eps_end=0.1, annealing_num_steps=100)
    module.step(50)
    assert module.eps.item() == pytest.approx(0.55)
    module.step(1000)
    assert module.eps.item() == pytest.approx(0.1)


def test_egreedy_rate_and_switch_off():
    spec = Categorical(4)
    module = EGreedyModule(spec, eps_init=0.5, eps_end=0.5)
    td = TensorDict(action=torch.zeros(4000, dtype=torch.long), batch_size=[4000])
    with set_exploration_type(ExplorationType.RANDOM):
        changed = (module(td.clone())["action"] != 0).float().mean().item()
    assert changed == pytest.approx(0.5 * 3 / 4, abs=0.03)
    for etype in DETERMINISTIC_TYPES:
        with set_exploration_type(etype):
            assert (module(td.clone())["action"] == 0).all()


def test_egreedy_one_hot_mask_and_composite_spec():
    spec = Composite(action=OneHot(3))
    mask = torch.tensor([False, False, True]).expand(100, 3)
    module = EGreedyModule(spec, eps_init=1.0, eps_end=1.0, action_mask_key="mask")
    greedy = torch.nn.functional.one_hot(torch.zeros(100, dtype=torch.long), 3).bool()
    td = module(TensorDict(action=greedy, mask=mask, batch_size=[100]))
    assert td["action"][:, 2].all()


def test_egreedy_after_qvalue_actor():
    actor = QValueActor(nn.Linear(3, 4), spec=Categorical(4))
    policy = TensorDictSequential(actor, EGreedyModule(Categorical(4), eps_init=1.0, eps_end=1.0))
    td = TensorDict(observation=torch.randn(500, 3), batch_size=[500])
    with set_exploration_type(ExplorationType.RANDOM):
        policy(td)
    assert Categorical(4).is_in(td["action"])
    assert td["action"].unique().numel() == 4


def test_egreedy_bad_input():
    with pytest.raises(ValueError, match="must not exceed"):
        EGreedyModule(Categorical(2), eps_init=0.1, eps_end=0.5)
    module = EGreedyModule(Categorical(2, shape=(3,)))
    with pytest.raises(ValueError, match=r"shape \(2,\).*\(3,\)"):
        module(TensorDict(action=torch.zeros(2, dtype=torch.long)))
    with pytest.raises(KeyError, match=r"'action'.*\['observation'\]"):
        module(TensorDict(observation=torch.zeros(2)))


def test_additive_gaussian_noise_projection_annealing_and_switch_off():
    spec = Bounded(-1.0, 1.0, shape=(2,))
    module = AdditiveGaussianModule(spec, sigma_init=0.5, sigma_end=0.1, annealing_num_steps=4)
    td = TensorDict(action=torch.zeros(5000, 2), batch_size=[5000])
    with set_exploration_type(ExplorationType.RANDOM):
        noisy = module(td.clone())["action"]
    assert noisy.std().item() == pytest.approx(0.5, rel=0.05)
    module.step(4)
    assert module.sigma.item() == pytest.approx(0.1)
    big = AdditiveGaussianModule(spec, sigma_init=100.0, sigma_end=100.0)
    assert spec.is_in(big(td.clone())["action"])
    for etype in DETERMINISTIC_TYPES:
        with set_exploration_type(etype):
            assert (module(td.clone())["action"] == 0).all()


def test_gaussian_after_deterministic_actor():
    spec = Bounded(-1.0, 1.0, shape=(2,))
    policy = TensorDictSequential(Actor(nn.Linear(3, 2), spec=spec), AdditiveGaussianModule(spec, sigma_init=0.3))
    td = TensorDict(observation=torch.randn(3))
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        a = policy(td.clone())["action"]
        b = policy(td.clone())["action"]
    torch.testing.assert_close(a, b)
    with set_exploration_type(ExplorationType.RANDOM):
        assert not torch.equal(policy(td.clone())["action"], a)


def test_ou_noise_is_correlated_and_resets():
    spec = Bounded(-10.0, 10.0, shape=(1,))
    ou = OrnsteinUhlenbeckProcessModule(spec, eps_init=1.0, eps_end=1.0, theta=0.15, sigma=1.0, dt=0.1)
    td = TensorDict(action=torch.zeros(256, 1), is_init=torch.ones(256, 1, dtype=torch.bool), batch_size=[256])
    noises = []
    with set_exploration_type(ExplorationType.RANDOM):
        for _ in range(20):
            td = ou(td)
            noises.append(td["_ou_prev_noise"].clone())
            td["action"] = torch.zeros(256, 1)
            td["is_init"] = torch.zeros(256, 1, dtype=torch.bool)
    assert td["_ou_steps"].eq(20).all()
    a, b = noises[-2].flatten(), noises[-1].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.8  # consecutive steps are strongly correlated
    td["is_init"] = torch.ones(256, 1, dtype=torch.bool)
    with set_exploration_type(ExplorationType.RANDOM):
        td = ou(td)
    assert td["_ou_steps"].eq(1).all()
    assert td["_ou_prev_noise"].std() < noises[-1].std()
    with set_exploration_type(ExplorationType.MEAN):
        out = ou(TensorDict(action=torch.zeros(1)))
    assert out["action"].item() == 0.0
    assert "_ou_steps" not in out.keys()


def test_ou_bad_input():
    with pytest.raises(ValueError, match="spec"):
        OrnsteinUhlenbeckProcessModule(None)
    with pytest.raises(ValueError, match="must not exceed"):
        OrnsteinUhlenbeckProcessModule(Bounded(-1.0, 1.0, shape=(1,)), eps_init=0.1, eps_end=1.0)
