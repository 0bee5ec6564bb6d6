"""The multi-layer perceptron that policies and value functions are built from.

Examples:
    >>> import torch
    >>> net = MLP(out_features=2, num_cells=[64, 64])
    >>> net(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import prod

import torch
from torch import nn

from tdrl._compat import global_module_hooks
from tdrl.modules._plain import call_layer
from tdrl.modules.models.utils import per_layer_kwargs

__all__ = ["MLP"]


class _SharedBias(nn.Module):
    """Adds one learned scalar to every output: the bias an MLP's last layer shares across its outputs.

    The parameter is ``bias`` (shape ``[1]``, zero at start), as in TorchRL, so state dicts
    load across.
    """

    def __init__(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class MLP(nn.Sequential):
    """A multi-layer perceptron: ``depth`` hidden layers of ``num_cells`` units each.

    With several inputs, they are concatenated along the last dim first (so a Q-function
    can be called as ``mlp(observation, action)``). A missing ``in_features`` gives a lazy
    first layer (``nn.LazyLinear``) whose size is set by the first call.

    Args:
        in_features: input size; ``None`` for a lazy first layer.
        out_features: output size (an int, or a shape the output is reshaped to).
        depth: the number of hidden layers (``len(num_cells)`` when ``num_cells`` is a list).
        num_cells: hidden sizes: an int (with ``depth``) or a list (one per hidden layer).
            With neither ``depth`` nor ``num_cells`` the MLP is a single linear layer.
        activation_class: the activation after each hidden layer (default ``nn.Tanh``).
        activation_kwargs: its keyword arguments: one dict for all, or a list with one dict
            per activation (``depth``, plus one with ``activate_last_layer``).
        norm_class: an optional normalisation layer after each hidden linear layer.
        norm_kwargs: its keyword arguments (one dict, or a list as for ``activation_kwargs``).
        dropout: an optional dropout probability after each hidden layer.
        bias_last_layer: whether the output layer has a bias.
        single_bias_last_layer: give the output layer one bias shared by all its outputs
            (a scalar parameter, zero at start, added after a bias-free last layer) instead
            of one per output.
        layer_class: the linear layer class (``nn.Linear``; lazy only for ``nn.Linear``).
        layer_kwargs: keyword arguments of the linear layers: one dict for all, or a list
            of ``depth + 1`` dicts; a ``"bias"`` entry overrides ``bias_last_layer``.
        activate_last_layer: also apply the activation after the output layer.
        device: where the parameters live.

    Raises:
        ValueError: when ``out_features`` is missing, ``num_cells`` is an int without
            ``depth``, ``depth`` and ``len(num_cells)`` disagree, or a list of keyword
            arguments does not hold one dict per layer.

    Examples:
        >>> mlp = MLP(in_features=4, out_features=1, depth=2, num_cells=32, activation_class=nn.ReLU)
        >>> [type(m).__name__ for m in mlp]
        ['Linear', 'ReLU', 'Linear', 'ReLU', 'Linear']
        >>> mlp(torch.zeros(4), ).shape
        torch.Size([1])
        >>> MLP(out_features=(2, 3), num_cells=[8])(torch.zeros(7, 5)).shape
        torch.Size([7, 2, 3])
        >>> shared = MLP(in_features=4, out_features=3, num_cells=[8], single_bias_last_layer=True)
        >>> [type(m).__name__ for m in shared], shared[-1].bias.shape
        (['Linear', 'Tanh', 'Linear', '_SharedBias'], torch.Size([1]))
    """

    def __init__(
        self,
        in_features: int | None = None,
        out_features: int | Sequence[int] | torch.Size | None = None,
        depth: int | None = None,
        num_cells: int | Sequence[int] | None = None,
        activation_class: type[nn.Module] | Callable[..., nn.Module] = nn.Tanh,
        activation_kwargs: dict | Sequence[dict] | None = None,
        norm_class: type[nn.Module] | Callable[..., nn.Module] | None = None,
        norm_kwargs: dict | Sequence[dict] | None = None,
        dropout: float | None = None,
        bias_last_layer: bool = True,
        single_bias_last_layer: bool = False,
        layer_class: type[nn.Module] = nn.Linear,
        layer_kwargs: dict | Sequence[dict] | None = None,
        activate_last_layer: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        if out_features is None:
            raise ValueError("MLP needs out_features (e.g. MLP(out_features=2, num_cells=[256, 256])).")
        if num_cells is None:
            cells = [32] * depth if depth is not None else []
        elif isinstance(num_cells, int):
            if depth is None:
                raise ValueError(
                    f"MLP got num_cells={num_cells} (an int) without depth: pass depth=... or a list "
                    f"num_cells=[{num_cells}, {num_cells}, ...]."
                )
            cells = [num_cells] * depth
        else:
            cells = [int(c) for c in num_cells]
            if depth is not None and depth != len(cells):
                raise ValueError(f"MLP: depth={depth} but num_cells has {len(cells)} entries {cells}; make them agree.")
        self.in_features = in_features
        self.out_features = out_features
        self.num_cells = cells
        self.depth = len(cells)
        self.activation_class = activation_class
        self.bias_last_layer = bias_last_layer
        self.single_bias_last_layer = single_bias_last_layer
        self._out_shape = None if isinstance(out_features, int) else torch.Size(out_features)
        n_out = out_features if isinstance(out_features, int) else prod(out_features)
        depth = len(cells)
        activated = depth + int(activate_last_layer)
        counted = f"the MLP has {activated} activations (depth={depth}, activate_last_layer={activate_last_layer})"
        act_kwargs = per_layer_kwargs("MLP", "activation_kwargs", activation_kwargs, activated, counted)
        nrm_kwargs = per_layer_kwargs("MLP", "norm_kwargs", norm_kwargs, activated, counted)
        lin_kwargs = per_layer_kwargs(
            "MLP", "layer_kwargs", layer_kwargs, depth + 1, f"the MLP has {depth + 1} linear layers (depth={depth})"
        )

        layers: list[nn.Module] = []
        sizes_in = [in_features, *cells]
        sizes_out = [*cells, n_out]
        for i, (n_in, n_o) in enumerate(zip(sizes_in, sizes_out)):
            last = i == depth
            kwargs = next(lin_kwargs)
            bias = kwargs.pop("bias", bias_last_layer if last else True)
            shared_bias = last and single_bias_last_layer and bias
            kwargs = {"bias": bias and not shared_bias, "device": device, **kwargs}
            if n_in is None:
                if layer_class is not nn.Linear:
                    raise ValueError(
                        "MLP: a lazy first layer needs layer_class=nn.Linear; "
                        f"give in_features for {layer_class.__name__}."
                    )
                layers.append(nn.LazyLinear(n_o, **kwargs))
            else:
                layers.append(layer_class(n_in, n_o, **kwargs))
            if shared_bias:
                weight = next(layers[-1].parameters(), None)  # the shared bias takes the layer's dtype
                layers.append(_SharedBias(device=device, dtype=weight.dtype if weight is not None else None))
            if not last or activate_last_layer:
                if dropout is not None:
                    layers.append(nn.Dropout(dropout))
                if norm_class is not None:
                    layers.append(norm_class(**next(nrm_kwargs)))
                layers.append(activation_class(**next(act_kwargs)))
        super().__init__(*layers)
        if device is not None:
            self.to(device)  # norms and activations built without a device argument

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, -1)
        if global_module_hooks():
            for layer in self:
                x = layer(x)
        else:
            for layer in self._modules.values():
                x = call_layer(layer, x)
        if self._out_shape is not None:
            x = x.reshape(*x.shape[:-1], *self._out_shape)
        return x

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, num_cells={self.num_cells}"
