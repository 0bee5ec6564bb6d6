"""SAC and TD3 on Pendulum-v1: the median eval return of 5 seeds after 15k frames (a learning bar).

One program per algorithm, written against TorchRL's public API (``lib`` chooses ``tdrl`` or
``torchrl``; the bar is about tdrl). Hyperparameters start from RL Baselines3 Zoo's for
Pendulum-v1, with a 1,000-frame random warm-up so that the budget leaves room to learn:

- both: 2x256 ReLU MLPs, Adam 1e-3, a replay buffer holding every frame, minibatches of
  256, one update per frame after the warm-up (50 frames per batch, then 50 updates),
  targets moved by ``SoftUpdate(tau=0.005)``;
- **SAC** (``SACLoss``): a tanh-squashed Normal actor, twin critics, gamma 0.99, a
  learned entropy coefficient (initial 1, target entropy -1), one Adam over everything;
- **TD3** (``TD3Loss``): the actor of TorchRL's TD3 example (an MLP, then ``TanhModule``
  onto the action box), ``AdditiveGaussianModule`` exploration noise of std 0.1 (action
  units, the box is [-2, 2]), gamma 0.98, squared TD error, target policy noise 0.2
  clipped at 0.5, an Adam each for actor and critics; each update steps the critics
  (``TD3Loss.value_loss``), and every second one then the actor (``actor_loss``, against
  the critics just updated) and the targets, as TorchRL's TD3 example does.

Frames are the env's, the random warm-up included (``total_frames`` of the collector).
Every 2,500 frames (and before training) the deterministic policy plays 10 episodes of 200
steps on an evaluation env reseeded with the same seed each time, so every point of a curve
faces the same 10 starting states. The evaluation draws no torch random numbers: it does
not change the training run.

Bar (issue 17): for each algorithm, the median over seeds 0-4 of the final evaluation return
(mean of the 10 episodes at 15k frames) is >= -200. Each run happens in its own subprocess
on one torch thread, ``--jobs`` of them at a time (2 by default: these are learning figures,
not speed figures, so two runs may share the two cores).

Run: ``python -m benchmarks.bench_sac_td3_pendulum [--algos sac td3] [--seeds 0 1 2 3 4]
[--frames 15000] [--jobs 2] [--lib tdrl] [--json PATH] [--png PATH]``
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ENV = "Pendulum-v1"
BAR = -200.0
FRAMES = 15_000
SEEDS = (0, 1, 2, 3, 4)
ALGOS = ("sac", "td3")
EVAL_EVERY = 2_500
EVAL_EPISODES = 10
EVAL_STEPS = 200
EVAL_SEED = 10_000
COMMON = {
    "frames_per_batch": 50,
    "random_frames": 1000,
    "batch_size": 256,
    "lr": 1e-3,
    "tau": 0.005,
    "cells": 256,
}
HYPERPARAMETERS = {
    "sac": {**COMMON, "gamma": 0.99},
    "td3": {
        **COMMON,
        "gamma": 0.98,
        "exploration_std": 0.1,
        "policy_noise": 0.2,
        "noise_clip": 0.5,
        "policy_delay": 2,
        "loss_function": "l2",
    },
}
HERE = Path(__file__).resolve().parent


def _lib(lib: str):
    """The modules the programs use, from ``tdrl`` or ``torchrl`` (same names, same API)."""

    def imp(name: str):
        return importlib.import_module(f"{lib}.{name}")

    collectors = imp("collectors")
    return {
        "SyncDataCollector": getattr(collectors, "SyncDataCollector", None) or collectors.Collector,
        "rb": imp("data.replay_buffers"),
        "GymEnv": imp("envs.libs.gym").GymEnv,
        "utils": imp("envs.utils"),
        "modules": imp("modules"),
        "objectives": imp("objectives"),
    }


def _sac(lib: dict, env, hp: dict):
    """SAC's actor (the evaluation policy and the collector's), loss and update step."""
    import torch
    from tensordict.nn import TensorDictModule
    from tensordict.nn.distributions import NormalParamExtractor
    from torch import nn

    modules, objectives = lib["modules"], lib["objectives"]
    cells = [hp["cells"]] * 2
    actor_net = nn.Sequential(
        modules.MLP(in_features=3, out_features=2, num_cells=cells, activation_class=nn.ReLU), NormalParamExtractor()
    )
    actor = modules.ProbabilisticActor(
        TensorDictModule(actor_net, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        spec=env.action_spec,
        distribution_class=modules.TanhNormal,
        distribution_kwargs={"low": env.action_spec.space.low, "high": env.action_spec.space.high},
        return_log_prob=False,
    )
    qnet = modules.ValueOperator(
        modules.MLP(in_features=4, out_features=1, num_cells=cells, activation_class=nn.ReLU),
        in_keys=["observation", "action"],
    )
    loss = objectives.SACLoss(actor, qnet, num_qvalue_nets=2, delay_qvalue=True)
    loss.make_value_estimator(gamma=hp["gamma"])
    target = objectives.SoftUpdate(loss, tau=hp["tau"])
    optim = torch.optim.Adam(loss.parameters(), lr=hp["lr"])

    def update(sample, index: int) -> None:
        out = loss(sample)
        optim.zero_grad()
        (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
        optim.step()
        target.step()

    return actor, actor, update


def _td3(lib: dict, env, hp: dict):
    """TD3's actor (evaluation policy), exploring policy, loss and update step, as TorchRL's TD3 example."""
    import torch
    from tensordict.nn import TensorDictModule, TensorDictSequential
    from torch import nn

    modules, objectives = lib["modules"], lib["objectives"]
    cells = [hp["cells"]] * 2
    actor = TensorDictSequential(
        TensorDictModule(
            modules.MLP(in_features=3, out_features=1, num_cells=cells, activation_class=nn.ReLU),
            in_keys=["observation"],
            out_keys=["param"],
        ),
        modules.TanhModule(in_keys=["param"], out_keys=["action"], spec=env.action_spec),
    )
    explore = TensorDictSequential(
        actor,
        modules.AdditiveGaussianModule(
            spec=env.action_spec, sigma_init=1.0, sigma_end=1.0, mean=0.0, std=hp["exploration_std"]
        ),
    )
    qnet = modules.ValueOperator(
        modules.MLP(in_features=4, out_features=1, num_cells=cells, activation_class=nn.ReLU),
        in_keys=["observation", "action"],
    )
    loss = objectives.TD3Loss(
        actor,
        qnet,
        action_spec=env.action_spec,
        num_qvalue_nets=2,
        policy_noise=hp["policy_noise"],
        noise_clip=hp["noise_clip"],
        loss_function=hp["loss_function"],
    )
    loss.make_value_estimator(gamma=hp["gamma"])
    target = objectives.SoftUpdate(loss, tau=hp["tau"])
    actor_optim = torch.optim.Adam(list(loss.actor_network_params.flatten_keys().values()), lr=hp["lr"])
    critic_optim = torch.optim.Adam(list(loss.qvalue_network_params.flatten_keys().values()), lr=hp["lr"])
    delay = hp["policy_delay"]

    def update(sample, index: int) -> None:
        # as TorchRL's TD3 example: the critics first; every `delay`-th update, the actor
        # (against the critics just updated) and the targets
        loss_qvalue, _ = loss.value_loss(sample)
        critic_optim.zero_grad()
        loss_qvalue.backward()
        critic_optim.step()
        if index % delay == delay - 1:
            loss_actor, _ = loss.actor_loss(sample)
            actor_optim.zero_grad()
            loss_actor.backward()  # it does not reach the critics
            actor_optim.step()
            target.step()

    return actor, explore, update


def one_run(
    algo: str,
    seed: int,
    frames: int = FRAMES,
    lib_name: str = "tdrl",
    eval_every: int = EVAL_EVERY,
    eval_episodes: int = EVAL_EPISODES,
) -> dict:
    """One training run (in this process): the learning curve and the final evaluation."""
    warnings.filterwarnings("ignore")
    import torch

    lib = _lib(lib_name)
    utils = lib["utils"]
    hp = HYPERPARAMETERS[algo]
    torch.manual_seed(seed)
    env = lib["GymEnv"](ENV)
    env.set_seed(seed)
    eval_env = lib["GymEnv"](ENV)
    actor, policy, update = (_sac if algo == "sac" else _td3)(lib, env, hp)
    collector = lib["SyncDataCollector"](
        env,
        policy,
        frames_per_batch=hp["frames_per_batch"],
        total_frames=frames,
        init_random_frames=hp["random_frames"],
    )
    rb = lib["rb"]
    buffer = rb.ReplayBuffer(storage=rb.LazyTensorStorage(max(frames, 1)), batch_size=hp["batch_size"])
    eval_s = 0.0

    def evaluate() -> list[float]:
        nonlocal eval_s
        start = time.perf_counter()
        eval_env.set_seed(EVAL_SEED)  # the same starting states at every evaluation
        with utils.set_exploration_type(utils.ExplorationType.DETERMINISTIC), torch.no_grad():
            returns = [eval_env.rollout(EVAL_STEPS, actor)["next", "reward"].sum().item() for _ in range(eval_episodes)]
        eval_s += time.perf_counter() - start
        return returns

    curve = [(0, statistics.fmean(evaluate()))]
    collected = updates = 0
    next_eval = eval_every
    final: list[float] = []
    start = time.perf_counter()
    for batch in collector:
        buffer.extend(batch.reshape(-1))
        collected += batch.numel()
        if collected > hp["random_frames"]:  # one update per frame collected after the warm-up
            for _ in range(batch.numel()):
                update(buffer.sample(), updates)
                updates += 1
        collector.update_policy_weights_()
        if collected >= next_eval or collected >= frames:
            final = evaluate()
            curve.append((collected, statistics.fmean(final)))
            next_eval = (collected // eval_every + 1) * eval_every
    wall = time.perf_counter() - start
    collector.shutdown()
    eval_env.close()
    first = next((f for f, r in curve if r >= BAR), None)
    return {
        "algo": algo,
        "lib": lib_name,
        "seed": seed,
        "frames": collected,
        "updates": updates,
        "wall_s": wall,
        "eval_s": eval_s,
        "eval_return": curve[-1][1],
        "final_episodes": final,
        "best_eval_return": max(r for _, r in curve[1:]) if len(curve) > 1 else curve[0][1],
        "first_above_bar_frames": first,
        "curve": curve,
    }


def in_subprocess(algo: str, seed: int, frames: int, lib: str = "tdrl", eval_every: int = EVAL_EVERY) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_sac_td3_pendulum", "--one", "--algos", algo, "--seeds", str(seed)]
    cmd += ["--frames", str(frames), "--lib", lib, "--eval-every", str(eval_every)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_sac_td3_pendulum {algo} seed {seed} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_all_seeds(
    algos: tuple[str, ...] = ALGOS,
    seeds: tuple[int, ...] = SEEDS,
    frames: int = FRAMES,
    jobs: int = 2,
    lib: str = "tdrl",
    eval_every: int = EVAL_EVERY,
    on_done=None,
) -> list[dict]:
    """Every (algorithm, seed) run, each in its own subprocess, ``jobs`` at a time; in input order."""

    def one(task: tuple[str, int]) -> dict:
        result = in_subprocess(task[0], task[1], frames, lib, eval_every)
        if on_done is not None:
            on_done(result)
        return result

    tasks = [(algo, seed) for algo in algos for seed in seeds]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, tasks))


def summarize(runs: list[dict]) -> dict[str, dict]:
    """Per algorithm: the median final eval return over seeds, and the per-seed figures."""
    out: dict[str, dict] = {}
    for algo in dict.fromkeys(r["algo"] for r in runs):
        mine = [r for r in runs if r["algo"] == algo]
        median = statistics.median(r["eval_return"] for r in mine)
        out[algo] = {
            "median_eval_return": median,
            "met": median >= BAR,
            "per_seed": {r["seed"]: r["eval_return"] for r in mine},
            "frames": mine[0]["frames"],
        }
    return out


def _describe(r: dict) -> str:
    first = r["first_above_bar_frames"]
    return (
        f"{r['algo'].upper()} seed {r['seed']}: final eval {r['eval_return']:.1f} "
        f"(episodes {min(r['final_episodes']):.0f} to {max(r['final_episodes']):.0f}), "
        f"first >= {BAR:.0f} at {first if first is not None else 'never'} frames, wall {r['wall_s']:.0f} s "
        f"({r['wall_s'] - r['eval_s']:.0f} s without evaluations)"
    )


def plot(runs: list[dict], path: Path) -> None:
    """Each seed's curve (thin) and the median over seeds (thick), one panel per algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = list(dict.fromkeys(r["algo"] for r in runs))
    fig, axes = plt.subplots(1, len(algos), figsize=(5.5 * len(algos), 4), sharey=True, squeeze=False)
    for ax, algo in zip(axes[0], algos):
        mine = [r for r in runs if r["algo"] == algo]
        for r in mine:
            xs, ys = zip(*r["curve"])
            ax.plot(xs, ys, lw=0.8, alpha=0.6, label=f"seed {r['seed']}")
        points = sorted({f for r in mine for f, _ in r["curve"]})
        medians = [statistics.median(dict(r["curve"])[f] for r in mine if f in dict(r["curve"])) for f in points]
        ax.plot(points, medians, lw=2.5, color="black", label="median")
        ax.axhline(BAR, ls="--", color="red", lw=1, label=f"bar {BAR:.0f}")
        ax.set_title(f"{algo.upper()} on {ENV} ({mine[0]['lib']})")
        ax.set_xlabel("env frames (1,000 random first)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"eval return (mean of {EVAL_EPISODES} deterministic episodes)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    frames: int = FRAMES, seeds: tuple[int, ...] = SEEDS, algos: tuple[str, ...] = ALGOS, jobs: int = 2
) -> list[dict]:
    from benchmarks._common import row

    runs = run_all_seeds(algos, seeds, frames, jobs)
    rows = []
    for algo, s in summarize(runs).items():
        note = "; ".join(_describe(r) for r in runs if r["algo"] == algo)
        rows.append(
            row(
                f"{algo.upper()} on {ENV}: median final eval return of {len(seeds)} seeds at {frames:,} frames "
                f"(ratio: {BAR:.0f} / median, > 1 = above the bar)",
                s["median_eval_return"],
                BAR,
                "return",
                ">= 1",
                higher_is_better=False,  # both negative: BAR / median > 1 when the median is above the bar
                note=note,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--eval-every", type=int, default=EVAL_EVERY)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (each on one torch thread)")
    parser.add_argument("--lib", choices=["tdrl", "torchrl"], default="tdrl")
    parser.add_argument("--json", type=Path, help="write every run (curves included) here")
    parser.add_argument("--png", type=Path, help="draw the learning curves here")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        import torch

        torch.set_num_threads(1)
        print(json.dumps(one_run(args.algos[0], args.seeds[0], args.frames, args.lib, args.eval_every)))
        return
    began = datetime.datetime.now(datetime.timezone.utc)

    def report(r: dict) -> None:
        print(_describe(r), flush=True)
        print("    curve: " + ", ".join(f"{f / 1000:.1f}k:{ret:.0f}" for f, ret in r["curve"]), flush=True)

    algos, seeds = tuple(args.algos), tuple(args.seeds)
    runs = run_all_seeds(algos, seeds, args.frames, args.jobs, args.lib, args.eval_every, report)
    ended = datetime.datetime.now(datetime.timezone.utc)
    for algo, s in summarize(runs).items():
        per_seed = ", ".join(f"{seed}: {ret:.1f}" for seed, ret in s["per_seed"].items())
        print(
            f"{algo.upper()}: median final eval return {s['median_eval_return']:.1f} over seeds ({per_seed}) "
            f"at {s['frames']:,} frames; bar >= {BAR:.0f}: {'met' if s['met'] else 'NOT met'}"
        )
    if args.json is not None:
        note = (
            f"python -m benchmarks.bench_sac_td3_pendulum {' '.join(argv if argv is not None else sys.argv[1:])} "
            f"({began:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC, {args.jobs} runs at a time, "
            f"{os.cpu_count()}-core machine, load average at the end {os.getloadavg()[0]:.1f})"
        )
        payload = {"note": note, "hyperparameters": HYPERPARAMETERS, "summary": summarize(runs), "runs": runs}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    if args.png is not None:
        plot(runs, args.png)


if __name__ == "__main__":
    main()
