"""MultiAgentMLP: shapes, independence of agents, TorchRL's parameter layout, and parity with TorchRL."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tdrl.modules import MultiAgentMLP

COMBOS = [(share, central) for share in (True, False) for central in (True, False)]


@pytest.fixture(autouse=True)
def _seed():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.set_rng_state(state)


def _mlp(share, central, **kwargs):
    return MultiAgentMLP(3, 2, 4, centralized=central, share_params=share, depth=2, num_cells=8, **kwargs)


@pytest.mark.parametrize(("share", "central"), COMBOS)
@pytest.mark.parametrize("use_td_params", [True, False])
def test_shapes_and_every_parameter_gets_a_gradient(share, central, use_td_params):
    mlp = _mlp(share, central, use_td_params=use_td_params)
    out = mlp(torch.randn(5, 7, 4, 3))
    assert out.shape == (5, 7, 4, 2)
    out.square().sum().backward()
    params = list(mlp.parameters())
    assert len(params) == 6  # three linear layers, weight and bias: stacked per agent, not repeated
    assert all(p.grad is not None for p in params)
    prefix = "params." if use_td_params else "_empty_net."
    assert sorted(mlp.state_dict()) == sorted(f"{prefix}{i}.{n}" for i in (0, 2, 4) for n in ("weight", "bias"))
    first = mlp.state_dict()[f"{prefix}0.weight"]
    assert first.shape == (*(() if share else (4,)), 8, 12 if central else 3)


@pytest.mark.parametrize(("share", "central"), COMBOS)
def test_which_inputs_each_agent_reads(share, central):
    mlp = _mlp(share, central)
    x = torch.randn(6, 4, 3)
    changed = x.clone()
    changed[:, 1] += 1.0  # only agent 1's input changes
    moved = (mlp(changed) - mlp(x)).abs().amax((0, 2)) > 1e-6
    expected = torch.ones(4, dtype=torch.bool) if central else torch.tensor([False, True, False, False])
    assert torch.equal(moved, expected)


@pytest.mark.parametrize(("share", "central"), COMBOS)
def test_batched_path_equals_the_vmap_path(share, central):
    mlp = _mlp(share, central)
    x = torch.randn(5, 4, 3)
    fast = mlp(x)
    mlp._batched = False  # the general path, for MLPs with other layers
    torch.testing.assert_close(mlp(x), fast, rtol=1e-5, atol=1e-6)


def test_other_layers_run_through_vmap():
    mlp = _mlp(False, False, norm_class=nn.LayerNorm, norm_kwargs={"normalized_shape": 8})
    x = torch.randn(5, 4, 3)
    out = mlp(x)
    for agent in range(4):  # agent i's output is its own network, with its own weights, on its own input
        weights = {".".join(k): v[agent] for k, v in mlp.params.items(True, True)}
        alone = torch.func.functional_call(mlp._template, weights, (x[:, agent],))
        torch.testing.assert_close(alone, out[:, agent])


def test_shared_params_are_one_network():
    mlp = _mlp(True, False)
    x = torch.randn(5, 4, 3)
    out = mlp(x)
    torch.testing.assert_close(out[:, 0], mlp(x[:, [0, 0, 0, 0]])[:, 3])


def test_reset_parameters_draws_new_weights_per_agent():
    mlp = _mlp(False, False)
    before = mlp.params["0", "weight"].clone()
    mlp.reset_parameters()
    after = mlp.params["0", "weight"]
    assert not torch.equal(before, after)
    assert not torch.equal(after[0], after[1])


def test_bad_arguments_and_inputs_raise():
    with pytest.raises(TypeError, match="centralized=True or False"):
        MultiAgentMLP(3, 2, 4, share_params=True)
    with pytest.raises(TypeError, match="share_params=True or False"):
        MultiAgentMLP(3, 2, 4, centralized=True)
    with pytest.raises(ValueError, match="n_agent_inputs=None"):
        MultiAgentMLP(None, 2, 4, centralized=True, share_params=True)
    with pytest.raises(ValueError, match="BatchNorm1d"):
        _mlp(False, False, norm_class=nn.BatchNorm1d, norm_kwargs={"num_features": 8})
    with pytest.raises(ValueError, match=r"n_agents=4, n_agent_inputs=3\], got \(5, 3, 3\)"):
        _mlp(True, True)(torch.zeros(5, 3, 3))
    assert MultiAgentMLP(3, 2, 4, centralised=True, share_params=True).centralized


@pytest.mark.parametrize(("share", "central"), COMBOS)
def test_matches_torchrl(share, central):
    torchrl_models = pytest.importorskip("torchrl.modules")
    theirs = torchrl_models.MultiAgentMLP(
        3, 2, 4, centralized=central, share_params=share, depth=2, num_cells=8, activation_class=nn.ELU
    )
    ours = MultiAgentMLP(
        3, 2, 4, centralized=central, share_params=share, depth=2, num_cells=8, activation_class=nn.ELU
    )
    ours.load_state_dict(theirs.state_dict())  # TorchRL's layout: the state dict loads across
    x = torch.randn(6, 5, 4, 3)
    x_theirs = x.clone().requires_grad_()
    x_ours = x.clone().requires_grad_()
    out_theirs, out_ours = theirs(x_theirs), ours(x_ours)
    torch.testing.assert_close(out_ours, out_theirs, rtol=1e-5, atol=1e-5)
    target = torch.randn_like(out_theirs)
    (out_theirs - target).square().sum().backward()
    (out_ours - target).square().sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-5, atol=1e-5)
    grads_theirs = {k: v.grad for k, v in theirs.named_parameters()}
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, grads_theirs[name], rtol=1e-5, atol=1e-5)
