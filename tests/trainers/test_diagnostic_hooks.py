"""LogTiming, UTDRHook, ClearCudaCache: what they log or count inside a Trainer."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from tdrl._utils import timeit
from tdrl.collectors import SyncDataCollector
from tdrl.data import LazyTensorStorage, TensorDictReplayBuffer
from tdrl.testing import CountingEnv
from tdrl.trainers import ClearCudaCache, LogTiming, ReplayBufferTrainer, Trainer, UTDRHook


def make_trainer(total_frames: int = 16, optim_steps_per_batch: int = 3, replay_buffer=None) -> Trainer:
    collector = SyncDataCollector(
        CountingEnv(max_steps=4), None, frames_per_batch=4, total_frames=total_frames, replay_buffer=replay_buffer
    )
    return Trainer(
        collector=collector,
        total_frames=total_frames,
        frame_skip=1,
        optim_steps_per_batch=optim_steps_per_batch,
        loss_module=lambda batch: TensorDict(),
        progress_bar=False,
    )


def _timed_step(batch) -> None:
    with timeit("diagnostic_test_step"):
        pass


def test_log_timing_logs_each_timer_under_its_prefix():
    trainer = make_trainer()
    trainer.register_op("pre_steps_log", _timed_step)
    LogTiming(prefix="t", percall=False, erase=True).register(trainer)
    trainer.train()
    logged = trainer.last_logged("t/diagnostic_test_step")
    assert logged >= 0.0
    assert timeit.todict(percall=False)["diagnostic_test_step"] == 0.0  # erased after the last log
    restored = LogTiming()
    restored.load_state_dict(LogTiming(prefix="t", percall=False).state_dict())
    assert (restored.prefix, restored.percall, restored.erase) == ("t", False, False)


def test_utd_ratio_counts_samples_trained_per_sample_written():
    trainer = make_trainer(total_frames=16, optim_steps_per_batch=3)
    ReplayBufferTrainer(TensorDictReplayBuffer(storage=LazyTensorStorage(100)), batch_size=2).register(trainer)
    utd = UTDRHook(trainer)
    utd.register(trainer)
    trainer.train()
    # logged before the last batch's optimization: 3 batches x 3 steps of 2 items, over 16 items written
    assert trainer.last_logged("utd_ratio") == pytest.approx(2 * 9 / 16)
    assert utd(None) == {"utd_ratio": 2 * 12 / 16, "write_count": 16, "update_count": 12, "log_pbar": False}


def test_utd_ratio_reads_the_collectors_buffer_and_needs_one():
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(100), batch_size=4)
    trainer = make_trainer(replay_buffer=buffer)
    assert UTDRHook(trainer)(None) == {}  # nothing written yet
    buffer.extend(TensorDict({"x": torch.zeros(8)}, [8]))
    assert UTDRHook(trainer)(None)["write_count"] == 8
    with pytest.raises(RuntimeError, match="register a ReplayBufferTrainer"):
        UTDRHook(make_trainer())(None)


def test_clear_cuda_cache_counts_batches_and_checks_its_interval():
    trainer = make_trainer(total_frames=16)
    hook = ClearCudaCache(2)
    hook.register(trainer)
    trainer.train()
    assert hook.state_dict() == {"count": 4}
    with pytest.raises(ValueError, match="positive int, got 0"):
        ClearCudaCache(0)
