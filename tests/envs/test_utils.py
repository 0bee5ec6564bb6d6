from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs.utils import (
    ExplorationType,
    check_env_specs,
    exploration_type,
    set_exploration_type,
    step_mdp,
)
from tdrl.specs import Unbounded
from tdrl.testing import CountingEnv


def test_step_mdp_moves_next_to_root():
    td = TensorDict(
        {
            "observation": torch.zeros(2),
            "action": torch.ones(1),
            "hidden": torch.ones(3),
            "next": {"observation": torch.ones(2), "reward": torch.ones(1), "done": torch.zeros(1, dtype=torch.bool)},
        },
        [],
    )
    out = step_mdp(td)
    assert set(out.keys()) == {"observation", "hidden", "done"}
    assert out["observation"].sum() == 2
    out = step_mdp(td, exclude_reward=False, exclude_action=False, keep_other=True, exclude_done=True)
    assert set(out.keys()) == {"observation", "hidden", "reward", "action"}
    assert set(step_mdp(td, keep_other=False).keys()) == {"observation", "done"}


def test_step_mdp_into_given_tensordict():
    td = TensorDict({"next": {"observation": torch.ones(2)}}, [])
    target = TensorDict({"observation": torch.zeros(2)}, [])
    step_mdp(td, next_tensordict=target)
    assert target["observation"].sum() == 2


def test_step_mdp_without_next_says_what_to_do():
    with pytest.raises(KeyError, match=r"env\.step"):
        step_mdp(TensorDict({"observation": torch.zeros(1)}, []))


def test_exploration_type_context_and_decorator():
    assert exploration_type() is None or exploration_type() == ExplorationType.RANDOM
    with set_exploration_type(ExplorationType.MEAN):
        assert exploration_type() == ExplorationType.MEAN

    @set_exploration_type(ExplorationType.MODE)
    def inner():
        return exploration_type()

    assert inner() == ExplorationType.MODE
    assert {"RANDOM", "MEAN", "MODE", "DETERMINISTIC"} <= set(ExplorationType.__members__)


class _WrongShapeEnv(CountingEnv):
    def _step(self, tensordict):
        out = super()._step(tensordict)
        out["observation"] = torch.zeros(2)
        return out


class _UndeclaredEntryEnv(CountingEnv):
    def _step(self, tensordict):
        return super()._step(tensordict).set("secret", torch.zeros(1))


class _OutOfBoundsEnv(CountingEnv):
    def __init__(self):
        super().__init__()
        from tdrl.specs import Bounded

        self.observation_spec["observation"] = Bounded(0.0, 0.5, shape=(1,))


def test_check_env_specs_passes_on_good_env():
    check_env_specs(CountingEnv(batch_size=[2]), seed=0)


def test_check_env_specs_catches_shape():
    with pytest.raises(ValueError, match=r"\('next', 'observation'\) has shape \(2,\) but its spec says \(1,\)"):
        check_env_specs(_WrongShapeEnv())


def test_check_env_specs_catches_undeclared_entry():
    with pytest.raises(ValueError, match=r"wrote \['secret'\].*no spec declares them"):
        check_env_specs(_UndeclaredEntryEnv())


def test_check_env_specs_catches_bounds():
    with pytest.raises(ValueError, match="outside its spec"):
        check_env_specs(_OutOfBoundsEnv())


def test_check_env_specs_catches_missing_declared_entry():
    env = CountingEnv()
    env.observation_spec["velocity"] = Unbounded(shape=(1,))
    with pytest.raises(ValueError, match=r"declares .*velocity.* but the env did not write it"):
        check_env_specs(env)
