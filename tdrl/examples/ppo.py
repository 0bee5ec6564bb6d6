"""PPO on a gymnasium task, end to end: the main job of tdrl's README.

The flow is the seed tutorial's: a transformed env (observation normalization, float
casting, step counting), a policy and a value network, a collector, a replay buffer
sampled without replacement, GAE, ClipPPOLoss, Adam with cosine annealing, and an
evaluation rollout of the deterministic policy, on a second env with the same observation
statistics, every few batches.

The policy follows the env's action space: a Box gets a TanhNormal policy squashed into
its bounds (the tutorial's), a Discrete space a categorical policy over its actions
(``GymEnv`` encodes them one-hot by default, as TorchRL does, so it is a
``OneHotCategorical``). The seed tutorial's hyperparameters serve both: with them PPO
solves CartPole-v1 (eval return 500 at 100k frames, and >= 475 at every evaluation after
7k to 17k frames on seeds 0-2, ``benchmarks/bench_ppo_cartpole.py``). Other action spaces,
unbounded Boxes, and observations that are not a flat Box are refused before anything runs.

Each run writes into a new folder ``<out-dir>/<env>-<YYYYmmdd-HHMMSS>`` (with a suffix when
that name is taken), never over an earlier run: a learning-curve plot (PNG), a CSV log, a
summary (JSON) and a checkpoint (each written crash-safe:
a temporary file, synced, then renamed over the name),
and prints the folder. A user error (an unknown env id, an unavailable device, a bad
number) is one line on stderr and exit code 2.

The same figures, the eval returns and the hyperparameters also go to the logger chosen with
``--logger`` (``csv`` by default, or ``tensorboard``, ``wandb``, ``mlflow``, ``none``) in
``<run>/logs``; ``--video N`` films an evaluation episode every N batches through it
(what goes where: the README's "The main job" section).

Run it with ``python -m tdrl.examples.ppo`` (or the ``tdrl-ppo`` console script)::

    python -m tdrl.examples.ppo --env InvertedDoublePendulum-v5 --frames 50000 --seed 0
    python -m tdrl.examples.ppo --env CartPole-v1 --frames 100000
    python -m tdrl.examples.ppo --env CartPole-v1 --frames 100000 --logger tensorboard --video 20
"""

from __future__ import annotations

import argparse
import math
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
from tdrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
from tdrl.envs.libs.gym import GymEnv
from tdrl.envs.utils import ExplorationType, check_env_specs, set_exploration_type
from tdrl.examples import _job
from tdrl.examples._job import ConfigError, make_base_env, new_run_dir
from tdrl.examples._job import option as _option
from tdrl.modules import Categorical, OneHotCategorical, ProbabilisticActor, TanhNormal, ValueOperator
from tdrl.objectives import ClipPPOLoss
from tdrl.objectives.value import GAE
from tdrl.specs import Bounded, OneHot, Unbounded
from tdrl.specs import Categorical as CategoricalSpec

__all__ = ["PPOConfig", "ConfigError", "validate", "train", "main"]

PROG = "python -m tdrl.examples.ppo"
CONTINUOUS, DISCRETE = "continuous", "discrete"


@dataclass
class PPOConfig:
    """Hyperparameters: the seed tutorial's defaults, for Box and Discrete action spaces alike.

    Every field is a command-line option with its help text (``--frames-per-batch`` for
    ``frames_per_batch``; ``progress`` is ``--no-progress``).
    """

    env: str = _option("InvertedDoublePendulum-v5", "gymnasium id of the task (a Box or Discrete action space)")
    frames: int = _option(50_000, "total environment frames to collect (rounded up to whole batches)")
    seed: int = _option(0, "seed of torch and of the envs (0 <= seed < 2**32)")
    device: str = _option("cpu", "device of the policy, the value network and the loss: cpu, cuda, cuda:N or mps")
    frames_per_batch: int = _option(1000, "frames collected between two rounds of optimization")
    sub_batch_size: int = _option(64, "minibatch size of each gradient step (at most --frames-per-batch)")
    num_epochs: int = _option(10, "passes over each collected batch")
    num_cells: int = _option(256, "width of the 3 hidden layers of the policy and of the value network")
    lr: float = _option(3e-4, "Adam's learning rate, annealed to 0 with a cosine schedule")
    max_grad_norm: float = _option(1.0, "gradient clipping (max L2 norm of all gradients)")
    clip_epsilon: float = _option(0.2, "PPO's ratio clipping")
    gamma: float = _option(0.99, "discount (0 < gamma <= 1)")
    lmbda: float = _option(0.95, "GAE's lambda (0 <= lambda <= 1)")
    entropy_coef: float = _option(1e-4, "weight of the entropy bonus (0 turns it off)")
    eval_every: int = _option(10, "evaluate the deterministic policy every this many batches (and after the last)")
    eval_steps: int = _option(1000, "maximum length of an evaluation episode")
    logger: str = _option("csv", _job.LOGGER_HELP, choices=_job.LOGGERS)
    video: int = _option(0, _job.VIDEO_HELP)
    out_dir: str = _option(
        "runs/ppo", "parent folder: each run writes into a new subfolder <env>-<YYYYmmdd-HHMMSS> of it"
    )
    progress: bool = _option(True, "show a tqdm progress bar")
    threads: int = _option(1, "torch CPU threads while training (small MLPs run fastest on one)")


# --- validation ----------------------------------------------------------------------------
def validate(cfg: PPOConfig) -> None:
    """Check ``cfg`` before anything runs.

    Args:
        cfg: the configuration.

    Raises:
        ConfigError: naming the option, the value given and what it must be.
    """

    check = _job.Checks(cfg)
    check.positive_ints("sub_batch_size", "num_epochs", "num_cells", "eval_every", "eval_steps")
    check.common("--env CartPole-v1 or --env InvertedDoublePendulum-v5")
    if cfg.sub_batch_size > cfg.frames_per_batch:
        raise ConfigError(
            f"--sub-batch-size ({cfg.sub_batch_size}) must be at most --frames-per-batch ({cfg.frames_per_batch})"
        )
    check.positive_numbers("lr", "max_grad_norm", "clip_epsilon")
    check.need(math.isfinite(cfg.entropy_coef) and cfg.entropy_coef >= 0, "entropy_coef", "a number >= 0")
    check.need(0 <= cfg.lmbda <= 1, "lmbda", "in [0, 1]")


# --- env and modules -----------------------------------------------------------------------
def action_kind(env: GymEnv) -> str:
    """``"continuous"`` (a bounded Box) or ``"discrete"`` (Discrete) for the env's action space.

    Raises:
        ConfigError: for any other action space, or an observation that is not a flat Box.
    """
    spaces = f"action space {env.env.action_space}, observation space {env.env.observation_space}"
    supported = (
        "this command trains PPO on a Box action space with finite bounds (TanhNormal policy) or a "
        "Discrete one (categorical policy), with a 1-D Box observation"
    )
    obs_spec = env.observation_spec
    obs = obs_spec["observation"] if set(obs_spec.keys()) == {"observation"} else None
    if not isinstance(obs, (Bounded, Unbounded)) or obs.ndim != 1:
        raise ConfigError(f"--env {env.env_name}: the observation is not supported ({spaces}); {supported}")
    spec = env.action_spec
    if isinstance(spec, Bounded) and spec.ndim == 1:
        return CONTINUOUS
    if isinstance(spec, (OneHot, CategoricalSpec)):
        return DISCRETE
    raise ConfigError(f"--env {env.env_name}: the action space is not supported ({spaces}); {supported}")


def make_env(
    base: GymEnv, seed: int, obs_norm: ObservationNorm | None = None, init_stats_steps: int = 1000
) -> TransformedEnv:
    """The seed's env: normalize observations, cast to float32, count steps.

    Args:
        base: the gymnasium env.
        seed: seeds the env before the normalization statistics are fitted, so a run repeats.
        obs_norm: copy its ``loc``/``scale`` instead of fitting them (the evaluation env).
        init_stats_steps: random steps to fit the statistics on.
    """
    base.set_seed(seed)
    norm = ObservationNorm(in_keys=["observation"])
    if obs_norm is not None:
        norm = ObservationNorm(loc=obs_norm.loc.clone(), scale=obs_norm.scale.clone(), in_keys=["observation"])
    env = TransformedEnv(base, Compose(norm, DoubleToFloat(), StepCounter()))
    if obs_norm is None:
        norm.init_stats(num_iter=init_stats_steps, reduce_dim=0, cat_dim=0)
    return env


def observation_norm(env: TransformedEnv) -> ObservationNorm:
    """The ObservationNorm of an env built by :func:`make_env` (the first transform of its chain)."""
    chain = env.transform
    norm = chain[0] if isinstance(chain, Compose) else chain
    if not isinstance(norm, ObservationNorm):
        raise TypeError(f"expected an env from make_env, whose first transform is an ObservationNorm; got {chain}")
    return norm


def make_modules(env: TransformedEnv, num_cells: int, device: torch.device) -> tuple[ProbabilisticActor, ValueOperator]:
    """The policy and a value network, 3 hidden layers of ``num_cells`` each.

    A Box action space gets a TanhNormal policy within its bounds; a Discrete one a
    categorical policy (a ``OneHotCategorical`` for a one-hot action spec, a
    ``Categorical`` for an index spec).
    """

    def mlp(out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.LazyLinear(num_cells, device=device),
            nn.Tanh(),
            nn.LazyLinear(num_cells, device=device),
            nn.Tanh(),
            nn.LazyLinear(num_cells, device=device),
            nn.Tanh(),
            nn.LazyLinear(out, device=device),
        )

    spec = env.action_spec
    if isinstance(spec, (OneHot, CategoricalSpec)):
        policy = ProbabilisticActor(
            module=TensorDictModule(mlp(spec.n), in_keys=["observation"], out_keys=["logits"]),
            spec=spec,
            in_keys=["logits"],
            distribution_class=OneHotCategorical if isinstance(spec, OneHot) else Categorical,
            return_log_prob=True,
        )
    elif isinstance(spec, Bounded):
        actor_net = nn.Sequential(mlp(2 * spec.shape[-1]), NormalParamExtractor())
        policy = ProbabilisticActor(
            module=TensorDictModule(actor_net, in_keys=["observation"], out_keys=["loc", "scale"]),
            spec=spec,
            in_keys=["loc", "scale"],
            distribution_class=TanhNormal,
            distribution_kwargs={"low": spec.space.low, "high": spec.space.high},
            return_log_prob=True,
        )
    else:  # validate() refused every other action space before the env was built
        raise TypeError(f"make_modules: no policy for an action spec {type(spec).__name__}")
    value = ValueOperator(module=mlp(1), in_keys=["observation"])
    reset = env.reset()
    policy(reset.clone())  # materialize the lazy layers
    value(reset.clone())
    return policy, value


# --- outputs -------------------------------------------------------------------------------
def _csv_bytes(logs: dict) -> bytes:
    evals = dict(zip(logs["eval_frames"], logs["eval_return"]))
    rows = [
        [n, f"{r:.6f}", s, f"{lr:.3e}", f"{evals[n]:.3f}" if n in evals else ""]
        for n, r, s, lr in zip(logs["frames"], logs["train_reward"], logs["step_count"], logs["lr"])
    ]
    return _job.csv_bytes(["frames", "train_reward", "step_count", "lr", "eval_return"], rows)


def plot_figure(logs: dict, title: str) -> Any:
    """The learning curve (a matplotlib ``Figure``): training reward per step, episode length and
    eval return against frames, every axis labelled, x ticks written 20k, 1M, ..."""
    return _job.plot_panels(
        [
            _job.Panel(logs["frames"], logs["train_reward"], "mean training reward per step", "reward per step"),
            _job.Panel(logs["frames"], logs["step_count"], "max episode length in batch", "steps"),
            _job.Panel(
                logs["eval_frames"], logs["eval_return"], "eval return (deterministic policy)", "return", markers=True
            ),
        ],
        title,
    )


def plot(logs: dict, path: Path, title: str) -> None:
    """Write :func:`plot_figure` to ``path`` as a PNG (crash-safe)."""
    _job.write_png(plot_figure(logs, title), path)


# --- training ------------------------------------------------------------------------------
def train(cfg: PPOConfig) -> dict:
    """Train PPO with ``cfg`` (on ``cfg.threads`` torch threads) and write its outputs into a new folder.

    Args:
        cfg: the configuration.

    Returns:
        ``{"logs", "wall_s", "eval_s", "config", "policy", "obs_norm", "out_dir", "plot", "csv",
        "summary", "checkpoint"}``: the per-batch logs, the time of the training loop and the
        part of it spent in evaluations, the configuration, the trained policy and the
        observation normalization it expects, and the paths written.

    Raises:
        ConfigError: on a user error, before training starts (see :func:`validate`; also an
            unsupported action or observation space, or an unusable ``out_dir``).
    """
    validate(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)  # two threads on two busy cores can run 15x slower than one
    try:
        return _train(cfg)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: PPOConfig) -> dict:
    if cfg.video:
        _job.default_mujoco_gl()  # before the first env imports mujoco
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    base_env = make_base_env(cfg.env, device)
    try:
        kind = action_kind(base_env)
        eval_base = _job.make_eval_base_env(cfg.env, device, cfg.video)  # a video that cannot render: refused here
    except ConfigError:
        base_env.close()
        raise
    out_dir = new_run_dir(Path(cfg.out_dir), cfg.env)
    recording = _job.open_recording(cfg.logger, out_dir, "ppo", cfg.video)
    recording.log_hparams(asdict(cfg))

    env = make_env(base_env, cfg.seed)
    check_env_specs(env)
    # evaluating on the training env would leave the collector a simulator in another state
    eval_env = make_env(eval_base, cfg.seed + 1, obs_norm=observation_norm(env))
    recording.attach(eval_env, cfg.seed + 1, _job.render_fps(eval_base))
    policy, value = make_modules(env, cfg.num_cells, device)

    collector = SyncDataCollector(
        env, policy, frames_per_batch=cfg.frames_per_batch, total_frames=cfg.frames, split_trajs=False, device=device
    )
    buffer = ReplayBuffer(storage=LazyTensorStorage(max_size=cfg.frames_per_batch), sampler=SamplerWithoutReplacement())
    advantage = GAE(gamma=cfg.gamma, lmbda=cfg.lmbda, value_network=value, average_gae=True)
    loss_module = ClipPPOLoss(
        actor_network=policy,
        critic_network=value,
        clip_epsilon=cfg.clip_epsilon,
        entropy_bonus=bool(cfg.entropy_coef),
        entropy_coef=cfg.entropy_coef,
        critic_coef=1.0,
        loss_critic_type="smooth_l1",
    )
    optim = torch.optim.Adam(loss_module.parameters(), cfg.lr)
    # the collector rounds the frames up to whole batches: anneal over all of them
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optim, len(collector), 0.0)

    logs: dict = {
        k: [] for k in ("frames", "train_reward", "step_count", "lr", "eval_frames", "eval_return", "eval_steps")
    }
    pbar = tqdm(
        total=len(collector) * cfg.frames_per_batch, disable=not cfg.progress, unit="frames", dynamic_ncols=True
    )
    frames, eval_s = 0, 0.0
    start = time.perf_counter()
    for i, batch in enumerate(collector):
        for _ in range(cfg.num_epochs):
            advantage(batch)
            buffer.extend(batch.reshape(-1).cpu())
            for _ in range(cfg.frames_per_batch // cfg.sub_batch_size):
                sub = buffer.sample(cfg.sub_batch_size).to(device)
                losses = loss_module(sub)
                loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), cfg.max_grad_norm)
                optim.step()
                optim.zero_grad()
        frames += batch.numel()
        logs["frames"].append(frames)
        logs["train_reward"].append(batch["next", "reward"].mean().item())
        logs["step_count"].append(int(batch["next", "step_count"].max().item()))
        logs["lr"].append(optim.param_groups[0]["lr"])
        recording.log(frames, {k: logs[k][-1] for k in ("train_reward", "step_count", "lr")})
        filmed = recording.video_due(i, last=frames >= cfg.frames)
        if filmed or i % cfg.eval_every == 0 or frames >= cfg.frames:
            eval_start = time.perf_counter()
            with recording.filming(filmed, step=frames), set_exploration_type(ExplorationType.MEAN), torch.no_grad():
                ro = eval_env.rollout(cfg.eval_steps, policy)
            eval_s += time.perf_counter() - eval_start
            logs["eval_frames"].append(frames)
            logs["eval_return"].append(ro["next", "reward"].sum().item())
            logs["eval_steps"].append(int(ro["next", "step_count"].max().item()))
            recording.log(frames, {"eval_return": logs["eval_return"][-1], "eval_steps": logs["eval_steps"][-1]})
        pbar.update(batch.numel())
        pbar.set_postfix(
            reward=f"{logs['train_reward'][-1]:.3f}",
            steps=logs["step_count"][-1],
            eval_return=f"{logs['eval_return'][-1]:.1f}" if logs["eval_return"] else "-",
        )
        scheduler.step()
    pbar.close()
    collector.shutdown()
    wall = time.perf_counter() - start

    config = asdict(cfg)
    paths = {name: out_dir / name for name in ("log.csv", "checkpoint.pt", "learning_curve.png", "summary.json")}
    _job.write_bytes(paths["log.csv"], _csv_bytes(logs))
    checkpoint = {
        "policy": policy.state_dict(),
        "value": value.state_dict(),
        "obs_norm": observation_norm(env).state_dict(),
        "optim": optim.state_dict(),
        "config": config,
        "action_kind": kind,
        "frames": frames,
    }
    _job.write_checkpoint(paths["checkpoint.pt"], checkpoint)
    plot(logs, paths["learning_curve.png"], f"PPO on {cfg.env} ({frames:,} frames, {wall:.0f} s)")
    summary = {
        "frames": frames,
        "wall_s": wall,
        "eval_s": eval_s,
        "final_eval_return": logs["eval_return"][-1],
        "best_eval_return": max(logs["eval_return"]),
        "action_kind": kind,
        "config": config,
    }
    _job.write_json(paths["summary.json"], summary)
    recording.close()
    env.close()
    eval_env.close()
    return {
        "log_dir": recording.log_dir,
        "logs": logs,
        "wall_s": wall,
        "eval_s": eval_s,
        "config": cfg,
        "policy": policy,
        "obs_norm": observation_norm(env),
        "out_dir": out_dir,
        "plot": paths["learning_curve.png"],
        "csv": paths["log.csv"],
        "summary": paths["summary.json"],
        "checkpoint": paths["checkpoint.pt"],
    }


# --- command line --------------------------------------------------------------------------
def fail(message: str) -> None:
    """Print a user error as one line on stderr and exit with code 2."""
    _job.fail(PROG, message)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one option per :class:`PPOConfig` field, its help and default from the field."""
    return _job.build_parser(PROG, __doc__.split("\n")[0], PPOConfig)


def parse(argv: list[str] | None) -> PPOConfig:
    """The :class:`PPOConfig` of a command line (argparse errors exit with code 2)."""
    return PPOConfig(**vars(build_parser().parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: parse, check, train, print where the outputs went.

    A user error is printed as one line on stderr and ends the process with code 2; a
    failure during training is a genuine crash and keeps its traceback.
    """
    result = _job.run(PROG, parse(argv), validate, train)
    logs = result["logs"]
    print(
        f"\ndone: {logs['frames'][-1]} frames in {result['wall_s']:.0f} s; "
        f"eval return {logs['eval_return'][0]:.1f} -> {logs['eval_return'][-1]:.1f}"
    )
    _job.print_outputs(result)


if __name__ == "__main__":
    main()
