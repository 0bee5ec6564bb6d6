"""The DQN main job on CartPole-v1: ``tdrl.examples.dqn.train`` with its defaults, 50k frames, 5 seeds.

It runs what ``python -m tdrl.examples.dqn --frames 50000 --seed S`` runs: the command's
defaults (RL Baselines3 Zoo's tuned DQN for CartPole-v1), one torch thread. Only the
evaluation cadence differs: one evaluation episode of the greedy policy after every batch
(256 frames) instead of every 20 batches, for a finer curve. The evaluation runs on its own
env and draws no torch random numbers, so it does not change the training run.

Bar (issue 17): the eval return reaches >= 475 (CartPole-v1's "solved" threshold; the episode
ends at 500) within 50k frames, median of 5 seeds. Reported per seed: the frames at which an
evaluation first reached >= 475, the eval return at the end, the best one, the mean and
minimum return of 10 more episodes of the final policy on fresh env seeds, and the wall time
of the training loop with and without the evaluations. Each run happens in its own
subprocess, one after the other.

Run: ``python -m benchmarks.bench_dqn_cartpole [--seeds 0 1 2 3 4] [--frames 50000] [--png PATH] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

ENV = "CartPole-v1"
SOLVED = 475.0
FRAMES = 50_000
SEEDS = (0, 1, 2, 3, 4)


def one_run(seed: int, frames: int, out_dir: str) -> dict:
    """One training run of the main job (in this process) and its figures."""
    import torch

    from tdrl.envs.utils import ExplorationType, set_exploration_type
    from tdrl.examples.dqn import DQNConfig, make_base_env, make_env, train

    warnings.filterwarnings("ignore", message=".*out of date.*")
    cfg = DQNConfig(env=ENV, frames=frames, seed=seed, out_dir=out_dir, progress=False, eval_every=1)
    result = train(cfg)
    logs = result["logs"]
    pairs = list(zip(logs["eval_frames"], logs["eval_return"]))
    first = next((f for f, r in pairs if r >= SOLVED), None)
    final = []
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        for k in range(10):
            env = make_env(make_base_env(ENV, torch.device("cpu")), 10_000 + k)
            final.append(env.rollout(1000, result["policy"])["next", "reward"].sum().item())
            env.close()
    return {
        "seed": seed,
        "frames": logs["frames"][-1],
        "wall_s": result["wall_s"],
        "eval_s": result["eval_s"],
        "eval_return": logs["eval_return"][-1],
        "best_eval_return": max(logs["eval_return"]),
        "first_solved_frames": first,
        "final_10_mean": sum(final) / len(final),
        "final_10_min": min(final),
        "curve": pairs,
        "plot": str(result["plot"]),
    }


def in_subprocess(seed: int, frames: int, out_dir: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_dqn_cartpole", "--one", "--seeds", str(seed)]
    cmd += ["--frames", str(frames), "--out-dir", out_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_dqn_cartpole seed {seed} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _frames_to_solve(r: dict) -> float:
    return float(r["first_solved_frames"]) if r["first_solved_frames"] is not None else float("inf")


def run(frames: int = FRAMES, seeds: tuple[int, ...] = SEEDS) -> list[dict]:
    from benchmarks._common import row

    with tempfile.TemporaryDirectory() as tmp:
        runs = [in_subprocess(seed, frames, tmp) for seed in seeds]
    median = statistics.median(_frames_to_solve(r) for r in runs)
    note = "; ".join(
        f"seed {r['seed']}: first >= {SOLVED:.0f} at {r['first_solved_frames']} frames, "
        f"final eval {r['eval_return']:.0f}, "
        f"10 fresh episodes mean {r['final_10_mean']:.0f}, wall {r['wall_s']:.0f} s ({r['wall_s'] - r['eval_s']:.0f} s "
        "without evaluations)"
        for r in runs
    )
    return [
        row(
            f"DQN main job, {ENV}: frames to a first eval return >= {SOLVED:.0f}, median of {len(runs)} seeds "
            f"(vs {frames:,})",
            median,
            float(frames),
            "frames",
            ">= 1",
            higher_is_better=False,
            note=note,
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--out-dir", help="where the runs write (default: a temporary folder)")
    parser.add_argument("--png", type=Path, help="copy the first seed's learning curve here")
    parser.add_argument("--json", type=Path, help="write every run (curves included) here")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(args.seeds[0], args.frames, args.out_dir)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for seed in args.seeds:  # one after the other: the runs would compete for the cores
            r = in_subprocess(seed, args.frames, args.out_dir or tmp)
            runs.append(r)
            print(
                f"seed {seed}: first eval return >= {SOLVED:.0f} at {r['first_solved_frames']} frames; "
                f"final eval {r['eval_return']:.0f}, best {r['best_eval_return']:.0f}; 10 fresh episodes mean "
                f"{r['final_10_mean']:.1f} min {r['final_10_min']:.0f}; wall {r['wall_s']:.0f} s "
                f"({r['wall_s'] - r['eval_s']:.0f} s without the evaluations)",
                flush=True,
            )
            print("    curve: " + ", ".join(f"{f / 1000:.1f}k:{ret:.0f}" for f, ret in r["curve"][::8]), flush=True)
        if args.png is not None:
            shutil.copyfile(runs[0]["plot"], args.png)
    median = statistics.median(_frames_to_solve(r) for r in runs)
    walls = [r["wall_s"] for r in runs]
    print(
        f"median frames to a first eval return >= {SOLVED:.0f}: {median:,.0f} (bar: <= {args.frames:,}); "
        f"wall per run: median {statistics.median(walls):.0f} s, max {max(walls):.0f} s"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
