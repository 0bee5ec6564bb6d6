"""FiniteTensorDictCheck and RemoveEmptySpecs: contract, what they refuse or drop, inverse path."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.envs import EnvBase, FiniteTensorDictCheck, RemoveEmptySpecs, TransformedEnv, check_env_specs
from tdrl.specs import Bounded, Composite, Unbounded
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


class WithEmptyGroups(EnvBase):
    """Observation, reward and action specs each declare an empty group; the data holds empty TensorDicts there."""

    def __init__(self, batch_size: Any = (), nan_at: int | None = None) -> None:
        super().__init__(batch_size=batch_size)
        b = self.batch_size
        self.observation_spec = Composite(
            observation=Unbounded(shape=(*b, 3)),
            info=Composite(inner=Composite(shape=b), shape=b),
            shape=b,
        )
        self.action_spec = Composite(action=Bounded(-1.0, 1.0, shape=(*b, 2)), extra=Composite(shape=b), shape=b)
        self.reward_spec = Composite(reward=Unbounded(shape=(*b, 1)), other_reward=Composite(shape=b), shape=b)
        self.nan_at = nan_at
        self.count = 0
        self.seen_extra = False

    def _obs(self) -> TensorDict:
        b = self.batch_size
        value = torch.full((*b, 3), float(self.count))
        if self.nan_at is not None and self.count == self.nan_at:
            value[..., 0] = float("nan")
        return TensorDict({"observation": value, "info": {"inner": TensorDict({}, b)}}, b)

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        self.count = 0
        return self._obs()

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        self.seen_extra = "extra" in tensordict.keys()
        self.count += 1
        out = self._obs()
        b = self.batch_size
        out.update(
            {
                "reward": tensordict.get("action").sum(-1, keepdim=True),
                "other_reward": TensorDict({}, b),
                "done": torch.full((*b, 1), self.count >= 5),
                "terminated": torch.full((*b, 1), self.count >= 5),
                "truncated": torch.zeros((*b, 1), dtype=torch.bool),
            }
        )
        return out

    def _set_seed(self, seed: int | None) -> None:
        pass


class TestFiniteCheck(TransformContractTests):
    def make_transform(self):
        return FiniteTensorDictCheck()


class TestRemoveEmptySpecs(TransformContractTests):
    has_inverse = True

    def make_transform(self):
        return RemoveEmptySpecs()

    def make_env(self):
        return WithEmptyGroups()

    def make_batched_env(self):
        return WithEmptyGroups(batch_size=[3])


def test_non_finite_output_is_refused_naming_the_entry():
    env = TransformedEnv(WithEmptyGroups(nan_at=2), FiniteTensorDictCheck())
    with pytest.raises(ValueError, match=r"'observation' holds 1 non-finite value\(s\).*Fix"):
        env.rollout(4)
    with pytest.raises(ValueError, match="'observation'"):
        TransformedEnv(WithEmptyGroups(nan_at=0), FiniteTensorDictCheck()).reset()


def test_finite_check_names_nested_entries_and_skips_integers():
    td = TensorDict({"a": {"b": torch.tensor([1.0, float("inf")])}, "i": torch.tensor([3])}, [])
    with pytest.raises(ValueError, match=r"\('a', 'b'\).*inf"):
        FiniteTensorDictCheck()(td)
    assert FiniteTensorDictCheck()(TensorDict({"i": torch.tensor([3])}, []))["i"].item() == 3


def test_empty_groups_leave_specs_and_data():
    env = TransformedEnv(WithEmptyGroups(batch_size=[2]), RemoveEmptySpecs())
    check_env_specs(env)
    assert "info" not in env.observation_spec.keys()
    assert "other_reward" not in env.full_reward_spec.keys()
    assert "extra" not in env.full_action_spec.keys()
    ro = env.rollout(3)
    assert "info" not in ro.keys()
    assert "info" not in ro["next"].keys()
    assert "other_reward" not in ro["next"].keys()
    assert env.base_env.seen_extra  # the inverse gave the base env back its empty input group


def test_env_without_empty_groups_is_unchanged():
    env = TransformedEnv(TransformTestEnv(), RemoveEmptySpecs())
    assert set(env.observation_spec.keys(True)) == set(env.base_env.observation_spec.keys(True))
    assert not env.transform._has_inverse()
