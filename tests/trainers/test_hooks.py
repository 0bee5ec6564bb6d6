"""The trainer hooks, each alone: what it does to a batch, what it logs, its state, its errors."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.data import (
    LazyTensorStorage,
    SamplerWithoutReplacement,
    TensorDictPrioritizedReplayBuffer,
    TensorDictReplayBuffer,
)
from tdrl.testing import CountingEnv
from tdrl.trainers import (
    BatchSubSampler,
    CountFramesLog,
    LogScalar,
    LogValidationReward,
    OptimizerHook,
    ReplayBufferTrainer,
    RewardNormalizer,
    SelectKeys,
    UpdateWeights,
    mask_batch,
)

MASK = ("collector", "mask")


def padded_batch() -> TensorDict:
    """Two trajectories padded to 5 steps: lengths 5 and 3."""
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    return TensorDict(
        {
            "t": torch.arange(10).reshape(2, 5),
            ("next", "reward"): torch.arange(10, dtype=torch.float32).reshape(2, 5, 1),
            MASK: mask,
        },
        [2, 5],
    )


# ------------------------------------------------------------------------------ batch hooks
def test_mask_batch_keeps_the_valid_frames():
    out = mask_batch(padded_batch())
    assert out["t"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    plain = TensorDict({"t": torch.arange(3)}, [3])
    assert mask_batch(plain) is plain


def test_select_keys_keeps_only_its_keys():
    out = SelectKeys(["t"])(padded_batch())
    assert list(out.keys()) == ["t"]
    with pytest.raises(TypeError, match=r"pass \['t'\]"):
        SelectKeys("t")


def test_log_scalar_reduces_the_valid_frames_only():
    batch = padded_batch()
    valid = torch.tensor([0.0, 1, 2, 3, 4, 5, 6, 7])
    out = LogScalar(logname="r")(batch)
    assert out["r"] == pytest.approx(valid.mean().item())
    assert out["r_std"] == pytest.approx(valid.std().item())
    assert LogScalar(logname="r", reduction="max", include_std=False)(batch) == {"r": 7.0, "log_pbar": False}
    with pytest.raises(ValueError, match="reduction must be"):
        LogScalar(reduction="median")


def test_count_frames_log_counts_valid_frames_times_frame_skip_and_saves_its_count():
    hook = CountFramesLog(frame_skip=3)
    assert hook(padded_batch())["n_frames"] == 8 * 3
    assert hook(TensorDict({}, [4]))["n_frames"] == 8 * 3 + 4 * 3
    other = CountFramesLog(frame_skip=3)
    other.load_state_dict(hook.state_dict())
    assert other.frame_count == hook.frame_count


def test_reward_normalizer_matches_the_decayed_statistics():
    hook = RewardNormalizer(decay=0.5, scale=2.0)
    first = torch.tensor([1.0, 2.0, 4.0])
    second = torch.tensor([3.0, 5.0])
    hook.update_reward_stats(TensorDict({("next", "reward"): first.unsqueeze(-1)}, [3]))
    hook.update_reward_stats(TensorDict({("next", "reward"): second.unsqueeze(-1)}, [2]))
    # decayed sums, written out by hand
    total = 0.5 * first.sum() + second.sum()
    squares = 0.5 * first.pow(2).sum() + second.pow(2).sum()
    count = 0.5 * 3 + 2
    mean = total / count
    std = ((squares - total**2 / count) / (count - 1)).sqrt()
    batch = TensorDict({("next", "reward"): torch.tensor([[0.0], [10.0]])}, [2])
    out = hook.normalize_reward(batch)
    torch.testing.assert_close(out["next", "reward"].squeeze(-1), (torch.tensor([0.0, 10.0]) - mean) / std * 2.0)
    assert batch["next", "reward"].tolist() == [[0.0], [10.0]]  # the input is left alone
    restored = RewardNormalizer()
    restored.load_state_dict(hook.state_dict())
    torch.testing.assert_close(restored.normalize_reward(batch)["next", "reward"], out["next", "reward"])


def test_reward_normalizer_before_any_statistics_says_what_to_register():
    with pytest.raises(RuntimeError, match="register update_reward_stats"):
        RewardNormalizer().normalize_reward(TensorDict({("next", "reward"): torch.zeros(1, 1)}, [1]))


def test_batch_sub_sampler_draws_windows_of_consecutive_valid_steps():
    torch.manual_seed(0)
    sampler = BatchSubSampler(batch_size=6, sub_traj_len=3)
    for _ in range(20):
        sub = sampler(padded_batch())
        assert sub.shape == torch.Size([2, 3])
        assert bool(sub[MASK].all())
        t = sub["t"]
        assert bool((t[:, 1:] - t[:, :-1] == 1).all())  # consecutive steps of one row
        assert bool(((t // 5) == (t[:, :1] // 5)).all())


def test_batch_sub_sampler_on_a_flat_batch_draws_distinct_frames():
    torch.manual_seed(0)
    sub = BatchSubSampler(batch_size=4)(TensorDict({"t": torch.arange(10)}, [10]))
    assert sub.shape == torch.Size([4])
    assert len(set(sub["t"].tolist())) == 4


def test_batch_sub_sampler_errors():
    with pytest.raises(ValueError, match="smaller than one window"):
        BatchSubSampler(batch_size=2, sub_traj_len=3)(padded_batch())
    with pytest.raises(ValueError, match="does not fit rows of length 5"):
        BatchSubSampler(batch_size=12, sub_traj_len=6)(TensorDict({"t": torch.zeros(2, 5)}, [2, 5]))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        BatchSubSampler(batch_size=0)


# ------------------------------------------------------------------------------ replay buffer
def test_replay_buffer_trainer_extends_flattened_and_samples():
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(100))
    hook = ReplayBufferTrainer(buffer, batch_size=4, flatten_tensordicts=True)
    hook.extend(padded_batch())
    assert len(buffer) == 8  # the valid frames only
    assert hook.sample(None).shape == torch.Size([4])


def test_replay_buffer_trainer_marks_the_cut_as_truncated_when_flattening_without_mask():
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(100))
    batch = TensorDict({("next", "truncated"): torch.zeros(2, 3, 1, dtype=torch.bool)}, [2, 3])
    ReplayBufferTrainer(buffer, flatten_tensordicts=True).extend(batch)
    assert buffer[:]["next", "truncated"].squeeze(-1).tolist() == [False, False, True, False, False, True]


def test_replay_buffer_trainer_pads_to_max_dims():
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(100))
    hook = ReplayBufferTrainer(buffer, max_dims=[-1, 7])
    hook.extend(TensorDict({"t": torch.ones(2, 5)}, [2, 5]))
    assert buffer[:]["t"].shape == torch.Size([2, 7])
    with pytest.raises(ValueError, match="one size per batch dimension"):
        hook.extend(TensorDict({"t": torch.ones(5)}, [5]))


def test_replay_buffer_trainer_iterates_and_restarts():
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(100), sampler=SamplerWithoutReplacement(), batch_size=4)
    hook = ReplayBufferTrainer(buffer, iterate=True)
    hook.extend(TensorDict({"t": torch.arange(8)}, [8]))
    seen = [hook.sample(None)["t"] for _ in range(2)]
    assert sorted(torch.cat(seen).tolist()) == list(range(8))
    with pytest.raises(StopIteration):
        hook.sample(None)
    assert hook.sample(None).shape == torch.Size([4])  # a new pass


def test_replay_buffer_trainer_updates_priorities_and_saves_the_buffer():
    buffer = TensorDictPrioritizedReplayBuffer(alpha=1.0, beta=1.0, storage=LazyTensorStorage(10), batch_size=2)
    hook = ReplayBufferTrainer(buffer)
    hook.extend(TensorDict({"t": torch.arange(4)}, [4]))
    sample = hook.sample(None)
    sample.set("td_error", torch.full((2,), 5.0))
    hook.update_priority(sample)
    priorities = buffer.sampler.state_dict()
    other = TensorDictPrioritizedReplayBuffer(alpha=1.0, beta=1.0, storage=LazyTensorStorage(10), batch_size=2)
    ReplayBufferTrainer(other).load_state_dict(hook.state_dict())
    assert torch.equal(other[:]["t"], buffer[:]["t"])
    for key, value in other.sampler.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, priorities[key])


# ------------------------------------------------------------------------------ optimizer
def test_optimizer_hook_sums_the_loss_entries_clips_and_steps():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    hook = OptimizerHook(torch.optim.SGD([w], lr=1.0))
    losses = TensorDict({"loss_a": (w * w).sum() / 2, "loss_b": w.sum() * 0, "other": w.sum()})
    out = hook(losses, True, 1.0, 0)
    # grad = w = [3, 4], norm 5, clipped to norm 1: [0.6, 0.8]
    assert out["grad_norm_0"].item() == pytest.approx(5.0)
    torch.testing.assert_close(w.detach(), torch.tensor([2.4, 3.2]))
    assert w.grad is None or bool((w.grad == 0).all())


def test_optimizer_hook_clips_values_when_not_clipping_the_norm():
    w = nn.Parameter(torch.tensor([3.0, 0.1]))
    out = OptimizerHook(torch.optim.SGD([w], lr=1.0), ["loss_a"])(
        TensorDict({"loss_a": (w * w).sum() / 2}), False, 0.5, 2
    )
    assert out["grad_norm_2"].item() == pytest.approx((9 + 0.01) ** 0.5)
    torch.testing.assert_close(w.detach(), torch.tensor([2.5, 0.0]))


def test_optimizer_hook_errors_name_the_entries():
    with pytest.raises(ValueError, match="loss_components is empty"):
        OptimizerHook(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), [])
    hook = OptimizerHook(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0))
    with pytest.raises(KeyError, match=r"no loss to optimize among \['value'\]"):
        hook(TensorDict({"value": torch.zeros(())}), True, None, 0)


# ------------------------------------------------------------------------------ weights and evaluation
class CountingUpdates:
    def __init__(self):
        self.calls = []

    def update_policy_weights_(self, weights=None):
        self.calls.append(weights)


def test_update_weights_pushes_every_interval():
    collector = CountingUpdates()
    hook = UpdateWeights(collector, update_weights_interval=3, policy_weights_getter=lambda: "w")
    for _ in range(7):
        hook()
    assert collector.calls == ["w", "w"]
    assert hook.state_dict() == {"counter": 7, "last_update_count": 0}


def test_update_weights_refuses_what_it_does_not_support():
    with pytest.raises(ValueError, match="policy_weights_getter"):
        UpdateWeights(CountingUpdates(), weight_update_map={"policy": "loss_module.actor"})
    with pytest.raises(ValueError, match="update_weights_interval must be an int >= 1"):
        UpdateWeights(CountingUpdates(), update_weights_interval=0)
    with pytest.raises(ValueError, match="interval_unit"):
        UpdateWeights(CountingUpdates(), interval_unit="seconds")


def test_log_validation_reward_evaluates_every_record_interval_calls():
    env = CountingEnv(max_steps=3)
    hook = LogValidationReward(record_interval=2, record_frames=7, policy_exploration=None, environment=env)
    results = [hook(None) for _ in range(4)]
    assert results[1] is None
    assert results[3] is None
    # 7 steps of episodes of 3: returns 3, 3 and 1 (a cut episode); reward 1 per step
    assert results[0]["r_evaluation"].item() == 1.0
    assert results[0]["total_r_evaluation"].item() == pytest.approx((3 + 3 + 1) / 3)
    assert hook.state_dict()["_count"] == 4


def test_log_validation_reward_arguments():
    with pytest.raises(ValueError, match="environment= only"):
        LogValidationReward(
            record_interval=1,
            record_frames=1,
            policy_exploration=None,
            environment=CountingEnv(),
            recorder=CountingEnv(),
        )
    with pytest.raises(ValueError, match="record_frames must be a positive int"):
        LogValidationReward(record_interval=1, record_frames=0, policy_exploration=None, environment=CountingEnv())


def test_update_weights_reaches_a_real_collector():
    policy = nn.Linear(1, 1)
    collector = SyncDataCollector(CountingEnv(), None, frames_per_batch=4, total_frames=8)
    UpdateWeights(collector, policy_weights_getter=lambda: policy.state_dict())  # accepted; no policy to update
    UpdateWeights(collector)()  # a collector without an nn.Module policy: a no-op
