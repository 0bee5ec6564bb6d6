"""Backends: gymnasium (``GymEnv``, ``GymWrapper``), dm_control (``DMControlEnv``, ``DMControlWrapper``)
and PettingZoo (``PettingZooEnv``, ``PettingZooWrapper``).

dm_control and pettingzoo are optional extras: each is imported only when one of its envs is
built, so ``import tdrl.envs.libs`` works without them.
"""

from tdrl.envs.libs.dm_control import DMControlEnv, DMControlWrapper
from tdrl.envs.libs.gym import GymEnv, GymWrapper
from tdrl.envs.libs.pettingzoo import PettingZooEnv, PettingZooWrapper

__all__ = ["GymEnv", "GymWrapper", "DMControlEnv", "DMControlWrapper", "PettingZooEnv", "PettingZooWrapper"]
