"""terminated_or_truncated, make_tensordict, get_available_libraries and the gym-backend switch."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import (
    get_available_libraries,
    gym_backend,
    make_tensordict,
    set_gym_backend,
    terminated_or_truncated,
)
from tdrl.specs import Categorical, Composite
from tdrl.testing import CountingEnv


def _data():
    return TensorDict(
        {
            "done": torch.tensor([[False], [False]]),
            "terminated": torch.tensor([[False], [False]]),
            "truncated": torch.tensor([[False], [True]]),
            "agents": {"done": torch.tensor([[True], [False]]), "info": torch.ones(2, 1)},
            "other": {"x": torch.zeros(2)},
        },
        [2],
    )


def test_aggregates_each_level_and_reports_any():
    data = _data()
    assert terminated_or_truncated(data) is True
    assert data["_reset"].squeeze(-1).tolist() == [False, True]
    assert data["agents", "_reset"].squeeze(-1).tolist() == [True, False]
    assert "_reset" not in data["other"].keys()


def test_all_false_removes_the_entries_unless_asked():
    data = TensorDict({"done": torch.zeros(3, 1, dtype=torch.bool)}, [3])
    assert terminated_or_truncated(data) is False
    assert "_reset" not in data.keys()
    assert terminated_or_truncated(data, write_full_false=True) is False
    assert data["_reset"].shape == (3, 1)


def test_spec_names_the_flags_and_missing_flags_are_false():
    spec = Composite(
        stop=Categorical(2, shape=(1,), dtype=torch.bool),
        nested=Composite(end=Categorical(2, shape=(1,), dtype=torch.bool)),
    )
    data = TensorDict({"stop": torch.tensor([True]), "nested": {}}, [])
    assert terminated_or_truncated(data, spec, key="_end") is True
    assert data["_end"].tolist() == [True]
    assert data["nested", "_end"].tolist() == [False]


def test_key_none_writes_nothing():
    data = _data()
    assert terminated_or_truncated(data, key=None) is True
    assert "_reset" not in data.keys(True)


def test_matches_torchrl():
    torchrl_utils = pytest.importorskip("torchrl.envs.utils")
    for write_full_false in (False, True):
        ours, theirs = _data(), _data()
        assert terminated_or_truncated(ours, write_full_false=write_full_false) == bool(
            torchrl_utils.terminated_or_truncated(theirs, write_full_false=write_full_false)
        )
        assert set(ours.keys(True, True)) == set(theirs.keys(True, True))
        for key in theirs.keys(True, True):
            assert torch.equal(ours[key], theirs[key]), key


def test_make_tensordict_is_a_zeroed_full_step():
    env = CountingEnv()
    td = make_tensordict(env)
    assert set(td.keys()) >= {"observation", "action", "next"}
    assert ("next", "reward") in td.keys(True)
    assert all(not v.any() for v in td.values(True, True))
    with_policy = make_tensordict(env, lambda t: t.set("action", torch.ones(1, dtype=torch.int64)))
    assert with_policy["action"].shape == env.action_spec.shape


def test_available_libraries():
    libraries = get_available_libraries()
    assert set(libraries) == {"gymnasium", "dm_control", "mujoco", "vmas", "pettingzoo"}
    assert libraries["gymnasium"] is True
    assert all(isinstance(v, bool) for v in libraries.values())


def test_gym_backend_is_gymnasium_in_every_form():
    import gymnasium

    for backend in ("gymnasium", gymnasium, lambda: gymnasium):
        with set_gym_backend(backend):
            assert gym_backend() is gymnasium
    set_gym_backend("gymnasium").set()
    assert gym_backend(".wrappers") is gymnasium.wrappers

    @set_gym_backend("gymnasium")
    def inside():
        return gym_backend().__name__

    assert inside() == "gymnasium"
    from tdrl.envs.libs.gym import set_gym_backend as from_gym_module

    assert from_gym_module is set_gym_backend


@pytest.mark.parametrize("backend", ["gym", "gym_retro"])
def test_other_backends_are_refused_clearly(backend):
    with pytest.raises(ValueError, match=f"tdrl wraps gymnasium only, got backend '{backend}'"):
        set_gym_backend(backend)
