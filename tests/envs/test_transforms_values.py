"""SignTransform, BinarizeReward, TimeMaxPool and EndOfLifeTransform: contract, values, specs, errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import (
    BinarizeReward,
    Compose,
    EndOfLifeTransform,
    SignTransform,
    StepCounter,
    TimeMaxPool,
    TransformedEnv,
    check_env_specs,
)
from tdrl.specs import Binary, Bounded, Unbounded
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


class LivesEnv(TransformTestEnv):
    """TransformTestEnv with an Atari-like lives counter: a life is lost every 3 steps, 4 lives per episode.

    The counter is reachable as ``env.unwrapped.ale.lives()`` (the default ``eol_attribute``)
    and written as the ``"lives"`` observation too, so stored data can recompute the flags.
    """

    class _Ale:
        def __init__(self, env: LivesEnv) -> None:
            self.env = env

        def lives(self) -> Any:
            value = 4 - torch.div(self.env.count, 3, rounding_mode="floor")
            return value.reshape(self.env.batch_size)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(p_end=0.1, max_steps=11, **kwargs)
        self.observation_spec["lives"] = Unbounded(shape=self.batch_size, dtype=torch.int64)
        self.__dict__["ale"] = LivesEnv._Ale(self)

    @property
    def unwrapped(self) -> LivesEnv:
        return self

    def _out(self) -> dict:
        out = super()._out()
        out["lives"] = self.ale.lives().clone()
        return out


# --- the transform contract -------------------------------------------------------------------------------------


class TestSign(TransformContractTests):
    def make_transform(self):
        return SignTransform(in_keys=["observation", "reward"])


class TestSignAction(TransformContractTests):
    has_inverse = True
    forward_matches_env = False

    def make_transform(self):
        return SignTransform(in_keys_inv=["action"])


class TestBinarizeReward(TransformContractTests):
    def make_transform(self):
        return BinarizeReward()


class TestTimeMaxPool(TransformContractTests):
    def make_transform(self):
        return TimeMaxPool(in_keys=["observation"], T=3)


class TestTimeMaxPoolNewKey(TransformContractTests):
    def make_transform(self):
        return TimeMaxPool(in_keys=["observation"], out_keys=["pooled"], T=2)


class TestEndOfLife(TransformContractTests):
    def make_transform(self):
        return EndOfLifeTransform()

    def make_env(self):
        return LivesEnv()

    def make_batched_env(self):
        return LivesEnv(batch_size=[3])


# --- values, specs, errors --------------------------------------------------------------------------------------


def test_sign_specs_are_bounded_in_the_entry_dtype():
    env = TransformedEnv(TransformTestEnv(dtype=torch.float64), SignTransform(in_keys=["observation", "reward"]))
    obs = env.observation_spec["observation"]
    assert isinstance(obs, Bounded)
    assert obs.dtype == torch.float64
    assert obs.space.low.unique().tolist() == [-1.0]
    assert obs.space.high.unique().tolist() == [1.0]
    assert isinstance(env.reward_spec, Bounded)
    ro = env.rollout(6, break_when_any_done=False)
    assert set(ro["next", "observation"].unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert env.action_spec == env.base_env.action_spec  # the policy still writes the base env's actions


def test_sign_inverse_sends_the_sign_of_the_action():
    env = TransformedEnv(TransformTestEnv(), SignTransform(in_keys_inv=["action"]))
    td = TensorDict({"action": torch.tensor([0.3, -0.7])}, [])
    assert env.transform.inv(td)["action"].tolist() == [1.0, -1.0]


def test_binarize_reward_values_and_spec():
    env = TransformedEnv(TransformTestEnv(batch_size=[2]), BinarizeReward())
    assert isinstance(env.reward_spec, Binary)
    assert env.reward_spec.dtype == torch.int8
    assert env.reward_spec.shape == (2, 1)
    td = TensorDict({"reward": torch.tensor([[-1.0], [0.0], [2.0]])}, [3])
    assert BinarizeReward()(td)["reward"].squeeze(-1).tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match=r"must end with a dim of size 1, got shape \(3,\)"):
        BinarizeReward(in_keys=["observation"])._apply_transform(torch.zeros(3))
    with pytest.raises(ValueError, match=r"'observation' must end with a dim of size 1"):
        TransformedEnv(TransformTestEnv(), BinarizeReward(in_keys=["observation"]))


def _reference_max_pool(frames: list, T: int) -> list:
    """The max over the last T values of an episode, zeros filling the window's empty slots."""
    out = []
    for i in range(len(frames)):
        window = [torch.zeros_like(frames[0])] * max(0, T - 1 - i) + frames[max(0, i - T + 1) : i + 1]
        out.append(torch.stack(window).amax(0))
    return out


def _replay(actions: torch.Tensor):
    """A policy writing ``actions[:, t]`` at step t (batch dim first)."""
    state = {"t": 0}

    def policy(td):
        td.set("action", actions[:, state["t"]])
        state["t"] += 1
        return td

    return policy


def test_time_max_pool_stepping_restarts_at_each_episode():
    env = TransformedEnv(TransformTestEnv(batch_size=[2], p_end=0.3), Compose(StepCounter(), TimeMaxPool(T=3)))
    raw_env = TransformTestEnv(batch_size=[2], p_end=0.3)
    env.set_seed(1)
    raw_env.set_seed(1)
    ro = env.rollout(15, break_when_any_done=False)
    raw = raw_env.rollout(15, _replay(ro["action"]), break_when_any_done=False)
    assert ro["next", "done"].sum() >= 2
    for b in range(2):
        episode: list = []
        for t in range(15):
            if ro["step_count"][b, t].item() == 0:
                episode = [raw["observation"][b, t]]
            torch.testing.assert_close(ro["observation"][b, t], _reference_max_pool(episode, 3)[-1])
            episode.append(raw["next", "observation"][b, t])
            torch.testing.assert_close(ro["next", "observation"][b, t], _reference_max_pool(episode, 3)[-1])


def test_time_max_pool_forward_on_a_trajectory():
    # an episode of 2 steps (its last observation 7), then one of 3 steps starting from 2
    obs = torch.tensor([[-1.0], [-3.0], [2.0], [-5.0], [1.0]])
    nxt = torch.tensor([[-3.0], [7.0], [-5.0], [1.0], [4.0]])
    done = torch.tensor([[False], [True], [False], [False], [False]])
    td = TensorDict({"observation": obs, "next": {"observation": nxt, "done": done}}, [5])
    out = TimeMaxPool(T=2)(td)
    assert out["observation"].squeeze(-1).tolist() == [0.0, -1.0, 2.0, 2.0, 1.0]  # the empty slot pools a 0
    assert out["next", "observation"].squeeze(-1).tolist() == [-1.0, 7.0, 2.0, 1.0, 4.0]


def test_time_max_pool_errors():
    with pytest.raises(ValueError, match=r"T .* must be an int >= 1, got 0"):
        TimeMaxPool(T=0)
    with pytest.raises(ValueError, match=r"trajectory with time along the last batch dim"):
        TimeMaxPool()(TensorDict({"observation": torch.zeros(2), "next": {"done": torch.zeros(1)}}, []))


def test_end_of_life_flags_lost_lives_and_done():
    env = TransformedEnv(LivesEnv(batch_size=[2]), EndOfLifeTransform())
    check_env_specs(env)
    env.set_seed(0)
    ro = env.rollout(14, break_when_any_done=False)
    lost = ro["lives"] > ro["next", "lives"]
    expected = lost.unsqueeze(-1) | ro["next", "done"]
    assert lost.any()
    assert torch.equal(ro["next", "end-of-life"], expected)
    assert env.observation_spec["end-of-life"].dtype == torch.bool
    assert "end-of-life" not in env.full_done_spec.keys()  # the env does not reset on it
    assert ro["next", "lives"].dtype == torch.int64
    assert ro["next", "lives"].shape == (2, 14)


def test_end_of_life_register_keys_and_errors():
    from tdrl.modules import QValueActor
    from tdrl.objectives import DQNLoss

    actor = QValueActor(torch.nn.Linear(1, 2), in_keys=["observation"], action_space="one-hot")
    loss = DQNLoss(actor, action_space="one-hot")
    EndOfLifeTransform(eol_key="eol").register_keys(loss)
    assert loss.tensor_keys.done == "eol"
    assert loss.tensor_keys.terminated == "eol"
    env = TransformedEnv(CountingEnv(), EndOfLifeTransform())
    with pytest.raises(AttributeError, match=r"has no attribute 'unwrapped'.*Fix: pass eol_attribute"):
        env.reset()
    with pytest.raises(KeyError, match=r"lives.* at the root and under .*next"):
        EndOfLifeTransform()(TensorDict({"next": {"done": torch.zeros(2, 1, dtype=torch.bool)}}, [2]))
    with pytest.raises(RuntimeError, match=r"attach"):
        EndOfLifeTransform()._reset(None, TensorDict({"done": torch.zeros(1, dtype=torch.bool)}, []))
