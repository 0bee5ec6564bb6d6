"""MAPPO and IPPO on VMAS ``navigation``: the setup of TorchRL's multi-agent PPO tutorial.

The program is written against TorchRL's public API (``--lib`` chooses ``tdrl`` or
``torchrl``), with the tutorial's hyperparameters:

- the env: ``VmasEnv("navigation", n_agents=3, max_steps=100, continuous_actions=True)``
  with 60 vectorised envs (so that one batch of ``frames_per_batch=6000`` frames is one
  episode of each), and ``RewardSum`` summing each agent's reward into
  ``("agents", "episode_reward")``;
- the policy: a ``MultiAgentMLP`` (depth 2, 256 cells, tanh, parameters shared by the
  agents, each agent sees its own observation) giving the location and scale
  (``NormalParamExtractor``) of a ``TanhNormal`` on the action box, in a
  ``ProbabilisticActor`` that records the sample's log-probability;
- the critic: a ``MultiAgentMLP`` of the same shape with one output per agent, centralised
  (each agent's value is computed from every agent's observation: MAPPO) or decentralised
  (each agent's value from its own observation: IPPO), parameters shared;
- ``ClipPPOLoss`` (clip 0.2, entropy coefficient 1e-4, advantages not normalised) with its
  keys pointing into the ``"agents"`` group, GAE (gamma 0.99, lambda 0.9) computed once per
  batch, and for each batch 30 epochs of 15 minibatches of 400 drawn without replacement
  from a replay buffer holding the batch; Adam at 3e-4, gradients clipped at norm 1;
- 10 iterations: 60,000 frames.

The curve written is, per iteration, the mean episode reward per agent: the
``("agents", "episode_reward")`` of every agent at the steps where an episode ends,
averaged (what the tutorial plots). The final figure is the last iteration's point.

Run: ``python -m benchmarks.bench_mappo_vmas [--lib tdrl] [--algos mappo ippo] [--seeds 0]
[--iters 10] [--envs 60]``: it writes ``benchmarks/mappo_vmas_<lib>.json`` (every run and its
curve; runs of other seeds already there are kept, a rerun of the same algorithm and seed
replaces its entry) and redraws ``benchmarks/mappo_vmas_curve.png`` from whichever of
``mappo_vmas_tdrl.json`` and ``mappo_vmas_torchrl.json`` exist (``--plot-only`` just redraws).
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ALGOS = ("mappo", "ippo")
HYPERPARAMETERS = {
    "n_agents": 3,
    "max_steps": 100,
    "num_envs": 60,
    "iters": 10,
    "num_epochs": 30,
    "minibatch_size": 400,
    "lr": 3e-4,
    "max_grad_norm": 1.0,
    "clip_epsilon": 0.2,
    "gamma": 0.99,
    "lmbda": 0.9,
    "entropy_eps": 1e-4,
    "depth": 2,
    "cells": 256,
}


def _lib(lib: str) -> dict:
    """The names the program uses, from ``tdrl`` or ``torchrl`` (same names, same API)."""

    def imp(name: str):
        return importlib.import_module(f"{lib}.{name}")

    collectors = imp("collectors")
    envs = imp("envs")
    rb = imp("data.replay_buffers")
    modules = imp("modules")
    objectives = imp("objectives")
    return {
        "SyncDataCollector": getattr(collectors, "SyncDataCollector", None) or collectors.Collector,
        "VmasEnv": imp("envs.libs.vmas").VmasEnv,
        "TransformedEnv": envs.TransformedEnv,
        "RewardSum": envs.RewardSum,
        "ReplayBuffer": rb.ReplayBuffer,
        "LazyTensorStorage": rb.LazyTensorStorage,
        "SamplerWithoutReplacement": rb.SamplerWithoutReplacement,
        "MultiAgentMLP": modules.MultiAgentMLP,
        "ProbabilisticActor": modules.ProbabilisticActor,
        "TanhNormal": modules.TanhNormal,
        "ClipPPOLoss": objectives.ClipPPOLoss,
        "ValueEstimators": objectives.ValueEstimators,
    }


def _make_env(lib: dict, hp: dict, seed: int):
    env = lib["VmasEnv"](
        scenario="navigation",
        num_envs=hp["num_envs"],
        continuous_actions=True,
        max_steps=hp["max_steps"],
        n_agents=hp["n_agents"],
        seed=seed,
    )
    return lib["TransformedEnv"](
        env, lib["RewardSum"](in_keys=[env.reward_key], out_keys=[("agents", "episode_reward")])
    )


def _make_modules(lib: dict, env, hp: dict, mappo: bool):
    """The tutorial's policy (shared decentralised MLP -> TanhNormal) and critic (centralised for MAPPO)."""
    from tensordict.nn import TensorDictModule
    from tensordict.nn.distributions import NormalParamExtractor

    obs_dim = env.observation_spec["agents", "observation"].shape[-1]
    action_spec = env.full_action_spec_unbatched[env.action_key]
    n_agents = hp["n_agents"]
    policy_net = nn.Sequential(
        lib["MultiAgentMLP"](
            n_agent_inputs=obs_dim,
            n_agent_outputs=2 * action_spec.shape[-1],
            n_agents=n_agents,
            centralized=False,
            share_params=True,
            depth=hp["depth"],
            num_cells=hp["cells"],
            activation_class=nn.Tanh,
        ),
        NormalParamExtractor(),
    )
    policy = lib["ProbabilisticActor"](
        module=TensorDictModule(
            policy_net, in_keys=[("agents", "observation")], out_keys=[("agents", "loc"), ("agents", "scale")]
        ),
        spec=env.action_spec_unbatched,
        in_keys=[("agents", "loc"), ("agents", "scale")],
        out_keys=[env.action_key],
        distribution_class=lib["TanhNormal"],
        distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
        return_log_prob=True,
    )
    critic_net = lib["MultiAgentMLP"](
        n_agent_inputs=obs_dim,
        n_agent_outputs=1,
        n_agents=n_agents,
        centralized=mappo,
        share_params=True,
        depth=hp["depth"],
        num_cells=hp["cells"],
        activation_class=nn.Tanh,
    )
    critic = TensorDictModule(critic_net, in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")])
    return policy, critic


def episode_reward_mean(batch) -> float:
    """The mean, over the agents and the episodes that end in ``batch``, of each agent's episode reward."""
    done = batch["next", "agents", "done"]
    rewards = batch["next", "agents", "episode_reward"][done]
    return rewards.mean().item() if rewards.numel() else float("nan")


def train(seed: int = 0, lib_name: str = "tdrl", mappo: bool = True, log=None, **overrides) -> dict:
    """One training run; returns the curve (mean episode reward per agent per iteration), losses and timings."""
    warnings.filterwarnings("ignore")
    hp = {**HYPERPARAMETERS, **overrides}
    lib = _lib(lib_name)
    torch.manual_seed(seed)
    env = _make_env(lib, hp, seed)
    policy, critic = _make_modules(lib, env, hp, mappo)
    frames_per_batch = hp["num_envs"] * hp["max_steps"]
    collector = lib["SyncDataCollector"](
        env, policy, frames_per_batch=frames_per_batch, total_frames=frames_per_batch * hp["iters"]
    )
    buffer = lib["ReplayBuffer"](
        storage=lib["LazyTensorStorage"](frames_per_batch),
        sampler=lib["SamplerWithoutReplacement"](),
        batch_size=hp["minibatch_size"],
    )
    loss_module = lib["ClipPPOLoss"](
        actor_network=policy,
        critic_network=critic,
        clip_epsilon=hp["clip_epsilon"],
        entropy_coeff=hp["entropy_eps"],
        normalize_advantage=False,
    )
    loss_module.set_keys(
        reward=env.reward_key,
        action=env.action_key,
        value=("agents", "state_value"),
        done=("agents", "done"),
        terminated=("agents", "terminated"),
    )
    loss_module.make_value_estimator(lib["ValueEstimators"].GAE, gamma=hp["gamma"], lmbda=hp["lmbda"])
    gae = loss_module.value_estimator
    optim = torch.optim.Adam(loss_module.parameters(), hp["lr"])
    curve: list[dict] = []
    collect_s = train_s = 0.0
    start = time.perf_counter()
    mark = start
    for iteration, batch in enumerate(collector):
        got = time.perf_counter()
        collect_s += got - mark
        reward_shape = batch.get_item_shape(("next", env.reward_key))
        for key in ("done", "terminated"):  # the env's flags are per env; the loss reads them per agent
            batch.set(("next", "agents", key), batch.get(("next", key)).unsqueeze(-1).expand(reward_shape))
        with torch.no_grad():
            gae(
                batch,
                params=loss_module.critic_network_params,
                target_params=loss_module.target_critic_network_params,
            )
        buffer.extend(batch.reshape(-1))
        losses: dict[str, list[float]] = {"loss_objective": [], "loss_critic": [], "loss_entropy": []}
        for _ in range(hp["num_epochs"]):
            for _ in range(frames_per_batch // hp["minibatch_size"]):
                values = loss_module(buffer.sample())
                loss = values["loss_objective"] + values["loss_critic"] + values["loss_entropy"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), hp["max_grad_norm"])
                optim.step()
                optim.zero_grad()
                for name in losses:
                    losses[name].append(values[name].item())
        collector.update_policy_weights_()
        point = {
            "iteration": iteration,
            "frames": (iteration + 1) * frames_per_batch,
            "episode_reward_mean": episode_reward_mean(batch),
            **{name: statistics.fmean(v) for name, v in losses.items()},
        }
        curve.append(point)
        if log is not None:
            log(point)
        mark = time.perf_counter()
        train_s += mark - got
    wall = time.perf_counter() - start
    collector.shutdown()
    return {
        "lib": lib_name,
        "algo": "mappo" if mappo else "ippo",
        "seed": seed,
        "hyperparameters": hp,
        "wall_s": wall,
        "collect_s": collect_s,
        "train_s": train_s,
        "final_episode_reward_mean": curve[-1]["episode_reward_mean"],
        "curve": curve,
    }


def plot(runs: list[dict], path: Path) -> None:
    """The mean episode reward per agent against frames: one line per run, MAPPO solid and IPPO dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"tdrl": "tab:blue", "torchrl": "tab:orange"}
    styles = {"mappo": "-", "ippo": "--"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        frames = [p["frames"] for p in r["curve"]]
        ax.plot(
            frames,
            [p["episode_reward_mean"] for p in r["curve"]],
            styles.get(r["algo"], ":"),
            color=colours.get(r["lib"]),
            marker="o",
            markersize=3,
            alpha=0.85,
            label=f"{r['lib']} {r['algo'].upper()} seed {r['seed']}",
        )
    ax.set_xlabel("env frames (per agent group)")
    ax.set_ylabel("mean episode reward per agent")
    ax.set_title("VMAS navigation, 3 agents: the multi-agent PPO tutorial's setup")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def json_path(lib: str) -> Path:
    return HERE / f"mappo_vmas_{lib}.json"


def saved_runs() -> list[dict]:
    """The runs written by both libraries' commands (whichever files exist)."""
    return [r for lib in ("tdrl", "torchrl") if json_path(lib).exists() for r in json.loads(json_path(lib).read_text())]


def replot(path: Path = HERE / "mappo_vmas_curve.png") -> None:
    """Redraw the curve from the runs written by both libraries."""
    runs = saved_runs()
    if runs:
        plot(runs, path)


def summary(runs: list[dict]) -> dict[str, dict]:
    """Per ``"<lib> <algo>"``: the final episode reward per agent of each seed, their mean, and the mean wall time."""
    out: dict[str, dict] = {}
    for r in runs:
        entry = out.setdefault(f"{r['lib']} {r['algo']}", {"final": {}, "wall_s": []})
        entry["final"][r["seed"]] = r["final_episode_reward_mean"]
        entry["wall_s"].append(r["wall_s"])
    for entry in out.values():
        entry["mean_final"] = statistics.fmean(entry["final"].values())
        entry["wall_s"] = statistics.fmean(entry["wall_s"])
    return out


def run(iters: int = 2) -> list[dict]:
    """``run_all``'s row: seconds per iteration of this program (MAPPO) in tdrl against TorchRL's.

    Both run the same program (same hyperparameters and seed) in this process, one after the
    other; the row is left out when TorchRL is not installed. The learning figures come from
    ``main`` (the full 10 iterations), not from here.
    """
    from benchmarks._common import row

    try:
        importlib.import_module("torchrl")
    except ImportError:
        return []
    torch.set_num_threads(1)
    ours = train(0, "tdrl", iters=iters)
    theirs = train(0, "torchrl", iters=iters)
    per_iteration = {"tdrl": ours["wall_s"] / iters, "torchrl": theirs["wall_s"] / iters}
    return [
        row(
            "MAPPO on VMAS navigation: s per iteration (6000 frames + 30 epochs x 15 minibatches), "
            "vs the same program in TorchRL",
            per_iteration["tdrl"],
            per_iteration["torchrl"],
            "s",
            "none set",
            higher_is_better=False,
            torchrl=per_iteration["torchrl"],
        )
    ]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--lib", choices=["tdrl", "torchrl"], default="tdrl")
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--iters", type=int, default=HYPERPARAMETERS["iters"])
    parser.add_argument("--envs", type=int, default=HYPERPARAMETERS["num_envs"], help="vectorised VMAS envs")
    parser.add_argument("--epochs", type=int, default=HYPERPARAMETERS["num_epochs"])
    parser.add_argument("--json", type=Path, help="where to write the runs (default benchmarks/mappo_vmas_<lib>.json)")
    parser.add_argument("--png", type=Path, default=HERE / "mappo_vmas_curve.png")
    parser.add_argument("--plot-only", action="store_true", help="only redraw --png from the JSON files")
    args = parser.parse_args(argv)
    if args.plot_only:
        replot(args.png)
        runs = saved_runs()
        for name, entry in summary(runs).items():
            finals = ", ".join(f"seed {seed}: {value:.2f}" for seed, value in sorted(entry["final"].items()))
            print(f"{name}: mean final {entry['mean_final']:.2f} ({finals}); mean wall {entry['wall_s']:.0f} s")
        return runs
    torch.set_num_threads(1)
    out = args.json or json_path(args.lib)
    # runs of other (algo, seed) pairs already in the file stay: one seed per command fits a time limit
    kept = json.loads(out.read_text()) if out.exists() else []
    mine = {(algo, seed) for algo in args.algos for seed in args.seeds}
    kept = [r for r in kept if (r["algo"], r["seed"]) not in mine]
    runs: list[dict] = []
    for seed in args.seeds:
        for algo in args.algos:

            def log(point: dict, algo: str = algo, seed: int = seed) -> None:
                print(
                    f"{args.lib} {algo} seed {seed} iteration {point['iteration']} ({point['frames']} frames): "
                    f"episode reward/agent {point['episode_reward_mean']:.3f}",
                    flush=True,
                )

            result = train(
                seed, args.lib, mappo=algo == "mappo", log=log, iters=args.iters, num_envs=args.envs,
                num_epochs=args.epochs,
            )  # fmt: skip
            print(f"{args.lib} {algo} seed {seed}: final {result['final_episode_reward_mean']:.3f}, "
                  f"wall {result['wall_s']:.0f} s")  # fmt: skip
            runs.append(result)
            # after each run, so that a cut-off job keeps what it did
            everything = sorted([*kept, *runs], key=lambda r: (r["seed"], ALGOS.index(r["algo"])))
            out.write_text(json.dumps(everything, indent=1) + "\n")
    try:
        if args.json is None:
            replot(args.png)
        else:
            plot([*kept, *runs], args.png)
    except ImportError:  # no matplotlib in this venv: redraw later with --plot-only
        print("matplotlib missing: run again with --plot-only where it is installed")
    return runs


if __name__ == "__main__":
    main()
