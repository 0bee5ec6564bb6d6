"""Plain networks (tensors in, tensors out) that policies, values and Q-functions are built from.

- :class:`MLP` and :class:`ConvNet`, the building blocks;
- dueling Q-networks for DQN: :class:`DuelingMlpDQNet`, :class:`DuelingCnnDQNet`;
- DDPG's actors and critics: :class:`DdpgMlpActor`, :class:`DdpgMlpQNet`,
  :class:`DdpgCnnActor`, :class:`DdpgCnnQNet`;
- :class:`MultiAgentMLP` and :class:`MultiAgentConvNet`, for a group of agents (shared or
  independent weights).

Wrap one in a TensorDict module (``Actor``, ``ValueOperator``, ``QValueActor``) to read and
write TensorDict entries. Names, arguments, defaults and initialisations are TorchRL's.

Examples:
    >>> import torch
    >>> from tensordict import TensorDict
    >>> from tdrl.modules import QValueActor
    >>> from tdrl.specs import Categorical
    >>> actor = QValueActor(DuelingMlpDQNet(out_features=2), spec=Categorical(2))
    >>> actor(TensorDict(observation=torch.zeros(4))).get("action").shape
    torch.Size([])
"""

from __future__ import annotations

from tdrl.modules.models.conv import Conv2dNet, ConvNet
from tdrl.modules.models.ddpg import DdpgCnnActor, DdpgCnnQNet, DdpgMlpActor, DdpgMlpQNet, ddpg_init_last_layer
from tdrl.modules.models.dueling import DuelingCnnDQNet, DuelingMlpDQNet
from tdrl.modules.models.mlp import MLP
from tdrl.modules.models.multiagent import MultiAgentConvNet, MultiAgentMLP
from tdrl.modules.models.utils import SquashDims, Squeeze2dLayer, SqueezeLayer

__all__ = [
    "MLP",
    "ConvNet",
    "Conv2dNet",
    "SquashDims",
    "SqueezeLayer",
    "Squeeze2dLayer",
    "DuelingMlpDQNet",
    "DuelingCnnDQNet",
    "DdpgMlpActor",
    "DdpgMlpQNet",
    "DdpgCnnActor",
    "DdpgCnnQNet",
    "ddpg_init_last_layer",
    "MultiAgentMLP",
    "MultiAgentConvNet",
]
