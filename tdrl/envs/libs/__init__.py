"""Backends: gymnasium (``GymEnv``, ``GymWrapper``), dm_control (``DMControlEnv``, ...) and VMAS (``VmasEnv``, ...).

VMAS (``VmasEnv``, ``VmasWrapper``) is multi-agent: its entries are grouped per agent group.

dm_control and vmas are optional extras: each is imported only when one of its envs is built, so
``import tdrl.envs.libs`` works without them.
"""

from tdrl.envs.libs.dm_control import DMControlEnv, DMControlWrapper
from tdrl.envs.libs.gym import GymEnv, GymWrapper
from tdrl.envs.libs.vmas import VmasEnv, VmasWrapper

__all__ = ["GymEnv", "GymWrapper", "DMControlEnv", "DMControlWrapper", "VmasEnv", "VmasWrapper"]
