"""Optimization steppers: a Trainer hands them each step; DefaultOptimizationStepper equals the default hooks."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.testing import CountingEnv
from tdrl.trainers import DefaultOptimizationStepper, MixedPrecisionOptimizationStepper, OptimizationStepper, Trainer


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


# ------------------------------------------------------------------------------ MixedPrecisionOptimizationStepper
def test_mixed_precision_stepper_accumulates_inside_a_trainer(tmp_path):
    loss = FitLoss()
    stepper = MixedPrecisionOptimizationStepper(
        torch.optim.Adam(loss.parameters(), lr=0.05), mixed_precision=True, gradient_accumulation_steps=3
    )
    collector = SyncDataCollector(CountingEnv(max_steps=4), None, frames_per_batch=8, total_frames=32)
    trainer = Trainer(
        collector=collector,
        total_frames=32,
        frame_skip=1,
        optim_steps_per_batch=3,
        loss_module=loss,
        optimization_stepper=stepper,
        progress_bar=False,
        save_trainer_file=tmp_path / "t.pt",
    )
    trainer.train()
    assert stepper.optimizer_step_count == 4  # 12 calls, one step per 3
    assert trainer.last_logged("grad_norm") >= 0.0  # averaged over the calls that stepped
    restored = MixedPrecisionOptimizationStepper(torch.optim.Adam(FitLoss().parameters(), lr=0.05))
    restored.load_state_dict(stepper.state_dict())
    assert restored.optimizer_step_count == 4


class _Holder:
    def __init__(self, value) -> None:
        self.weight = nn.Parameter(torch.zeros(1))
        self.value = value

    def compute_loss(self, batch):
        return TensorDict({"loss_x": (self.weight * self.value).sum()})


def test_a_non_finite_loss_restarts_the_window_and_warns():
    holder = _Holder(float("nan"))
    stepper = MixedPrecisionOptimizationStepper(torch.optim.SGD([holder.weight], lr=1.0), gradient_accumulation_steps=2)
    with pytest.warns(RuntimeWarning, match="loss is not finite"):
        metrics = stepper.step(holder, TensorDict())
    assert "grad_norm" not in metrics.keys()
    assert holder.weight.item() == 0.0
    assert stepper.optimizer_step_count == 0


def test_mixed_precision_stepper_refuses_bad_settings_and_half_windows():
    holder = _Holder(1.0)
    with pytest.raises(ValueError, match="gradient_accumulation_steps must be >= 1"):
        MixedPrecisionOptimizationStepper(torch.optim.SGD([holder.weight], lr=1.0), gradient_accumulation_steps=0)
    stepper = MixedPrecisionOptimizationStepper(torch.optim.SGD([holder.weight], lr=1.0), gradient_accumulation_steps=2)
    stepper.step(holder, TensorDict())
    with pytest.raises(RuntimeError, match="middle of an accumulation window"):
        stepper.state_dict()
    with pytest.raises(RuntimeError, match="no 'loss_\\*' entry"):
        stepper.step(type("NoLoss", (), {"compute_loss": lambda self, b: TensorDict({"x": torch.ones(())})})(), None)
