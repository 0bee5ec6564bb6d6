"""Native torch environments: batched, device-resident, stepping every sub-env in one call."""

from tdrl.envs.custom.pendulum import PendulumEnv, angle_normalize

__all__ = ["PendulumEnv", "angle_normalize"]
