"""Trainer: the hook order, logging, the progress bar, errors, checkpoints and the exact resume."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.data import LazyTensorStorage, TensorDictReplayBuffer
from tdrl.modules import Categorical, ProbabilisticActor, QValueActor, ValueOperator
from tdrl.objectives import ClipPPOLoss, DQNLoss, SoftUpdate
from tdrl.testing import CountingEnv, MemoryLogger
from tdrl.trainers import (
    HOOK_POINTS,
    BatchSubSampler,
    CountFramesLog,
    LogScalar,
    ReplayBufferTrainer,
    RewardNormalizer,
    Trainer,
    UpdateWeights,
)
from tdrl.trainers._checkpoint import _decode_checkpoint, _encode_checkpoint

FRAMES_PER_BATCH = 16  # 2 envs x 8 steps; CountingEnv episodes of 4 end on every batch boundary


class CheckpointedLogger(MemoryLogger):
    """Keeps every scalar in memory, with a counter that a checkpoint saves."""

    def _checkpoint_state(self):
        return {"count": len(self.scalars)}

    def _load_checkpoint_state(self, state):
        self.restored_count = state.get("count")


class WeightLoss(nn.Module):
    """A quadratic loss pulling one weight toward the observations."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        return TensorDict({"loss_fit": (self.weight - batch["observation"]).pow(2).mean()})


def simple_trainer(total_frames=64, **kwargs) -> Trainer:
    loss = WeightLoss()
    collector_frames = total_frames if isinstance(total_frames, int) and total_frames > 0 else 64
    collector = SyncDataCollector(
        CountingEnv(max_steps=4, batch_size=[2]), None, frames_per_batch=FRAMES_PER_BATCH, total_frames=collector_frames
    )
    kwargs.setdefault("progress_bar", False)
    kwargs.setdefault("optim_steps_per_batch", 2)
    kwargs.setdefault("frame_skip", 1)
    return Trainer(
        collector=collector,
        total_frames=total_frames,
        loss_module=loss,
        optimizer=torch.optim.SGD(loss.parameters(), lr=0.1),
        **kwargs,
    )


# ------------------------------------------------------------------------------ the loop
def test_hooks_are_called_in_the_documented_order():
    trainer = simple_trainer(total_frames=FRAMES_PER_BATCH, optim_steps_per_batch=2)
    calls: list[str] = []

    def recorder(point):
        def op(*args):
            calls.append(point)
            if point == "pre_epoch":
                return args[0]
            return None

        return op

    for point in HOOK_POINTS:
        trainer.register_op(point, recorder(point))
    trainer.train()
    step = ["process_optim_batch", "post_loss", "process_loss", "optimizer", "post_optim", "post_optim_log"]
    assert calls == [
        "setup",
        "batch_process",
        "pre_steps_log",
        "pre_optim_steps",
        "pre_epoch_log",
        "pre_epoch",
        *step,
        *step,
        "post_epoch_log",
        "post_epoch",
        "post_optim_complete_log",
        "post_steps",
        "post_steps_log",
        "shutdown",
    ]


def test_the_order_of_hook_points_matches_one_iteration():
    # HOOK_POINTS is documented as the order one iteration reaches them: the test above pins it
    assert HOOK_POINTS[0] == "setup"
    assert HOOK_POINTS[-1] == "shutdown"
    assert len(set(HOOK_POINTS)) == len(HOOK_POINTS)


def test_frames_and_optimization_steps_are_counted():
    trainer = simple_trainer(total_frames=64, optim_steps_per_batch=3, num_epochs=2)
    trainer.train()
    assert trainer.collected_frames == 64
    assert trainer._optim_count == (64 // FRAMES_PER_BATCH) * 3 * 2


def test_optimization_trains_the_loss_module():
    trainer = simple_trainer(total_frames=160, optim_steps_per_batch=10)
    trainer.train()
    # the observations are the counts 0..3 (one episode of 4 steps: 0,1,2,3), mean 1.5
    assert abs(trainer.loss_module.weight.item() - 1.5) < 0.1


def test_stop_iteration_from_process_optim_batch_ends_the_batch():
    trainer = simple_trainer(total_frames=FRAMES_PER_BATCH, optim_steps_per_batch=None)
    served = iter(range(3))

    def three_sub_batches(batch):
        next(served)  # StopIteration after three
        return batch

    trainer.register_op("process_optim_batch", three_sub_batches)
    trainer.train()
    assert trainer._optim_count == 4  # three sub-batches, then the step that stopped


def test_an_endless_optimization_is_refused():
    trainer = simple_trainer(optim_steps_per_batch=None)
    with pytest.raises(ValueError, match=r"optim_steps_per_batch=None.*never end"):
        trainer.train()


def test_request_stop_ends_after_the_batch_with_a_checkpoint(tmp_path):
    trainer = simple_trainer(total_frames=160, save_trainer_file=tmp_path / "t.pt", save_trainer_interval=10**6)
    trainer.register_op("post_steps", lambda: trainer.request_stop("enough"))
    trainer.train()
    assert trainer.collected_frames == FRAMES_PER_BATCH
    assert (tmp_path / "t.pt").is_file()


# ------------------------------------------------------------------------------ logging
def test_log_hooks_reach_the_logger_every_log_interval():
    logger = CheckpointedLogger("exp", "unused")
    trainer = simple_trainer(total_frames=96, logger=logger, log_interval=FRAMES_PER_BATCH)
    LogScalar(logname="r_training").register(trainer)
    trainer.train()
    steps = [step for name, _, step in logger.scalars if name == "r_training"]
    # logged when more than log_interval frames passed since the last time: every second batch
    frames = list(range(FRAMES_PER_BATCH, 97, FRAMES_PER_BATCH))
    expected, last = [], 0
    for f in frames:
        if f - last > FRAMES_PER_BATCH:
            expected.append(f)
            last = f
    assert steps == expected
    rewards = [value for name, value, _ in logger.scalars if name == "r_training"]
    assert rewards == [1.0] * len(expected)  # CountingEnv pays 1 per step
    assert {"optim_steps", "loss_fit", "grad_norm_0"} <= {name for name, _, _ in logger.scalars}


def test_progress_bar_shows_the_log_pbar_values(capsys):
    trainer = simple_trainer(total_frames=32, progress_bar=True)
    LogScalar(logname="r_training", log_pbar=True).register(trainer)
    trainer.train()
    err = capsys.readouterr().err
    assert "r_training: 1.0000" in err
    assert "32/32" in err


def test_progress_bar_off_prints_nothing(capsys):
    trainer = simple_trainer(total_frames=32, progress_bar=False)
    LogScalar(logname="r_training", log_pbar=True).register(trainer)
    trainer.train()
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_the_log_history_does_not_grow():
    trainer = simple_trainer(total_frames=160)
    LogScalar(logname="r_training").register(trainer)
    trainer.train()
    assert trainer._log_dict["r_training"] == 1.0  # the last value, not a list of every value


# ------------------------------------------------------------------------------ errors
def test_unknown_hook_point_names_the_valid_ones():
    trainer = simple_trainer()
    with pytest.raises(ValueError, match=r"unknown hook point 'post_batch'.*batch_process.*post_steps_log"):
        trainer.register_op("post_batch", lambda: None)
    with pytest.raises(TypeError, match="op must be callable"):
        trainer.register_op("post_steps", 3)


def test_a_module_name_is_registered_once():
    trainer = simple_trainer()
    CountFramesLog(frame_skip=1).register(trainer)
    with pytest.raises(ValueError, match=r"'count_frames_log' is already registered.*name="):
        CountFramesLog(frame_skip=1).register(trainer)
    with pytest.raises(TypeError, match="no state_dict/load_state_dict"):
        trainer.register_module("thing", object())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"total_frames": 0}, "total_frames must be an int >= 1, got 0"),
        ({"frame_skip": 1.5}, "frame_skip must be an int >= 1"),
        ({"optim_steps_per_batch": 0}, "optim_steps_per_batch must be an int >= 1"),
        ({"clip_norm": -1.0}, "clip_norm must be a positive number"),
        ({"async_collection": True}, "async_collection=True is not supported.*synchronously"),
        ({"replay_buffer": object()}, "replay_buffer=.*ReplayBufferTrainer"),
        ({"learner_backend": "ray"}, "learner_backend='ray' is not supported"),
        ({"log_timings": True}, "log_timings=True is not supported"),
    ],
)
def test_bad_arguments_say_what_to_pass(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simple_trainer(**kwargs)


# ------------------------------------------------------------------------------ checkpoints
def read_checkpoint(path):
    return _decode_checkpoint(path, path.read_bytes())


def test_checkpoints_are_written_every_save_trainer_interval_frames(tmp_path, monkeypatch):
    saved: list[int] = []
    trainer = simple_trainer(total_frames=96, save_trainer_file=tmp_path / "t.pt", save_trainer_interval=20)
    monkeypatch.setattr(trainer, "_save_trainer", lambda: saved.append(trainer.collected_frames))
    trainer.train()
    expected, last = [], 0
    for frames in range(FRAMES_PER_BATCH, 96, FRAMES_PER_BATCH):  # the last batch saves by force
        if frames - last > 20:
            expected.append(frames)
            last = frames
    assert saved == [*expected, 96]


def test_no_checkpoint_without_a_file(tmp_path):
    trainer = simple_trainer(total_frames=32, save_trainer_interval=0)
    trainer.train()
    trainer.save_trainer(force_save=True)
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_loads_without_unpickling_and_restores_the_counters(tmp_path):
    path = tmp_path / "t.pt"
    logger = CheckpointedLogger("exp", "unused")
    trainer = simple_trainer(total_frames=48, save_trainer_file=path, logger=logger, log_interval=0)
    trainer.train()
    state = read_checkpoint(path)  # weights-only: raises on anything but tensors and containers
    assert state["state"]["collected_frames"] == 48
    fresh = simple_trainer(total_frames=48, logger=CheckpointedLogger("exp", "unused")).load_from_file(path)
    assert fresh.collected_frames == 48
    assert fresh._optim_count == trainer._optim_count
    assert fresh.loss_module.weight.item() == trainer.loss_module.weight.item()
    assert fresh.logger.restored_count == len(logger.scalars)


def test_load_refuses_damaged_foreign_and_pickled_files(tmp_path):
    trainer = simple_trainer(total_frames=32, save_trainer_file=tmp_path / "t.pt")
    trainer.train()
    data = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    fresh = simple_trainer()
    with pytest.raises(ValueError, match="is damaged"):
        fresh.load_from_file(tmp_path / "cut.pt")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10  # one bit in the middle of the payload (torch's reader would not notice)
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="CRC-32 mismatch"):
        fresh.load_from_file(tmp_path / "flipped.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a tdrl trainer checkpoint"):
        fresh.load_from_file(tmp_path / "other.pt")
    pickled = _encode_checkpoint({"format": "tdrl.Trainer/1", "obj": CheckpointedLogger("x", "y")})
    (tmp_path / "pickled.pt").write_bytes(pickled)
    with pytest.raises(ValueError, match="tdrl does not unpickle them"):
        fresh.load_from_file(tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="weights_only=False is refused"):
        fresh.load_from_file(tmp_path / "t.pt", weights_only=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        fresh.load_from_file(tmp_path / "missing.pt")
    assert fresh.collected_frames == 0


def test_load_names_missing_parts_and_changes_nothing_on_error(tmp_path):
    trainer = simple_trainer(total_frames=32, save_trainer_file=tmp_path / "t.pt")
    trainer.train()
    fresh = simple_trainer()
    CountFramesLog(frame_skip=1).register(fresh)
    with pytest.raises(KeyError, match="no \\['count_frames_log'\\]"):
        fresh.load_from_file(tmp_path / "t.pt")
    # a checkpoint whose later part fails to load: the parts loaded before it are put back
    state = read_checkpoint(tmp_path / "t.pt")
    state["count_frames_log"] = {"wrong": 1}
    before = fresh.loss_module.weight.detach().clone()
    with pytest.raises(KeyError):
        fresh.load_state_dict(state)
    assert torch.equal(fresh.loss_module.weight.detach(), before)
    assert fresh.collected_frames == 0


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    import tdrl.trainers._checkpoint as module

    path = tmp_path / "t.pt"
    trainer = simple_trainer(total_frames=32, save_trainer_file=path)
    trainer.train()
    previous = path.read_bytes()
    real = module.write_file_atomic

    def torn(target, write):
        def half(file):
            file.write(b"partial")
            raise OSError("disk full")

        real(target, half)

    monkeypatch.setattr(module, "write_file_atomic", torn)
    trainer.collected_frames += 1
    with pytest.raises(OSError, match="disk full"):
        trainer.save_trainer(force_save=True)
    assert path.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.pt"]


_FORK = multiprocessing.get_context("fork")


def _save_forever(path: str) -> None:
    trainer = simple_trainer(save_trainer_file=path)
    generation = 0
    while True:
        generation += 1
        trainer.collected_frames = generation
        with torch.no_grad():
            trainer.loss_module.weight.fill_(generation)
        trainer.save_trainer(force_save=True)


def test_a_process_killed_while_saving_leaves_a_whole_checkpoint(tmp_path):
    path = tmp_path / "t.pt"
    trainer = simple_trainer(save_trainer_file=path)
    trainer.save_trainer(force_save=True)
    rng = random.Random(0)
    for _ in range(6):
        child = _FORK.Process(target=_save_forever, args=(str(path),))
        child.start()
        time.sleep(0.05 + rng.random() * 0.2)
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        assert child.exitcode == -signal.SIGKILL
        fresh = simple_trainer().load_from_file(path)
        # a checkpoint is whole: its counter and its weight come from the same save
        assert fresh.loss_module.weight.item() == float(fresh.collected_frames)


# ------------------------------------------------------------------------------ exact resume
class Interrupt(Exception):
    pass


def _interrupt_after(trainer: Trainer, batches: int) -> None:
    seen = {"n": 0}

    def op():
        seen["n"] += 1
        if seen["n"] > batches:
            raise Interrupt

    trainer.register_op("post_steps", op)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the trainer saves and restores the global state)
    random.seed(seed)


def on_policy_trainer(path, total_frames: int) -> Trainer:
    """PPO on CountingEnv: the policy samples actions, BatchSubSampler draws the minibatches."""
    _seed_everything(0)
    net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 2), nn.Unflatten(-1, (1, 2)))
    actor = ProbabilisticActor(
        TensorDictModule(net, ["observation"], ["logits"]),
        in_keys=["logits"],
        distribution_class=Categorical,
        return_log_prob=True,
    )
    critic = ValueOperator(nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)), in_keys=["observation"])
    loss = ClipPPOLoss(actor, critic)
    collector = SyncDataCollector(
        CountingEnv(max_steps=4, batch_size=[2]), actor, frames_per_batch=FRAMES_PER_BATCH, total_frames=total_frames
    )
    trainer = Trainer(
        collector=collector,
        total_frames=total_frames,
        frame_skip=1,
        optim_steps_per_batch=3,
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters(), lr=1e-2),
        progress_bar=False,
        save_trainer_file=path,
        save_trainer_interval=0,
        clip_norm=1.0,
        seed=1,
    )
    RewardNormalizer().register(trainer)
    BatchSubSampler(batch_size=8, sub_traj_len=4).register(trainer)
    CountFramesLog(frame_skip=1).register(trainer)
    UpdateWeights(collector, update_weights_interval=2).register(trainer)
    return trainer


def off_policy_trainer(path, total_frames: int) -> Trainer:
    """DQN on CountingEnv: a replay buffer with its own generator, a target network."""
    _seed_everything(0)
    env = CountingEnv(max_steps=4, batch_size=[2])
    qnet = QValueActor(
        nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 2)), in_keys=["observation"], spec=env.action_spec
    )
    loss = DQNLoss(qnet, action_space=env.action_spec, delay_value=True)
    updater = SoftUpdate(loss, eps=0.9)
    collector = SyncDataCollector(env, qnet, frames_per_batch=FRAMES_PER_BATCH, total_frames=total_frames)
    trainer = Trainer(
        collector=collector,
        total_frames=total_frames,
        frame_skip=1,
        optim_steps_per_batch=4,
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters(), lr=1e-2),
        progress_bar=False,
        save_trainer_file=path,
        save_trainer_interval=0,
    )
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(1000), generator=torch.Generator().manual_seed(3))
    ReplayBufferTrainer(buffer, batch_size=8, flatten_tensordicts=True).register(trainer)
    trainer.register_op("post_optim", updater.step)
    return trainer


def _assert_identical(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict), where
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("make", [on_policy_trainer, off_policy_trainer], ids=["on_policy", "off_policy"])
def test_an_interrupted_run_resumed_ends_bit_identical(tmp_path, make):
    total = 6 * FRAMES_PER_BATCH
    straight = make(tmp_path / "straight.pt", total)
    straight.train()
    expected = straight.state_dict()  # weights, optimizer, buffer, counters, hooks and RNG states at the end

    path = tmp_path / "interrupted.pt"
    interrupted = make(path, total)
    _interrupt_after(interrupted, 3)
    with pytest.raises(Interrupt):
        interrupted.train()
    resumed = make(path, total)
    _seed_everything(12345)  # the resume must not depend on the RNG state it starts from
    resumed.load_from_file(path)
    assert resumed.collected_frames == 3 * FRAMES_PER_BATCH
    resumed.train()

    assert resumed.collected_frames == straight.collected_frames == total
    _assert_identical(expected, resumed.state_dict())
    if make is off_policy_trainer:
        assert len(resumed._modules["replay_buffer"].replay_buffer) == total
