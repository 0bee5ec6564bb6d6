"""Environments: the EnvBase API, utilities, transforms, batched envs and backends."""

from tdrl.envs.batched import ParallelEnv, SerialEnv
from tdrl.envs.common import EnvBase, make_composite_from_td
from tdrl.envs.custom import PendulumEnv
from tdrl.envs.env_creator import EnvCreator
from tdrl.envs.gym_like import default_info_dict_reader
from tdrl.envs.libs import (
    DMControlEnv,
    DMControlWrapper,
    GymEnv,
    GymWrapper,
    PettingZooEnv,
    PettingZooWrapper,
    VmasEnv,
    VmasWrapper,
    gym_backend,
    set_gym_backend,
)
from tdrl.envs.transforms import *  # noqa: F403
from tdrl.envs.transforms import __all__ as _transform_names
from tdrl.envs.utils import (
    ExplorationType,
    MarlGroupMapType,
    check_env_specs,
    check_marl_grouping,
    exploration_type,
    get_available_libraries,
    make_tensordict,
    set_exploration_type,
    set_validation,
    step_mdp,
    terminated_or_truncated,
    validation_enabled,
)

__all__ = [
    "EnvBase",
    "make_composite_from_td",
    "SerialEnv",
    "ParallelEnv",
    "EnvCreator",
    "GymEnv",
    "GymWrapper",
    "DMControlEnv",
    "DMControlWrapper",
    "VmasEnv",
    "VmasWrapper",
    "PettingZooEnv",
    "PettingZooWrapper",
    "PendulumEnv",
    "ExplorationType",
    "check_env_specs",
    "exploration_type",
    "set_exploration_type",
    "set_validation",
    "validation_enabled",
    "step_mdp",
    "MarlGroupMapType",
    "check_marl_grouping",
    "terminated_or_truncated",
    "make_tensordict",
    "get_available_libraries",
    "default_info_dict_reader",
    "gym_backend",
    "set_gym_backend",
    *_transform_names,
]
