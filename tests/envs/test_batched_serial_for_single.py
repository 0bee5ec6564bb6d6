"""``ParallelEnv(..., serial_for_single=True)``: one copy runs in-process as a SerialEnv."""

import pytest

from tdrl.envs import ParallelEnv, SerialEnv
from tdrl.testing import CountingEnv


def test_single_worker_becomes_serial_env_with_the_same_batch_size():
    env = ParallelEnv(
        1, CountingEnv, create_env_kwargs={"max_steps": 3}, mp_start_method="spawn", serial_for_single=True
    )
    assert type(env) is SerialEnv
    assert env.batch_size == (1,)
    td = env.rollout(5)
    assert td.batch_size == (1, 3)  # CountingEnv is done after max_steps steps
    env.close()


def test_keyword_num_workers_is_read_too():
    env = ParallelEnv(num_workers=1, create_env_fn=CountingEnv, serial_for_single=True)
    assert type(env) is SerialEnv
    env.close()


def test_more_workers_or_flag_off_keep_worker_processes():
    env = ParallelEnv(1, CountingEnv)
    try:
        assert type(env) is ParallelEnv
        assert len(env._procs) == 1
    finally:
        env.close()
    env = ParallelEnv(2, CountingEnv, serial_for_single=True)
    try:
        assert type(env) is ParallelEnv
        assert env.batch_size == (2,)
    finally:
        env.close()


def test_same_class_choice_as_torchrl():
    torchrl_envs = pytest.importorskip("torchrl.envs")
    from torchrl.envs.libs.gym import GymEnv as TRLGymEnv

    theirs = torchrl_envs.ParallelEnv(1, lambda: TRLGymEnv("Pendulum-v1"), serial_for_single=True)
    ours = ParallelEnv(1, CountingEnv, serial_for_single=True)
    assert type(theirs).__name__ == type(ours).__name__ == "SerialEnv"
    assert theirs.batch_size == ours.batch_size
    # (TorchRL starts its env lazily; closing one never started raises there)
    ours.close()
