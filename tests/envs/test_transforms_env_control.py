"""NoopResetEnv, AutoResetTransform/AutoResetEnv and DeviceCastTransform: contract, behaviour, errors."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from tensordict import TensorDict, TensorDictBase

from tdrl.envs import (
    AutoResetEnv,
    AutoResetTransform,
    Compose,
    DeviceCastTransform,
    NoopResetEnv,
    StepCounter,
    TransformedEnv,
    check_env_specs,
)
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


class SelfResettingEnv(TransformTestEnv):
    """TransformTestEnv that starts the next episode inside the step that ends one (as gymnasium's vector envs do)."""

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        out = super()._step(tensordict)
        done = out.get("done")
        if done.any():
            fresh = torch.randn(self.obs.shape, generator=self.rng, dtype=self.dtype)
            self.obs = torch.where(done, fresh, self.obs)
            self.count = torch.where(done, torch.zeros_like(self.count), self.count)
            out.set("observation", self.obs.clone())
        return out


class SelfResettingCounter(CountingEnv):
    """CountingEnv that restarts its count inside the step that ends an episode."""

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        out = super()._step(tensordict)
        done = out.get("done")
        if done.any():
            self.count[done] = 0
            out.set("observation", self.count.clone())
        return out


# --- the transform contract -------------------------------------------------------------------------------------


class TestNoopReset(TransformContractTests):
    forward_matches_env = False  # the random steps happen inside resets

    def make_transform(self):
        return NoopResetEnv(noops=3, random=False)

    def make_env(self):
        return CountingEnv(max_steps=50)

    def make_batched_env(self):
        return CountingEnv(max_steps=50, batch_size=[1])


class TestAutoReset(TransformContractTests):
    forward_matches_env = False  # stepping hands the first observations to the next reset

    def make_transform(self):
        # a finite fill: check_env_specs refuses NaN in an Unbounded observation, and the roads compare with ==
        return AutoResetTransform(fill_float=0.0)

    def make_env(self):
        return SelfResettingEnv()

    def make_batched_env(self):
        return SelfResettingEnv(batch_size=[3])

    def wrap(self, env, transform):
        return AutoResetEnv(env, transform)


class TestDeviceCastEnv(TransformContractTests):
    has_inverse = True

    def make_transform(self):
        return DeviceCastTransform("cpu")


class TestDeviceCastKeys(TransformContractTests):
    def make_transform(self):
        return DeviceCastTransform("cpu", in_keys=["observation"], out_keys=["obs_on_device"])


class TestDeviceCastAction(TransformContractTests):
    has_inverse = True
    forward_matches_env = False

    def make_transform(self):
        return DeviceCastTransform("cpu", in_keys_inv=["action"], out_keys_inv=["policy_action"])


# --- NoopResetEnv --------------------------------------------------------------------------------------------


def test_noop_reset_takes_the_steps_through_the_transforms_before_it():
    env = TransformedEnv(CountingEnv(max_steps=5), Compose(StepCounter(), NoopResetEnv(3, random=False)))
    td = env.reset()
    assert td["observation"].item() == 3
    assert td["step_count"].item() == 3
    assert "reward" not in td.keys()
    assert "action" not in td.keys()
    ro = env.rollout(6, break_when_any_done=False)
    assert ro["observation"].squeeze(-1).tolist() == [3.0, 4.0, 3.0, 4.0, 3.0, 4.0]


def test_noop_reset_random_count_follows_the_global_generator():
    env = TransformedEnv(CountingEnv(max_steps=100), NoopResetEnv(noops=30))
    torch.manual_seed(5)
    expected = int(torch.randint(30, (1,)).item())
    torch.manual_seed(5)
    assert env.reset()["observation"].item() == expected


def test_noop_reset_restarts_an_episode_that_ends_and_gives_up_after_ten():
    env = TransformedEnv(CountingEnv(max_steps=4), NoopResetEnv(6, random=False))
    with pytest.raises(RuntimeError, match=r"ended its episode before 6 random steps.*11 times"):
        env.reset()
    with pytest.raises(ValueError, match=r"batch size \(2,\).*ParallelEnv"):
        TransformedEnv(CountingEnv(batch_size=[2]), NoopResetEnv())
    with pytest.raises(ValueError, match=r"noops must be an int >= 1"):
        NoopResetEnv(0)
    with pytest.raises(RuntimeError, match=r"no parent env"):
        NoopResetEnv()._reset(None, TensorDict({}, []))


# --- AutoResetTransform / AutoResetEnv ---------------------------------------------------------------------------


def test_auto_reset_next_observation_is_filled_and_the_next_root_is_the_new_episode():
    env = SelfResettingCounter(max_steps=3, batch_size=[2], auto_reset=True)
    assert isinstance(env, AutoResetEnv)
    assert isinstance(env.transform, AutoResetTransform)
    ro = env.rollout(7, break_when_any_done=False)
    nan = float("nan")
    expected_next = torch.tensor([1.0, 2.0, nan, 1.0, 2.0, nan, 1.0])
    torch.testing.assert_close(ro["next", "observation"][0].squeeze(-1), expected_next, equal_nan=True)
    assert ro["observation"][0].squeeze(-1).tolist() == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]
    assert env.base_env.count.squeeze(-1).tolist() == [1.0, 1.0]  # the simulator was never reset by tdrl


def test_auto_reset_replace_false_keeps_the_returned_values_and_fills_follow_dtype():
    env = SelfResettingCounter(max_steps=2, auto_reset=True, auto_reset_replace=False)
    ro = env.rollout(4, break_when_any_done=False)
    assert ro["next", "observation"].squeeze(-1).tolist() == [1.0, 0.0, 1.0, 0.0]
    t = AutoResetTransform(fill_int=-7, fill_bool=True)
    done = torch.tensor([[True], [False]])
    td = TensorDict(
        {"next": {"i": torch.tensor([3, 4]), "b": torch.tensor([False, False]), "u": torch.tensor([5, 6]).byte()}}, [2]
    )
    td["next", "done"] = done
    out = t(td)["next"]
    assert out["i"].tolist() == [-7, 4]
    assert out["b"].tolist() == [True, False]
    assert out["u"].tolist() == [1, 6]


def test_auto_reset_in_a_collector_and_after_a_transform():
    from tdrl.collectors import SyncDataCollector

    env = SelfResettingCounter(max_steps=3, auto_reset=True).append_transform(StepCounter())
    collector = SyncDataCollector(env, None, frames_per_batch=7, total_frames=7)
    batch = next(iter(collector))
    assert batch["observation"].squeeze(-1).tolist() == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]
    assert batch["step_count"].squeeze(-1).tolist() == [0, 1, 2, 0, 1, 2, 0]
    collector.shutdown()


def test_auto_reset_env_copies_and_refuses_misuse():
    env = SelfResettingCounter(max_steps=3, auto_reset=True)
    assert type(copy.deepcopy(env)) is AutoResetEnv
    assert type(pickle.loads(pickle.dumps(CountingEnv()))) is CountingEnv
    with pytest.raises(ValueError, match=r"inside an AutoResetEnv.*auto_reset=True"):
        TransformedEnv(CountingEnv(), AutoResetTransform())
    with pytest.raises(RuntimeError, match=r"append_transform"):
        env.insert_transform(0, StepCounter())
    assert env.reset()["observation"].item() == 0.0  # a plain reset resets the simulator


# --- DeviceCastTransform ----------------------------------------------------------------------------------------


def test_device_cast_keys_keep_the_original_and_move_actions_back():
    env = TransformedEnv(
        TransformTestEnv(batch_size=[2]),
        DeviceCastTransform("cpu", in_keys=["observation"], out_keys=["obs_dev"], in_keys_inv=["action"]),
    )
    check_env_specs(env)
    assert {"observation", "obs_dev"} <= set(env.observation_spec.keys())
    assert env.transform.orig_device == torch.device("cpu")
    standalone = DeviceCastTransform("cpu", in_keys_inv=["action"])
    assert standalone.orig_device is None
    td = TensorDict({"action": torch.ones(2)}, [])
    assert standalone.inv(td)["action"] is td["action"]  # no device inside: left where it is


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_cast_moves_the_env_to_cuda_and_back():
    env = TransformedEnv(TransformTestEnv(batch_size=[2]), DeviceCastTransform("cuda"))
    assert env.device.type == "cuda"
    assert env.action_spec.device.type == "cuda"
    ro = env.rollout(5, break_when_any_done=False)
    assert ro["next", "observation"].device.type == "cuda"
    root = env.reset()
    root.set("_reset", torch.tensor([[True], [False]], device="cuda"))
    assert env.reset(root)["observation"].device.type == "cuda"  # the base env got its reset flag on the cpu
    keys = TransformedEnv(
        TransformTestEnv(), DeviceCastTransform("cuda", in_keys=["observation"], in_keys_inv=["action"])
    )
    td = keys.rand_action(keys.reset())
    td["action"] = td["action"].cuda()
    out = keys.step(td)
    assert out["next", "observation"].device.type == "cuda"
    assert out["next", "reward"].device.type == "cpu"
