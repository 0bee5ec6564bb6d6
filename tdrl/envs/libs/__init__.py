"""Backends: gymnasium (``GymEnv``, ``GymWrapper``), dm_control (``DMControlEnv``, ``DMControlWrapper``),
VMAS (``VmasEnv``, ``VmasWrapper``) and PettingZoo (``PettingZooEnv``, ``PettingZooWrapper``).

VMAS and PettingZoo are multi-agent: their entries are grouped per agent group.

dm_control, vmas and pettingzoo are optional extras: each is imported only when one of its envs
is built, so ``import tdrl.envs.libs`` works without them.
"""

from tdrl.envs.libs.dm_control import DMControlEnv, DMControlWrapper
from tdrl.envs.libs.gym import GymEnv, GymWrapper
from tdrl.envs.libs.gym_backend import gym_backend, set_gym_backend
from tdrl.envs.libs.pettingzoo import PettingZooEnv, PettingZooWrapper
from tdrl.envs.libs.vmas import VmasEnv, VmasWrapper

__all__ = [
    "GymEnv",
    "GymWrapper",
    "DMControlEnv",
    "DMControlWrapper",
    "VmasEnv",
    "VmasWrapper",
    "PettingZooEnv",
    "PettingZooWrapper",
    "gym_backend",
    "set_gym_backend",
]
