"""The actor and Q-networks of DDPG (Lillicrap et al., 2016), on vectors and on images.

The last layer of each starts with small uniform weights (:func:`ddpg_init_last_layer`), so
that the first actions and values are near zero, as in the paper.

Examples:
    >>> import torch
    >>> actor, critic = DdpgMlpActor(action_dim=2), DdpgMlpQNet()
    >>> obs = torch.zeros(5, 8)
    >>> action = actor(obs)
    >>> action.shape, critic(obs, action).shape
    (torch.Size([5, 2]), torch.Size([5, 1]))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tdrl.modules.models.conv import ConvNet
from tdrl.modules.models.mlp import MLP
from tdrl.modules.models.utils import SquashDims

__all__ = ["DdpgMlpActor", "DdpgMlpQNet", "DdpgCnnActor", "DdpgCnnQNet", "ddpg_init_last_layer"]


def ddpg_init_last_layer(module: nn.Sequential, scale: float = 6e-4, device: torch.device | str | None = None) -> None:
    """Draw the last linear or conv layer's weights and bias uniformly in ``[-scale / 2, scale / 2]``.

    Args:
        module: a sequence of layers (an :class:`MLP` or :class:`ConvNet`).
        scale: the width of the uniform interval (default ``6e-4``).
        device: where the draws are made (default: the layer's device).

    Raises:
        ValueError: when ``module`` has no ``nn.Linear``/``nn.Conv2d``, or its last one is
            lazy (give its input size).

    Examples:
        >>> mlp = MLP(in_features=4, out_features=2, num_cells=[8])
        >>> ddpg_init_last_layer(mlp, scale=0.01)
        >>> bool(mlp[-1].weight.abs().max() <= 0.005)
        True
    """
    last = next((layer for layer in reversed(module) if isinstance(layer, (nn.Linear, nn.Conv2d))), None)
    if last is None:
        raise ValueError(
            f"ddpg_init_last_layer: {type(module).__name__} has no nn.Linear or nn.Conv2d layer to initialise."
        )
    if isinstance(last.weight, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"ddpg_init_last_layer: the last layer of {type(module).__name__} is lazy (its input size is not "
            f"known yet); give the network in_features or a hidden layer before it."
        )
    with torch.no_grad():
        for param in (last.weight, last.bias):
            if param is not None:
                param.copy_(torch.rand_like(param, device=device) * scale - scale / 2)


def _mlp(defaults: dict, overrides: dict | None, device: torch.device | str | None) -> MLP:
    return MLP(device=device, **{**defaults, **(overrides or {})})


def _conv_defaults(num_cells: list[int], use_avg_pooling: bool) -> dict:
    """The DDPG pixel trunk: Nature-DQN kernels and strides, padding on the last conv, ELU."""
    pooled = {"aggregator_class": nn.AdaptiveAvgPool2d, "aggregator_kwargs": {"output_size": (1, 1)}}
    squashed = {"aggregator_class": SquashDims, "aggregator_kwargs": {"ndims_in": 3}}
    return {
        "in_features": None,
        "num_cells": num_cells,
        "kernel_sizes": [8, 4, 3],
        "strides": [4, 2, 1],
        "paddings": [0, 0, 1],
        "activation_class": nn.ELU,
        "norm_class": None,
        **(pooled if use_avg_pooling else squashed),
        "squeeze_output": use_avg_pooling,
    }


class DdpgMlpActor(nn.Module):
    """DDPG's deterministic actor on vector observations: ``observation -> action``.

    An :class:`MLP` with hidden layers ``[400, 300]`` and ELU, whose last layer starts
    uniform in ``[-3e-3, 3e-3]``. It outputs the unbounded action; bound it with a
    ``TanhDelta`` (or a tanh) in the policy. Same arguments, defaults and initialisation as
    TorchRL's ``DdpgMlpActor``.

    Args:
        action_dim: the action size.
        mlp_net_kwargs: keyword arguments of :class:`MLP` that replace the defaults.
        device: where the parameters live.

    Examples:
        >>> actor = DdpgMlpActor(action_dim=3)
        >>> actor(torch.zeros(10, 6)).shape
        torch.Size([10, 3])
    """

    def __init__(
        self, action_dim: int, mlp_net_kwargs: dict | None = None, device: torch.device | str | None = None
    ) -> None:
        super().__init__()
        defaults = {
            "in_features": None,
            "out_features": action_dim,
            "depth": 2,
            "num_cells": [400, 300],
            "activation_class": nn.ELU,
            "bias_last_layer": True,
        }
        self.mlp = _mlp(defaults, mlp_net_kwargs, device)
        ddpg_init_last_layer(self.mlp, 6e-3, device=device)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.mlp(observation)


class DdpgMlpQNet(nn.Module):
    """DDPG's critic on vector observations: ``Q(observation, action)``.

    The observation goes through one layer of 400 ELU units (``mlp1``); the action joins
    there, and ``mlp2`` (a hidden layer of 300 ELU units) gives the value, its last layer
    starting uniform in ``[-3e-3, 3e-3]``. Same arguments, defaults and initialisation as
    TorchRL's ``DdpgMlpQNet``.

    Args:
        mlp_net_kwargs_net1: keyword arguments of :class:`MLP` that replace ``mlp1``'s defaults.
        mlp_net_kwargs_net2: keyword arguments that replace ``mlp2``'s defaults.
        device: where the parameters live.

    Examples:
        >>> from tdrl.modules import ValueOperator
        >>> from tensordict import TensorDict
        >>> critic = ValueOperator(DdpgMlpQNet(), in_keys=["observation", "action"])
        >>> td = critic(TensorDict(observation=torch.zeros(4, 6), action=torch.zeros(4, 2), batch_size=[4]))
        >>> td["state_action_value"].shape
        torch.Size([4, 1])
    """

    def __init__(
        self,
        mlp_net_kwargs_net1: dict | None = None,
        mlp_net_kwargs_net2: dict | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        net1: dict[str, Any] = {
            "in_features": None,
            "out_features": 400,
            "depth": 0,
            "num_cells": [],
            "activation_class": nn.ELU,
            "bias_last_layer": True,
            "activate_last_layer": True,
        }
        net2 = {
            "in_features": None,
            "out_features": 1,
            "num_cells": [300],
            "activation_class": nn.ELU,
            "bias_last_layer": True,
        }
        self.mlp1 = _mlp(net1, mlp_net_kwargs_net1, device)
        self.mlp2 = _mlp(net2, mlp_net_kwargs_net2, device)
        ddpg_init_last_layer(self.mlp2, 6e-3, device=device)

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.mlp2(torch.cat([self.mlp1(observation), action], -1))


class DdpgCnnActor(nn.Module):
    """DDPG's actor on images: ``pixels -> (action, hidden)``, the hidden embedding reusable by a critic.

    A :class:`ConvNet` (channels ``[32, 64, 64]``, kernels ``[8, 4, 3]``, strides
    ``[4, 2, 1]``, paddings ``[0, 0, 1]``, ELU, flattened or average-pooled) then an
    :class:`MLP` (two hidden layers of 200 ELU units) whose last layer starts uniform in
    ``[-3e-4, 3e-4]``. Same arguments, defaults and initialisation as TorchRL's ``DdpgCnnActor``.

    Args:
        action_dim: the action size.
        conv_net_kwargs: keyword arguments of :class:`ConvNet` that replace the defaults.
        mlp_net_kwargs: keyword arguments of :class:`MLP` that replace the defaults.
        use_avg_pooling: end the trunk with ``nn.AdaptiveAvgPool2d((1, 1))`` instead of flattening.
        device: where the parameters live.

    Examples:
        >>> actor = DdpgCnnActor(action_dim=4)
        >>> action, hidden = actor(torch.zeros(2, 3, 64, 64))
        >>> action.shape, hidden.shape
        (torch.Size([2, 4]), torch.Size([2, 2304]))
    """

    def __init__(
        self,
        action_dim: int,
        conv_net_kwargs: dict | None = None,
        mlp_net_kwargs: dict | None = None,
        use_avg_pooling: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        conv = {**_conv_defaults([32, 64, 64], use_avg_pooling), **(conv_net_kwargs or {})}
        mlp = {
            "in_features": None,
            "out_features": action_dim,
            "depth": 2,
            "num_cells": 200,
            "activation_class": nn.ELU,
            "bias_last_layer": True,
        }
        self.convnet = ConvNet(device=device, **conv)
        self.mlp = _mlp(mlp, mlp_net_kwargs, device)
        ddpg_init_last_layer(self.mlp, 6e-4, device=device)

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.convnet(observation)
        return self.mlp(hidden), hidden


class DdpgCnnQNet(nn.Module):
    """DDPG's critic on images: ``Q(pixels, action)``.

    A :class:`ConvNet` (channels ``[32, 64, 128]``, kernels ``[8, 4, 3]``, strides
    ``[4, 2, 1]``, paddings ``[0, 0, 1]``, ELU, average-pooled by default); the action is
    concatenated to its output, then an :class:`MLP` (two hidden layers of 200 ELU units)
    whose last layer starts uniform in ``[-3e-4, 3e-4]``. Same arguments, defaults and
    initialisation as TorchRL's ``DdpgCnnQNet``.

    Args:
        conv_net_kwargs: keyword arguments of :class:`ConvNet` that replace the defaults.
        mlp_net_kwargs: keyword arguments of :class:`MLP` that replace the defaults.
        use_avg_pooling: average-pool the feature map (default) instead of flattening it.
        device: where the parameters live.

    Examples:
        >>> critic = DdpgCnnQNet()
        >>> critic(torch.zeros(2, 3, 64, 64), torch.zeros(2, 4)).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        conv_net_kwargs: dict | None = None,
        mlp_net_kwargs: dict | None = None,
        use_avg_pooling: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        conv = {**_conv_defaults([32, 64, 128], use_avg_pooling), **(conv_net_kwargs or {})}
        mlp = {
            "in_features": None,
            "out_features": 1,
            "depth": 2,
            "num_cells": 200,
            "activation_class": nn.ELU,
            "bias_last_layer": True,
        }
        self.convnet = ConvNet(device=device, **conv)
        self.mlp = _mlp(mlp, mlp_net_kwargs, device)
        ddpg_init_last_layer(self.mlp, 6e-4, device=device)

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([self.convnet(observation), action], -1))
