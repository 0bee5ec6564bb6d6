"""Competitive MADDPG on PettingZoo's ``simple_tag_v3`` (MPE): two chasers against one evader.

The setup of TorchRL's competitive multi-agent DDPG tutorial, written against TorchRL's public
API (``--lib`` chooses ``tdrl`` or ``torchrl``), with the budget cut to a few minutes on two
CPU cores:

- the env: ``simple_tag_v3`` with continuous actions, 2 chasers (group ``"adversary"``), 1
  evader (group ``"agent"``), 2 obstacles, episodes of ``max_cycles`` steps; PettingZoo's
  default grouping gives one group per team;
- per group, a deterministic policy (``MultiAgentMLP`` with parameters shared by the group's
  agents, decentralised input: each agent sees its own observation; ``TanhDelta`` onto the
  action box) explored with ``AdditiveGaussianModule`` (sigma annealed from 0.9 to 0.1 over
  half the frames), and a centralised critic (``MultiAgentMLP`` over every agent's
  observation and action of the group: MADDPG; ``--iddpg`` gives each agent its own input);
- per group, a replay buffer, a ``DDPGLoss`` whose keys point into the group
  (``set_keys(state_action_value=(group, "state_action_value"), reward=(group, "reward"),
  done=(group, "done"), terminated=(group, "terminated"))``), TD(0) targets, one Adam for
  the actor and one for the critic (gradients clipped at norm 1) and ``SoftUpdate`` targets;
- after each collected batch, ``updates`` optimiser steps per group; the evader stops
  learning after half the iterations (as in the tutorial), so that the chasers' return
  should rise in the second half.

The curve written is, per iteration, each group's mean episode return (summed over the
episode's steps, averaged over the group's agents and the batch's episodes) and the mean
actor and critic losses of the iteration's updates.

Run: ``python -m benchmarks.bench_maddpg_pettingzoo [--iters 20] [--frames-per-batch 1000]
[--updates 100] [--seed 0] [--lib tdrl] [--iddpg] [--json PATH] [--png PATH]``
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
HYPERPARAMETERS = {
    "frames_per_batch": 1_000,
    "iters": 20,
    "max_cycles": 100,
    "n_chasers": 2,
    "n_evaders": 1,
    "n_obstacles": 2,
    "memory_size": 1_000_000,
    "updates": 100,
    "batch_size": 128,
    "lr": 3e-4,
    "max_grad_norm": 1.0,
    "gamma": 0.99,
    "tau": 0.005,
    "cells": 256,
    "depth": 2,
    "sigma_init": 0.9,
    "sigma_end": 0.1,
}


def _lib(lib: str) -> dict:
    """The modules the program uses, from ``tdrl`` or ``torchrl`` (same names, same API)."""

    def imp(name: str):
        return importlib.import_module(f"{lib}.{name}")

    collectors = imp("collectors")
    modules = imp("modules")
    return {
        "SyncDataCollector": getattr(collectors, "SyncDataCollector", None) or collectors.Collector,
        "rb": imp("data.replay_buffers"),
        "PettingZooWrapper": imp("envs.libs.pettingzoo").PettingZooWrapper,
        "modules": modules,
        "objectives": imp("objectives"),
        "MultiAgentMLP": getattr(modules, "MultiAgentMLP", None) or _LocalMultiAgentMLP,
    }


class _LocalMultiAgentMLP(nn.Module):
    """Stand-in for ``MultiAgentMLP`` (parameters shared by the agents) while tdrl lacks it; see the module doc.

    Decentralised, the MLP maps each agent's input to its output; centralised, it maps the
    group's inputs, concatenated, to one output given to every agent of the group.
    """

    def __init__(
        self,
        n_agent_inputs: int,
        n_agent_outputs: int,
        n_agents: int,
        *,
        centralized: bool,
        share_params: bool,
        depth: int,
        num_cells: int,
        activation_class: type[nn.Module],
    ) -> None:
        super().__init__()
        if not share_params:
            raise NotImplementedError("the local stand-in shares its parameters between the agents only")
        self.centralized, self.n_agent_outputs = centralized, n_agent_outputs
        layers: list[nn.Module] = []
        width = n_agent_inputs * (n_agents if centralized else 1)
        for _ in range(depth):
            layers += [nn.Linear(width, num_cells), activation_class()]
            width = num_cells
        self.net = nn.Sequential(*layers, nn.Linear(width, n_agent_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.centralized:
            return self.net(x)
        out = self.net(x.flatten(-2, -1))
        return out.unsqueeze(-2).expand(*x.shape[:-1], self.n_agent_outputs)


class _ObsActionCritic(nn.Module):
    """The critic network on each agent's observation and action, concatenated."""

    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([observation, action], dim=-1))


def _make_env(lib: dict, hp: dict, seed: int):
    from mpe2 import simple_tag_v3

    raw = simple_tag_v3.parallel_env(
        num_good=hp["n_evaders"],
        num_adversaries=hp["n_chasers"],
        num_obstacles=hp["n_obstacles"],
        max_cycles=hp["max_cycles"],
        continuous_actions=True,
    )
    return lib["PettingZooWrapper"](raw, seed=seed)


def _agents(lib: dict, env, hp: dict, maddpg: bool, total_frames: int) -> dict:
    """Per group: the policy, its exploring version, the critic, the loss, the optimisers and the target updater."""
    from tensordict.nn import TensorDictModule, TensorDictSequential

    modules, objectives = lib["modules"], lib["objectives"]
    out: dict = {}
    for group, agents in env.group_map.items():
        n = len(agents)
        obs_dim = env.full_observation_spec[group, "observation"].shape[-1]
        action_spec = env.full_action_spec[group, "action"]
        act_dim = action_spec.shape[-1]
        policy_net = lib["MultiAgentMLP"](
            obs_dim, act_dim, n, centralized=False, share_params=True, depth=hp["depth"], num_cells=hp["cells"],
            activation_class=nn.Tanh,
        )  # fmt: skip
        policy = modules.ProbabilisticActor(
            TensorDictModule(policy_net, in_keys=[(group, "observation")], out_keys=[(group, "param")]),
            in_keys=[(group, "param")],
            out_keys=[(group, "action")],
            spec=action_spec,
            distribution_class=modules.TanhDelta,
            distribution_kwargs={"low": action_spec.space.low, "high": action_spec.space.high},
            return_log_prob=False,
        )
        explore = TensorDictSequential(
            policy,
            modules.AdditiveGaussianModule(
                spec=action_spec,
                annealing_num_steps=total_frames // 2,
                action_key=(group, "action"),
                sigma_init=hp["sigma_init"],
                sigma_end=hp["sigma_end"],
            ),
        )
        critic_net = lib["MultiAgentMLP"](
            obs_dim + act_dim, 1, n, centralized=maddpg, share_params=True, depth=hp["depth"], num_cells=hp["cells"],
            activation_class=nn.Tanh,
        )  # fmt: skip
        critic = TensorDictModule(  # Q(every agent's observation and action): one module, one output key
            _ObsActionCritic(critic_net),
            in_keys=[(group, "observation"), (group, "action")],
            out_keys=[(group, "state_action_value")],
        )
        loss = objectives.DDPGLoss(actor_network=policy, value_network=critic, delay_value=True, loss_function="l2")
        loss.set_keys(
            state_action_value=(group, "state_action_value"),
            reward=(group, "reward"),
            done=(group, "done"),
            terminated=(group, "terminated"),
        )
        loss.make_value_estimator(objectives.ValueEstimators.TD0, gamma=hp["gamma"])
        out[group] = {
            "policy": policy,
            "explore": explore,
            "loss": loss,
            "target": objectives.SoftUpdate(loss, tau=hp["tau"]),
            "optim": {
                "loss_actor": torch.optim.Adam(loss.actor_network_params.flatten_keys().values(), lr=hp["lr"]),
                "loss_value": torch.optim.Adam(loss.value_network_params.flatten_keys().values(), lr=hp["lr"]),
            },
            "buffer": lib["rb"].ReplayBuffer(
                storage=lib["rb"].LazyTensorStorage(hp["memory_size"]),
                sampler=lib["rb"].RandomSampler(),
                batch_size=hp["batch_size"],
            ),
        }
    return out


def episode_returns(batch, group: str) -> list[float]:
    """The group's return (summed over steps, averaged over its agents) of each episode that ends in ``batch``."""
    reward = batch["next", group, "reward"].mean(dim=(-2, -1))  # [T]: the group's mean reward per step
    done = batch["next", "done"].reshape(-1)
    returns, running = [], 0.0
    for r, d in zip(reward.tolist(), done.tolist()):
        running += r
        if d:
            returns.append(running)
            running = 0.0
    return returns


def train(
    seed: int = 0, lib_name: str = "tdrl", maddpg: bool = True, log=None, **overrides
) -> dict:  # one training run
    """Train every group for ``iters`` iterations; return the curve (per iteration and group) and timings."""
    warnings.filterwarnings("ignore")
    from tensordict.nn import TensorDictSequential

    hp = {**HYPERPARAMETERS, **overrides}
    lib = _lib(lib_name)
    torch.manual_seed(seed)
    env = _make_env(lib, hp, seed)
    total_frames = hp["frames_per_batch"] * hp["iters"]
    groups = _agents(lib, env, hp, maddpg, total_frames)
    collector = lib["SyncDataCollector"](
        env,
        TensorDictSequential(*[g["explore"] for g in groups.values()]),
        frames_per_batch=hp["frames_per_batch"],
        total_frames=total_frames,
    )
    train_groups = list(groups)
    curve: list[dict] = []
    critic_losses: dict[str, list[float]] = {group: [] for group in groups}  # every update's, in order
    start = time.perf_counter()
    for iteration, batch in enumerate(collector):
        point: dict = {"iteration": iteration, "frames": (iteration + 1) * hp["frames_per_batch"]}
        for group, parts in groups.items():
            point[f"{group}/episode_return"] = statistics.fmean(episode_returns(batch, group) or [float("nan")])
            if group not in train_groups:
                continue
            others = [key for other in groups if other != group for key in (other, ("next", other))]
            parts["buffer"].extend(batch.exclude(*others).reshape(-1))
            losses: dict[str, list[float]] = {"loss_actor": [], "loss_value": []}
            for _ in range(hp["updates"]):
                values = parts["loss"](parts["buffer"].sample())
                for name, optim in parts["optim"].items():
                    values[name].backward()
                    params = [p for group_ in optim.param_groups for p in group_["params"]]
                    torch.nn.utils.clip_grad_norm_(params, hp["max_grad_norm"])
                    optim.step()
                    optim.zero_grad()
                    losses[name].append(values[name].item())
                parts["target"].step()
            point[f"{group}/loss_actor"] = statistics.fmean(losses["loss_actor"])
            point[f"{group}/loss_value"] = statistics.fmean(losses["loss_value"])
            critic_losses[group] += losses["loss_value"]
        for parts in groups.values():
            parts["explore"][-1].step(hp["frames_per_batch"])  # anneal the exploration noise
        if iteration == hp["iters"] // 2 - 1 and "agent" in train_groups:
            train_groups.remove("agent")  # the evader stops learning: the chasers should now catch it more
        collector.update_policy_weights_()
        curve.append(point)
        if log is not None:
            log(point)
    wall = time.perf_counter() - start
    collector.shutdown()
    return {
        "lib": lib_name,
        "seed": seed,
        "maddpg": maddpg,
        "hyperparameters": hp,
        "wall_s": wall,
        "curve": curve,
        "critic_losses": critic_losses,
    }


def plot(run: dict, path: Path) -> None:
    """Each group's mean episode return per iteration (left) and critic loss (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = run["curve"]
    groups = [key.split("/")[0] for key in curve[0] if key.endswith("/episode_return")]
    frames = [p["frames"] for p in curve]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for group in groups:
        left.plot(frames, [p[f"{group}/episode_return"] for p in curve], marker="o", label=group)
        losses = [(p["frames"], p[f"{group}/loss_value"]) for p in curve if f"{group}/loss_value" in p]
        right.plot(*zip(*losses), marker="o", label=group)
    half = frames[len(frames) // 2 - 1]
    for ax in (left, right):
        ax.axvline(half, ls="--", color="grey", lw=1, label="evader stops learning")
        ax.set_xlabel("env frames")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    algo = "MADDPG" if run["maddpg"] else "IDDPG"
    left.set_title(f"{algo} on simple_tag_v3 ({run['lib']}, seed {run['seed']}): episode return")
    right.set_title("critic loss (mean of the iteration's updates)")
    right.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(iters: int = 3, rounds: int = 2) -> list[dict]:
    """``run_all``'s row: the seconds per iteration of this program in tdrl against TorchRL's.

    Both run the same program (same hyperparameters and seed) in this process, alternating
    ``rounds`` times (tdrl, TorchRL, tdrl, ...) so that a busy machine slows both alike; each
    keeps its best round. The row is left out when TorchRL is not installed. The curve
    itself comes from ``main`` (a longer run), not from here.
    """
    from benchmarks._common import row

    try:
        importlib.import_module("torchrl")
    except ImportError:
        return []
    per_iteration = {"tdrl": float("inf"), "torchrl": float("inf")}
    for _ in range(rounds):
        for lib in per_iteration:
            per_iteration[lib] = min(per_iteration[lib], train(0, lib, iters=iters)["wall_s"] / iters)
    return [
        row(
            f"MADDPG on simple_tag_v3: s per iteration ({HYPERPARAMETERS['frames_per_batch']} frames + "
            f"{HYPERPARAMETERS['updates']} updates per group), vs the same program in TorchRL",
            per_iteration["tdrl"],
            per_iteration["torchrl"],
            "s",
            "none set",
            higher_is_better=False,
            torchrl=per_iteration["torchrl"],
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--iters", type=int, default=HYPERPARAMETERS["iters"])
    parser.add_argument("--frames-per-batch", type=int, default=HYPERPARAMETERS["frames_per_batch"])
    parser.add_argument("--updates", type=int, default=HYPERPARAMETERS["updates"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lib", choices=["tdrl", "torchrl"], default="tdrl")
    parser.add_argument("--iddpg", action="store_true", help="decentralised critics (each agent its own input)")
    parser.add_argument("--json", type=Path, default=HERE / "maddpg_pettingzoo_curve.json")
    parser.add_argument("--png", type=Path, default=HERE / "maddpg_pettingzoo_curve.png")
    args = parser.parse_args(argv)

    def log(point: dict) -> None:
        shown = ", ".join(f"{k} {v:.3g}" for k, v in point.items() if k not in ("iteration", "frames"))
        print(f"iteration {point['iteration']} ({point['frames']} frames): {shown}", flush=True)

    run = train(
        args.seed,
        args.lib,
        maddpg=not args.iddpg,
        log=log,
        iters=args.iters,
        frames_per_batch=args.frames_per_batch,
        updates=args.updates,
    )
    print(f"wall {run['wall_s']:.0f} s")
    args.json.write_text(json.dumps(run, indent=1) + "\n")
    plot(run, args.png)
    print(f"wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
