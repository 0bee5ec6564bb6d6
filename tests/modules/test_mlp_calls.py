"""MLP runs plain Linear/ReLU layers without Module.__call__; hooks and special layers keep it."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from tdrl.modules import MLP


def _mlp(**kwargs) -> MLP:
    torch.manual_seed(0)
    return MLP(in_features=4, out_features=3, num_cells=[8, 8], activation_class=nn.ReLU, **kwargs)


def _layerwise(mlp: MLP, x: torch.Tensor) -> torch.Tensor:
    for layer in mlp:
        x = layer(x)
    return x


def test_output_and_gradients_equal_calling_each_layer():
    mlp = _mlp()
    x = torch.randn(5, 4)
    out = mlp(x)
    assert torch.equal(out, _layerwise(mlp, x))
    out.sum().backward()
    grads = [p.grad.clone() for p in mlp.parameters()]
    mlp.zero_grad()
    _layerwise(mlp, x).sum().backward()
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, mlp.parameters()))


def test_a_layer_hook_still_fires_and_can_change_the_output():
    mlp = _mlp()
    x = torch.randn(2, 4)
    seen = []
    handle = mlp[0].register_forward_hook(lambda module, args, out: seen.append(out.shape) or out * 0)
    out = mlp(x)
    assert seen == [torch.Size([2, 8])]
    expected = mlp[-1](mlp[3](mlp[2](torch.zeros(2, 8))))  # the zeroed first layer flows through the rest
    assert torch.allclose(out, expected)
    handle.remove()
    pre = mlp[1].register_forward_pre_hook(lambda module, args: (args[0] * 0,))
    assert torch.allclose(mlp(x), mlp[-1](mlp[3](mlp[2](torch.zeros(2, 8)))))
    pre.remove()
    assert torch.equal(mlp(x), _layerwise(mlp, x))


def test_a_global_hook_sees_every_layer():
    mlp = _mlp()
    seen = []
    handle = nn.modules.module.register_module_forward_hook(lambda module, args, out: seen.append(type(module)))
    try:
        mlp(torch.randn(4))
    finally:
        handle.remove()
    assert seen.count(nn.Linear) == 3
    assert seen.count(nn.ReLU) == 2
    assert seen[-1] is MLP


def test_parametrized_inplace_and_lazy_layers_run_as_modules():
    mlp = _mlp()
    parametrize.register_parametrization(mlp[0], "weight", _Halve())
    x = torch.randn(3, 4)
    assert torch.equal(mlp(x), _layerwise(mlp, x))
    inplace = _mlp(activation_kwargs={"inplace": True})
    assert torch.equal(inplace(x), _layerwise(inplace, x))
    lazy = MLP(out_features=2, num_cells=[8], activation_class=nn.ReLU)
    assert lazy(x).shape == (3, 2)


class _Halve(nn.Module):
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / 2


def test_a_layer_backward_hook_still_fires():
    mlp = _mlp()
    seen = []
    handle = mlp[2].register_full_backward_hook(lambda module, grad_in, grad_out: seen.append(grad_out[0].shape))
    mlp(torch.randn(3, 4)).sum().backward()
    handle.remove()
    assert seen == [torch.Size([3, 8])]


def test_swapped_and_replaced_parameters_are_the_ones_used():
    """The layers' parameters are read where Module.__getattr__ would find them: swaps and replacements count."""
    from tensordict import TensorDict

    mlp = _mlp()
    x = torch.randn(3, 4)
    zeros = TensorDict.from_module(mlp).detach().apply(torch.zeros_like)
    with zeros.to_module(mlp):  # plain tensors swapped in (tensordict keeps them as instance attributes)
        assert torch.equal(mlp(x), torch.zeros(3, 3))
        assert torch.equal(mlp(x), _layerwise(mlp, x))
    assert torch.equal(mlp(x), _layerwise(mlp, x))
    mlp[0].weight = nn.Parameter(torch.ones(8, 4))  # a new parameter object
    assert torch.equal(mlp(x), _layerwise(mlp, x))
    no_bias = MLP(in_features=4, out_features=3, num_cells=[8], activation_class=nn.ReLU, bias_last_layer=False)
    assert no_bias[-1].bias is None
    assert torch.equal(no_bias(x), _layerwise(no_bias, x))
    functional = torch.func.functional_call(mlp, {"0.weight": torch.zeros(8, 4), "0.bias": torch.zeros(8)}, (x,))
    expected = torch.zeros(3, 8)  # relu(first layer) with zero weights and bias
    for layer in list(mlp)[2:]:
        expected = layer(expected)
    assert torch.equal(functional, expected)
