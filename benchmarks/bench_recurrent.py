"""Recurrent PPO and recurrent DQN (LSTM) against their feed-forward versions on partially observed tasks.

Two tasks where the observation hides what the policy needs:

- ``recall``: :class:`tdrl.testing.RecallEnv`, a cue shown at the first step must be named
  by the action ``delay`` steps later; a policy without memory scores ``1 / n_cues``.
- ``masked_cartpole``: CartPole-v1 with the two velocity entries removed from the
  observation (:class:`MaskVelocity`), so only the cart position and the pole angle are
  seen; the velocities must be inferred from consecutive observations.

Each algorithm runs with an LSTM feature layer (``LSTMModule`` with ``InitTracker`` and the
module's primer on the env) and with a feed-forward layer of the same width in its place;
everything else (heads, optimiser, batches, seeds) is the same. Training follows TorchRL's
"Recurrent DQN" idiom: collectors carry the hidden state, losses run under
``set_recurrent_mode(True)`` over ``[B, T]`` sequences drawn by a ``SliceSampler``:

- PPO: each collected batch ``[envs, T]`` is cut into chunks of ``slice_len`` steps (a
  chunk id per step is the sampler's ``traj_key``); ``SliceSamplerWithoutReplacement``
  hands out every chunk once per epoch. A chunk may hold episode starts (``is_init``),
  where the LSTM restarts from the primer's state. GAE runs the critic in recurrent mode
  over the root and ``"next"`` sequences.
- DQN: transitions go to a replay buffer; a ``SliceSampler`` keyed on the collector's
  trajectory ids draws ``[B, slice_len]`` pieces of single episodes; each piece starts
  from the hidden state stored when it was collected (R2D2's "stored state").

Figures: the final evaluation return (greedy policy, fresh env seeds) per seed, LSTM vs
feed-forward, and the evaluation curves (JSON, and a PNG when matplotlib is installed).

Run: ``python -m benchmarks.bench_recurrent [--tasks recall masked_cartpole] [--algos ppo dqn]
[--seeds 0 1 2] [--frames-scale 1.0] [--json PATH] [--png PATH]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tensordict.nn import TensorDictModule, TensorDictModuleBase, TensorDictSequential
from torch import nn

from tdrl.collectors import SyncDataCollector
from tdrl.data.replay_buffers import ReplayBuffer
from tdrl.data.replay_buffers.samplers import SliceSampler, SliceSamplerWithoutReplacement
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.envs import Compose, InitTracker, SerialEnv, StepCounter, Transform, TransformedEnv
from tdrl.envs.utils import ExplorationType, set_exploration_type
from tdrl.modules import EGreedyModule, LSTMModule, ProbabilisticActor, QValueModule, ValueOperator, set_recurrent_mode
from tdrl.objectives import ClipPPOLoss, DQNLoss, HardUpdate
from tdrl.objectives.value import GAE
from tdrl.specs import Bounded, Unbounded
from tdrl.testing import RecallEnv

TASKS = ("recall", "masked_cartpole")
ALGOS = ("ppo", "dqn")
KINDS = ("lstm", "ff")


class MaskVelocity(Transform):
    """Keep only the entries ``keep`` of the last dim of the observation (CartPole: position and angle).

    Args:
        keep: the indices kept, in order (default ``(0, 2)``: cart position, pole angle).
        in_keys: the observation entries masked.
    """

    def __init__(self, keep: tuple[int, ...] = (0, 2), in_keys: Any = ("observation",)) -> None:
        super().__init__(in_keys=list(in_keys))
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long))

    def _apply_transform(self, value: torch.Tensor) -> torch.Tensor:
        return value.index_select(-1, self.keep)

    def _transform_spec(self, spec: Any, key: Any) -> Any:
        shape = (*spec.shape[:-1], len(self.keep))
        if isinstance(spec, Bounded):
            low = spec.space.low.index_select(-1, self.keep)
            high = spec.space.high.index_select(-1, self.keep)
            return Bounded(low, high, shape=shape, dtype=spec.dtype, device=spec.device)
        return Unbounded(shape=shape, dtype=spec.dtype, device=spec.device)


# --- configurations --------------------------------------------------------------------------------
@dataclass
class PPOConfig:
    frames: int
    envs: int
    steps: int  # collected steps per env per batch
    slice_len: int  # steps per training sequence
    slices: int  # sequences per minibatch
    epochs: int
    lr: float
    gamma: float
    lmbda: float
    entropy_coef: float
    hidden: int = 64


@dataclass
class DQNConfig:
    frames: int
    envs: int
    steps: int
    slice_len: int
    slices: int
    updates_per_batch: int
    lr: float
    gamma: float
    eps_frames: int
    eps_end: float
    target_every: int
    buffer: int
    warmup: int
    hidden: int = 64


PPO_CONFIGS = {
    "recall": PPOConfig(
        frames=24_000, envs=16, steps=20, slice_len=10, slices=8, epochs=4, lr=3e-3, gamma=0.99, lmbda=0.95,
        entropy_coef=0.01, hidden=32,
    ),
    "masked_cartpole": PPOConfig(
        frames=60_000, envs=8, steps=32, slice_len=16, slices=4, epochs=10, lr=1e-3, gamma=0.98, lmbda=0.95,
        entropy_coef=0.0,
    ),
}  # fmt: skip
DQN_CONFIGS = {
    "recall": DQNConfig(
        frames=12_000, envs=8, steps=10, slice_len=5, slices=16, updates_per_batch=4, lr=3e-3, gamma=0.99,
        eps_frames=6_000, eps_end=0.05, target_every=20, buffer=5_000, warmup=400, hidden=32,
    ),
    "masked_cartpole": DQNConfig(
        frames=60_000, envs=1, steps=64, slice_len=16, slices=8, updates_per_batch=16, lr=1e-3, gamma=0.99,
        eps_frames=20_000, eps_end=0.04, target_every=50, buffer=50_000, warmup=1_000,
    ),
}  # fmt: skip


# --- envs and networks -----------------------------------------------------------------------------
def base_env(task: str, envs: int, seed: int) -> Any:
    """The task's env, batched over ``envs`` copies, seeded, with ``InitTracker`` and a step counter."""
    if task == "recall":
        env: Any = RecallEnv(n_cues=2, delay=4, batch_size=[envs])
    elif task == "masked_cartpole":
        from tdrl.envs.libs.gym import GymEnv

        def one() -> TransformedEnv:
            return TransformedEnv(GymEnv("CartPole-v1", categorical_action_encoding=True), MaskVelocity())

        env = SerialEnv(envs, one) if envs > 1 else one()
    else:
        raise ValueError(f"unknown task {task!r}; pick one of {TASKS}")
    env.set_seed(seed)
    return TransformedEnv(env, Compose(InitTracker(), StepCounter()))


def feature_layer(kind: str, obs_dim: int, hidden: int) -> TensorDictModuleBase:
    """``observation -> embed``: an LSTM, or a feed-forward layer of the same width."""
    if kind == "lstm":
        return LSTMModule(input_size=obs_dim, hidden_size=hidden, in_key="observation", out_key="embed")
    return TensorDictModule(nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh()), ["observation"], ["embed"])


def _with_primer(env: TransformedEnv, features: Any) -> TransformedEnv:
    if isinstance(features, LSTMModule):
        env.append_transform(features.make_tensordict_primer())
    return env


def _mlp(inp: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inp, hidden), nn.Tanh(), nn.Linear(hidden, out))


# --- evaluation ------------------------------------------------------------------------------------
def evaluate(task: str, policy: Any, kind: str, features: Any, seed: int, episodes: int) -> float:
    """Mean return of the greedy policy over ``episodes`` episodes on fresh env seeds."""
    env = _with_primer(base_env(task, episodes if task == "recall" else 1, seed), features if kind == "lstm" else None)
    returns = []
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        if task == "recall":
            data = env.rollout(env.base_env.delay + 1, policy)
            returns.append(data["next", "reward"].sum(-2).mean().item())
        else:
            for k in range(episodes):
                env.set_seed(seed + k)
                returns.append(env.rollout(500, policy)["next", "reward"].sum().item())
    env.close()
    return float(sum(returns) / len(returns))


# --- PPO -------------------------------------------------------------------------------------------
def train_ppo(task: str, kind: str, seed: int, frames: int | None = None, eval_points: int = 10) -> dict:
    """Recurrent (``kind="lstm"``) or feed-forward (``"ff"``) PPO on ``task``; returns the eval curve."""
    cfg = PPO_CONFIGS[task]
    frames = cfg.frames if frames is None else frames
    torch.manual_seed(seed)
    env = base_env(task, cfg.envs, seed)
    obs_dim = env.observation_spec["observation"].shape[-1]
    n_actions = env.action_spec.n
    features = feature_layer(kind, obs_dim, cfg.hidden)
    _with_primer(env, features)
    logits = TensorDictModule(_mlp(cfg.hidden, cfg.hidden, n_actions), ["embed"], ["logits"])
    actor = ProbabilisticActor(
        TensorDictSequential(features, logits),
        in_keys=["logits"],
        distribution_class=torch.distributions.Categorical,
        spec=env.action_spec,
        return_log_prob=True,
    )
    critic = TensorDictSequential(features, ValueOperator(_mlp(cfg.hidden, cfg.hidden, 1), in_keys=["embed"]))
    loss = ClipPPOLoss(actor, critic, entropy_coef=cfg.entropy_coef)
    gae = GAE(gamma=cfg.gamma, lmbda=cfg.lmbda, value_network=critic)
    optim = torch.optim.Adam(loss.parameters(), lr=cfg.lr)
    per_batch = cfg.envs * cfg.steps
    collector = SyncDataCollector(env, actor, frames_per_batch=per_batch, total_frames=frames)
    chunks = cfg.steps // cfg.slice_len
    chunk_id = (torch.arange(cfg.envs).unsqueeze(1) * chunks + torch.arange(cfg.steps) // cfg.slice_len).reshape(-1)
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(per_batch),
        sampler=SliceSamplerWithoutReplacement(slice_len=cfg.slice_len, traj_key="chunk", truncated_key=None),
        batch_size=cfg.slices * cfg.slice_len,
    )
    curve: list[tuple[int, float]] = []
    every = max(1, frames // per_batch // eval_points)
    start = time.perf_counter()
    done_frames = 0
    for i, data in enumerate(collector):
        done_frames += data.numel()
        with torch.no_grad(), set_recurrent_mode(True):
            gae(data)
        data = data.reshape(-1)
        data.set("chunk", chunk_id)
        buffer.empty()
        buffer.extend(data)
        for _ in range(cfg.epochs):
            for _ in range(chunks * cfg.envs // cfg.slices):
                batch = buffer.sample().reshape(-1, cfg.slice_len)
                with set_recurrent_mode(True):
                    out = loss(batch)
                total = out["loss_objective"] + out["loss_critic"] + out.get("loss_entropy", torch.zeros(()))
                optim.zero_grad()
                total.backward()
                nn.utils.clip_grad_norm_(loss.parameters(), 0.5)
                optim.step()
        collector.update_policy_weights_()
        if (i + 1) % every == 0:
            curve.append((done_frames, evaluate(task, actor, kind, features, 10_000 + seed, _eval_episodes(task))))
    collector.shutdown()
    env.close()
    wall = time.perf_counter() - start
    final = evaluate(task, actor, kind, features, 20_000 + seed, 2 * _eval_episodes(task))
    return {"algo": "ppo", "task": task, "kind": kind, "seed": seed, "frames": done_frames, "wall_s": wall,
            "curve": curve, "final": final}  # fmt: skip


def _eval_episodes(task: str) -> int:
    return 256 if task == "recall" else 5


# --- DQN -------------------------------------------------------------------------------------------
def train_dqn(task: str, kind: str, seed: int, frames: int | None = None, eval_points: int = 10) -> dict:
    """Recurrent (``kind="lstm"``) or feed-forward (``"ff"``) DQN on ``task``; returns the eval curve."""
    cfg = DQN_CONFIGS[task]
    frames = cfg.frames if frames is None else frames
    torch.manual_seed(seed)
    env = base_env(task, cfg.envs, seed)
    obs_dim = env.observation_spec["observation"].shape[-1]
    spec = env.action_spec
    features = feature_layer(kind, obs_dim, cfg.hidden)
    _with_primer(env, features)
    head = TensorDictModule(_mlp(cfg.hidden, cfg.hidden, spec.n), ["embed"], ["action_value"])
    qnet = TensorDictSequential(features, head, QValueModule(spec=spec))
    explore = EGreedyModule(spec, eps_init=1.0, eps_end=cfg.eps_end, annealing_num_steps=cfg.eps_frames)
    policy = TensorDictSequential(qnet, explore)
    loss = DQNLoss(qnet, action_space=spec, delay_value=True)
    loss.make_value_estimator(gamma=cfg.gamma)
    updater = HardUpdate(loss, value_network_update_interval=cfg.target_every)
    optim = torch.optim.Adam(loss.parameters(), lr=cfg.lr)
    per_batch = cfg.envs * cfg.steps
    collector = SyncDataCollector(env, policy, frames_per_batch=per_batch, total_frames=frames)
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(cfg.buffer),
        sampler=SliceSampler(slice_len=cfg.slice_len, traj_key=("collector", "traj_ids")),
        batch_size=cfg.slices * cfg.slice_len,
    )
    curve: list[tuple[int, float]] = []
    every = max(1, frames // per_batch // eval_points)
    start = time.perf_counter()
    done_frames = 0
    for i, data in enumerate(collector):
        done_frames += data.numel()
        buffer.extend(data.reshape(-1))
        explore.step(data.numel())
        if done_frames >= cfg.warmup:
            for _ in range(cfg.updates_per_batch):
                try:
                    batch = buffer.sample().reshape(-1, cfg.slice_len)
                except RuntimeError:  # no stored episode is a slice long yet
                    break
                with set_recurrent_mode(True):
                    out = loss(batch)
                optim.zero_grad()
                out["loss"].backward()
                nn.utils.clip_grad_norm_(loss.parameters(), 10.0)
                optim.step()
                updater.step()
        if (i + 1) % every == 0:
            curve.append((done_frames, evaluate(task, qnet, kind, features, 10_000 + seed, _eval_episodes(task))))
    collector.shutdown()
    env.close()
    wall = time.perf_counter() - start
    final = evaluate(task, qnet, kind, features, 20_000 + seed, 2 * _eval_episodes(task))
    return {"algo": "dqn", "task": task, "kind": kind, "seed": seed, "frames": done_frames, "wall_s": wall,
            "curve": curve, "final": final}  # fmt: skip


TRAIN = {"ppo": train_ppo, "dqn": train_dqn}


# --- report ----------------------------------------------------------------------------------------
def summarize(runs: list[dict]) -> list[dict]:
    """One row per (task, algo, kind): the final eval returns per seed and their median."""
    rows = []
    for task in TASKS:
        for algo in ALGOS:
            for kind in KINDS:
                mine = [r for r in runs if (r["task"], r["algo"], r["kind"]) == (task, algo, kind)]
                if mine:
                    finals = [r["final"] for r in sorted(mine, key=lambda r: r["seed"])]
                    rows.append({"task": task, "algo": algo, "kind": kind, "finals": finals,
                                 "median": statistics.median(finals),
                                 "wall_s": statistics.median(r["wall_s"] for r in mine)})  # fmt: skip
    return rows


def plot(runs: list[dict], path: Path) -> bool:
    """Eval curves, one panel per (task, algo); LSTM solid, feed-forward dashed. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = sorted({(r["task"], r["algo"]) for r in runs})
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (task, algo) in zip(axes[0], panels):
        for r in runs:
            if (r["task"], r["algo"]) != (task, algo) or not r["curve"]:
                continue
            xs, ys = zip(*r["curve"])
            style = "-" if r["kind"] == "lstm" else "--"
            color = "C0" if r["kind"] == "lstm" else "C3"
            ax.plot(xs, ys, style, color=color, alpha=0.7, label=f"{r['kind']} seed {r['seed']}")
        ax.set_title(f"{algo.upper()} on {task}")
        ax.set_xlabel("frames")
        ax.set_ylabel("eval return")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--frames-scale", type=float, default=1.0, help="multiply every config's frame budget")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        help="train nothing: merge the runs of these JSON files into --json and --png",
    )
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("recurrent_seeds.json"))
    parser.add_argument("--png", type=Path, default=Path(__file__).with_name("recurrent_learning_curves.png"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs: list[dict] = []
    for path in args.merge or []:
        runs += json.loads(path.read_text())["runs"]
    for task in [] if args.merge else args.tasks:
        for algo in args.algos:
            configs = PPO_CONFIGS if algo == "ppo" else DQN_CONFIGS
            frames = int(configs[task].frames * args.frames_scale)
            for seed in args.seeds:
                for kind in args.kinds:
                    run = TRAIN[algo](task, kind, seed, frames)
                    print(f"{task:16s} {algo} {kind:4s} seed {seed}: final {run['final']:8.2f}  "
                          f"({run['frames']} frames, {run['wall_s']:.0f} s)", flush=True)  # fmt: skip
                    runs.append(run)
                    args.json.write_text(json.dumps({"runs": runs, "summary": summarize(runs)}, indent=1))
    result = {"runs": runs, "summary": summarize(runs)}
    args.json.write_text(json.dumps(result, indent=1))
    plot(runs, args.png)
    for row in result["summary"]:
        print(f"{row['task']:16s} {row['algo']} {row['kind']:4s} median {row['median']:8.2f}  finals {row['finals']}")
    return result


if __name__ == "__main__":
    main()
