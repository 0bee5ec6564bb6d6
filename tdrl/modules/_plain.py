"""Per-step layer calls without ``nn.Module.__call__``: the policy's network on one observation.

On one observation a 3x256 MLP's matrix products cost about as much as the module machinery
around them: ``Module.__call__`` per layer and ``Module.__getattr__`` per parameter read. A
plain layer (exactly ``nn.Linear``, ``nn.Tanh``, a not-in-place ``nn.ReLU``, or an
``nn.Sequential`` of such) with no hook of its own and not compiled runs here as the op its
``forward`` runs, with the same tensors (so does tensordict's ``NormalParamExtractor`` with its
default ``biased_softplus`` scale); another layer without hooks runs its ``forward``;
a hooked or compiled layer, or one whose class has its own ``__call__``, goes through
``Module.__call__`` as usual (a subclass of a plain layer, e.g. a parametrized one, runs its
own ``forward``).

Callers check the global hooks and ``torch.jit`` tracing once per call (:func:`call_direct`
in ``tdrl.modules._lean``, ``MLP.forward``): a global hook runs for every module.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from tensordict.nn import NormalParamExtractor, biased_softplus
from torch import nn

from tdrl._compat import module_call_is_forward, module_children, module_parameters

__all__ = ["call_layer", "forward_sequential"]


def call_layer(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)``, with a plain layer's op run directly (see the module docstring)."""
    kind = type(layer)
    if kind is nn.Linear and module_call_is_forward(layer):
        # its forward, with the parameters read from the module's parameter dict (not Module.__getattr__)
        params, own = module_parameters(layer), layer.__dict__
        weight = params.get("weight")
        if weight is not None and "bias" in params and "weight" not in own and "bias" not in own:
            return F.linear(x, weight, params["bias"])
        return F.linear(x, cast(torch.Tensor, layer.weight), cast("torch.Tensor | None", layer.bias))
    if kind is nn.Tanh and module_call_is_forward(layer):
        return torch.tanh(x)  # Tanh.forward's call
    if kind is nn.ReLU and module_call_is_forward(layer) and not layer.inplace:
        return torch.relu(x)  # ReLU.forward's call (F.relu, not in place)
    if kind is nn.Sequential and module_call_is_forward(layer):
        return forward_sequential(cast(nn.Sequential, layer), x)
    if kind is NormalParamExtractor and module_call_is_forward(layer):
        mapping = module_children(layer).get("scale_mapping")
        if type(mapping) is biased_softplus and module_call_is_forward(mapping):
            # NormalParamExtractor.forward and biased_softplus.forward, their ops in their order
            loc, scale = x.chunk(2, -1)
            scale = (F.softplus(scale + mapping.bias) + mapping.min_val).clamp_min(cast(float, layer.scale_lb))
            return loc, scale  # type: ignore[return-value]  # a policy head's (loc, scale), as its forward returns
    if isinstance(layer, nn.Module) and kind.__call__ is _MODULE_CALL and module_call_is_forward(layer):
        return layer.forward(x)  # what Module.__call__ would run (e.g. LayerNorm, another scale mapping)
    return layer(x)


_MODULE_CALL = nn.Module.__call__


def forward_sequential(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``nn.Sequential.forward``: each layer in turn, through :func:`call_layer`."""
    for layer in module_children(seq).values():
        # (no typing.cast here: a Python call per layer; a None entry fails in layer(x), as in torch)
        x = call_layer(layer, x)  # type: ignore[arg-type]
    return x
