"""ConvNet, the dueling Q-networks and DDPG's networks: shapes, initialisation, errors, and TorchRL parity (MLP too)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
import torch
from torch import nn

import tdrl.modules.models as ours
from tdrl.modules import ValueOperator
from tdrl.modules.models import (
    ConvNet,
    DdpgCnnActor,
    DdpgCnnQNet,
    DdpgMlpActor,
    DdpgMlpQNet,
    DuelingCnnDQNet,
    DuelingMlpDQNet,
    SquashDims,
    Squeeze2dLayer,
    SqueezeLayer,
    ddpg_init_last_layer,
)


# --- ConvNet --------------------------------------------------------------------------
def test_convnet_layers_follow_the_per_layer_arguments():
    net = ConvNet(
        in_features=3,
        num_cells=[8, 16],
        kernel_sizes=[5, (2, 3)],
        strides=[2, 1],
        paddings=[1, 0],
        activation_class=nn.ReLU,
        norm_class=nn.BatchNorm2d,
        norm_kwargs=[{"num_features": 8}, {"num_features": 16}],
    )
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 8), (8, 16)]
    assert [c.kernel_size for c in convs] == [(5, 5), (2, 3)]
    assert [c.stride for c in convs] == [(2, 2), (1, 1)]
    assert [c.padding for c in convs] == [(1, 1), (0, 0)]
    assert [type(m).__name__ for m in net] == [
        "Conv2d",
        "ReLU",
        "BatchNorm2d",
        "Conv2d",
        "ReLU",
        "BatchNorm2d",
        "SquashDims",
    ]
    # 20 -> (20 + 2 - 5) // 2 + 1 = 9 -> (9 - 2) + 1 = 8 rows, (9 - 3) + 1 = 7 columns
    assert net(torch.zeros(4, 3, 20, 20)).shape == (4, 16 * 8 * 7)


def test_convnet_defaults_and_batch_dims():
    net = ConvNet()
    assert net.num_cells == [32, 32, 32]
    assert isinstance(net[0], nn.LazyConv2d)
    assert isinstance(net[1], nn.ELU)
    x = torch.randn(2, 3, 1, 10, 10)
    out = net(x)
    assert out.shape == (2, 3, 32 * 4 * 4)
    torch.testing.assert_close(out[1, 2], net(x[1, 2]))  # batch dims are independent, none needed


def test_convnet_pooled_and_squeezed_output():
    net = ConvNet(
        num_cells=[4, 6],
        aggregator_class=nn.AdaptiveAvgPool2d,
        aggregator_kwargs={"output_size": (1, 1)},
        squeeze_output=True,
    )
    assert net(torch.zeros(5, 2, 9, 9)).shape == (5, 6)


def test_convnet_bad_arguments_say_what_to_give():
    with pytest.raises(ValueError, match=r"depth=3 but \{'kernel_sizes': 2\}"):
        ConvNet(num_cells=[8, 8, 8], kernel_sizes=[3, 3])
    with pytest.raises(ValueError, match="depth=None needs one of num_cells"):
        ConvNet(num_cells=8)
    with pytest.raises(ValueError, match=r"norm_kwargs has 1 dicts but the network has depth=2"):
        ConvNet(num_cells=[4, 4], norm_class=nn.BatchNorm2d, norm_kwargs=[{"num_features": 4}])
    with pytest.raises(ValueError, match=r"shape \(3, 10\).*at least 3 dims"):
        ConvNet(num_cells=[4])(torch.zeros(3, 10))


def test_atari_dqn_is_the_nature_network():
    net = ConvNet.default_atari_dqn(6)
    out = net(torch.zeros(2, 4, 84, 84))
    assert out.shape == (2, 6)
    convs = [m for m in net[0] if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [(32, 8, 4), (64, 4, 2), (64, 3, 1)]
    assert net[1][0].out_features == 512


def test_shape_layers():
    assert SquashDims(2)(torch.zeros(3, 4, 5)).shape == (3, 20)
    assert Squeeze2dLayer()(torch.zeros(2, 7, 1, 1)).shape == (2, 7)
    with pytest.raises(ValueError, match="dim -1 has size 3, not 1"):
        SqueezeLayer()(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="must all be negative"):
        SqueezeLayer((1,))


# --- dueling Q-networks -------------------------------------------------------------------
def test_dueling_q_values_average_to_the_state_value():
    net = DuelingMlpDQNet(out_features=5, mlp_kwargs_feature={"num_cells": [16], "out_features": 16})
    x = torch.randn(7, 3)
    q = net(x)
    assert q.shape == (7, 5)
    torch.testing.assert_close(q.mean(-1, keepdim=True), net.value(net.features(x)))
    # the advantage decides the ranking of the actions
    adv = net.advantage(net.features(x))
    assert torch.equal(q.argmax(-1), adv.argmax(-1))


def test_dueling_biases_start_at_zero_where_the_layer_size_is_known():
    net = DuelingMlpDQNet(out_features=3, mlp_kwargs_feature={"in_features": 4})
    for name, param in net.named_parameters():
        if name.endswith("bias") and not isinstance(param, nn.parameter.UninitializedParameter):
            assert torch.count_nonzero(param) == 0, name
    cnn = DuelingCnnDQNet(out_features=4)
    assert cnn(torch.zeros(1, 4, 84, 84)).shape == (1, 4)
    assert torch.count_nonzero(cnn.features[2].bias) == 0


def test_dueling_mlp_with_an_output_shape():
    net = DuelingMlpDQNet(out_features=(3, 2))
    x = torch.randn(4, 5)
    q = net(x)
    assert q.shape == (4, 3, 2)
    value = net.value(net.features(x))  # [4, 1]: one value per batch element, added to all six entries
    torch.testing.assert_close(q.mean(-1), value.expand(4, 3))


# --- DDPG -----------------------------------------------------------------------------------
def test_ddpg_last_layers_start_small():
    actor, critic = DdpgMlpActor(action_dim=2, mlp_net_kwargs={"in_features": 6}), DdpgMlpQNet()
    assert actor.mlp[-1].weight.abs().max() <= 3e-3
    assert actor.mlp[-1].bias.abs().max() <= 3e-3
    assert critic.mlp2[-1].weight.abs().max() <= 3e-3
    obs = torch.randn(9, 6)
    assert actor(obs).abs().max() < 0.1  # near zero at the start, as in the paper
    value = ValueOperator(critic, in_keys=["observation", "action"])
    from tensordict import TensorDict

    td = value(TensorDict(observation=obs, action=actor(obs), batch_size=[9]))
    assert td["state_action_value"].shape == (9, 1)


def test_ddpg_cnn_networks():
    actor, critic = DdpgCnnActor(action_dim=3), DdpgCnnQNet()
    pixels = torch.zeros(2, 3, 64, 64)
    action, hidden = actor(pixels)
    assert action.shape == (2, 3)
    assert hidden.shape == (2, 64 * 6 * 6)
    assert critic(pixels, action).shape == (2, 1)
    pooled_actor = DdpgCnnActor(action_dim=3, use_avg_pooling=True)
    assert pooled_actor(pixels)[1].shape == (2, 64)


def test_ddpg_init_last_layer_errors():
    with pytest.raises(ValueError, match=r"no nn\.Linear or nn\.Conv2d"):
        ddpg_init_last_layer(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="is lazy"):
        ddpg_init_last_layer(nn.Sequential(nn.LazyLinear(3)))


# --- TorchRL parity --------------------------------------------------------------------------
def _obs(*shape: int) -> Callable[[], tuple[torch.Tensor, ...]]:
    return lambda: (torch.randn(*shape),)


def _obs_action(obs: tuple[int, ...], action: tuple[int, ...]) -> Callable[[], tuple[torch.Tensor, ...]]:
    return lambda: (torch.randn(*obs), torch.randn(*action))


PARITY_CASES = {
    "mlp-default": ("MLP", {"out_features": 3}, _obs(4, 5)),
    "mlp-single-bias": (
        "MLP",
        {"in_features": 5, "out_features": 3, "num_cells": [8, 6], "single_bias_last_layer": True},
        _obs(4, 5),
    ),
    "mlp-lazy-single-bias-shaped": (
        "MLP",
        {
            "out_features": (2, 3),
            "depth": 2,
            "num_cells": 7,
            "single_bias_last_layer": True,
            "activate_last_layer": True,
        },
        _obs(4, 5),
    ),
    "mlp-per-layer": (
        "MLP",
        {
            "in_features": 5,
            "out_features": 2,
            "num_cells": [6, 4],
            "activation_class": nn.LeakyReLU,
            "activation_kwargs": [{"negative_slope": 0.1}, {"negative_slope": 0.3}],
            "norm_class": nn.LayerNorm,
            "norm_kwargs": [{"normalized_shape": 6}, {"normalized_shape": 4}],
            "layer_kwargs": [{}, {"bias": False}, {}],
            "single_bias_last_layer": True,
        },
        _obs(3, 5),
    ),
    "convnet-default": ("ConvNet", {}, _obs(2, 3, 12, 12)),
    "convnet-per-layer": (
        "ConvNet",
        {
            "in_features": 3,
            "num_cells": [8, 16],
            "kernel_sizes": [5, (2, 3)],
            "strides": [2, 1],
            "paddings": [1, 0],
            "activation_class": nn.ReLU,
            "activation_kwargs": [{}, {"inplace": False}],
            "norm_class": nn.BatchNorm2d,
            "norm_kwargs": [{"num_features": 8}, {"num_features": 16}],
        },
        _obs(4, 3, 20, 20),
    ),
    "convnet-int-depth": ("ConvNet", {"depth": 2, "num_cells": 6, "strides": 2}, _obs(2, 5, 3, 17, 17)),
    "convnet-pooled": (
        "ConvNet",
        {
            "num_cells": [4, 6],
            "aggregator_class": nn.AdaptiveAvgPool2d,
            "aggregator_kwargs": {"output_size": (1, 1)},
            "squeeze_output": True,
        },
        _obs(3, 2, 9, 9),
    ),
    "dueling-mlp": ("DuelingMlpDQNet", {"out_features": 4}, _obs(5, 7)),
    "dueling-mlp-shape": (
        "DuelingMlpDQNet",
        {"out_features": (3, 2), "mlp_kwargs_output": {"num_cells": 32}},
        _obs(1, 7),  # TorchRL broadcasts the value wrongly for a batch of more than one
    ),
    "dueling-cnn": ("DuelingCnnDQNet", {"out_features": 6}, _obs(2, 4, 36, 36)),
    "ddpg-mlp-actor": ("DdpgMlpActor", {"action_dim": 3}, _obs(5, 7)),
    "ddpg-mlp-qnet": ("DdpgMlpQNet", {}, _obs_action((5, 7), (5, 3))),
    "ddpg-cnn-actor": ("DdpgCnnActor", {"action_dim": 2}, _obs(2, 3, 64, 64)),
    "ddpg-cnn-qnet": ("DdpgCnnQNet", {}, _obs_action((2, 3, 64, 64), (2, 2))),
}


def _outputs(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_same_parameters_and_outputs_as_torchrl(case):
    trl_models = pytest.importorskip("torchrl.modules.models")
    name, kwargs, make_inputs = PARITY_CASES[case]
    inputs = make_inputs()

    # built from the same seed, the two networks draw the same initial parameters
    torch.manual_seed(1)
    theirs = getattr(trl_models, name)(**kwargs)
    theirs(*inputs)  # lazy layers take their sizes (and draw their parameters) on the first call
    torch.manual_seed(1)
    mine = getattr(ours, name)(**kwargs)
    mine(*inputs)
    their_state, my_state = theirs.state_dict(), mine.state_dict()
    assert list(my_state) == list(their_state)
    for key in their_state:
        assert my_state[key].shape == their_state[key].shape, key
        torch.testing.assert_close(my_state[key], their_state[key], rtol=0, atol=0, msg=key)

    # with parameters copied across from a network drawn differently, the outputs agree
    torch.manual_seed(2)
    other = getattr(ours, name)(**kwargs)
    other(*inputs)
    other.load_state_dict(their_state)
    for mine_out, their_out in zip(_outputs(other(*inputs)), _outputs(theirs(*inputs))):
        torch.testing.assert_close(mine_out, their_out, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "name",
    [
        "MLP",
        "ConvNet",
        "DuelingMlpDQNet",
        "DuelingCnnDQNet",
        "DdpgMlpActor",
        "DdpgMlpQNet",
        "DdpgCnnActor",
        "DdpgCnnQNet",
    ],
)
def test_same_constructor_arguments_as_torchrl(name):
    trl_models = pytest.importorskip("torchrl.modules.models")

    def params(cls: type) -> list[tuple[str, str]]:
        out = []
        for p in inspect.signature(cls).parameters.values():
            default = p.default
            shown = getattr(default, "__name__", repr(default)) if default is not p.empty else "-"
            out.append((p.name, shown))
        return out

    assert params(getattr(ours, name)) == params(getattr(trl_models, name))


def test_ddpg_init_last_layer_draws_as_torchrl():
    trl = pytest.importorskip("torchrl.modules.models.models")
    a, b = nn.Sequential(nn.Linear(4, 3), nn.ReLU()), nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    torch.manual_seed(5)
    ddpg_init_last_layer(a, 0.1)
    torch.manual_seed(5)
    trl.ddpg_init_last_layer(b, 0.1)
    torch.testing.assert_close(a.state_dict(), b.state_dict(), rtol=0, atol=0)
