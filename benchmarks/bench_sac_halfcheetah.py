"""The SAC main job on HalfCheetah-v5 for 100k frames beside Stable-Baselines3's SAC, same settings and seeds.

tdrl runs ``tdrl.examples.sac.train`` (what ``python -m tdrl.examples.sac --env HalfCheetah-v5
--frames 100000 --seed S`` runs) and SB3 runs its ``SAC`` with the same hyperparameters:
2x256 ReLU networks, batch 256, Adam 3e-4, gamma 0.99, tau 0.005, squared-error Q loss
(SB3's; the job's ``--loss-function l2``), learnable entropy
coefficient (target entropy -6, the action size), 10,000 uniformly random frames first, then
50 frames collected and 50 gradient steps (one per frame), a 1M-transition buffer.

Figures per run: the mean return of 10 evaluation episodes of the final policy with the
deterministic (mean) action on fixed env seeds, and the wall time of the training. The row
compares the median over seeds of tdrl's return with SB3's (the aim, issue 17: no worse).
Each run happens in its own subprocess on one torch thread; ``--jobs 2`` runs two at a time
(learning figures only: the wall times then share the cores and are not a speed figure).

Run: ``python -m benchmarks.bench_sac_halfcheetah [--seeds 0 1 2] [--frames 100000] [--jobs 2] [--libs tdrl sb3]
[--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ENV = "HalfCheetah-v5"
FRAMES = 100_000
SEEDS = (0, 1, 2)
EVAL_EPISODES = 10
HP = {
    "frames_per_batch": 50,
    "updates_per_batch": 50,
    "init_random_frames": 10_000,
    "batch_size": 256,
    "buffer_size": 1_000_000,
    "num_cells": 256,
    "lr": 3e-4,
    "gamma": 0.99,
    "tau": 0.005,
}


def _settings(frames: int) -> dict:
    """``HP``; a budget shorter than the random warm-up (a smoke test) warms up for half of it."""
    return {**HP, "init_random_frames": min(HP["init_random_frames"], frames // 2)}


def _evaluate(act, seed: int) -> list[float]:
    """Returns of ``EVAL_EPISODES`` episodes on gymnasium's env (seeds ``10_000 + seed * 100 + k``)."""
    import gymnasium as gym

    env = gym.make(ENV)
    returns = []
    for k in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=10_000 + seed * 100 + k)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def tdrl_run(seed: int, frames: int, out_dir: str) -> dict:
    """The main job (in this process), then its final policy's evaluation."""
    import torch

    from tdrl.envs.utils import ExplorationType, set_exploration_type
    from tdrl.examples.sac import SACConfig, train

    warnings.filterwarnings("ignore", message=".*out of date.*")
    cfg = SACConfig(
        env=ENV, frames=frames, seed=seed, out_dir=out_dir, progress=False, eval_every=100, **_settings(frames)
    )
    result = train(cfg)
    actor = result["policy"]

    def act(obs):
        from tensordict import TensorDict

        td = TensorDict({"observation": torch.as_tensor(obs, dtype=torch.float32)}, [])
        with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
            return actor(td)["action"].numpy()

    returns = _evaluate(act, seed)
    logs = result["logs"]
    return {
        "lib": "tdrl",
        "seed": seed,
        "frames": logs["frames"][-1],
        "wall_s": result["wall_s"],
        "eval_return": sum(returns) / len(returns),
        "eval_returns": returns,
        "curve": list(zip(logs["eval_frames"], logs["eval_return"])),
    }


def sb3_run(seed: int, frames: int, out_dir: str) -> dict:
    """Stable-Baselines3's SAC with the same settings, then its final policy's evaluation."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC

    warnings.filterwarnings("ignore")
    hp = _settings(frames)
    model = SAC(
        "MlpPolicy",
        gym.make(ENV),
        learning_rate=hp["lr"],
        buffer_size=hp["buffer_size"],
        learning_starts=hp["init_random_frames"],
        batch_size=hp["batch_size"],
        tau=hp["tau"],
        gamma=hp["gamma"],
        train_freq=hp["frames_per_batch"],
        gradient_steps=hp["updates_per_batch"],
        ent_coef="auto",
        policy_kwargs={"net_arch": [hp["num_cells"]] * 2, "activation_fn": torch.nn.ReLU},
        seed=seed,
        device="cpu",
    )
    start = time.perf_counter()
    model.learn(total_timesteps=frames)
    wall = time.perf_counter() - start
    returns = _evaluate(lambda obs: model.predict(obs, deterministic=True)[0], seed)
    return {
        "lib": "sb3",
        "seed": seed,
        "frames": frames,
        "wall_s": wall,
        "eval_return": sum(returns) / len(returns),
        "eval_returns": returns,
    }


def in_subprocess(lib: str, seed: int, frames: int, out_dir: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_sac_halfcheetah", "--one", lib, "--seeds", str(seed)]
    cmd += ["--frames", str(frames), "--out-dir", out_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_sac_halfcheetah {lib} seed {seed} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _all_runs(
    seeds: tuple[int, ...],
    frames: int,
    jobs: int,
    out_dir: str,
    echo: bool = False,
    libs: tuple[str, ...] = ("tdrl", "sb3"),
) -> list[dict]:
    tasks = [(lib, seed) for seed in seeds for lib in libs]

    def go(task: tuple[str, int]) -> dict:
        r = in_subprocess(task[0], task[1], frames, out_dir)
        if echo:
            print(
                f"{r['lib']} seed {r['seed']}: eval return {r['eval_return']:.0f} "
                f"(10 episodes, min {min(r['eval_returns']):.0f}), wall {r['wall_s']:.0f} s",
                flush=True,
            )
        return r

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(go, tasks))


def _median(runs: list[dict], lib: str) -> float:
    return statistics.median(r["eval_return"] for r in runs if r["lib"] == lib)


def run(frames: int = FRAMES, seeds: tuple[int, ...] = SEEDS, jobs: int = 1) -> list[dict]:
    from benchmarks._common import row

    with tempfile.TemporaryDirectory() as tmp:
        runs = _all_runs(seeds, frames, jobs, tmp)
    note = "; ".join(f"{r['lib']} seed {r['seed']}: {r['eval_return']:.0f}" for r in runs)
    return [
        row(
            f"SAC main job, {ENV}, {frames:,} frames: eval return, median of {len(seeds)} seeds "
            "(vs SB3's SAC, same settings and seeds)",
            _median(runs, "tdrl"),
            _median(runs, "sb3"),
            "return",
            ">= 1 (aim)",
            sb3=_median(runs, "sb3"),
            note=note,
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each on one torch thread)")
    parser.add_argument("--out-dir", help="where the tdrl runs write (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write every run (tdrl's eval curves included) here")
    parser.add_argument("--libs", nargs="+", choices=["tdrl", "sb3"], default=["tdrl", "sb3"], help="which to run")
    parser.add_argument("--one", choices=["tdrl", "sb3"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        import torch

        torch.set_num_threads(1)
        fn = tdrl_run if args.one == "tdrl" else sb3_run
        print(json.dumps(fn(args.seeds[0], args.frames, args.out_dir or tempfile.mkdtemp())))
        return
    with tempfile.TemporaryDirectory() as tmp:
        runs = _all_runs(
            tuple(args.seeds), args.frames, args.jobs, args.out_dir or tmp, echo=True, libs=tuple(args.libs)
        )
    for lib in args.libs:
        mine = [r for r in runs if r["lib"] == lib]
        print(
            f"{lib}: median eval return {_median(runs, lib):.0f} over seeds "
            + ", ".join(f"{r['seed']}: {r['eval_return']:.0f}" for r in mine)
            + f"; wall median {statistics.median(r['wall_s'] for r in mine):.0f} s"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
