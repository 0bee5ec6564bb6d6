"""SAC on a gymnasium task with a continuous action space, end to end (a MuJoCo task by default).

The flow is TorchRL's SAC example's: a tanh-squashed Gaussian ``ProbabilisticActor`` and two
Q-networks (``ValueOperator`` over the observation and the action), each a 2-layer MLP; a
collector that takes random actions for the first frames; a replay buffer sampled uniformly;
``SACLoss`` with twin target Q-networks moved by Polyak averaging (``SoftUpdate``) and a
learnable entropy coefficient whose target entropy is minus the action size; Adam; and an
evaluation episode of the deterministic (mean) action, on a second env, every few batches.

The defaults are the usual SAC hyperparameters for MuJoCo (RL Baselines3 Zoo's and the SAC
paper's: 2x256 networks, batch 256, learning rate 3e-4, gamma 0.99, tau 0.005, one gradient
step per frame), with the frames collected 64 at a time and followed by 64 gradient steps,
and 5,000 random frames first. ``benchmarks/bench_sac_halfcheetah.py`` runs this job on
HalfCheetah-v5 for 100k frames beside Stable-Baselines3's SAC with the same settings.

Each run writes into a new folder ``<out-dir>/<env>-<YYYYmmdd-HHMMSS>`` (with a suffix when
that name is taken), never over an earlier run: a learning-curve plot (PNG), a CSV log, a
summary (JSON) and a checkpoint (each written crash-safe), and prints the folder. A user
error (an unknown env id, a discrete action space, an unavailable device, a bad number) is
one line on stderr and exit code 2.

The same figures, the eval returns and the hyperparameters also go to the logger chosen with
``--logger`` (``csv`` by default, or ``tensorboard``, ``wandb``, ``mlflow``, ``none``) in
``<run>/logs``; ``--video N`` films an evaluation episode every N batches through it
(what goes where: the README's "The main job" section).

Run it with ``python -m tdrl.examples.sac`` (or the ``tdrl-sac`` console script)::

    python -m tdrl.examples.sac --frames 30000 --seed 0
    python -m tdrl.examples.sac --env HalfCheetah-v5 --frames 100000
    python -m tdrl.examples.sac --env Pendulum-v1 --frames 15000 --init-random-frames 1000 --lr 1e-3
    python -m tdrl.examples.sac --env HalfCheetah-v5 --frames 100000 --logger wandb --video 400
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tensordict.nn import TensorDictModule
from tensordict.nn.distributions import NormalParamExtractor
from torch import nn
from tqdm import tqdm

from tdrl.collectors import SyncDataCollector
from tdrl.data.replay_buffers import ReplayBuffer
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.envs import Compose, DoubleToFloat, StepCounter, TransformedEnv
from tdrl.envs.libs.gym import GymEnv
from tdrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type
from tdrl.examples import _job
from tdrl.examples._job import ConfigError, make_base_env, new_run_dir
from tdrl.examples._job import option as _option
from tdrl.modules import MLP, ProbabilisticActor, TanhNormal, ValueOperator
from tdrl.objectives import SACLoss, SoftUpdate
from tdrl.specs import Bounded, Unbounded

__all__ = ["SACConfig", "ConfigError", "validate", "train", "main"]

PROG = "python -m tdrl.examples.sac"


@dataclass
class SACConfig:
    """Hyperparameters: the usual SAC settings for MuJoCo tasks.

    Every field is a command-line option with its help text (``--frames-per-batch`` for
    ``frames_per_batch``; ``progress`` is ``--no-progress``, ``fixed_alpha`` ``--fixed-alpha``).
    """

    env: str = _option("InvertedDoublePendulum-v5", "gymnasium id of the task (a bounded Box action space)")
    frames: int = _option(30_000, "total environment frames to collect (rounded up to whole batches)")
    seed: int = _option(0, "seed of torch and of the envs (0 <= seed < 2**32)")
    device: str = _option("cpu", "device of the networks and the loss: cpu, cuda, cuda:N or mps")
    frames_per_batch: int = _option(64, "frames collected between two rounds of optimization")
    init_random_frames: int = _option(5000, "frames collected with uniformly random actions before learning starts")
    updates_per_batch: int = _option(64, "gradient steps after each batch (64: one per frame)")
    batch_size: int = _option(256, "minibatch size of each gradient step")
    buffer_size: int = _option(1_000_000, "replay buffer capacity (transitions)")
    num_cells: int = _option(256, "width of the 2 hidden layers of the actor and of each Q-network")
    lr: float = _option(3e-4, "Adam's learning rate (actor, Q-networks and entropy coefficient)")
    gamma: float = _option(0.99, "discount (0 < gamma <= 1)")
    tau: float = _option(0.005, "Polyak weight of the online Q-networks in each target update (0 < tau <= 1)")
    loss_function: str = _option(
        "l2", "Q regression loss: l2 (as Stable-Baselines3 and TorchRL's SAC example), smooth_l1 or l1"
    )
    alpha_init: float = _option(1.0, "initial entropy coefficient")
    fixed_alpha: bool = _option(False, "keep the entropy coefficient at --alpha-init instead of learning it")
    eval_every: int = _option(40, "evaluate the deterministic policy every this many batches (and after the last)")
    eval_steps: int = _option(1000, "maximum length of an evaluation episode")
    logger: str = _option("csv", _job.LOGGER_HELP, choices=_job.LOGGERS)
    video: int = _option(0, _job.VIDEO_HELP)
    out_dir: str = _option(
        "runs/sac", "parent folder: each run writes into a new subfolder <env>-<YYYYmmdd-HHMMSS> of it"
    )
    progress: bool = _option(True, "show a tqdm progress bar")
    threads: int = _option(1, "torch CPU threads while training (small MLPs run fastest on one)")


# --- validation ----------------------------------------------------------------------------
def validate(cfg: SACConfig) -> None:
    """Check ``cfg`` before anything runs.

    Args:
        cfg: the configuration.

    Raises:
        ConfigError: naming the option, the value given and what it must be.

    Examples:
        >>> validate(SACConfig())
        >>> validate(SACConfig(tau=0.0))
        Traceback (most recent call last):
        ...
        tdrl.examples._job.ConfigError: --tau must be in (0, 1], got 0.0
    """
    check = _job.Checks(cfg)
    check.positive_ints("updates_per_batch", "batch_size", "buffer_size", "num_cells", "eval_every", "eval_steps")
    check.common("--env InvertedDoublePendulum-v5 or --env HalfCheetah-v5")
    check.need(
        isinstance(cfg.init_random_frames, int) and cfg.init_random_frames >= 0, "init_random_frames", "an integer >= 0"
    )
    if cfg.init_random_frames >= cfg.frames:
        raise ConfigError(
            f"--init-random-frames ({cfg.init_random_frames}) must be below --frames ({cfg.frames}), "
            "or nothing is learned"
        )
    check.positive_numbers("lr", "alpha_init")
    check.need(0 < cfg.tau <= 1, "tau", "in (0, 1]")
    check.need(cfg.loss_function in ("l2", "smooth_l1", "l1"), "loss_function", "one of l2, smooth_l1, l1")


# --- env and modules -----------------------------------------------------------------------
def check_spaces(env: GymEnv) -> None:
    """Raises :class:`ConfigError` unless the action space is a bounded Box and the observation a flat Box."""
    spaces = f"action space {env.env.action_space}, observation space {env.env.observation_space}"
    supported = "this command trains SAC on a bounded Box action space with a 1-D Box observation"
    obs_spec = env.observation_spec
    obs = obs_spec["observation"] if set(obs_spec.keys()) == {"observation"} else None
    if not isinstance(obs, (Bounded, Unbounded)) or obs.ndim != 1:
        raise ConfigError(f"--env {env.env_name}: the observation is not supported ({spaces}); {supported}")
    action = env.action_spec
    if not isinstance(action, Bounded) or action.ndim != 1 or not action.dtype.is_floating_point:
        raise ConfigError(f"--env {env.env_name}: the action space is not supported ({spaces}); {supported}")
    if not (torch.isfinite(action.space.low).all() and torch.isfinite(action.space.high).all()):
        raise ConfigError(f"--env {env.env_name}: the action space is unbounded ({spaces}); {supported}")


def make_env(base: GymEnv, seed: int) -> TransformedEnv:
    """The env: the gymnasium task with float32 observations and a step counter, seeded."""
    base.set_seed(seed)
    return TransformedEnv(base, Compose(DoubleToFloat(), StepCounter()))


def make_modules(env: TransformedEnv, num_cells: int, device: torch.device) -> tuple[ProbabilisticActor, ValueOperator]:
    """The actor (a tanh-squashed Gaussian over an MLP) and one Q-network (an MLP over observation and action).

    Both MLPs have 2 ReLU hidden layers of ``num_cells``; ``SACLoss`` makes the second Q-network.
    """
    n_obs = env.observation_spec["observation"].shape[-1]
    spec = env.action_spec
    if not isinstance(spec, Bounded):  # check_spaces refused every other action space
        raise TypeError(f"make_modules: no squashed actor for an action spec {type(spec).__name__}")
    n_act = spec.shape[-1]
    cells = [num_cells, num_cells]
    actor_net = nn.Sequential(
        MLP(in_features=n_obs, out_features=2 * n_act, num_cells=cells, activation_class=nn.ReLU, device=device),
        NormalParamExtractor(),
    )
    actor = ProbabilisticActor(
        TensorDictModule(actor_net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=spec,
        distribution_class=TanhNormal,
        distribution_kwargs={"low": spec.space.low.to(device), "high": spec.space.high.to(device)},
        return_log_prob=False,
    )
    qnet = ValueOperator(
        MLP(in_features=n_obs + n_act, out_features=1, num_cells=cells, activation_class=nn.ReLU, device=device),
        in_keys=["observation", "action"],
    )
    return actor, qnet


# --- outputs -------------------------------------------------------------------------------
_COLUMNS = ["frames", "loss_qvalue", "loss_actor", "alpha", "entropy", "episode_return", "eval_return"]


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}" if x == x else ""


def _csv_bytes(logs: dict) -> bytes:
    evals = dict(zip(logs["eval_frames"], logs["eval_return"]))
    rows = [
        [n, _fmt(q, 6), _fmt(a, 6), _fmt(al, 6), _fmt(h, 4), _fmt(r, 1), _fmt(evals.get(n, float("nan")), 3)]
        for n, q, a, al, h, r in zip(
            logs["frames"],
            logs["loss_qvalue"],
            logs["loss_actor"],
            logs["alpha"],
            logs["entropy"],
            logs["episode_return"],
        )
    ]
    return _job.csv_bytes(_COLUMNS, rows)


def plot_figure(logs: dict, title: str) -> Any:
    """The learning curve (a matplotlib ``Figure``): Q loss, entropy coefficient, training and eval returns."""
    return _job.plot_panels(
        [
            _job.Panel(logs["frames"], logs["loss_qvalue"], "mean Q loss of the batch's updates", "loss"),
            _job.Panel(logs["frames"], logs["alpha"], "entropy coefficient alpha", "alpha"),
            _job.Panel(logs["frames"], logs["episode_return"], "mean return of episodes ended in batch", "return"),
            _job.Panel(logs["eval_frames"], logs["eval_return"], "eval return (mean action)", "return", markers=True),
        ],
        title,
    )


# --- training ------------------------------------------------------------------------------
def train(cfg: SACConfig) -> dict:
    """Train SAC with ``cfg`` (on ``cfg.threads`` torch threads) and write its outputs into a new folder.

    Args:
        cfg: the configuration.

    Returns:
        ``{"logs", "wall_s", "eval_s", "config", "policy", "out_dir", "plot", "csv",
        "summary", "checkpoint"}``: the per-batch logs, the time of the training loop and the
        part of it spent in evaluations, the configuration, the trained actor, and the paths
        written.

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


def _train(cfg: SACConfig) -> dict:
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
    recording = _job.open_recording(cfg.logger, out_dir, "sac", cfg.video)
    recording.log_hparams(asdict(cfg))

    env = make_env(base_env, cfg.seed)
    check_env_specs(env)
    eval_env = make_env(eval_base, cfg.seed + 1)
    recording.attach(eval_env, cfg.seed + 1, _job.render_fps(eval_base))
    actor, qnet = make_modules(env, cfg.num_cells, device)
    collector = SyncDataCollector(
        env,
        actor,
        frames_per_batch=cfg.frames_per_batch,
        total_frames=cfg.frames,
        init_random_frames=cfg.init_random_frames,
        split_trajs=False,
        device=device,
    )
    buffer = ReplayBuffer(storage=LazyTensorStorage(max_size=cfg.buffer_size), batch_size=cfg.batch_size)
    loss_module = SACLoss(
        actor,
        qnet,
        num_qvalue_nets=2,
        loss_function=cfg.loss_function,
        alpha_init=cfg.alpha_init,
        fixed_alpha=cfg.fixed_alpha,
        delay_qvalue=True,
    )
    loss_module.make_value_estimator(gamma=cfg.gamma)
    target_updater = SoftUpdate(loss_module, tau=cfg.tau)
    # one optimizer: each of the three losses reaches only its own parameters (the actor loss reads
    # detached Q-parameters), so this is Adam on each group with the same learning rate
    optim = torch.optim.Adam(loss_module.parameters(), cfg.lr)

    names = ("frames", "loss_qvalue", "loss_actor", "alpha", "entropy", "episode_return")
    logs: dict = {k: [] for k in (*names, "step_count", "eval_frames", "eval_return", "eval_steps")}
    pbar = tqdm(
        total=len(collector) * cfg.frames_per_batch, disable=not cfg.progress, unit="frames", dynamic_ncols=True
    )
    frames, eval_s, updates, running = 0, 0.0, 0, 0.0
    start = time.perf_counter()
    for i, batch in enumerate(collector):
        batch = batch.reshape(-1)
        buffer.extend(batch.cpu() if device.type != "cpu" else batch)
        frames += batch.numel()
        stats = []
        if frames >= cfg.init_random_frames:
            for _ in range(cfg.updates_per_batch):
                out = loss_module(buffer.sample().to(device))
                loss = out["loss_qvalue"] + out["loss_actor"] + out["loss_alpha"]
                optim.zero_grad()
                loss.backward()
                optim.step()
                target_updater.step()
                stats.append(torch.stack([out[k].detach() for k in ("loss_qvalue", "loss_actor", "alpha", "entropy")]))
            updates += cfg.updates_per_batch
        means = torch.stack(stats).mean(0).tolist() if stats else [float("nan")] * 4
        returns, running = _job.episode_returns(batch["next", "reward"], batch["next", "done"], running)
        logs["frames"].append(frames)
        for key, value in zip(("loss_qvalue", "loss_actor", "alpha", "entropy"), means):
            logs[key].append(value)
        logs["step_count"].append(int(batch["next", "step_count"].max().item()))
        logs["episode_return"].append(sum(returns) / len(returns) if returns else float("nan"))
        recording.log(
            frames,
            {k: logs[k][-1] for k in ("loss_qvalue", "loss_actor", "alpha", "entropy", "episode_return", "step_count")},
        )
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
            alpha=f"{logs['alpha'][-1]:.3f}",
            eval_return=f"{logs['eval_return'][-1]:.1f}" if logs["eval_return"] else "-",
        )
    pbar.close()
    collector.shutdown()
    wall = time.perf_counter() - start

    config = asdict(cfg)
    checkpoint = {
        "policy": actor.state_dict(),
        "loss": loss_module.state_dict(),  # actor, both Q-networks, their targets and log(alpha)
        "optim": optim.state_dict(),
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
        plot_figure(logs, f"SAC on {cfg.env} ({frames:,} frames, {wall:.0f} s)"),
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
    """The command line: one option per :class:`SACConfig` field, its help and default from the field."""
    return _job.build_parser(PROG, __doc__.split("\n")[0], SACConfig)


def parse(argv: list[str] | None) -> SACConfig:
    """The :class:`SACConfig` of a command line (argparse errors exit with code 2)."""
    return SACConfig(**vars(build_parser().parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: parse, check, train, print where the outputs went.

    A user error is printed as one line on stderr and ends the process with code 2; a
    failure during training is a genuine crash and keeps its traceback.
    """
    _job.print_done(_job.run(PROG, parse(argv), validate, train))


if __name__ == "__main__":
    main()
