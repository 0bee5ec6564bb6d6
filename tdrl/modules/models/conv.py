"""The convolutional network that pixel policies and Q-networks are built from.

Examples:
    >>> import torch
    >>> net = ConvNet(num_cells=[16, 32], kernel_sizes=[8, 4], strides=[4, 2])
    >>> net(torch.zeros(5, 3, 64, 64)).shape
    torch.Size([5, 1152])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from tdrl.modules.models.mlp import MLP
from tdrl.modules.models.utils import SquashDims, Squeeze2dLayer, per_layer_kwargs

__all__ = ["ConvNet", "Conv2dNet"]

_Size = int | tuple[int, int]


def _depth(depth: int | None, named: dict[str, Any]) -> int:
    """The number of conv layers: ``depth``, else the length of the list arguments (which must agree)."""
    lengths = {name: len(value) for name, value in named.items() if isinstance(value, (list, tuple))}
    if depth is None:
        if not lengths:
            raise ValueError(
                "ConvNet: depth=None needs one of num_cells, kernel_sizes, strides or paddings as a list "
                f"(one entry per layer); got {named}."
            )
        depth = next(iter(lengths.values()))
    if depth <= 0:
        raise ValueError(f"ConvNet: depth must be >= 1, got {depth}.")
    wrong = {name: n for name, n in lengths.items() if n != depth}
    if wrong:
        raise ValueError(
            f"ConvNet: depth={depth} but {wrong} entries were given; give one entry per layer, or an int "
            f"for the same value in every layer."
        )
    return depth


class ConvNet(nn.Sequential):
    """A stack of ``Conv2d`` layers, each followed by an activation (and a norm), then an aggregator.

    Each of ``num_cells`` (output channels), ``kernel_sizes``, ``strides`` and ``paddings`` is
    an int (the same in every layer, which needs ``depth`` unless another argument is a list)
    or a list with one entry per layer. The layers are ``conv -> activation [-> norm]``;
    the aggregator (by default :class:`SquashDims`, which flattens ``[C, H, W]``) ends the
    network. Inputs are ``[*batch, C, H, W]`` with any number of batch dims (none included).
    A missing ``in_features`` gives a lazy first layer (``nn.LazyConv2d``). Same arguments,
    layers and initialisation as TorchRL's ``ConvNet``.

    Args:
        in_features: input channels; ``None`` for a lazy first layer.
        depth: the number of conv layers (default: the length of the list arguments).
        num_cells: output channels of each layer (default ``[32, 32, 32]``).
        kernel_sizes: kernel size(s) (an int or a ``(h, w)`` pair per layer; default 3).
        strides: stride(s) (default 1).
        paddings: padding(s) (default 0).
        activation_class: the activation after each conv (default ``nn.ELU``).
        activation_kwargs: its keyword arguments: one dict, or a list of one per layer.
        norm_class: an optional normalisation layer after each activation.
        norm_kwargs: its keyword arguments: one dict, or a list of one per layer.
        bias_last_layer: kept for TorchRL compatibility; as in TorchRL 0.14.1, every conv
            layer (the last included) has a bias whatever its value.
        aggregator_class: the layer that ends the network (default :class:`SquashDims`;
            ``None`` keeps the feature map).
        aggregator_kwargs: its keyword arguments (default ``{"ndims_in": 3}`` for
            :class:`SquashDims`, ``{}`` for another class).
        squeeze_output: end with :class:`Squeeze2dLayer` (drops two trailing singleton
            dims, e.g. after ``nn.AdaptiveAvgPool2d((1, 1))``).
        device: where the parameters live.

    Raises:
        ValueError: when ``depth`` cannot be found or disagrees with a list argument, or
            (on a call) the input has fewer than 3 dims.

    Examples:
        >>> import torch
        >>> net = ConvNet(in_features=3, depth=2, num_cells=8, activation_class=nn.ReLU)
        >>> [type(m).__name__ for m in net]
        ['Conv2d', 'ReLU', 'Conv2d', 'ReLU', 'SquashDims']
        >>> net(torch.zeros(4, 2, 3, 10, 10)).shape  # two batch dims
        torch.Size([4, 2, 288])
        >>> pooled = ConvNet(num_cells=[16], aggregator_class=nn.AdaptiveAvgPool2d,
        ...                  aggregator_kwargs={"output_size": (1, 1)}, squeeze_output=True)
        >>> pooled(torch.zeros(3, 9, 9)).shape  # no batch dim
        torch.Size([16])
    """

    def __init__(
        self,
        in_features: int | None = None,
        depth: int | None = None,
        num_cells: Sequence[int] | int | None = None,
        kernel_sizes: Sequence[_Size] | _Size = 3,
        strides: Sequence[_Size] | _Size = 1,
        paddings: Sequence[_Size] | _Size = 0,
        activation_class: type[nn.Module] | Callable[..., nn.Module] = nn.ELU,
        activation_kwargs: dict | Sequence[dict] | None = None,
        norm_class: type[nn.Module] | Callable[..., nn.Module] | None = None,
        norm_kwargs: dict | Sequence[dict] | None = None,
        bias_last_layer: bool = True,
        aggregator_class: type[nn.Module] | Callable[..., nn.Module] | None = SquashDims,
        aggregator_kwargs: dict | None = None,
        squeeze_output: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        if num_cells is None:
            num_cells = [32, 32, 32]
        named = {"num_cells": num_cells, "kernel_sizes": kernel_sizes, "strides": strides, "paddings": paddings}
        depth = _depth(depth, named)
        per_layer: dict[str, list[Any]] = {
            name: list(value) if isinstance(value, (list, tuple)) else [value] * depth for name, value in named.items()
        }
        self.in_features = in_features
        self.depth = depth
        self.num_cells = [int(c) for c in per_layer["num_cells"]]
        self.kernel_sizes = per_layer["kernel_sizes"]
        self.strides = per_layer["strides"]
        self.paddings = per_layer["paddings"]
        self.out_features = self.num_cells[-1]
        self.activation_class = activation_class
        self.norm_class = norm_class
        self.bias_last_layer = bias_last_layer
        self.aggregator_class = aggregator_class
        if aggregator_kwargs is None:
            aggregator_kwargs = {"ndims_in": 3} if aggregator_class is SquashDims else {}
        self.aggregator_kwargs = aggregator_kwargs
        self.squeeze_output = squeeze_output

        counted = f"the network has depth={depth}"
        act_kwargs = per_layer_kwargs("ConvNet", "activation_kwargs", activation_kwargs, depth, counted)
        nrm_kwargs = per_layer_kwargs("ConvNet", "norm_kwargs", norm_kwargs, depth, counted)
        layers: list[nn.Module] = []
        channels_in: list[int | None] = [in_features, *self.num_cells[:-1]]
        for n_in, n_out, kernel, stride, padding in zip(
            channels_in, self.num_cells, self.kernel_sizes, self.strides, self.paddings
        ):
            conv_kwargs = {"kernel_size": kernel, "stride": stride, "padding": padding, "device": device}
            layers.append(
                nn.LazyConv2d(n_out, **conv_kwargs) if n_in is None else nn.Conv2d(n_in, n_out, **conv_kwargs)
            )
            layers.append(activation_class(**next(act_kwargs)))
            if norm_class is not None:
                layers.append(norm_class(**next(nrm_kwargs)))
        if aggregator_class is not None:
            layers.append(aggregator_class(**aggregator_kwargs))
        if squeeze_output:
            layers.append(Squeeze2dLayer())
        super().__init__(*layers)
        if device is not None:
            self.to(device)  # activations and norms built without a device argument

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.ndim < 3:
            raise ValueError(
                f"ConvNet: the input has shape {tuple(inputs.shape)}; it needs at least 3 dims "
                f"[*batch, channels, height, width]. Add the channel dim (x.unsqueeze(-3)) for one-channel images."
            )
        batch = inputs.shape[:-3]
        if len(batch) > 1:  # Conv2d takes one batch dim at most
            inputs = inputs.flatten(0, len(batch) - 1)
        out = super().forward(inputs)
        if len(batch) > 1:
            out = out.unflatten(0, batch)
        return out

    @classmethod
    def default_atari_dqn(cls, num_actions: int) -> nn.Sequential:
        """The Q-network of the Nature DQN paper (Mnih et al., 2015): three convs, then a 512-unit layer.

        Args:
            num_actions: the number of discrete actions (the output size).

        Examples:
            >>> net = ConvNet.default_atari_dqn(6)
            >>> net(torch.zeros(2, 4, 84, 84)).shape
            torch.Size([2, 6])
        """
        cnn = cls(activation_class=nn.ReLU, num_cells=[32, 64, 64], kernel_sizes=[8, 4, 3], strides=[4, 2, 1])
        mlp = MLP(activation_class=nn.ReLU, out_features=num_actions, num_cells=[512])
        return nn.Sequential(cnn, mlp)


Conv2dNet = ConvNet
"""TorchRL's other name for :class:`ConvNet`."""
