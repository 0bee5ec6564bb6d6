"""TanhNormal: bounds, log_prob (closed form, stable at the bounds, equal to TorchRL's), modes."""

from __future__ import annotations

import math

import pytest
import torch

from tdrl.modules import TanhNormal


@pytest.fixture(autouse=True)
def _seed():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


BOUNDS = [
    (-1.0, 1.0),
    (-2.0, 3.0),
    (torch.tensor([-2.0, 0.0, -0.4]), torch.tensor([3.0, 1.0, 0.4])),
]


@pytest.mark.parametrize(("low", "high"), BOUNDS)
def test_samples_lie_in_bounds(low, high):
    loc = torch.randn(1000, 3) * 10  # many saturated samples
    scale = torch.rand(1000, 3) * 5 + 1e-3
    dist = TanhNormal(loc, scale, low=low, high=high)
    low_t, high_t = torch.as_tensor(low).expand(3), torch.as_tensor(high).expand(3)
    for x in (dist.sample(), dist.rsample(), dist.sample((4,)), dist.deterministic_sample):
        assert ((x >= low_t) & (x <= high_t)).all()


@pytest.mark.parametrize(("low", "high"), BOUNDS)
def test_log_prob_finite_at_bounds(low, high):
    dist = TanhNormal(torch.zeros(3), torch.ones(3), low=low, high=high)
    low_t, high_t = torch.as_tensor(low).expand(3), torch.as_tensor(high).expand(3)
    for v in (low_t, high_t, (low_t + high_t) / 2):
        assert torch.isfinite(dist.log_prob(v))


def test_log_prob_matches_change_of_variables():
    loc, scale = torch.tensor([0.3, -1.0]), torch.tensor([0.5, 2.0])
    low, high = torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 5.0])
    dist = TanhNormal(loc.double(), scale.double(), low=low.double(), high=high.double())
    u = torch.tensor([0.1, -0.7], dtype=torch.float64)
    y = (low + (high - low) * (torch.tanh(u.float()) + 1) / 2).double()
    normal = torch.distributions.Normal(loc.double(), scale.double())
    expected = (normal.log_prob(u) - torch.log(1 - torch.tanh(u) ** 2) - torch.log((high - low) / 2).double()).sum()
    torch.testing.assert_close(dist.log_prob(y), expected, rtol=1e-5, atol=1e-5)


def test_log_prob_integrates_to_one():
    dist = TanhNormal(torch.tensor([0.5]), torch.tensor([0.7]), low=-3.0, high=1.0)
    grid = torch.linspace(-3.0, 1.0, 20001)[1:-1].unsqueeze(-1)
    density = dist.log_prob(grid).exp()
    assert math.isclose(torch.trapezoid(density, grid.squeeze(-1)).item(), 1.0, abs_tol=2e-3)


def test_rsample_and_log_prob_consistent():
    dist = TanhNormal(torch.randn(5, 2), torch.rand(5, 2) + 0.1, low=-2.0, high=2.0)
    action, lp = dist.rsample_and_log_prob()
    torch.testing.assert_close(lp, dist.log_prob(action), rtol=1e-4, atol=1e-4)
    assert lp.shape == (5,)


def test_rsample_has_gradients():
    loc = torch.zeros(3, requires_grad=True)
    scale = torch.ones(3, requires_grad=True)
    TanhNormal(loc, scale, low=-2.0, high=2.0).rsample().sum().backward()
    assert loc.grad is not None
    assert scale.grad is not None
    assert loc.grad.abs().sum() > 0


def test_deterministic_values():
    loc = torch.tensor([0.0, 1.0])
    dist = TanhNormal(loc, torch.ones(2), low=torch.tensor([0.0, -2.0]), high=torch.tensor([2.0, 2.0]))
    expected = torch.tensor([1.0, 2 * math.tanh(1.0)])
    for value in (dist.deterministic_sample, dist.mode):
        torch.testing.assert_close(value, expected)
    assert dist.mean[0].item() == pytest.approx(1.0, abs=1e-6)  # symmetric about the box's middle
    assert 0.0 < dist.mean[1].item() < expected[1].item()  # pulled towards the middle


def test_old_min_max_names():
    a = TanhNormal(torch.zeros(2), torch.ones(2), min=-3.0, max=1.0)
    b = TanhNormal(torch.zeros(2), torch.ones(2), low=-3.0, high=1.0)
    torch.testing.assert_close(a.deterministic_sample, b.deterministic_sample)
    assert a.min.item() == -3.0
    assert a.high.item() == 1.0


def test_event_dims_and_shapes():
    dist = TanhNormal(torch.zeros(4, 3), torch.ones(4, 3))
    assert dist.batch_shape == (4,)
    assert dist.event_shape == (3,)
    assert dist.log_prob(dist.sample()).shape == (4,)
    dist0 = TanhNormal(torch.zeros(4, 3), torch.ones(4, 3), event_dims=0)
    assert dist0.log_prob(dist0.sample()).shape == (4, 3)
    assert dist.sample((2,)).shape == (2, 4, 3)


def test_scale_as_number_and_callable():
    a = TanhNormal(torch.zeros(3), 0.5)
    b = TanhNormal(torch.zeros(3), lambda loc: torch.full_like(loc, 0.5))
    x = a.sample()
    torch.testing.assert_close(a.log_prob(x), b.log_prob(x))


def test_entropy_raises_with_hint():
    with pytest.raises(NotImplementedError, match="log_prob"):
        TanhNormal(torch.zeros(2), torch.ones(2)).entropy()


@pytest.mark.parametrize(
    ("low", "high"), [(1.0, 1.0), (2.0, -2.0), (torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.5]))]
)
def test_low_not_below_high_raises(low, high):
    with pytest.raises(ValueError, match="low must be < high"):
        TanhNormal(torch.zeros(2), torch.ones(2), low=low, high=high)


def test_unknown_kwarg_raises():
    with pytest.raises(TypeError, match="unexpected keyword"):
        TanhNormal(torch.zeros(2), torch.ones(2), lowest=-1.0)


def test_bounds_changed_in_place_are_seen():
    low, high = torch.tensor([-1.0]), torch.tensor([1.0])
    TanhNormal(torch.zeros(1), torch.ones(1), low=low, high=high)
    high.fill_(3.0)
    dist = TanhNormal(torch.zeros(1), torch.ones(1), low=low, high=high)
    assert dist.deterministic_sample.item() == pytest.approx(1.0)


# --- differential test against TorchRL -----------------------------------------------------
@pytest.mark.parametrize(("low", "high"), BOUNDS)
def test_log_prob_matches_torchrl(low, high):
    torchrl_dists = pytest.importorskip("torchrl.modules.distributions")
    loc = torch.randn(64, 3) * 3
    scale = torch.rand(64, 3) + 0.05
    ours = TanhNormal(loc, scale, low=low, high=high)
    theirs = torchrl_dists.TanhNormal(loc, scale, low=low, high=high)
    low_t, high_t = torch.as_tensor(low).expand(64, 3), torch.as_tensor(high).expand(64, 3)
    near = high_t - (high_t - low_t) * 1e-6
    for value in (theirs.sample(), ours.sample(), low_t.clone(), high_t.clone(), near):
        torch.testing.assert_close(ours.log_prob(value), theirs.log_prob(value), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(ours.deterministic_sample, theirs.deterministic_sample)


def test_plain_tensordict_module_under_mean_is_deterministic():
    from tensordict import TensorDict
    from tensordict.nn import ProbabilisticTensorDictModule

    from tdrl.envs.utils import ExplorationType, set_exploration_type

    module = ProbabilisticTensorDictModule(
        in_keys=["loc", "scale"],
        out_keys=["action"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -2.0, "high": 2.0},
    )
    td = TensorDict(loc=torch.tensor([0.5]), scale=torch.tensor([1.0]))
    for etype in (ExplorationType.MODE, ExplorationType.DETERMINISTIC):
        with set_exploration_type(etype):
            torch.testing.assert_close(module(td.clone())["action"], 2 * torch.tanh(torch.tensor([0.5])))
    with set_exploration_type(ExplorationType.MEAN):  # the expectation, as TorchRL's MEAN
        expected = TanhNormal(td["loc"], td["scale"], low=-2.0, high=2.0).mean
        torch.testing.assert_close(module(td.clone())["action"], expected)


@pytest.mark.parametrize(
    ("loc", "scale", "low", "high"),
    [
        (0.5, 0.01, -1.0, 1.0),
        (0.5, 3.0, -1.0, 1.0),
        (-1.0, 0.7, -2.0, 4.0),
        (2.0, 30.0, 0.0, 1.0),
        (0.0, 1.0, -1.0, 1.0),
    ],
)
def test_mean_is_the_expectation(loc, scale, low, high):
    dist = TanhNormal(
        torch.tensor([loc], dtype=torch.float64), torch.tensor([scale], dtype=torch.float64), low=low, high=high
    )
    # the exact expectation by fine quadrature over the Normal's density
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    density = torch.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    squashed = low + (high - low) * (torch.tanh(loc + scale * z) + 1) / 2
    exact = torch.trapezoid(squashed * density, z)
    assert abs(dist.mean.item() - exact.item()) < 1e-3 * (high - low) / 2
    assert torch.equal(dist.mean, dist.mean)  # no random numbers
    if scale >= 1.0 and loc != 0.0:  # a wide Normal pulls the mean towards the middle of the box
        middle = (low + high) / 2
        assert abs(dist.mean.item() - middle) < abs(dist.deterministic_sample.item() - middle)


def test_mean_shape_and_batch():
    dist = TanhNormal(torch.zeros(4, 3), torch.ones(4, 3), low=-1.0, high=1.0)
    assert dist.mean.shape == (4, 3)
    torch.testing.assert_close(dist.mean, torch.zeros(4, 3))  # symmetric about 0
    scalar = TanhNormal(torch.zeros(3, 2), 0.5)  # a number as scale broadcasts
    assert scalar.mean.shape == (3, 2)
