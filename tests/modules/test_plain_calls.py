"""A plain nn.Sequential policy network runs its layers without Module.__call__ (tdrl.modules._plain).

``call_direct`` (the per-step policy call, the PPO fast step, the value calls) runs a plain
``nn.Sequential`` layer by layer through ``call_layer``; these tests hold it equal to calling
the module, with hooks, parametrizations, swapped parameters and odd layers.
"""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import NormalParamExtractor
from torch import nn
from torch.nn.utils import parametrize

from tdrl.modules._lean import call_direct
from tdrl.modules._plain import call_layer, forward_sequential


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    return nn.Sequential(body, NormalParamExtractor())


def _called(net: nn.Sequential, x: torch.Tensor):
    return nn.Module.__call__(net, x)  # the module's own call, every layer through Module.__call__


def _equal(a, b) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))
    return torch.equal(a, b)


def test_outputs_and_gradients_equal_the_module_call():
    net = _net()
    x = torch.randn(5, 4)
    loc, scale = call_direct(net, x)
    assert _equal((loc, scale), _called(net, x))
    (loc.sum() + scale.sum()).backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    ref = _called(net, x)
    (ref[0].sum() + ref[1].sum()).backward()
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, net.parameters()))


def test_a_hook_on_an_inner_layer_fires_and_can_change_the_output():
    net = _net()
    x = torch.randn(2, 4)
    seen = []
    handle = net[0][1].register_forward_hook(lambda module, args, out: seen.append(type(module)) or out * 0)
    out = call_direct(net, x)
    assert seen == [nn.Tanh]
    assert _equal(out, _called(net, x))
    handle.remove()
    pre = net[0].register_forward_pre_hook(lambda module, args: (args[0] * 0,))  # on the nested Sequential
    assert _equal(call_direct(net, x), net[1](net[0][4](net[0][3](net[0][2](net[0][1](net[0][0](x * 0)))))))
    pre.remove()
    assert _equal(call_direct(net, x), _called(net, x))


def test_a_global_hook_sees_every_layer():
    net = _net()
    seen = []
    handle = nn.modules.module.register_module_forward_hook(lambda module, args, out: seen.append(type(module)))
    try:
        call_direct(net, torch.randn(4))
    finally:
        handle.remove()
    assert seen.count(nn.Linear) == 3
    assert seen.count(nn.Tanh) == 1
    assert seen.count(nn.ReLU) == 1
    assert seen[-1] is nn.Sequential


def test_parametrized_inplace_and_subclassed_layers_run_as_modules():
    net = _net()
    parametrize.register_parametrization(net[0][0], "weight", _Halve())
    x = torch.randn(3, 4)
    assert _equal(call_direct(net, x), _called(net, x))
    inplace = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))
    assert torch.equal(call_direct(inplace, x), _called(inplace, x))
    custom = nn.Sequential(nn.Linear(4, 4), _Doubled())
    assert torch.equal(call_direct(custom, x), _called(custom, x))
    assert torch.equal(call_direct(custom, x), 2 * custom[0](x))


class _Halve(nn.Module):
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / 2


class _Doubled(nn.Tanh):
    """A subclass of a plain layer with its own forward: it must run, not Tanh's op."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def test_swapped_and_replaced_parameters_are_the_ones_used():
    net = _net()
    x = torch.randn(3, 4)
    zeros = TensorDict.from_module(net).detach().apply(torch.zeros_like)
    with zeros.to_module(net):  # plain tensors swapped in (tensordict keeps them as instance attributes)
        assert _equal(call_direct(net, x), _called(net, x))
        assert torch.equal(call_direct(net, x)[0], torch.zeros(3, 2))
    net[0][0].weight = nn.Parameter(torch.ones(8, 4))
    assert _equal(call_direct(net, x), _called(net, x))
    no_bias = nn.Sequential(nn.Linear(4, 2, bias=False), nn.Tanh())
    assert torch.equal(call_direct(no_bias, x), _called(no_bias, x))
    params = {"0.0.weight": torch.zeros(8, 4), "0.0.bias": torch.ones(8)}
    functional = torch.func.functional_call(net, params, (x,))
    with torch.no_grad():
        saved = net[0][0].weight.clone(), net[0][0].bias.clone()
        net[0][0].weight.zero_()
        net[0][0].bias.fill_(1.0)
        assert _equal(functional, call_direct(net, x))
        net[0][0].weight.copy_(saved[0])
        net[0][0].bias.copy_(saved[1])


def test_a_sequential_called_with_two_inputs_fails_as_torch_does():
    net = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(TypeError):
        call_direct(net, torch.randn(4), torch.randn(4))
    with pytest.raises(TypeError):
        net(torch.randn(4), torch.randn(4))


def test_call_layer_and_forward_sequential_on_their_own():
    net = _net()
    x = torch.randn(4)
    assert torch.equal(call_layer(net[0][0], x), net[0][0](x))
    assert torch.equal(forward_sequential(net[0], x), net[0](x))
    assert _equal(forward_sequential(net, x), net(x))


def test_the_seed_actor_draws_the_same_actions_as_through_module_calls():
    """The seed tutorial's ProbabilisticActor (nested Sequential + NormalParamExtractor) is unchanged."""
    from tensordict.nn import TensorDictModule

    from tdrl.envs.utils import ExplorationType, set_exploration_type
    from tdrl.modules import ProbabilisticActor, TanhNormal

    net = _net()
    net[0][4] = nn.Linear(8, 2)
    actor = ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        return_log_prob=True,
    )
    obs = torch.randn(3, 4)
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):
        torch.manual_seed(1)
        ours = actor(TensorDict(observation=obs, batch_size=[3]))
        torch.manual_seed(1)
        loc, scale = _called(net, obs)
        dist = TanhNormal(loc, scale)
        action = dist.sample()
    assert torch.equal(ours["loc"], loc)
    assert torch.equal(ours["scale"], scale)
    assert torch.equal(ours["action"], action)
    assert torch.allclose(ours["sample_log_prob"], dist.log_prob(action))


class _OwnCall(nn.Module):
    """A layer whose class defines its own __call__: it must be the one that runs."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - __call__ does not call it
        raise AssertionError("forward ran instead of __call__")


def test_other_layers_run_their_forward_or_their_own_call():
    x = torch.randn(2, 4)
    net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), _OwnCall(), nn.Dropout(0.0))
    assert torch.equal(call_direct(net, x), _called(net, x))
    seen = []
    handle = net[1].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    call_direct(net, x)
    handle.remove()
    assert seen == [torch.Size([2, 4])]
    with pytest.raises(TypeError, match="not callable"):
        forward_sequential(_with_none(), x)


def _with_none() -> nn.Sequential:
    seq = nn.Sequential(nn.Linear(4, 4))
    seq.register_module("gap", None)
    return seq


@pytest.mark.parametrize("mapping", ["biased_softplus_1.0", "biased_softplus_1.0_0.0001", "exp", "softplus"])
def test_normal_param_extractor_runs_as_its_forward(mapping):
    """tensordict's NormalParamExtractor: its biased_softplus scale inline, other mappings through forward."""
    extractor = NormalParamExtractor(scale_mapping=mapping, scale_lb=1e-3)
    net = nn.Sequential(nn.Linear(4, 6), extractor)
    x = torch.randn(5, 4, requires_grad=True)
    ours = call_direct(net, x)
    ref = _called(net, x)
    assert _equal(ours, ref)
    (ours[0].sum() + ours[1].sum()).backward()
    grad = x.grad.clone()
    x.grad = None
    (ref[0].sum() + ref[1].sum()).backward()
    assert torch.equal(grad, x.grad)


def test_a_hook_on_the_scale_mapping_still_fires():
    extractor = NormalParamExtractor()
    net = nn.Sequential(nn.Linear(4, 6), extractor)
    seen = []
    handle = extractor.scale_mapping.register_forward_hook(lambda module, args, out: seen.append(out.shape) or out * 2)
    x = torch.randn(2, 4)
    ours = call_direct(net, x)
    handle.remove()
    assert seen == [torch.Size([2, 3])]
    assert torch.equal(ours[1], (2 * extractor.scale_mapping(net[0](x).chunk(2, -1)[1])).clamp_min(extractor.scale_lb))
