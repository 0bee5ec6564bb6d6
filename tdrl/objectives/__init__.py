"""Loss modules and their value estimators.

``from tdrl.objectives import ClipPPOLoss`` is the seed tutorial's import. Each loss is an
``nn.Module`` returning a TensorDict of scalar ``loss_*`` entries plus detached
diagnostics; the estimators live in :mod:`tdrl.objectives.value`.
"""

from __future__ import annotations

from tdrl.objectives.a2c import A2CLoss
from tdrl.objectives.common import LossModule
from tdrl.objectives.ddpg import DDPGLoss
from tdrl.objectives.discrete_sac import DiscreteSACLoss
from tdrl.objectives.dqn import DistributionalDQNLoss, DQNLoss
from tdrl.objectives.ppo import ClipPPOLoss, KLPENPPOLoss, PPOLoss
from tdrl.objectives.reinforce import ReinforceLoss
from tdrl.objectives.sac import SACLoss
from tdrl.objectives.td3 import TD3Loss
from tdrl.objectives.utils import (
    HardUpdate,
    SoftUpdate,
    TargetNetUpdater,
    ValueEstimators,
    default_value_kwargs,
    distance_loss,
)

__all__ = [
    "LossModule",
    "PPOLoss",
    "ClipPPOLoss",
    "KLPENPPOLoss",
    "A2CLoss",
    "ReinforceLoss",
    "SACLoss",
    "DiscreteSACLoss",
    "TD3Loss",
    "DDPGLoss",
    "DQNLoss",
    "DistributionalDQNLoss",
    "ValueEstimators",
    "default_value_kwargs",
    "distance_loss",
    "TargetNetUpdater",
    "SoftUpdate",
    "HardUpdate",
]
