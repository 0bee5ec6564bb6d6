"""Backends: gymnasium (``GymEnv``, ``GymWrapper``) and dm_control (``DMControlEnv``, ``DMControlWrapper``).

dm_control is an optional extra: it is imported only when a dm_control env is built, so
``import tdrl.envs.libs`` works without it.
"""

from tdrl.envs.libs.dm_control import DMControlEnv, DMControlWrapper
from tdrl.envs.libs.gym import GymEnv, GymWrapper

__all__ = ["GymEnv", "GymWrapper", "DMControlEnv", "DMControlWrapper"]
