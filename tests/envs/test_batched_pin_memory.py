"""``pin_memory`` in the batched envs' signature: ``False`` is accepted, ``True`` refused (as TorchRL 0.14.1)."""

import pytest

from tdrl.envs import ParallelEnv, SerialEnv
from tdrl.testing import CountingEnv


def test_serial_env_accepts_pin_memory_false():
    env = SerialEnv(2, CountingEnv, pin_memory=False)
    assert env.rollout(2)["next", "observation"].shape[:2] == (2, 2)


def test_parallel_env_accepts_pin_memory_false():
    env = ParallelEnv(2, CountingEnv, pin_memory=False)
    try:
        assert env.rollout(2)["next", "observation"].shape[:2] == (2, 2)
    finally:
        env.close()


@pytest.mark.parametrize("cls", [SerialEnv, ParallelEnv])
def test_pin_memory_true_raises_naming_the_fix(cls):
    with pytest.raises(ValueError, match=r"pin_memory=True.*PinMemoryTransform"):
        cls(2, CountingEnv, pin_memory=True)
