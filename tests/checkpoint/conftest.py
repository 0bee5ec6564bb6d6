"""A short DQN run on a mock env, built fresh for each test: the training state to checkpoint.

The fixture ``make_run(seed)`` builds one."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from tensordict.nn import TensorDictSequential

from tdrl.checkpoint import Checkpoint, GlobalRNGState
from tdrl.collectors import SyncDataCollector
from tdrl.data.replay_buffers import ReplayBuffer
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.modules import MLP, EGreedyModule, QValueActor
from tdrl.objectives import DQNLoss, SoftUpdate
from tdrl.testing import CountingEnv

FRAMES_PER_BATCH = 8  # two whole episodes of CountingEnv(max_steps=4): batches end on episode ends


@dataclass
class DQNRun:
    """Every object of the run, and what it produced so far."""

    actor: QValueActor
    explore: EGreedyModule
    collector: SyncDataCollector
    buffer: ReplayBuffer
    loss: DQNLoss
    updater: SoftUpdate
    optim: torch.optim.Optimizer
    scheduler: Any
    progress: dict[str, int] = field(default_factory=lambda: {"batches": 0})
    losses: list[float] = field(default_factory=list)
    batches: Any = None

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(
            actor=self.actor,
            explore=self.explore,
            loss=self.loss,
            optim=self.optim,
            scheduler=self.scheduler,
            collector=self.collector,
            replay_buffer=self.buffer,
            progress=self.progress,
            rng=GlobalRNGState(),
        )

    def train(self, batches: int) -> None:
        if self.batches is None:
            self.batches = iter(self.collector)
        for _ in range(batches):
            data = next(self.batches)
            self.buffer.extend(data.reshape(-1))
            for _ in range(2):
                sample = self.buffer.sample()
                # a draw from every global generator, so that restoring each of them matters
                noise = random.random() + float(np.random.rand())  # noqa: NPY002
                loss = self.loss(sample)["loss"] * (1.0 + 1e-6 * noise)
                self.optim.zero_grad()
                loss.backward()
                self.optim.step()
                self.updater.step()
                self.losses.append(loss.item())
            self.scheduler.step()
            self.explore.step(data.numel())
            self.progress["batches"] += 1

    def parameters(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.loss.parameters()] + [b.clone() for b in self.loss.buffers()]


def make_run(seed: int = 0) -> DQNRun:
    """Builds the run from scratch; every generator seeded with ``seed``."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    env = CountingEnv(max_steps=4)
    spec = env.action_spec
    net = MLP(in_features=1, out_features=2, num_cells=[16])
    actor = QValueActor(net, in_keys=["observation"], spec=spec, action_space="categorical")
    explore = EGreedyModule(spec, eps_init=0.9, eps_end=0.1, annealing_num_steps=200)
    policy = TensorDictSequential(actor, explore)
    collector = SyncDataCollector(env, policy, frames_per_batch=FRAMES_PER_BATCH, total_frames=-1)
    buffer = ReplayBuffer(storage=LazyTensorStorage(64), batch_size=16)
    loss = DQNLoss(actor, action_space=spec, delay_value=True)
    updater = SoftUpdate(loss, eps=0.9)
    optim = torch.optim.Adam(loss.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optim, step_size=2, gamma=0.5)
    return DQNRun(actor, explore, collector, buffer, loss, updater, optim, scheduler)


@pytest.fixture(name="make_run")
def make_run_fixture():
    """``make_run(seed=0)``: a fresh :class:`DQNRun`."""
    return make_run
