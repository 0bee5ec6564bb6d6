"""MultiAgentConvNet: shapes, which images each agent reads, TorchRL's parameter layout, lazy input, parity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tdrl.modules import MultiAgentConvNet
from tdrl.modules.models import MultiAgentConvNet as FromModels

COMBOS = [(share, central) for share in (True, False) for central in (True, False)]
N_AGENTS, CHANNELS, SIDE = 3, 2, 9
CONV = {"num_cells": [4, 5], "kernel_sizes": [3, 2], "strides": [2, 1], "paddings": [1, 0]}


def _cnn(share, central, in_features=CHANNELS, **kwargs):
    return MultiAgentConvNet(
        N_AGENTS, centralized=central, share_params=share, in_features=in_features, **{**CONV, **kwargs}
    )


def _images(*batch):
    return torch.randn(*batch, N_AGENTS, CHANNELS, SIDE, SIDE)


def test_exported_next_to_multiagent_mlp():
    assert FromModels is MultiAgentConvNet


@pytest.mark.parametrize(("share", "central"), COMBOS)
@pytest.mark.parametrize("use_td_params", [True, False])
def test_shapes_state_dict_keys_and_every_parameter_gets_a_gradient(share, central, use_td_params):
    cnn = _cnn(share, central, use_td_params=use_td_params)
    out = cnn(_images(6, 2))
    assert out.shape == (6, 2, N_AGENTS, 5 * 4 * 4)  # 9x9 -> 5x5 (stride 2, pad 1) -> 4x4
    out.square().sum().backward()
    assert len(list(cnn.parameters())) == 4  # two convs, weight and bias: stacked per agent, not repeated
    assert all(p.grad is not None for p in cnn.parameters())
    prefix = "params." if use_td_params else "_empty_net."
    state = cnn.state_dict()
    assert sorted(state) == sorted(f"{prefix}{i}.{n}" for i in (0, 2) for n in ("weight", "bias"))
    agents = () if share else (N_AGENTS,)
    assert state[f"{prefix}0.weight"].shape == (*agents, 4, CHANNELS * (N_AGENTS if central else 1), 3, 3)
    assert state[f"{prefix}2.bias"].shape == (*agents, 5)


@pytest.mark.parametrize(("share", "central"), COMBOS)
def test_which_images_each_agent_reads(share, central):
    cnn = _cnn(share, central)
    x = _images(4)
    changed = x.clone()
    changed[:, 1] += 1.0  # only agent 1's image changes
    moved = (cnn(changed) - cnn(x)).abs().amax((0, 2)) > 1e-6
    expected = torch.ones(N_AGENTS, dtype=torch.bool) if central else torch.tensor([False, True, False])
    assert torch.equal(moved, expected)


@pytest.mark.parametrize("central", [True, False])
def test_each_agent_runs_its_own_convnet(central):
    cnn = _cnn(False, central)
    x = _images(4)
    out = cnn(x)
    inputs = x.flatten(-4, -3) if central else None
    for agent in range(N_AGENTS):
        weights = {name: value[agent] for name, value in cnn.params.named_parameters()}
        alone = torch.func.functional_call(cnn._template, weights, (inputs if central else x[:, agent],))
        torch.testing.assert_close(out[:, agent], alone)


def test_shared_centralised_output_is_the_same_for_every_agent():
    out = _cnn(True, True)(_images(4))
    assert torch.equal(out[:, 0], out[:, 1])
    assert torch.equal(out[:, 0], out[:, 2])


def test_no_batch_dim():
    assert _cnn(False, False)(_images()).shape == (N_AGENTS, 80)


@pytest.mark.parametrize(("share", "central"), COMBOS)
@pytest.mark.parametrize("use_td_params", [True, False])
def test_lazy_input_channels_are_read_on_the_first_call(share, central, use_td_params):
    cnn = _cnn(share, central, in_features=None, use_td_params=use_td_params)
    first = [p for p in cnn.parameters() if isinstance(p, nn.UninitializedParameter)]
    assert len(first) == 2  # the first conv's weight and bias wait for the input size
    optimizer = torch.optim.SGD(cnn.parameters(), lr=0.1)
    out = cnn(_images(4))
    assert cnn.in_features == CHANNELS
    assert not any(isinstance(p, nn.UninitializedParameter) for p in cnn.parameters())
    prefix = "params." if use_td_params else "_empty_net."
    weight = cnn.state_dict()[f"{prefix}0.weight"]
    assert weight.shape[-3] == CHANNELS * (N_AGENTS if central else 1)
    if not share:  # each agent drew its own first layer
        assert not torch.equal(weight[0], weight[1])
    before = weight.clone()
    out.square().sum().backward()
    optimizer.step()  # the optimizer built before the first call updates the materialised parameters
    assert not torch.equal(cnn.state_dict()[f"{prefix}0.weight"], before)
    # the materialised network equals one built with the size given
    eager = _cnn(share, central, use_td_params=use_td_params)
    eager.load_state_dict(cnn.state_dict())
    x = _images(2)
    torch.testing.assert_close(eager(x), cnn(x))


def test_reset_parameters_draws_new_weights_per_agent():
    cnn = _cnn(False, False)
    before = cnn.params["0", "weight"].clone()
    cnn.reset_parameters()
    after = cnn.params["0", "weight"]
    assert not torch.equal(before, after)
    assert not torch.equal(after[0], after[1])
    with pytest.raises(RuntimeError, match="call the network once"):
        _cnn(False, False, in_features=None).reset_parameters()


def test_bad_arguments_and_inputs_raise():
    with pytest.raises(TypeError, match="centralized=True or False"):
        MultiAgentConvNet(3, share_params=True)
    with pytest.raises(TypeError, match="share_params=True or False"):
        MultiAgentConvNet(3, centralized=True)
    with pytest.raises(ValueError, match="n_agents must be >= 1"):
        MultiAgentConvNet(0, centralized=True, share_params=True)
    with pytest.raises(ValueError, match="BatchNorm2d"):
        _cnn(False, False, norm_class=nn.BatchNorm2d, norm_kwargs={"num_features": 4})
    expected = r"\[\*B, n_agents=3, channels=2, height, width\], got \(5, 4, 2, 9, 9\)"
    with pytest.raises(ValueError, match=expected):
        _cnn(True, False)(torch.zeros(5, 4, CHANNELS, SIDE, SIDE))  # 4 agents
    with pytest.raises(ValueError, match=r"channels=2, height, width\], got \(5, 3, 1, 9, 9\)"):
        _cnn(False, True)(torch.zeros(5, N_AGENTS, 1, SIDE, SIDE))  # 1 channel
    with pytest.raises(ValueError, match=r"channels=C, height, width\], got \(3, 9, 9\)"):
        _cnn(False, False, in_features=None)(torch.zeros(N_AGENTS, SIDE, SIDE))  # no channel dim
    assert MultiAgentConvNet(3, centralised=True, share_params=True).centralized


@pytest.mark.parametrize(("share", "central"), COMBOS)
@pytest.mark.parametrize("use_td_params", [True, False])
def test_matches_torchrl(share, central, use_td_params):
    torchrl_models = pytest.importorskip("torchrl.modules")
    kwargs = dict(centralized=central, share_params=share, in_features=CHANNELS, use_td_params=use_td_params, **CONV)
    theirs = torchrl_models.MultiAgentConvNet(N_AGENTS, activation_class=nn.Tanh, **kwargs)
    ours = MultiAgentConvNet(N_AGENTS, activation_class=nn.Tanh, **kwargs)
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())  # TorchRL's layout: the state dict loads across
    x = _images(3, 2)
    x_theirs = x.clone().requires_grad_()
    x_ours = x.clone().requires_grad_()
    out_theirs, out_ours = theirs(x_theirs), ours(x_ours)
    torch.testing.assert_close(out_ours, out_theirs, rtol=1e-5, atol=1e-5)
    target = torch.randn_like(out_theirs)
    (out_theirs - target).square().sum().backward()
    (out_ours - target).square().sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-5, atol=1e-5)
    grads_theirs = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, grads_theirs[name].grad, rtol=1e-5, atol=1e-5)
    # and back: our state dict loads into TorchRL's network
    theirs.load_state_dict(ours.state_dict())


def test_matches_torchrl_defaults_and_lazy_input():
    torchrl_models = pytest.importorskip("torchrl.modules")
    theirs = torchrl_models.MultiAgentConvNet(N_AGENTS, centralized=False, share_params=False)
    ours = MultiAgentConvNet(N_AGENTS, centralized=False, share_params=False)
    x = torch.randn(2, N_AGENTS, CHANNELS, 40, 40)  # the defaults: three 5x5 convs of stride 2
    theirs(x), ours(x)  # both read the channels from the first input
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("share", "central"), COMBOS)
@pytest.mark.parametrize("use_td_params", [True, False])
def test_a_lazy_network_takes_its_input_size_from_a_state_dict(share, central, use_td_params):
    sized = _cnn(share, central, use_td_params=use_td_params)
    lazy = _cnn(share, central, in_features=None, use_td_params=use_td_params)
    lazy.load_state_dict(sized.state_dict())
    assert lazy.in_features == CHANNELS
    x = _images(3)
    torch.testing.assert_close(lazy(x), sized(x))
