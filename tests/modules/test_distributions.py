"""IndependentNormal, TruncatedNormal, Delta and the discrete distributions."""

from __future__ import annotations

import math

import pytest
import torch

from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import (
    Categorical,
    Delta,
    IndependentNormal,
    MaskedCategorical,
    MaskedOneHotCategorical,
    OneHotCategorical,
    ReparamGradientStrategy,
    TruncatedNormal,
)


@pytest.fixture(autouse=True)
def _seed():
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


# --- IndependentNormal ----------------------------------------------------------------------
def test_independent_normal_matches_torch():
    loc, scale = torch.randn(4, 3), torch.rand(4, 3) + 0.1
    ours = IndependentNormal(loc, scale)
    ref = torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)
    x = ours.sample()
    torch.testing.assert_close(ours.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    assert torch.equal(ours.deterministic_sample, loc)
    assert torch.equal(ours.mode, loc)


def test_independent_normal_tanh_loc_and_event_dim():
    dist = IndependentNormal(torch.tensor([100.0, -100.0]), 1.0, tanh_loc=True, upscale=2.0)
    torch.testing.assert_close(dist.mean, torch.tensor([2.0, -2.0]))
    assert IndependentNormal(torch.zeros(2, 3), torch.ones(2, 3), event_dim=2).log_prob(torch.zeros(2, 3)).shape == ()


# --- TruncatedNormal ------------------------------------------------------------------------
@pytest.mark.parametrize("loc", [0.0, 3.0, -8.0])
def test_truncated_normal_density_integrates_and_samples_in_box(loc):
    dist = TruncatedNormal(torch.tensor([loc]), torch.tensor([0.7]), low=-1.0, high=2.0)
    x = dist.sample((2000,))
    assert ((x >= -1) & (x <= 2)).all()
    grid = torch.linspace(-1.0, 2.0, 30001, dtype=torch.float64)
    dist64 = TruncatedNormal(
        torch.tensor([loc], dtype=torch.float64), torch.tensor([0.7], dtype=torch.float64), low=-1.0, high=2.0
    )
    density = dist64.log_prob(grid.unsqueeze(-1)).exp()
    assert math.isclose(torch.trapezoid(density, grid).item(), 1.0, abs_tol=1e-3)
    mean = torch.trapezoid(density * grid, grid).item()
    assert dist64.mean.item() == pytest.approx(mean, abs=1e-3)
    assert x.mean().item() == pytest.approx(mean, abs=0.1)


def test_truncated_normal_outside_is_minus_inf_and_old_names():
    dist = TruncatedNormal(torch.zeros(2), torch.ones(2), min=-1.0, max=1.0)
    assert dist.log_prob(torch.tensor([0.0, 1.5])) == float("-inf")
    assert dist.low.item() == -1.0
    torch.testing.assert_close(dist.mode, torch.zeros(2))
    assert torch.isfinite(dist.entropy())


def test_truncated_normal_rsample_gradients_and_bad_bounds():
    loc = torch.zeros(3, requires_grad=True)
    TruncatedNormal(loc, torch.ones(3), low=-1.0, high=1.0).rsample().sum().backward()
    assert loc.grad is not None
    with pytest.raises(ValueError, match="low must be < high"):
        TruncatedNormal(torch.zeros(1), torch.ones(1), low=1.0, high=0.0)


def test_truncated_normal_matches_torchrl():
    trl = pytest.importorskip("torchrl.modules.distributions")
    loc, scale = torch.randn(8, 2), torch.rand(8, 2) + 0.2
    ours = TruncatedNormal(loc, scale, low=-1.0, high=1.0)
    theirs = trl.TruncatedNormal(loc, scale, low=-1.0, high=1.0)
    x = ours.sample()
    torch.testing.assert_close(ours.log_prob(x), theirs.log_prob(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.mean, theirs.mean, rtol=1e-4, atol=1e-4)


# --- Delta -----------------------------------------------------------------------------------
def test_delta():
    d = Delta(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert d.batch_shape == (2,)
    assert d.event_shape == (2,)
    assert torch.equal(d.sample((3,)), d.param.expand(3, 2, 2))
    lp = d.log_prob(torch.tensor([[1.0, 2.0], [3.0, 5.0]]))
    assert lp[0] == float("inf")
    assert lp[1] == float("-inf")
    assert torch.equal(d.deterministic_sample, d.param)


# --- discrete ------------------------------------------------------------------------------
def test_categorical_and_one_hot():
    logits = torch.tensor([[0.0, 2.0, 1.0]])
    cat, oh = Categorical(logits=logits), OneHotCategorical(logits=logits)
    assert cat.deterministic_sample.tolist() == [1]
    assert oh.deterministic_sample.tolist() == [[0.0, 1.0, 0.0]]
    torch.testing.assert_close(oh.log_prob(torch.tensor([[0.0, 0.0, 1.0]])), cat.log_prob(torch.tensor([2])))
    with pytest.raises(ValueError, match="exactly one of `logits` or `probs`"):
        Categorical()


@pytest.mark.parametrize("method", list(ReparamGradientStrategy))
def test_one_hot_rsample_is_one_hot_with_gradients(method):
    logits = torch.randn(5, 4, requires_grad=True)
    sample = OneHotCategorical(logits=logits, grad_method=method).rsample()
    assert ((sample == 0) | (sample == 1)).all()
    assert (sample.sum(-1) == 1).all()
    (sample * torch.arange(4.0)).sum().backward()
    assert logits.grad is not None
    assert logits.grad.abs().sum() > 0


def test_masked_categorical_never_samples_masked_actions():
    mask = torch.tensor([[True, False, True, False], [False, False, False, True]])
    dist = MaskedCategorical(logits=torch.zeros(2, 4), mask=mask)
    x = dist.sample((500,))
    assert mask.gather(-1, x.T).all()
    assert dist.log_prob(torch.tensor([1, 3])).tolist()[0] == float("-inf")
    torch.testing.assert_close(dist.entropy(), torch.tensor([math.log(2), 0.0]))
    assert dist.deterministic_sample.tolist() in ([0, 3], [2, 3])
    with set_exploration_type(ExplorationType.MODE):
        assert dist.mode[1].item() == 3


def test_masked_categorical_indices_and_probs_and_neg_inf():
    by_idx = MaskedCategorical(logits=torch.zeros(4), indices=torch.tensor([0, 2]))
    by_mask = MaskedCategorical(logits=torch.zeros(4), mask=torch.tensor([True, False, True, False]))
    torch.testing.assert_close(by_idx.probs, by_mask.probs)
    padded = MaskedCategorical(logits=torch.zeros(4), indices=torch.tensor([0, 2, -1]), padding_value=-1)
    torch.testing.assert_close(padded.probs, by_mask.probs)
    by_probs = MaskedCategorical(probs=torch.full((4,), 0.25), mask=torch.tensor([True, False, True, False]))
    torch.testing.assert_close(by_probs.probs, by_mask.probs)
    floor = MaskedCategorical(logits=torch.zeros(4), mask=torch.tensor([True, False, True, False]), neg_inf=-1e6)
    assert floor.log_prob(torch.tensor(1)).item() == -1e6
    with pytest.raises(ValueError, match="exactly one of `mask`"):
        MaskedCategorical(logits=torch.zeros(4))
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 4\]"):
        MaskedCategorical(logits=torch.zeros(4), mask=torch.tensor([True, False]))


def test_masked_categorical_matches_torchrl():
    trl = pytest.importorskip("torchrl.modules.distributions")
    logits = torch.randn(6, 5)
    mask = torch.rand(6, 5) > 0.4
    mask[:, 0] = True
    ours, theirs = MaskedCategorical(logits=logits, mask=mask), trl.MaskedCategorical(logits=logits, mask=mask)
    x = torch.randint(0, 5, (6,))
    torch.testing.assert_close(ours.log_prob(x), theirs.log_prob(x))
    torch.testing.assert_close(ours.entropy(), theirs.entropy())


def test_masked_one_hot():
    dist = MaskedOneHotCategorical(logits=torch.zeros(3), mask=torch.tensor([False, True, True]))
    x = dist.sample((50,))
    assert x[..., 0].sum() == 0
    assert dist.log_prob(torch.tensor([1.0, 0.0, 0.0])) == float("-inf")
    torch.testing.assert_close(dist.entropy(), torch.tensor(math.log(2)))
