"""The main job on a discrete-action task: ``tdrl.examples.ppo.train`` on CartPole-v1, 100k frames.

It runs what ``python -m tdrl.examples.ppo --env CartPole-v1 --frames 100000`` runs: the
command's defaults for a Discrete action space (a OneHotCategorical policy), one torch thread,
seed 0. Only the evaluation cadence differs: one evaluation episode after every batch instead
of every 10 batches, for a finer curve. The evaluation runs on its own env under
``ExplorationType.MEAN`` (the policy's most likely action) and draws no torch random numbers,
so it does not change the training run (``tests/examples/test_ppo.py`` checks this).

Bar: an eval return >= 475 (CartPole-v1's "solved" threshold; the episode ends at 500) within
100k frames. Reported: the eval return at 100k frames, the frames at which an evaluation first
reached >= 475 and from which every later one stayed >= 475, the mean and minimum return of 10
more episodes of the final policy on fresh env seeds, and the wall time of the training loop
with and without the time spent in evaluations (the CLI's default cadence evaluates 10x less).
Each run happens in its own subprocess.

Run: ``python -m benchmarks.bench_ppo_cartpole [--seeds 0 1 2] [--frames 100000] [--png PATH]``
(``--png`` copies the first seed's learning curve there).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

ENV = "CartPole-v1"
SOLVED = 475.0
FRAMES = 100_000


def one_run(seed: int, frames: int, out_dir: str) -> dict:
    """One training run of the main job (in this process) and its figures."""
    import torch

    from tdrl.envs.utils import ExplorationType, set_exploration_type
    from tdrl.examples.ppo import PPOConfig, make_base_env, make_env, train

    warnings.filterwarnings("ignore", message=".*out of date.*")
    cfg = PPOConfig(env=ENV, frames=frames, seed=seed, out_dir=out_dir, progress=False, eval_every=1)
    result = train(cfg)  # on cfg.threads torch threads, as the command line
    logs = result["logs"]
    pairs = list(zip(logs["eval_frames"], logs["eval_return"]))
    first = next((f for f, r in pairs if r >= SOLVED), None)
    held_from = None
    for f, r in reversed(pairs):
        if r < SOLVED:
            break
        held_from = f
    final = []
    with set_exploration_type(ExplorationType.MEAN), torch.no_grad():
        for k in range(10):
            env = make_env(make_base_env(ENV, torch.device("cpu")), 10_000 + k, obs_norm=result["obs_norm"])
            final.append(env.rollout(1000, result["policy"])["next", "reward"].sum().item())
            env.close()
    return {
        "seed": seed,
        "frames": logs["frames"][-1],
        "wall_s": result["wall_s"],
        "eval_s": result["eval_s"],
        "eval_return": logs["eval_return"][-1],
        "first_solved_frames": first,
        "held_from_frames": held_from,
        "final_10_mean": sum(final) / len(final),
        "final_10_min": min(final),
        "curve": pairs,
        "max_train_episode": logs["step_count"],
        "plot": str(result["plot"]),
        "config": {k: v for k, v in vars(result["config"]).items() if k not in ("out_dir", "progress")},
    }


def in_subprocess(seed: int, frames: int, out_dir: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_ppo_cartpole",
        "--one",
        "--seeds",
        str(seed),
        "--frames",
        str(frames),
        "--out-dir",
        out_dir,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_ppo_cartpole seed {seed} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _reached(r: dict) -> str:
    """When the eval return first reached the bar, and from when it stayed there."""
    first, held = r["first_solved_frames"], r["held_from_frames"]
    if first is None:
        return f"eval return never >= {SOLVED:.0f}"
    stays = f"stayed >= {SOLVED:.0f} from {held:,} frames on" if held is not None else "fell below it at the end"
    return f"eval return first >= {SOLVED:.0f} at {first:,} frames, {stays}"


def run(frames: int = FRAMES, seed: int = 0) -> list[dict]:
    from benchmarks._common import row

    with tempfile.TemporaryDirectory() as tmp:
        r = in_subprocess(seed, frames, tmp)
    note = (
        f"seed {seed}, one torch thread: wall {r['wall_s']:.0f} s ({r['wall_s'] - r['eval_s']:.0f} s without the "
        f"{len(r['curve'])} evaluations); {_reached(r)}; final policy over 10 fresh episodes: mean "
        f"{r['final_10_mean']:.1f}, min {r['final_10_min']:.0f}"
    )
    first = r["first_solved_frames"]
    return [
        row(
            f"PPO main job, {ENV}, {frames:,} frames, CLI defaults: eval return (vs {SOLVED:.0f})",
            r["eval_return"],
            SOLVED,
            "return",
            ">= 1",
            note=note,
        ),
        row(
            f"PPO main job, {ENV}: frames to a first eval return >= {SOLVED:.0f} (vs {frames:,})",
            float(first if first is not None else float("inf")),
            float(frames),
            "frames",
            ">= 1",
            higher_is_better=False,
            note=note,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
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
                f"seed {seed}: eval return {r['eval_return']:.0f} at {r['frames']:,} frames; {_reached(r)}; "
                f"10 fresh episodes mean {r['final_10_mean']:.1f} min {r['final_10_min']:.0f}; "
                f"wall {r['wall_s']:.0f} s ({r['wall_s'] - r['eval_s']:.0f} s without the evaluations)",
                flush=True,
            )
            print("    curve: " + ", ".join(f"{f // 1000}k:{ret:.0f}" for f, ret in r["curve"]), flush=True)
        if args.png is not None:
            shutil.copyfile(runs[0]["plot"], args.png)
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
