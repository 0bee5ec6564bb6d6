"""LRSchedulerHook, TargetNetUpdaterHook, ValueEstimatorHook, EarlyStopping: in a Trainer, with checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.modules import ValueOperator
from tdrl.objectives import LossModule, SoftUpdate
from tdrl.objectives.value import TD0Estimator
from tdrl.testing import CountingEnv
from tdrl.trainers import (
    EarlyStopping,
    LogScalar,
    LRSchedulerHook,
    TargetNetUpdaterHook,
    Trainer,
    ValueEstimatorHook,
)

FRAMES_PER_BATCH = 8


class WeightLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen: list[set] = []

    def forward(self, batch):
        self.seen.append(set(batch.keys()))
        return TensorDict({"loss_fit": (self.weight - batch["observation"]).pow(2).mean()})


def make_trainer(total_frames=32, init_random_frames=None, **kwargs) -> Trainer:
    loss = WeightLoss()
    collector = SyncDataCollector(
        CountingEnv(max_steps=4, batch_size=[2]),
        None,
        frames_per_batch=FRAMES_PER_BATCH,
        total_frames=total_frames,
        init_random_frames=init_random_frames,
    )
    kwargs.setdefault("optim_steps_per_batch", 2)
    return Trainer(
        collector=collector,
        total_frames=total_frames,
        frame_skip=1,
        loss_module=loss,
        optimizer=torch.optim.SGD(loss.parameters(), lr=0.1),
        progress_bar=False,
        **kwargs,
    )


# ------------------------------------------------------------------------------ LRSchedulerHook
@pytest.mark.parametrize(("interval", "steps"), [("batch", 4), ("optim", 8)])
def test_lr_scheduler_steps_once_per_batch_or_per_optim_step(interval, steps):
    trainer = make_trainer(total_frames=32)
    scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, step_size=1, gamma=0.5)
    LRSchedulerHook(scheduler, interval=interval).register(trainer)
    trainer.train()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**steps)


def test_lr_scheduler_keeps_the_rate_during_random_warmup():
    trainer = make_trainer(total_frames=32, init_random_frames=16)  # the first batch is not optimized on
    scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, step_size=1, gamma=0.5)
    LRSchedulerHook(scheduler).register(trainer)
    trainer.train()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_lr_scheduler_state_resumes_from_a_checkpoint(tmp_path):
    path = tmp_path / "t.pt"
    trainer = make_trainer(total_frames=32, save_trainer_file=path)
    LRSchedulerHook(torch.optim.lr_scheduler.StepLR(trainer.optimizer, step_size=1, gamma=0.5)).register(trainer)
    trainer.train()
    fresh = make_trainer(total_frames=32)
    hook = LRSchedulerHook(torch.optim.lr_scheduler.StepLR(fresh.optimizer, step_size=1, gamma=0.5))
    hook.register(fresh)
    fresh.load_from_file(path)
    assert hook.scheduler.last_epoch == 4
    assert hook._last_optim_count == trainer.optim_count


def test_lr_scheduler_refuses_an_unknown_interval():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=r"'batch'.*'optim'.*got 'epoch'"):
        LRSchedulerHook(torch.optim.lr_scheduler.StepLR(optimizer, 1), interval="epoch")
    with pytest.raises(TypeError, match="step\\(\\) method"):
        LRSchedulerHook(object())


# ------------------------------------------------------------------------------ TargetNetUpdaterHook
class ToyLoss(LossModule):
    def __init__(self) -> None:
        super().__init__()
        self._register_network(TensorDictModule(nn.Linear(1, 1), ["observation"], ["y"]), "value_network", True)

    def forward(self, batch):
        return TensorDict({"loss_fit": self.value_network(batch.select("observation"))["y"].pow(2).mean()})


def test_target_net_updater_hook_moves_the_target_once_per_batch():
    loss = ToyLoss()
    collector = SyncDataCollector(CountingEnv(max_steps=4), None, frames_per_batch=4, total_frames=12)
    trainer = Trainer(
        collector=collector,
        total_frames=12,
        frame_skip=1,
        optim_steps_per_batch=1,
        loss_module=loss,
        optimizer=torch.optim.SGD(loss.parameters(), lr=0.0),  # the online weights stay put
        progress_bar=False,
    )
    target_before = loss.target_value_network_params["module", "bias"].clone()
    with torch.no_grad():
        loss.value_network.module.bias.fill_(1.0)
    TargetNetUpdaterHook(SoftUpdate(loss, tau=0.5)).register(trainer)
    trainer.train()
    expected = 1.0 - (1.0 - target_before) * 0.5**3  # three batches, each halving the gap
    torch.testing.assert_close(loss.target_value_network_params["module", "bias"], expected)


def test_target_net_updater_hook_refuses_other_objects():
    with pytest.raises(TypeError, match="SoftUpdate"):
        TargetNetUpdaterHook(lambda: None)


# ------------------------------------------------------------------------------ ValueEstimatorHook
def test_value_estimator_hook_writes_advantages_the_loss_reads():
    trainer = make_trainer(total_frames=16)
    estimator = TD0Estimator(gamma=0.9, value_network=ValueOperator(nn.Linear(1, 1), in_keys=["observation"]))
    ValueEstimatorHook(estimator).register(trainer)
    trainer.train()
    assert trainer.loss_module.seen
    assert all({"advantage", "value_target"} <= keys for keys in trainer.loss_module.seen)
    assert ValueEstimatorHook(estimator)(None) is None
    with pytest.raises(TypeError, match="must be callable"):
        ValueEstimatorHook(3)


# ------------------------------------------------------------------------------ EarlyStopping
def test_early_stopping_stops_after_patience_frames_without_improvement():
    trainer = make_trainer(total_frames=800)
    LogScalar(("next", "reward"), "reward").register(trainer)  # CountingEnv: reward 1 every step
    stopper = EarlyStopping(monitor="reward", patience=24, wait_for=0)
    stopper.register(trainer)
    trainer.train()
    assert trainer.collected_frames == 8 + 24  # best at the first batch, then 24 frames without improvement
    assert stopper.stop_reason == "'reward' did not improve for 24 frames."
    assert stopper.best_score == 1.0


def test_early_stopping_waits_and_follows_the_mode():
    trainer = make_trainer(total_frames=800)
    LogScalar(("next", "reward"), "reward").register(trainer)
    stopper = EarlyStopping(monitor="reward", mode="min", min_delta=0.5, patience=8, wait_for=40)
    stopper.register(trainer)
    trainer.train()
    assert trainer.collected_frames == 48  # judged from frame 40 on


def test_early_stopping_stops_on_a_non_finite_metric_and_checkpoints_its_state():
    trainer = make_trainer(total_frames=800)
    trainer.register_op("pre_steps_log", lambda batch: {"score": math.nan if trainer.collected_frames > 16 else 1.0})
    stopper = EarlyStopping(monitor="score", wait_for=0)
    stopper.register(trainer)
    trainer.train()
    assert trainer.collected_frames == 24
    assert stopper.stop_reason == "'score' became non-finite (nan)."
    restored = EarlyStopping(monitor="score")
    restored.load_state_dict(stopper.state_dict())
    assert (restored.best_score, restored.stop_reason) == (1.0, stopper.stop_reason)


def test_early_stopping_errors_say_what_to_do():
    with pytest.raises(ValueError, match="'min' or 'max'"):
        EarlyStopping(mode="best")
    with pytest.raises(ValueError, match="patience=-1"):
        EarlyStopping(patience=-1)
    with pytest.raises(RuntimeError, match="register it with a trainer"):
        EarlyStopping()(None)
    trainer = make_trainer(total_frames=16)
    EarlyStopping(monitor="r_evaluation", wait_for=0).register(trainer)
    with pytest.raises(KeyError, match="nothing was logged under 'r_evaluation'"):
        trainer.train()
