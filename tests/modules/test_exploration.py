"""Epsilon-greedy, additive Gaussian and Ornstein-Uhlenbeck exploration."""

from __future__ import annotations

import warnings

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import (
    Actor,
    AdditiveGaussianModule,
    EGreedyModule,
    OrnsteinUhlenbeckProcessModule,
    QValueActor,
    set_exploration_modules_spec_from_env,
)
from tdrl.specs import Bounded, Categorical, Composite, OneHot
from tdrl.testing import ContinuousActionMock

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


def test_set_exploration_modules_spec_from_env_fills_only_the_missing_specs():
    env = ContinuousActionMock(action_dim=2, batch_size=[3])
    kept = Bounded(-0.5, 0.5, shape=(2,))
    missing = AdditiveGaussianModule(sigma_init=100.0, sigma_end=100.0)
    given = AdditiveGaussianModule(kept, sigma_init=100.0, sigma_end=100.0)
    policy = TensorDictSequential(Actor(nn.Linear(3, 2), spec=None), missing, given)
    assert missing.spec is None
    set_exploration_modules_spec_from_env(policy, env)
    assert missing.spec["action"] == env.action_spec_unbatched  # the unbatched spec: it fits any batch
    assert given.spec["action"] is kept
    with set_exploration_type(ExplorationType.RANDOM):
        action = TensorDictSequential(missing)(TensorDict(action=torch.zeros(3, 2), batch_size=[3]))["action"]
    assert env.action_spec.is_in(action)
    assert action.abs().max() == 1.0  # sigma 100: the noise was projected onto the env's bounds


def test_a_collector_gives_its_env_action_spec_to_spec_less_noise():
    env = ContinuousActionMock(action_dim=2)
    noise = AdditiveGaussianModule(sigma_init=100.0, sigma_end=100.0)
    policy = TensorDictSequential(Actor(nn.Linear(3, 2), spec=None), noise)
    batch = next(iter(SyncDataCollector(env, policy, frames_per_batch=20, total_frames=20)))
    assert noise.spec is not None
    assert env.action_spec.is_in(batch["action"])


def test_set_exploration_modules_spec_from_env_is_where_torchrl_has_it():
    torchrl_modules = pytest.importorskip("torchrl.modules")
    import tdrl.modules
    import tdrl.modules.exploration

    name = "set_exploration_modules_spec_from_env"
    assert name in torchrl_modules.__all__
    assert name in tdrl.modules.__all__
    assert name in tdrl.modules.exploration.__all__


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


# --- annealing schedules and draws, against TorchRL ------------------------------------------------
STEP_CALLS = [1, 1, 3, 10, 50, 1000]


def _schedule(module, attr: str) -> list[float]:
    values = []
    for frames in STEP_CALLS:
        module.step(frames)
        values.append(getattr(module, attr).item())
    return values


def _linear_schedule(init: float, end: float, n: int) -> list[float]:
    """eps after each call: down by (init - end) / n per frame, never below end."""
    out, total = [], 0
    for frames in STEP_CALLS:
        total += frames
        out.append(max(end, init - (init - end) * total / n))
    return out


SCHEDULES = {
    "egreedy": (lambda: EGreedyModule(Categorical(3), eps_init=0.9, eps_end=0.05, annealing_num_steps=60), "eps"),
    "gaussian": (
        lambda: AdditiveGaussianModule(
            Bounded(-1.0, 1.0, shape=(2,)), sigma_init=0.5, sigma_end=0.1, annealing_num_steps=40
        ),
        "sigma",
    ),
    "ou": (
        lambda: OrnsteinUhlenbeckProcessModule(
            Bounded(-1.0, 1.0, shape=(2,)), eps_init=1.0, eps_end=0.2, annealing_num_steps=25
        ),
        "eps",
    ),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_step_anneals_linearly_by_frames(name):
    make, attr = SCHEDULES[name]
    module = make()
    init, end = getattr(module, f"{attr}_init").item(), getattr(module, f"{attr}_end").item()
    expected = _linear_schedule(init, end, module.annealing_num_steps)
    assert _schedule(module, attr) == pytest.approx(expected, abs=1e-6)


def _torchrl_twin(name: str, trl, trl_data):
    if name == "egreedy":
        return trl.EGreedyModule(trl_data.Categorical(3), eps_init=0.9, eps_end=0.05, annealing_num_steps=60), "eps"
    if name == "gaussian":
        spec = trl_data.Bounded(-1.0, 1.0, shape=(2,))
        return trl.AdditiveGaussianModule(spec, sigma_init=0.5, sigma_end=0.1, annealing_num_steps=40), "sigma"
    spec = trl_data.Bounded(-1.0, 1.0, shape=(2,))
    return trl.OrnsteinUhlenbeckProcessModule(spec, eps_init=1.0, eps_end=0.2, annealing_num_steps=25), "eps"


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_equals_torchrl(name):
    trl = pytest.importorskip("torchrl.modules")
    trl_data = pytest.importorskip("torchrl.data")
    make, attr = SCHEDULES[name]
    theirs, their_attr = _torchrl_twin(name, trl, trl_data)
    assert _schedule(make(), attr) == pytest.approx(_schedule(theirs, their_attr), abs=1e-6)


@pytest.mark.parametrize("space", ["categorical", "one_hot"])
@pytest.mark.parametrize("masked", [False, True])
def test_egreedy_draws_equal_torchrl_under_a_seed(space, masked):
    trl = pytest.importorskip("torchrl.modules")
    trl_data = pytest.importorskip("torchrl.data")
    greedy = torch.randint(4, (64,))
    mask = torch.rand(64, 4) > 0.4
    mask[torch.arange(64), greedy] = True
    action = greedy if space == "categorical" else torch.nn.functional.one_hot(greedy, 4)
    td = TensorDict(action=action, mask=mask, batch_size=[64])
    kwargs = {"action_mask_key": "mask"} if masked else {}
    mine_spec, their_spec = (
        (Categorical(4), trl_data.Categorical(4)) if space == "categorical" else (OneHot(4), trl_data.OneHot(4))
    )
    torch.manual_seed(11)
    mine = EGreedyModule(mine_spec, 0.6, 0.6, **kwargs)(td.clone())["action"]
    torch.manual_seed(11)
    theirs = trl.EGreedyModule(their_spec, 0.6, 0.6, **kwargs)(td.clone())["action"]
    assert torch.equal(mine, theirs)
    assert not torch.equal(mine, action)  # some actions were replaced


def test_egreedy_nested_action_gets_one_coin_per_agent():
    trl = pytest.importorskip("torchrl.modules")
    trl_data = pytest.importorskip("torchrl.data")
    key = ("agents", "action")
    td = TensorDict(agents=TensorDict(action=torch.zeros(32, 3, dtype=torch.long), batch_size=[32, 3]), batch_size=[32])
    torch.manual_seed(2)
    mine = EGreedyModule(Categorical(4, shape=(3,)), 0.5, 0.5, action_key=key)(td.clone())[key]
    torch.manual_seed(2)
    theirs = trl.EGreedyModule(trl_data.Categorical(4, shape=(3,)), 0.5, 0.5, action_key=key)(td.clone())[key]
    assert torch.equal(mine, theirs)
    mixed_rows = ((mine != 0).any(-1) & (mine == 0).any(-1)).sum()
    assert mixed_rows > 0  # agents of one env explore independently


def test_additive_gaussian_draws_and_safe_projection_equal_torchrl():
    trl = pytest.importorskip("torchrl.modules")
    trl_data = pytest.importorskip("torchrl.data")
    low, high = torch.tensor([-1.0, 0.0, -2.0]), torch.tensor([1.0, 0.5, 2.0])
    kwargs = {"sigma_init": 0.4, "sigma_end": 0.4, "mean": 0.1, "std": 0.7, "safe": True}
    mine = AdditiveGaussianModule(Bounded(low, high, shape=(3,)), **kwargs)
    theirs = trl.AdditiveGaussianModule(trl_data.Bounded(low, high, shape=(3,)), **kwargs)
    td = TensorDict(action=torch.randn(50, 3), batch_size=[50])
    for etype in (ExplorationType.RANDOM, ExplorationType.DETERMINISTIC):
        with set_exploration_type(etype):
            torch.manual_seed(4)
            mine_action = mine(td.clone())["action"]
            torch.manual_seed(4)
            their_action = theirs(td.clone())["action"]
        torch.testing.assert_close(mine_action, their_action, rtol=0, atol=1e-6)
    assert Bounded(low, high, shape=(3,)).is_in(mine_action)  # safe: projected even without noise


def test_ou_rollout_equals_torchrl_with_resets_and_annealing():
    trl = pytest.importorskip("torchrl.modules")
    trl_data = pytest.importorskip("torchrl.data")
    kwargs = {
        "eps_init": 0.9,
        "eps_end": 0.2,
        "annealing_num_steps": 7,
        "theta": 0.3,
        "mu": 0.1,
        "sigma": 0.5,
        "dt": 0.05,
        "sigma_min": 0.1,
        "n_steps_annealing": 5,
    }
    mine = OrnsteinUhlenbeckProcessModule(Bounded(-1.0, 1.0, shape=(3,)), **kwargs)
    theirs = trl.OrnsteinUhlenbeckProcessModule(trl_data.Bounded(-1.0, 1.0, shape=(3,)), **kwargs)
    assert mine.in_keys == theirs.in_keys
    assert mine.out_keys == theirs.out_keys
    mine_td = TensorDict(action=torch.zeros(4, 3), is_init=torch.ones(4, 1, dtype=torch.bool), batch_size=[4])
    their_td = mine_td.clone()
    for t in range(12):
        action, is_init = torch.randn(4, 3), torch.rand(4, 1) < 0.2
        for td in (mine_td, their_td):
            td.set("action", action.clone())
            td.set("is_init", is_init)
        torch.manual_seed(t)
        mine_td = mine(mine_td)
        torch.manual_seed(t)
        their_td = theirs(their_td)
        for key in ("action", "_ou_prev_noise", "_ou_steps"):
            torch.testing.assert_close(mine_td[key], their_td[key], rtol=0, atol=1e-6, msg=f"step {t}: {key}")
        mine.step(1)
        theirs.step(1)
    with set_exploration_type(ExplorationType.DETERMINISTIC):  # safe (the default): projected, no noise
        far = TensorDict(action=torch.full((4, 3), 5.0), batch_size=[4])
        torch.testing.assert_close(mine(far.clone())["action"], theirs(far.clone())["action"])
        assert (mine(far.clone())["action"] == 1.0).all()


def test_ou_without_is_init_warns_once_with_the_fix():
    ou = OrnsteinUhlenbeckProcessModule(Bounded(-1.0, 1.0, shape=(2,)))
    with pytest.warns(UserWarning, match=r"no 'is_init' entry.*InitTracker"):
        td = ou(TensorDict(action=torch.zeros(2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ou(td)  # once is enough


def test_egreedy_checks_each_new_layout():
    """The shape check runs once per layout: a later call with another batch, or a bad shape, is still checked."""
    module = EGreedyModule(Categorical(2, shape=(3,)), eps_init=1.0, eps_end=1.0)
    with set_exploration_type(ExplorationType.RANDOM):
        for n in (4, 1, 4):
            td = module(TensorDict(action=torch.zeros(n, 3, dtype=torch.long), batch_size=[n]))
            assert td["action"].shape == (n, 3)
        with pytest.raises(ValueError, match=r"shape \(4, 2\).*\(3,\)"):
            module(TensorDict(action=torch.zeros(4, 2, dtype=torch.long), batch_size=[4]))


ONE_ENV_SPECS = {
    "one_hot": (lambda m: m.OneHot(4), lambda a: torch.nn.functional.one_hot(a, 4).bool()),
    "one_hot_long": (lambda m: m.OneHot(4, dtype=torch.long), lambda a: torch.nn.functional.one_hot(a, 4)),
    # an action whose dtype is not the spec's: torch.where's promotion decides the dtype
    "one_hot_other_dtype": (lambda m: m.OneHot(4), lambda a: torch.nn.functional.one_hot(a, 4)),
    "categorical": (lambda m: m.Categorical(4), lambda a: a),
    "categorical_keepdim": (lambda m: m.Categorical(4, shape=(1,)), lambda a: a.unsqueeze(-1)),
}


def _one_env_actions(module, encode, steps=200):
    """Step ``module`` as a collector does with one env (batch ()), annealing eps; the actions it writes."""
    greedy = torch.randint(4, (steps,), generator=torch.Generator().manual_seed(5))
    out = []
    with set_exploration_type(ExplorationType.RANDOM):
        for t in range(steps):
            action = encode(greedy[t])
            td = module(TensorDict(action=action, batch_size=[]))
            assert td["action"] is not action  # a new tensor at every step, as torch.where gives
            out.append(td["action"])
            module.step(1)
    return torch.stack(out)


@pytest.mark.parametrize("space", sorted(ONE_ENV_SPECS))
def test_egreedy_one_env_draws_equal_the_general_formula(space):
    """One env, no mask: the coin and the random action are the general path's draws, in its order."""
    import tdrl.specs as specs

    make, encode = ONE_ENV_SPECS[space]
    spec = make(specs)
    torch.manual_seed(3)
    mine = _one_env_actions(EGreedyModule(spec, 1.0, 0.0, annealing_num_steps=150), encode)
    torch.manual_seed(3)
    greedy = torch.randint(4, (200,), generator=torch.Generator().manual_seed(5))
    eps = torch.tensor(1.0)
    expected = []
    for t in range(200):
        coin = torch.rand(()) < eps
        expected.append(torch.where(coin, spec.rand(), encode(greedy[t])))
        eps = torch.maximum(torch.tensor(0.0), eps - 1.0 / 150)
    expected = torch.stack(expected)
    assert torch.equal(mine, expected)
    assert mine.dtype == expected.dtype
    assert 0 < (mine != encode(greedy)).reshape(200, -1).any(-1).sum() < 200  # some steps explored, some not


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_egreedy_one_env_coin_follows_the_default_dtype(dtype):
    """The one-env coin is torch.rand(()) in the default dtype at the call, also when it changes between calls."""
    spec = Categorical(4)
    module = EGreedyModule(spec, 0.5, 0.5, annealing_num_steps=1)
    previous = torch.get_default_dtype()
    try:
        with set_exploration_type(ExplorationType.RANDOM):
            module(TensorDict(action=torch.tensor(0), batch_size=[]))  # the one-env layout, planned in float32
            torch.set_default_dtype(dtype)
            torch.manual_seed(11)
            mine = [int(module(TensorDict(action=torch.tensor(0), batch_size=[]))["action"]) for _ in range(64)]
            torch.manual_seed(11)
            expected = []
            for _ in range(64):
                coin = torch.rand(()) < torch.tensor(0.5)
                expected.append(int(torch.where(coin, spec.rand(), torch.tensor(0))))
    finally:
        torch.set_default_dtype(previous)
    assert mine == expected
    assert 0 < sum(a != 0 for a in mine) < 64


@pytest.mark.parametrize("space", sorted(ONE_ENV_SPECS))
def test_egreedy_one_env_equals_torchrl_step_by_step(space):
    trl = pytest.importorskip("torchrl.modules")
    trl_data = pytest.importorskip("torchrl.data")
    import tdrl.specs as specs

    make, encode = ONE_ENV_SPECS[space]
    torch.manual_seed(7)
    mine = _one_env_actions(EGreedyModule(make(specs), 1.0, 0.05, annealing_num_steps=150), encode)
    torch.manual_seed(7)
    theirs = _one_env_actions(trl.EGreedyModule(make(trl_data), 1.0, 0.05, annealing_num_steps=150), encode)
    assert torch.equal(mine, theirs)
    assert mine.dtype == theirs.dtype
