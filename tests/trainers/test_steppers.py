"""Optimization steppers: a Trainer hands them each step; DefaultOptimizationStepper equals the default hooks."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.testing import CountingEnv
from tdrl.trainers import DefaultOptimizationStepper, OptimizationStepper, Trainer


class FitLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(1, 1)

    def forward(self, batch):
        pred = self.net(batch["observation"])
        return TensorDict({"loss_fit": (pred - 2.0).pow(2).mean(), "loss_small": 0.1 * pred.pow(2).mean()})


def make_trainer(stepper=None, total_frames=32, **kwargs) -> Trainer:
    loss = FitLoss()
    collector = SyncDataCollector(CountingEnv(max_steps=4), None, frames_per_batch=8, total_frames=total_frames)
    kwargs.setdefault("optimizer", torch.optim.Adam(loss.parameters(), lr=0.05))
    return Trainer(
        collector=collector,
        total_frames=total_frames,
        frame_skip=1,
        optim_steps_per_batch=3,
        loss_module=loss,
        optimization_stepper=stepper,
        progress_bar=False,
        clip_norm=0.5,
        **kwargs,
    )


def test_the_default_stepper_trains_as_the_default_hooks_do():
    hooks, stepped = make_trainer(), make_trainer(DefaultOptimizationStepper())
    hooks.train()
    stepped.train()
    for p, q in zip(hooks.loss_module.parameters(), stepped.loss_module.parameters()):
        torch.testing.assert_close(p, q)
    assert "optimizer" not in stepped.registered_modules  # the stepper owns the step
    assert stepped.last_logged("grad_norm") >= 0.0
    assert stepped.last_logged("loss_fit") == pytest.approx(hooks.last_logged("loss_fit"))


def test_loss_components_choose_what_is_optimized():
    stepper = DefaultOptimizationStepper(loss_components=["loss_small"])
    trainer = make_trainer(stepper)
    trainer.train()
    assert abs(trainer.loss_module.net(torch.ones(1)).item()) < abs(FitLoss().net(torch.ones(1)).item())
    with pytest.raises(ValueError, match="loss_components is empty"):
        DefaultOptimizationStepper(loss_components=[])
    with pytest.raises(KeyError, match="no loss to optimize"):
        make_trainer(DefaultOptimizationStepper(loss_components=["loss_other"])).train()


def test_the_stepper_checkpoints_the_optimizer(tmp_path):
    path = tmp_path / "t.pt"
    trainer = make_trainer(DefaultOptimizationStepper(), save_trainer_file=path)
    trainer.train()
    fresh = make_trainer(DefaultOptimizationStepper()).load_from_file(path)
    assert fresh.optimizer.state_dict()["state"][0]["step"] == trainer.optimizer.state_dict()["state"][0]["step"]


def test_a_custom_stepper_with_post_optim_hooks_and_bad_steppers():
    class Counting(OptimizationStepper):
        def __init__(self) -> None:
            self.steps = 0

        def step(self, trainer, sub_batch):
            self.steps += 1
            return TensorDict({"loss_zero": torch.zeros(())})

    stepper, post = Counting(), []
    trainer = make_trainer(stepper, total_frames=16)
    trainer.register_op("post_optim", lambda: post.append(1))
    trainer.train()
    assert stepper.steps == len(post) == 6
    with pytest.raises(TypeError, match="step\\(trainer, sub_batch\\)"):
        make_trainer(object())
    with pytest.raises(RuntimeError, match="no optimizer"):
        DefaultOptimizationStepper().step(make_trainer(optimizer=None), TensorDict())
