"""DQN on a gymnasium task with a discrete action space, end to end (CartPole-v1 by default).

The flow is TorchRL's DQN tutorial's: a ``QValueActor`` over a 2-layer MLP, epsilon-greedy
exploration annealed over the first frames, a collector, a replay buffer sampled uniformly,
``DQNLoss`` with a target network copied every few gradient steps (``HardUpdate``), Adam,
and an evaluation episode of the greedy policy, on a second env, every few batches.

The defaults are RL Baselines3 Zoo's tuned DQN hyperparameters for CartPole-v1 (256 frames
per batch, then 128 gradient steps on minibatches of 64; epsilon from 1 to 0.04 over 16% of
the frames; learning rate 2.3e-3; 1,000 random frames first). The target network is copied
once per batch, before its updates: the schedule Zoo's ``target_update_interval=10`` (in env
steps, during collection) gives with ``train_freq=256``. With them the greedy policy first
reaches an eval return >= 475 after 4.6k to 30.7k frames on seeds 0-4 (median 19.2k) and
4 of the 5 final policies hold 500 (``benchmarks/bench_dqn_cartpole.py``).

Each run writes into a new folder ``<out-dir>/<env>-<YYYYmmdd-HHMMSS>`` (with a suffix when
that name is taken), never over an earlier run: a learning-curve plot (PNG), a CSV log, a
summary (JSON) and a checkpoint (each written crash-safe), and prints the folder. A user
error (an unknown env id, a continuous action space, an unavailable device, a bad number)
is one line on stderr and exit code 2.

The same figures, the eval returns and the hyperparameters also go to the logger chosen with
``--logger`` (``csv`` by default, or ``tensorboard``, ``wandb``, ``mlflow``, ``none``) in
``<run>/logs``; ``--video N`` films an evaluation episode every N batches through it
(what goes where: the README's "The main job" section).

Run it with ``python -m tdrl.examples.dqn`` (or the ``tdrl-dqn`` console script)::

    python -m tdrl.examples.dqn --frames 50000 --seed 0
    python -m tdrl.examples.dqn --env Acrobot-v1 --frames 100000
    python -m tdrl.examples.dqn --frames 50000 --video 40
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tensordict.nn import TensorDictSequential
from torch import nn
from tqdm import tqdm

from tdrl.collectors import SyncDataCollector
from tdrl.data.replay_buffers import ReplayBuffer
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.envs import StepCounter, TransformedEnv
from tdrl.envs.libs.gym import GymEnv
from tdrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type
from tdrl.examples import _job
from tdrl.examples._job import ConfigError, make_base_env, new_run_dir
from tdrl.examples._job import option as _option
from tdrl.modules import MLP, EGreedyModule, QValueActor
from tdrl.objectives import DQNLoss, HardUpdate
from tdrl.specs import Bounded, OneHot, Unbounded
from tdrl.specs import Categorical as CategoricalSpec

__all__ = ["DQNConfig", "ConfigError", "validate", "train", "main"]

PROG = "python -m tdrl.examples.dqn"


@dataclass
class DQNConfig:
    """Hyperparameters: RL Baselines3 Zoo's tuned DQN for CartPole-v1.

    Every field is a command-line option with its help text (``--frames-per-batch`` for
    ``frames_per_batch``; ``progress`` is ``--no-progress``, ``double_dqn`` ``--double-dqn``).
    """

    env: str = _option("CartPole-v1", "gymnasium id of the task (a Discrete action space, a 1-D Box observation)")
    frames: int = _option(50_000, "total environment frames to collect (rounded up to whole batches)")
    seed: int = _option(0, "seed of torch and of the envs (0 <= seed < 2**32)")
    device: str = _option("cpu", "device of the Q-network and the loss: cpu, cuda, cuda:N or mps")
    frames_per_batch: int = _option(256, "frames collected between two rounds of optimization")
    init_random_frames: int = _option(1000, "frames collected with random actions before learning starts")
    updates_per_batch: int = _option(128, "gradient steps after each batch")
    batch_size: int = _option(64, "minibatch size of each gradient step")
    buffer_size: int = _option(100_000, "replay buffer capacity (transitions)")
    num_cells: int = _option(256, "width of the 2 hidden layers of the Q-network")
    lr: float = _option(2.3e-3, "Adam's learning rate")
    max_grad_norm: float = _option(10.0, "gradient clipping (max L2 norm of all gradients)")
    gamma: float = _option(0.99, "discount (0 < gamma <= 1)")
    eps_init: float = _option(1.0, "initial epsilon of the epsilon-greedy exploration")
    eps_end: float = _option(0.04, "final epsilon")
    exploration_fraction: float = _option(0.16, "fraction of the frames over which epsilon anneals")
    target_update_interval: int = _option(
        128, "gradient steps between two copies into the target network (128: once per batch's updates)"
    )
    loss_function: str = _option("smooth_l1", "distance between Q(s, a) and the target: l2, l1 or smooth_l1")
    double_dqn: bool = _option(False, "use double DQN (the online network picks the next action)")
    eval_every: int = _option(20, "evaluate the greedy policy every this many batches (and after the last)")
    eval_steps: int = _option(1000, "maximum length of an evaluation episode")
    logger: str = _option("csv", _job.LOGGER_HELP, choices=_job.LOGGERS)
    video: int = _option(0, _job.VIDEO_HELP)
    out_dir: str = _option(
        "runs/dqn", "parent folder: each run writes into a new subfolder <env>-<YYYYmmdd-HHMMSS> of it"
    )
    progress: bool = _option(True, "show a tqdm progress bar")
    threads: int = _option(1, "torch CPU threads while training (small MLPs run fastest on one)")


# --- validation ----------------------------------------------------------------------------
def validate(cfg: DQNConfig) -> None:
    """Check ``cfg`` before anything runs.

    Args:
        cfg: the configuration.

    Raises:
        ConfigError: naming the option, the value given and what it must be.
    """

    check = _job.Checks(cfg)
    check.positive_ints("updates_per_batch", "batch_size", "buffer_size", "num_cells", "target_update_interval")
    check.positive_ints("eval_every", "eval_steps")
    check.common("--env CartPole-v1 or --env Acrobot-v1")
    check.need(
        isinstance(cfg.init_random_frames, int) and cfg.init_random_frames >= 0, "init_random_frames", "an integer >= 0"
    )
    if cfg.init_random_frames >= cfg.frames:
        raise ConfigError(
            f"--init-random-frames ({cfg.init_random_frames}) must be below --frames ({cfg.frames}), "
            "or nothing is learned"
        )
    check.positive_numbers("lr", "max_grad_norm")
    check.need(0 <= cfg.eps_end <= cfg.eps_init <= 1, "eps_init", f"in [--eps-end ({cfg.eps_end}), 1]")
    check.need(0 <= cfg.eps_end <= 1, "eps_end", "in [0, 1]")
    check.need(0 < cfg.exploration_fraction <= 1, "exploration_fraction", "in (0, 1]")
    check.need(cfg.loss_function in ("l2", "l1", "smooth_l1"), "loss_function", "one of l2, l1, smooth_l1")


# --- env and modules -----------------------------------------------------------------------
def check_spaces(env: GymEnv) -> None:
    """Raises :class:`ConfigError` unless the action space is Discrete and the observation a flat Box."""
    spaces = f"action space {env.env.action_space}, observation space {env.env.observation_space}"
    supported = "this command trains DQN on a Discrete action space with a 1-D Box observation"
    obs_spec = env.observation_spec
    obs = obs_spec["observation"] if set(obs_spec.keys()) == {"observation"} else None
    if not isinstance(obs, (Bounded, Unbounded)) or obs.ndim != 1:
        raise ConfigError(f"--env {env.env_name}: the observation is not supported ({spaces}); {supported}")
    if not isinstance(env.action_spec, (OneHot, CategoricalSpec)):
        raise ConfigError(f"--env {env.env_name}: the action space is not supported ({spaces}); {supported}")


def make_env(base: GymEnv, seed: int) -> TransformedEnv:
    """The env: the gymnasium task with a step counter, seeded."""
    base.set_seed(seed)
    return TransformedEnv(base, StepCounter())


def make_actor(env: TransformedEnv, num_cells: int, device: torch.device) -> QValueActor:
    """The greedy policy: a ``QValueActor`` over an MLP with 2 ReLU hidden layers of ``num_cells``."""
    spec = env.action_spec
    if not isinstance(spec, (OneHot, CategoricalSpec)):  # check_spaces refused every other action space
        raise TypeError(f"make_actor: no Q-network for an action spec {type(spec).__name__}")
    n_obs = env.observation_spec["observation"].shape[-1]
    net = MLP(
        in_features=n_obs,
        out_features=spec.n,
        num_cells=[num_cells, num_cells],
        activation_class=nn.ReLU,
        device=device,
    )
    return QValueActor(net, in_keys=["observation"], spec=spec)


# --- outputs -------------------------------------------------------------------------------
_COLUMNS = ["frames", "loss", "epsilon", "step_count", "episode_return", "eval_return"]


def _csv_bytes(logs: dict) -> bytes:
    evals = dict(zip(logs["eval_frames"], logs["eval_return"]))
    rows = [
        [n, f"{loss:.6f}" if loss == loss else "", f"{eps:.4f}", s, f"{ret:.1f}" if ret == ret else "", ""]
        for n, loss, eps, s, ret in zip(
            logs["frames"], logs["loss"], logs["epsilon"], logs["step_count"], logs["episode_return"]
        )
    ]
    for row in rows:
        if row[0] in evals:
            row[-1] = f"{evals[row[0]]:.3f}"
    return _job.csv_bytes(_COLUMNS, rows)


def plot_figure(logs: dict, title: str) -> Any:
    """The learning curve (a matplotlib ``Figure``): mean TD loss, mean training episode return
    and eval return against frames."""
    return _job.plot_panels(
        [
            _job.Panel(logs["frames"], logs["loss"], "mean loss of the batch's updates", "loss"),
            _job.Panel(logs["frames"], logs["episode_return"], "mean return of episodes ended in batch", "return"),
            _job.Panel(logs["eval_frames"], logs["eval_return"], "eval return (greedy policy)", "return", markers=True),
        ],
        title,
    )


# --- training ------------------------------------------------------------------------------
def train(cfg: DQNConfig) -> dict:
    """Train DQN with ``cfg`` (on ``cfg.threads`` torch threads) and write its outputs into a new folder.

    Args:
        cfg: the configuration.

    Returns:
        ``{"logs", "wall_s", "eval_s", "config", "policy", "out_dir", "plot", "csv",
        "summary", "checkpoint"}``: the per-batch logs, the time of the training loop and the
        part of it spent in evaluations, the configuration, the trained greedy policy, and
        the paths written.

    Raises:
        ConfigError: on a user error, before training starts (see :func:`validate`; also an
            unsupported action or observation space, or an unusable ``out_dir``).
    """
    validate(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: DQNConfig) -> dict:
    if cfg.video:
        _job.default_mujoco_gl()  # before the first env imports mujoco
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    base_env = make_base_env(cfg.env, device)
    try:
        check_spaces(base_env)
        eval_base = _job.make_eval_base_env(cfg.env, device, cfg.video)  # a video that cannot render: refused here
    except ConfigError:
        base_env.close()
        raise
    out_dir = new_run_dir(Path(cfg.out_dir), cfg.env)
    recording = _job.open_recording(cfg.logger, out_dir, "dqn", cfg.video)
    recording.log_hparams(asdict(cfg))

    env = make_env(base_env, cfg.seed)
    check_env_specs(env)
    eval_env = make_env(eval_base, cfg.seed + 1)
    recording.attach(eval_env, cfg.seed + 1, _job.render_fps(eval_base))
    actor = make_actor(env, cfg.num_cells, device)
    explore = EGreedyModule(
        env.action_spec,
        eps_init=cfg.eps_init,
        eps_end=cfg.eps_end,
        annealing_num_steps=max(1, int(cfg.exploration_fraction * cfg.frames)),
        device=device,
    )
    policy = TensorDictSequential(actor, explore)
    collector = SyncDataCollector(
        env,
        policy,
        frames_per_batch=cfg.frames_per_batch,
        total_frames=cfg.frames,
        init_random_frames=cfg.init_random_frames,
        split_trajs=False,
        device=device,
    )
    buffer = ReplayBuffer(storage=LazyTensorStorage(max_size=cfg.buffer_size), batch_size=cfg.batch_size)
    loss_module = DQNLoss(actor, loss_function=cfg.loss_function, double_dqn=cfg.double_dqn)
    loss_module.make_value_estimator(gamma=cfg.gamma)
    target_updater = HardUpdate(loss_module, value_network_update_interval=cfg.target_update_interval)
    optim = torch.optim.Adam(loss_module.parameters(), cfg.lr)

    logs: dict = {
        k: []
        for k in (
            "frames",
            "loss",
            "epsilon",
            "step_count",
            "episode_return",
            "eval_frames",
            "eval_return",
            "eval_steps",
        )
    }
    pbar = tqdm(
        total=len(collector) * cfg.frames_per_batch, disable=not cfg.progress, unit="frames", dynamic_ncols=True
    )
    frames, eval_s, updates, running = 0, 0.0, 0, 0.0
    start = time.perf_counter()
    for i, batch in enumerate(collector):
        batch = batch.reshape(-1)
        buffer.extend(batch.cpu() if device.type != "cpu" else batch)
        frames += batch.numel()
        explore.step(batch.numel())
        losses = []
        if frames >= cfg.init_random_frames:
            for _ in range(cfg.updates_per_batch):
                sample = buffer.sample().to(device)
                loss = loss_module(sample)["loss"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), cfg.max_grad_norm)
                optim.step()
                optim.zero_grad()
                target_updater.step()
                losses.append(loss.detach())
            updates += cfg.updates_per_batch
        returns, running = _job.episode_returns(batch["next", "reward"], batch["next", "done"], running)
        logs["frames"].append(frames)
        logs["loss"].append(torch.stack(losses).mean().item() if losses else float("nan"))
        logs["epsilon"].append(explore.eps.item())
        logs["step_count"].append(int(batch["next", "step_count"].max().item()))
        logs["episode_return"].append(sum(returns) / len(returns) if returns else float("nan"))
        recording.log(frames, {k: logs[k][-1] for k in ("loss", "epsilon", "step_count", "episode_return")})
        filmed = recording.video_due(i, last=frames >= cfg.frames)
        if filmed or i % cfg.eval_every == 0 or frames >= cfg.frames:
            eval_start = time.perf_counter()
            with (
                recording.filming(filmed, step=frames),
                set_exploration_type(ExplorationType.DETERMINISTIC),
                torch.no_grad(),
            ):
                ro = eval_env.rollout(cfg.eval_steps, actor)
            eval_s += time.perf_counter() - eval_start
            logs["eval_frames"].append(frames)
            logs["eval_return"].append(ro["next", "reward"].sum().item())
            logs["eval_steps"].append(int(ro["next", "step_count"].max().item()))
            recording.log(frames, {"eval_return": logs["eval_return"][-1], "eval_steps": logs["eval_steps"][-1]})
        pbar.update(batch.numel())
        pbar.set_postfix(
            eps=f"{logs['epsilon'][-1]:.2f}",
            steps=logs["step_count"][-1],
            eval_return=f"{logs['eval_return'][-1]:.1f}" if logs["eval_return"] else "-",
        )
    pbar.close()
    collector.shutdown()
    wall = time.perf_counter() - start

    config = asdict(cfg)
    checkpoint = {
        "policy": actor.state_dict(),
        "loss": loss_module.state_dict(),  # the Q-network and its target copy
        "optim": optim.state_dict(),
        "epsilon": explore.eps.item(),
        "config": config,
        "frames": frames,
        "updates": updates,
    }
    summary = {
        "frames": frames,
        "updates": updates,
        "wall_s": wall,
        "eval_s": eval_s,
        "final_eval_return": logs["eval_return"][-1],
        "best_eval_return": max(logs["eval_return"]),
        "config": config,
    }
    paths = _job.write_run(
        out_dir,
        _csv_bytes(logs),
        checkpoint,
        plot_figure(logs, f"DQN on {cfg.env} ({frames:,} frames, {wall:.0f} s)"),
        summary,
    )
    recording.close()
    env.close()
    eval_env.close()
    return {
        "log_dir": recording.log_dir,
        "logs": logs,
        "wall_s": wall,
        "eval_s": eval_s,
        "config": cfg,
        "policy": actor,
        "out_dir": out_dir,
        **paths,
    }


# --- command line --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The command line: one option per :class:`DQNConfig` field, its help and default from the field."""
    return _job.build_parser(PROG, __doc__.split("\n")[0], DQNConfig)


def parse(argv: list[str] | None) -> DQNConfig:
    """The :class:`DQNConfig` of a command line (argparse errors exit with code 2)."""
    return DQNConfig(**vars(build_parser().parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: parse, check, train, print where the outputs went.

    A user error is printed as one line on stderr and ends the process with code 2; a
    failure during training is a genuine crash and keeps its traceback.
    """
    _job.print_done(_job.run(PROG, parse(argv), validate, train))


if __name__ == "__main__":
    main()
