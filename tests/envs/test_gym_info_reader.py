"""default_info_dict_reader and GymWrapper.set_info_dict_reader (TorchRL's way to read gymnasium's info dict)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import GymEnv, check_env_specs, default_info_dict_reader
from tdrl.specs import Unbounded


def test_reader_reads_named_keys_and_learns_specs():
    reader = default_info_dict_reader(["a", "b"])
    out = reader({"a": np.float32(1.5), "b": np.array([1, 2]), "c": 3}, TensorDict())
    assert set(out.keys()) == {"a", "b"}
    assert reader.info_spec["b"].shape == (2,)
    assert reader.info_spec["a"].dtype == torch.float32


def test_reader_without_keys_takes_public_entries_and_fills_missing_from_spec():
    reader = default_info_dict_reader()
    reader({"x": 1.0, "_mask": True}, TensorDict())
    assert reader.keys == ["x"]
    reader.reset()
    assert reader.keys is None
    filled = default_info_dict_reader(["x"], spec=[Unbounded(shape=(2,))])
    assert torch.equal(filled({}, TensorDict())["x"], torch.zeros(2))


def test_reader_errors():
    with pytest.raises(ValueError, match="one spec per key"):
        default_info_dict_reader(["a", "b"], spec=[Unbounded()])
    with pytest.raises(KeyError, match="'a' is not in the info dict"):
        default_info_dict_reader(["a"])({"b": 1}, TensorDict())


def test_gym_wrapper_takes_a_reader():
    env = GymEnv("HalfCheetah-v5").set_info_dict_reader(default_info_dict_reader(["x_position"]))
    assert env.observation_spec["x_position"].dtype == torch.float64
    td = env.rand_step(env.reset())
    assert td["next", "x_position"].shape == (1,)
    check_env_specs(env)
    every = GymEnv("HalfCheetah-v5").set_info_dict_reader()
    assert {"x_position", "x_velocity", "reward_forward"} <= set(every.observation_spec.keys())
    check_env_specs(every)
