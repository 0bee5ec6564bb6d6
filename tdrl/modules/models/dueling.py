"""Dueling Q-networks (Wang et al., 2016): a shared trunk, then a state value and per-action advantages.

``Q(s, a) = V(s) + A(s, a) - mean_a A(s, a)``: the value head learns how good a state is
whatever the action, the advantage head how the actions compare.

Examples:
    >>> import torch
    >>> net = DuelingMlpDQNet(out_features=4)
    >>> net(torch.zeros(8, 6)).shape
    torch.Size([8, 4])
"""

from __future__ import annotations

import torch
from torch import nn

from tdrl.modules.models.conv import ConvNet
from tdrl.modules.models.mlp import MLP

__all__ = ["DuelingMlpDQNet", "DuelingCnnDQNet"]


def _head_kwargs(overrides: dict | None) -> dict:
    """The advantage and value heads: one hidden layer of 512 ELU units (TorchRL's defaults)."""
    return {"depth": 1, "activation_class": nn.ELU, "num_cells": 512, "bias_last_layer": True, **(overrides or {})}


def _zero_biases(net: nn.Module) -> None:
    """Zero the biases of the conv and linear layers built so far (lazy ones keep torch's init, as TorchRL)."""
    with torch.no_grad():
        for layer in net.modules():
            bias = getattr(layer, "bias", None)
            lazy = isinstance(bias, nn.parameter.UninitializedParameter)
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and isinstance(bias, torch.Tensor) and not lazy:
                bias.zero_()


def _dueling(value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """``V + A - mean(A)``, the value broadcast over every advantage entry of an output shape."""
    extra = advantage.ndim - value.ndim
    if extra > 0:  # out_features=(3, 2): value [*B, 1] -> [*B, 1, 1] (TorchRL fails there for batches > 1)
        value = value.reshape(*value.shape[:-1], *([1] * extra), value.shape[-1])
    return value + advantage - advantage.mean(dim=-1, keepdim=True)


class DuelingMlpDQNet(nn.Module):
    """A dueling Q-network on vector observations: an MLP trunk, then value and advantage heads.

    The trunk is ``MLP(num_cells=[256, 256], out_features=256, activation_class=nn.ELU,
    activate_last_layer=True)``; each head is an MLP with one hidden layer of 512 ELU units.
    The biases of the layers whose input size is known start at zero (a lazy layer keeps
    torch's initialisation, as in TorchRL). Same arguments, defaults and initialisation as TorchRL's
    ``DuelingMlpDQNet``.

    Args:
        out_features: the number of actions, or an output shape: the advantage is centred
            over its last dim and the value added to every entry (TorchRL 0.14.1 manages
            that only for a batch of one).
        out_features_value: the value head's output size (default 1).
        mlp_kwargs_feature: keyword arguments of :class:`MLP` that replace the trunk's defaults.
        mlp_kwargs_output: keyword arguments that replace the heads' defaults.
        device: where the parameters live.

    Examples:
        >>> net = DuelingMlpDQNet(out_features=3, mlp_kwargs_feature={"num_cells": [32], "out_features": 32})
        >>> net(torch.randn(5, 4)).shape
        torch.Size([5, 3])
        >>> x = torch.randn(5, 4)
        >>> torch.allclose(net(x).mean(-1, keepdim=True), net.value(net.features(x)), atol=1e-6)
        True
    """

    def __init__(
        self,
        out_features: int | torch.Size,
        out_features_value: int = 1,
        mlp_kwargs_feature: dict | None = None,
        mlp_kwargs_output: dict | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        feature_kwargs = {
            "num_cells": [256, 256],
            "out_features": 256,
            "activation_class": nn.ELU,
            "activate_last_layer": True,
            **(mlp_kwargs_feature or {}),
        }
        self.features = MLP(device=device, **feature_kwargs)
        head_kwargs = _head_kwargs(mlp_kwargs_output)
        self.out_features = out_features
        self.out_features_value = out_features_value
        self.advantage = MLP(out_features=out_features, device=device, **head_kwargs)
        self.value = MLP(out_features=out_features_value, device=device, **head_kwargs)
        _zero_biases(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.features(x)
        advantage = self.advantage(hidden)  # first: lazy layers draw their parameters in TorchRL's order
        return _dueling(self.value(hidden), advantage)


class DuelingCnnDQNet(nn.Module):
    """A dueling Q-network on images: a :class:`ConvNet` trunk, then value and advantage heads.

    The trunk is the Nature-DQN convolutions (``num_cells=[32, 64, 64]``,
    ``kernel_sizes=[8, 4, 3]``, ``strides=[4, 2, 1]``, ELU) flattened; each head is an MLP
    with one hidden layer of 512 ELU units. The biases of the layers whose input size is
    known start at zero (a lazy layer keeps torch's initialisation, as in TorchRL). Same arguments,
    defaults and initialisation as TorchRL's ``DuelingCnnDQNet``.

    Args:
        out_features: the number of actions.
        out_features_value: the value head's output size (default 1).
        cnn_kwargs: keyword arguments of :class:`ConvNet` that replace the trunk's defaults.
        mlp_kwargs: keyword arguments of :class:`MLP` that replace the heads' defaults.
        device: where the parameters live.

    Examples:
        >>> net = DuelingCnnDQNet(out_features=6)
        >>> net(torch.zeros(2, 4, 84, 84)).shape
        torch.Size([2, 6])
    """

    def __init__(
        self,
        out_features: int,
        out_features_value: int = 1,
        cnn_kwargs: dict | None = None,
        mlp_kwargs: dict | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        conv_kwargs = {"num_cells": [32, 64, 64], "strides": [4, 2, 1], "kernel_sizes": [8, 4, 3], **(cnn_kwargs or {})}
        self.features = ConvNet(device=device, **conv_kwargs)
        head_kwargs = _head_kwargs(mlp_kwargs)
        self.out_features = out_features
        self.out_features_value = out_features_value
        self.advantage = MLP(out_features=out_features, device=device, **head_kwargs)
        self.value = MLP(out_features=out_features_value, device=device, **head_kwargs)
        _zero_biases(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.features(x)
        advantage = self.advantage(hidden)  # first: lazy layers draw their parameters in TorchRL's order
        return _dueling(self.value(hidden), advantage)
