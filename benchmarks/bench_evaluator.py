"""What evaluation every 10 batches (and logging every batch) costs a PPO training loop.

Bar (issue 18): logging plus an evaluation every 10 batches add <= 3% to the loop.
The loop is the seed tutorial's shape on a cheap mock env (so that the training itself,
not the simulator, dominates): a collector of 500 frames per batch, GAE, two epochs of
ClipPPOLoss + Adam over minibatches of 64, 3x256 Tanh MLPs, and a loss logged each batch.
The evaluator plays 5 episodes of 50 steps every 10 batches, either inline
(``maybe_evaluate(wait=True)``) or in a worker process (``backend="process"``, the loop
never waits). Logging is a real ``CSVLogger`` (into a temporary folder): the loss every batch, the
evaluation's metrics every 10. Figures are frames/s of the whole loop (wall time),
interleaved: the reference is the same loop without logger or evaluator, in the same run.
"""

from __future__ import annotations

import tempfile
import time

import torch
from tensordict.nn import TensorDictModule
from torch import nn

from benchmarks._common import interleaved, print_rows, row

OBS, ACT, CELLS = 11, 1, 256
FRAMES_PER_BATCH, BATCHES, EPOCHS, MINIBATCH = 500, 20, 2, 64


def _make_env():
    from tdrl.testing import ContinuousActionMock

    return ContinuousActionMock(obs_dim=OBS, action_dim=ACT, max_steps=50)


def _mlp(out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    size = OBS
    for _ in range(3):
        layers += [nn.Linear(size, CELLS), nn.Tanh()]
        size = CELLS
    return nn.Sequential(*layers, nn.Linear(size, out))


def _actor(seed: int = 0) -> nn.Module:
    from tdrl.modules import NormalParamExtractor, ProbabilisticActor, TanhNormal

    torch.manual_seed(seed)
    return ProbabilisticActor(
        TensorDictModule(nn.Sequential(_mlp(2 * ACT), NormalParamExtractor()), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": -1.0, "high": 1.0},
        return_log_prob=True,
    )


def _train(mode: str) -> float:
    """Frames/s of the training loop, with ``mode`` in ("none", "inline", "process")."""
    from tdrl.collectors import Evaluator, SyncDataCollector
    from tdrl.modules import ValueOperator
    from tdrl.objectives import ClipPPOLoss
    from tdrl.objectives.value import GAE

    actor = _actor()
    critic = ValueOperator(_mlp(1), in_keys=["observation"])
    loss = ClipPPOLoss(actor, critic, clip_epsilon=0.2, entropy_coef=1e-4)
    advantage = GAE(gamma=0.99, lmbda=0.95, value_network=critic, average_gae=True)
    optim = torch.optim.Adam(loss.parameters(), 3e-4)
    from tdrl.record import CSVLogger

    folder = tempfile.TemporaryDirectory()
    logger = CSVLogger("bench", log_dir=folder.name) if mode != "none" else None
    evaluator = None
    if mode != "none":
        evaluator = Evaluator(
            _make_env,
            actor,
            num_trajectories=5,
            backend="process" if mode == "process" else "thread",
            every_iters=10,
            logger=logger,
            seed=0,
        )
    collector = SyncDataCollector(
        _make_env(), actor, frames_per_batch=FRAMES_PER_BATCH, total_frames=FRAMES_PER_BATCH * BATCHES
    )
    start = time.perf_counter()
    frames = 0
    for batch in collector:
        with torch.no_grad():
            advantage(batch)
        flat = batch.reshape(-1)
        for _ in range(EPOCHS):
            for index in torch.randperm(flat.numel()).split(MINIBATCH):
                out = loss(flat[index])
                total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                optim.zero_grad()
                total.backward()
                optim.step()
        frames += batch.numel()
        if logger is not None:
            logger.log_metrics({"train/loss": total.detach()}, step=frames)
        if evaluator is not None:
            evaluator.maybe_evaluate(frames=batch.numel(), wait=mode == "inline")
    elapsed = time.perf_counter() - start
    if evaluator is not None:
        evaluator.wait(timeout=60)  # (after the clock: a result still running is not the loop's cost)
        evaluator.shutdown()
    if logger is not None:
        logger.close()
    folder.cleanup()
    return frames / elapsed


def run() -> list[dict]:
    torch.set_num_threads(1)
    best = interleaved({mode: (lambda m=mode: _train(m)) for mode in ("none", "inline", "process")}, rounds=5)
    bar = ">= 0.97 (<= 3% added)"
    return [
        row(
            "PPO loop + CSV logging + evaluation every 10 batches, inline",
            best["inline"],
            best["none"],
            "frames/s",
            bar,
        ),
        row(
            "PPO loop + CSV logging + evaluation every 10 batches, process",
            best["process"],
            best["none"],
            "frames/s",
            bar,
        ),
    ]


if __name__ == "__main__":
    print_rows(run())
