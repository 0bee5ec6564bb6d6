"""Reward2GoTransform (data-side) and TargetReturn (env-side): contracts and semantics."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl.envs import Compose, Reward2GoTransform, StepCounter, TargetReturn, TransformedEnv
from tdrl.testing import CountingEnv
from tdrl.testing.transform_contract import TransformContractTests, TransformTestEnv


def _trajectories():
    done = torch.zeros(2, 6, 1, dtype=torch.bool)
    done[0, [1, 5]] = True
    done[1, [2, 4]] = True
    reward = torch.arange(12, dtype=torch.float32).view(2, 6, 1)
    return TensorDict({"next": {"reward": reward, "done": done}}, [2, 6])


def _loop_r2g(reward, done, gamma):
    out = torch.zeros_like(reward)
    for row in range(reward.shape[0]):
        running = 0.0
        for t in reversed(range(reward.shape[1])):
            if done[row, t] or t == reward.shape[1] - 1:
                running = 0.0
            running = float(reward[row, t]) + gamma * running
            out[row, t] = running
    return out


def test_reward2go_matches_a_python_loop():
    data = _trajectories()
    out = Reward2GoTransform(0.9, out_keys=["reward_to_go"]).inv(data)
    expected = _loop_r2g(data["next", "reward"], data["next", "done"], 0.9)
    torch.testing.assert_close(out["reward_to_go"], expected)
    assert "reward_to_go" not in data.keys()  # inv works on a copy


def test_reward2go_in_a_replay_buffer_and_in_place():
    from tdrl.data import LazyTensorStorage, ReplayBuffer

    data = _trajectories()
    rb = ReplayBuffer(storage=LazyTensorStorage(10), transform=Reward2GoTransform(0.5), batch_size=2)
    rb.extend(data)
    expected = _loop_r2g(data["next", "reward"], data["next", "done"], 0.5)
    torch.testing.assert_close(rb[:]["next", "reward"], expected)
    assert rb.sample()["next", "reward"].shape == (2, 6, 1)


def test_reward2go_as_collector_postproc():
    from tdrl.collectors import SyncDataCollector

    t = Reward2GoTransform(gamma=1.0, out_keys=["reward_to_go"])
    collector = SyncDataCollector(CountingEnv(max_steps=4), None, frames_per_batch=8, total_frames=8, postproc=t.inv)
    batch = next(iter(collector))
    collector.shutdown()
    # CountingEnv pays 1 per step and ends after 4 steps: 4, 3, 2, 1 twice
    assert batch["reward_to_go"].squeeze(-1).tolist() == [4.0, 3.0, 2.0, 1.0] * 2


def test_reward2go_refuses_envs_and_open_trajectories():
    with pytest.raises(ValueError, match=r"replay\s+buffer"):
        TransformedEnv(CountingEnv(), Reward2GoTransform())
    with pytest.raises(ValueError, match="whole trajectories"):
        TransformedEnv(CountingEnv(), Compose(StepCounter(), Reward2GoTransform()))
    env = TransformedEnv(CountingEnv(), StepCounter())
    with pytest.raises(ValueError, match="whole trajectories"):
        env.append_transform(Reward2GoTransform())
    data = _trajectories()
    data["next", "done"][1] = False
    with pytest.raises(RuntimeError, match="no trajectory end"):
        Reward2GoTransform().inv(data)
    with pytest.raises(KeyError, match="none of the rewards"):
        Reward2GoTransform(in_keys=[("next", "bonus")]).inv(_trajectories())
    out = Reward2GoTransform()(_trajectories())
    assert torch.equal(out["next", "reward"], _trajectories()["next", "reward"])  # forward: identity


class TestTargetReturn(TransformContractTests):
    forward_matches_env = False

    def make_transform(self):
        return TargetReturn(5.0)

    @pytest.mark.parametrize("batched", [False, True])
    def test_forward_on_tensordict(self, batched: bool) -> None:
        with pytest.raises(NotImplementedError, match="runs inside an env"):
            TargetReturn(1.0)(TensorDict())

    def test_in_replay_buffer(self) -> None:
        self.test_forward_on_tensordict(False)


class TestTargetReturnConstant(TestTargetReturn):
    def make_transform(self):
        return TargetReturn(2.0, mode="constant", out_keys=["goal"])


def test_target_return_reduces_per_sub_env_and_restarts_at_reset():
    env = TransformedEnv(TransformTestEnv(batch_size=[3]), TargetReturn(1.0))
    env.set_seed(0)
    ro = env.rollout(15, break_when_any_done=False)
    target, nxt = ro["target_return"], ro["next", "target_return"]
    torch.testing.assert_close(nxt, target - ro["next", "reward"])
    done = ro["next", "done"][:, :-1]
    assert done.any()
    following = target[:, 1:]
    torch.testing.assert_close(following[done], torch.ones(int(done.sum())))
    torch.testing.assert_close(following[~done], nxt[:, :-1][~done])


def test_target_return_errors():
    with pytest.raises(ValueError, match="'reduce' or 'constant'"):
        TargetReturn(1.0, mode="sum")
    env = TransformedEnv(CountingEnv(), TargetReturn(3.0))
    td = env.reset().exclude("target_return")
    td["action"] = env.action_spec.rand()
    with pytest.raises(KeyError, match="written at reset"):
        env.step(td)
