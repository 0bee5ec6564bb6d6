"""The return/advantage kernels against plain-Python references and TorchRL."""

from __future__ import annotations

import pytest
import torch

from tdrl.objectives.value import functional as F

GAMMA, LMBDA = 0.9, 0.8


# --------------------------------------------------------------------------- references
def ref_gae(gamma, lmbda, value, next_value, reward, done, terminated):
    """GAE written step by step with Python floats, one batch row at a time."""
    adv = torch.zeros_like(value, dtype=torch.float64)
    for b in range(value.shape[0]):
        last = 0.0
        for t in reversed(range(value.shape[1])):
            v, nv, r = value[b, t, 0].item(), next_value[b, t, 0].item(), reward[b, t, 0].item()
            bootstrap = 0.0 if terminated[b, t, 0] else nv
            delta = r + gamma * bootstrap - v
            if done[b, t, 0]:
                last = 0.0
            last = delta + gamma * lmbda * last
            adv[b, t, 0] = last
    return adv, adv + value.double()


def ref_td_lambda(gamma, lmbda, next_value, reward, done, terminated):
    """TD(lambda) returns; the end of the batch and truncations bootstrap from V(s')."""
    out = torch.zeros_like(reward, dtype=torch.float64)
    for b in range(reward.shape[0]):
        g = None
        for t in reversed(range(reward.shape[1])):
            nv, r = next_value[b, t, 0].item(), reward[b, t, 0].item()
            if terminated[b, t, 0]:
                g = r
            elif done[b, t, 0] or g is None:
                g = r + gamma * nv
            else:
                g = r + gamma * ((1 - lmbda) * nv + lmbda * g)
            out[b, t, 0] = g
    return out


def ref_td0(gamma, next_value, reward, terminated):
    return reward + gamma * (~terminated).float() * next_value


def _random_rollout(batch=3, steps=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, steps, 1)
    terminated = torch.rand(shape, generator=g) < 0.1
    truncated = (torch.rand(shape, generator=g) < 0.1) & ~terminated
    return {
        "value": torch.randn(shape, generator=g),
        "next_value": torch.randn(shape, generator=g),
        "reward": torch.randn(shape, generator=g),
        "done": terminated | truncated,
        "terminated": terminated,
    }


# --------------------------------------------------------------------------- the seed's example
def test_tianshou_example_returns():
    """A finished 3-step episode then an unfinished 7-step one, gamma = lambda = 1, zero values."""
    reward = torch.ones(1, 10, 1)
    terminated = torch.zeros(1, 10, 1, dtype=torch.bool)
    terminated[0, 2] = True
    zeros = torch.zeros(1, 10, 1)
    expected = torch.tensor([3.0, 2, 1, 7, 6, 5, 4, 3, 2, 1])
    _, target = F.generalized_advantage_estimate(1.0, 1.0, zeros, zeros, reward, terminated, terminated)
    assert torch.equal(target.flatten(), expected)
    returns = F.td_lambda_return_estimate(1.0, 1.0, zeros, reward, terminated, terminated)
    assert torch.equal(returns.flatten(), expected)
    assert torch.equal(F.reward2go(reward, terminated, 1.0).flatten(), expected)


# --------------------------------------------------------------------------- random data
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_python_reference(seed):
    d = _random_rollout(seed=seed)
    adv, target = F.generalized_advantage_estimate(GAMMA, LMBDA, **_gae_kwargs(d))
    ref_adv, ref_target = ref_gae(GAMMA, LMBDA, d["value"], d["next_value"], d["reward"], d["done"], d["terminated"])
    torch.testing.assert_close(adv.double(), ref_adv, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(target.double(), ref_target, atol=1e-5, rtol=1e-5)


def _gae_kwargs(d):
    return {
        "state_value": d["value"],
        "next_state_value": d["next_value"],
        "reward": d["reward"],
        "done": d["done"],
        "terminated": d["terminated"],
    }


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("lmbda", [0.0, 0.8, 1.0])
def test_td_lambda_matches_python_reference(seed, lmbda):
    d = _random_rollout(seed=seed)
    out = F.td_lambda_return_estimate(GAMMA, lmbda, d["next_value"], d["reward"], d["done"], d["terminated"])
    ref = ref_td_lambda(GAMMA, lmbda, d["next_value"], d["reward"], d["done"], d["terminated"])
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    adv = F.td_lambda_advantage_estimate(
        GAMMA, lmbda, d["value"], d["next_value"], d["reward"], d["done"], d["terminated"]
    )
    torch.testing.assert_close(adv, out - d["value"])


def test_td0_and_td1():
    d = _random_rollout()
    torch.testing.assert_close(
        F.td0_return_estimate(GAMMA, d["next_value"], d["reward"], d["terminated"]),
        ref_td0(GAMMA, d["next_value"], d["reward"], d["terminated"]),
    )
    # TD(0) is TD(lambda=0).
    torch.testing.assert_close(
        F.td0_return_estimate(GAMMA, d["next_value"], d["reward"], d["terminated"]),
        F.td_lambda_return_estimate(GAMMA, 0.0, d["next_value"], d["reward"], d["done"], d["terminated"]),
    )
    torch.testing.assert_close(
        F.td1_return_estimate(GAMMA, d["next_value"], d["reward"], d["done"], d["terminated"]),
        F.td_lambda_return_estimate(GAMMA, 1.0, d["next_value"], d["reward"], d["done"], d["terminated"]),
    )
    # done defaults to terminated, terminated defaults to done.
    torch.testing.assert_close(
        F.td0_advantage_estimate(GAMMA, d["value"], d["next_value"], d["reward"], d["terminated"]),
        ref_td0(GAMMA, d["next_value"], d["reward"], d["terminated"]) - d["value"],
    )


def test_truncation_bootstraps_but_cuts_the_recursion():
    reward = torch.zeros(1, 3, 1)
    next_value = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1)
    value = torch.zeros(1, 3, 1)
    truncated = torch.tensor([False, True, False]).view(1, 3, 1)
    terminated = torch.zeros_like(truncated)
    adv, _ = F.generalized_advantage_estimate(1.0, 1.0, value, next_value, reward, truncated, terminated)
    # Step 1 is truncated: it bootstraps from V(s'_1) = 20, and step 0 (delta 10) sees
    # step 1 but not step 2.
    assert adv.flatten().tolist() == [30.0, 20.0, 30.0]
    # A terminated step does not bootstrap.
    adv, _ = F.generalized_advantage_estimate(1.0, 1.0, value, next_value, reward, truncated, truncated)
    assert adv.flatten().tolist() == [10.0, 0.0, 30.0]


def test_reward2go_and_discounted_cumsum():
    reward = torch.ones(2, 5, 1)
    done = torch.zeros(2, 5, 1, dtype=torch.bool)
    done[1, 1] = True
    out = F.reward2go(reward, done, 0.5)
    assert out[0].flatten().tolist() == [1.9375, 1.875, 1.75, 1.5, 1.0]
    assert out[1].flatten().tolist() == [1.5, 1.0, 1.75, 1.5, 1.0]
    torch.testing.assert_close(F.discounted_cumsum(reward, 0.5 * (~done).float()), out)


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 64, 1000])
def test_scan_lengths(steps):
    """Every length, including non-powers of two, matches the reference."""
    d = _random_rollout(batch=2, steps=steps, seed=steps)
    adv, _ = F.generalized_advantage_estimate(GAMMA, LMBDA, **_gae_kwargs(d))
    ref_adv, _ = ref_gae(GAMMA, LMBDA, d["value"], d["next_value"], d["reward"], d["done"], d["terminated"])
    torch.testing.assert_close(adv.double(), ref_adv, atol=1e-4, rtol=1e-4)


def test_time_dim_layouts():
    d = _random_rollout(batch=2, steps=9)
    adv, _ = F.generalized_advantage_estimate(GAMMA, LMBDA, **_gae_kwargs(d))
    # [T, B, 1] with time_dim=0
    moved = {k: v.transpose(0, 1) for k, v in _gae_kwargs(d).items()}
    adv_t, _ = F.generalized_advantage_estimate(GAMMA, LMBDA, **moved, time_dim=0)
    torch.testing.assert_close(adv_t.transpose(0, 1), adv)
    # flat [T] with time_dim=-1
    flat = {k: v[0, :, 0] for k, v in _gae_kwargs(d).items()}
    adv_f, _ = F.generalized_advantage_estimate(GAMMA, LMBDA, **flat, time_dim=-1)
    torch.testing.assert_close(adv_f, adv[0, :, 0])
    # several features: each is its own recursion
    feats = {k: v.expand(2, 9, 3).contiguous() for k, v in _gae_kwargs(d).items()}
    adv_3, _ = F.generalized_advantage_estimate(GAMMA, LMBDA, **feats)
    torch.testing.assert_close(adv_3, adv.expand(2, 9, 3))


def test_tensor_gamma_per_step():
    d = _random_rollout(batch=1, steps=6)
    gamma = torch.full_like(d["reward"], GAMMA)
    adv_t, _ = F.generalized_advantage_estimate(gamma, LMBDA, **_gae_kwargs(d))
    adv_f, _ = F.generalized_advantage_estimate(GAMMA, LMBDA, **_gae_kwargs(d))
    torch.testing.assert_close(adv_t, adv_f)


def test_gradients_flow_through_the_scan():
    d = _random_rollout(batch=2, steps=13)
    value = d["value"].clone().requires_grad_(True)
    kwargs = {**_gae_kwargs(d), "state_value": value}
    adv, _ = F.generalized_advantage_estimate(GAMMA, LMBDA, **kwargs)
    (adv * torch.arange(adv.numel()).view_as(adv)).sum().backward()
    # Reference gradient through the loop form.
    value2 = d["value"].clone().requires_grad_(True)
    not_done = (~d["done"]).float()
    delta = d["reward"] + GAMMA * (~d["terminated"]).float() * d["next_value"] - value2
    outs, last = [], torch.zeros(2, 1)
    for t in reversed(range(13)):
        last = delta[:, t] + GAMMA * LMBDA * not_done[:, t] * last
        outs.append(last)
    ref = torch.stack(outs[::-1], 1)
    (ref * torch.arange(ref.numel()).view_as(ref)).sum().backward()
    torch.testing.assert_close(value.grad, value2.grad)


def test_bad_shapes_raise():
    d = _random_rollout(batch=2, steps=5)
    with pytest.raises(ValueError, match=r"share one shape.*reward"):
        F.generalized_advantage_estimate(GAMMA, LMBDA, d["value"], d["next_value"], d["reward"][..., 0], d["done"])
    with pytest.raises(ValueError, match="time_dim=-2 is out of range"):
        F.reward2go(torch.ones(5), torch.zeros(5, dtype=torch.bool), 0.9)
    with pytest.raises(ValueError, match="rolling_gamma=False"):
        F.td_lambda_return_estimate(GAMMA, LMBDA, d["next_value"], d["reward"], d["done"], rolling_gamma=False)
    with pytest.raises(ValueError, match="pass terminated"):
        F.td0_return_estimate(GAMMA, d["next_value"], d["reward"])


# --------------------------------------------------------------------------- TorchRL
@pytest.fixture
def trl_functional():
    pytest.importorskip("torchrl")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchrl.objectives.value import functional as trl_f
    return trl_f


@pytest.mark.parametrize("seed", [0, 1])
def test_same_numbers_as_torchrl(trl_functional, seed):
    d = _random_rollout(seed=seed)
    args = (d["value"], d["next_value"], d["reward"], d["done"], d["terminated"])
    for trl_fn in (trl_functional.generalized_advantage_estimate, trl_functional.vec_generalized_advantage_estimate):
        for mine, theirs in zip(F.generalized_advantage_estimate(GAMMA, LMBDA, *args), trl_fn(GAMMA, LMBDA, *args)):
            torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    nv, r, done, term = d["next_value"], d["reward"], d["done"], d["terminated"]
    torch.testing.assert_close(
        F.td_lambda_return_estimate(GAMMA, LMBDA, nv, r, done, term),
        trl_functional.td_lambda_return_estimate(GAMMA, LMBDA, nv, r, done, term),
        atol=1e-5,
        rtol=1e-5,
    )
    torch.testing.assert_close(
        F.td1_return_estimate(GAMMA, nv, r, done, term),
        trl_functional.td1_return_estimate(GAMMA, nv, r, done, term),
        atol=1e-5,
        rtol=1e-5,
    )
    torch.testing.assert_close(
        F.td0_return_estimate(GAMMA, nv, r, term), trl_functional.td0_return_estimate(GAMMA, nv, r, term)
    )
    r2g_done = d["done"].clone()
    torch.testing.assert_close(
        F.reward2go(r, r2g_done, GAMMA), trl_functional.reward2go(r, r2g_done, GAMMA), atol=1e-5, rtol=1e-5
    )
