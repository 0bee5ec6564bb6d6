"""Off-policy training end to end: DQN on CartPole-v1 and SAC on Pendulum-v1, tdrl vs plain torch.

For each algorithm one program is written against TorchRL's public API and run twice, with
``tdrl`` and with ``torchrl`` imported under the same names (possible only because tdrl keeps
TorchRL's API). The reference is the same program written by hand in plain torch and
gymnasium: what the training costs with no library at all. Stable-Baselines3 runs its own
DQN / SAC with the same hyperparameters. Each run happens in its own subprocess, one after
the other, on one thread, so they do not compete for the cores.

- **DQN, CartPole-v1, 50k frames** (the hyperparameters of rl-baselines3-zoo for this task):
  a 2x256 ReLU Q-network, 256 frames per batch, then 128 updates of 64 transitions (once
  1,000 frames are stored), Adam 2.3e-3, gamma 0.99, squared TD(0) error, gradients clipped at
  norm 10, the target network copied before each batch's updates, epsilon-greedy from 1.0 to
  0.04 over the first 8,000 frames (stepped once per batch), a 100k-transition buffer.
- **SAC, Pendulum-v1, 20k frames**: 2x256 ReLU actor (tanh-squashed Normal) and twin
  critics, 1,000 random frames first, then 64 frames per batch and 64 updates of 256
  transitions (one update per frame), Adam 1e-3, gamma 0.99, target networks moved by
  tau 0.005 after each update, learnable entropy coefficient with target entropy -1.

Each program reports its wall time (setup, training and the final evaluation excluded:
training only), the CPU time of the same span (the programs run on one thread, so on an idle
machine the two agree; on a busy one the CPU time is the steadier figure), and the mean
return of 10 evaluation episodes with the greedy / mean action.

Bars (issue 17): each tdrl program >= 0.95x the plain-torch one in the same run (wall time);
eval return: DQN >= 475, SAC >= -200 (one seed here; ``benchmarks/bench_dqn_cartpole.py``
and the SAC learning benchmark take the median of 5 seeds).

Run: ``python -m benchmarks.bench_offpolicy_e2e [--algo dqn sac] [--dqn-frames 50000]
[--sac-frames 20000] [--rounds 1] [--peers torchrl sb3]``; ``--rounds N`` repeats all the programs
N times in interleaved order (medians; the ratio is the median of the rounds' tdrl/hand ratios);
``--peers`` with no name skips TorchRL and SB3 (quicker iterations); ``--one LIB --algo ALGO``
runs one program and prints its JSON.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import subprocess
import sys
import time
import warnings
from typing import cast

DQN_ENV, SAC_ENV = "CartPole-v1", "Pendulum-v1"
DQN = {
    "frames_per_batch": 256,
    "updates": 128,
    "batch_size": 64,
    "buffer": 100_000,
    "learning_starts": 1000,
    "lr": 2.3e-3,
    "gamma": 0.99,
    "eps_init": 1.0,
    "eps_end": 0.04,
    "eps_frames": 8000,
    "max_grad_norm": 10.0,
    "cells": 256,
}
SAC = {
    "frames_per_batch": 64,
    "updates": 64,
    "batch_size": 256,
    "buffer": 1_000_000,
    "random_frames": 1000,
    "lr": 1e-3,
    "gamma": 0.99,
    "tau": 0.005,
    "cells": 256,
}
EVAL_EPISODES = 10


# --- DQN --------------------------------------------------------------------------------------


def dqn_program(lib: str, frames: int, seed: int = 0) -> dict:
    """DQN on CartPole-v1 written against TorchRL's API; ``lib`` is "tdrl" or "torchrl"."""
    warnings.filterwarnings("ignore")
    import torch
    from tensordict.nn import TensorDictSequential
    from torch import nn

    def imp(name: str):
        return importlib.import_module(f"{lib}.{name}")

    collectors = imp("collectors")
    SyncDataCollector = getattr(collectors, "SyncDataCollector", None) or collectors.Collector
    rb = imp("data.replay_buffers")
    GymEnv = imp("envs.libs.gym").GymEnv
    utils = imp("envs.utils")
    modules = imp("modules")
    objectives = imp("objectives")

    hp = DQN
    torch.manual_seed(seed)
    env = GymEnv(DQN_ENV)
    env.set_seed(seed)
    net = modules.MLP(in_features=4, out_features=2, num_cells=[hp["cells"]] * 2, activation_class=nn.ReLU)
    actor = modules.QValueActor(net, in_keys=["observation"], spec=env.action_spec)
    explore = modules.EGreedyModule(
        env.action_spec, eps_init=hp["eps_init"], eps_end=hp["eps_end"], annealing_num_steps=hp["eps_frames"]
    )
    policy = TensorDictSequential(actor, explore)
    collector = SyncDataCollector(env, policy, frames_per_batch=hp["frames_per_batch"], total_frames=frames)
    buffer = rb.ReplayBuffer(storage=rb.LazyTensorStorage(hp["buffer"]), batch_size=hp["batch_size"])
    loss = objectives.DQNLoss(actor, action_space=env.action_spec, delay_value=True)
    loss.make_value_estimator(gamma=hp["gamma"])
    target = objectives.HardUpdate(loss, value_network_update_interval=1)
    optim = torch.optim.Adam(loss.parameters(), lr=hp["lr"])
    start, cpu_start = time.perf_counter(), time.process_time()
    for batch in collector:
        buffer.extend(batch.reshape(-1))
        explore.step(batch.numel())
        if len(buffer) >= hp["learning_starts"]:
            target.step()
            for _ in range(hp["updates"]):
                value = loss(buffer.sample())["loss"]
                optim.zero_grad()
                value.backward()
                torch.nn.utils.clip_grad_norm_(loss.parameters(), hp["max_grad_norm"])
                optim.step()
        collector.update_policy_weights_()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    collector.shutdown()
    eval_env = GymEnv(DQN_ENV)
    eval_env.set_seed(seed + 1000)
    with utils.set_exploration_type(utils.ExplorationType.DETERMINISTIC), torch.no_grad():
        returns = [eval_env.rollout(500, actor)["next", "reward"].sum().item() for _ in range(EVAL_EPISODES)]
    return {
        "lib": lib,
        "algo": "dqn",
        "frames": frames,
        "wall_s": wall,
        "cpu_s": cpu,
        "eval_return": sum(returns) / len(returns),
    }


def dqn_by_hand(frames: int, seed: int = 0) -> dict:
    """The same DQN in plain torch and gymnasium: preallocated tensors for the buffer, no library."""
    warnings.filterwarnings("ignore")
    import gymnasium as gym
    import torch
    from torch import nn

    hp = DQN
    torch.manual_seed(seed)
    env = gym.make(DQN_ENV)
    obs_np, _ = env.reset(seed=seed)
    obs = torch.as_tensor(obs_np, dtype=torch.float32)

    def mlp() -> nn.Module:
        c = hp["cells"]
        return nn.Sequential(nn.Linear(4, c), nn.ReLU(), nn.Linear(c, c), nn.ReLU(), nn.Linear(c, 2))

    qnet = mlp()
    target = copy.deepcopy(qnet).requires_grad_(False)
    optim = torch.optim.Adam(qnet.parameters(), lr=hp["lr"])
    size = hp["buffer"]
    b_obs, b_next = torch.zeros(size, 4), torch.zeros(size, 4)
    b_act = torch.zeros(size, dtype=torch.long)
    b_rew, b_term = torch.zeros(size), torch.zeros(size)
    stored = cursor = 0
    eps = hp["eps_init"]
    fpb, steps_done = hp["frames_per_batch"], 0
    gen = torch.Generator().manual_seed(seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    while steps_done < frames:
        for _ in range(fpb):
            with torch.no_grad():
                if torch.rand((), generator=gen).item() < eps:
                    action = int(torch.randint(2, (), generator=gen))
                else:
                    action = int(qnet(obs).argmax())
            next_np, reward, terminated, truncated, _ = env.step(action)
            nxt = torch.as_tensor(next_np, dtype=torch.float32)
            b_obs[cursor], b_next[cursor], b_act[cursor] = obs, nxt, action
            b_rew[cursor], b_term[cursor] = float(reward), float(terminated)
            cursor, stored = (cursor + 1) % size, min(stored + 1, size)
            if terminated or truncated:
                obs_np, _ = env.reset()
                nxt = torch.as_tensor(obs_np, dtype=torch.float32)
            obs = nxt
        steps_done += fpb
        eps = max(hp["eps_end"], eps - (hp["eps_init"] - hp["eps_end"]) * fpb / hp["eps_frames"])
        if stored >= hp["learning_starts"]:
            target.load_state_dict(qnet.state_dict())
            for _ in range(hp["updates"]):
                idx = torch.randint(stored, (hp["batch_size"],))
                with torch.no_grad():
                    best = target(b_next[idx]).max(-1).values
                    y = b_rew[idx] + hp["gamma"] * (1.0 - b_term[idx]) * best
                q = qnet(b_obs[idx]).gather(-1, b_act[idx, None]).squeeze(-1)
                value = (q - y).pow(2).mean()
                optim.zero_grad()
                value.backward()
                torch.nn.utils.clip_grad_norm_(qnet.parameters(), hp["max_grad_norm"])
                optim.step()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    eval_env = gym.make(DQN_ENV)
    returns = []
    for episode in range(EVAL_EPISODES):
        o, _ = eval_env.reset(seed=seed + 1000 + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                a = int(qnet(torch.as_tensor(o, dtype=torch.float32)).argmax())
            o, r, term, trunc, _ = eval_env.step(a)
            total += float(r)
            done = term or trunc
        returns.append(total)
    return {
        "lib": "hand",
        "algo": "dqn",
        "frames": frames,
        "wall_s": wall,
        "cpu_s": cpu,
        "eval_return": sum(returns) / len(returns),
    }


def dqn_sb3(frames: int, seed: int = 0) -> dict:
    """Stable-Baselines3's DQN with the same hyperparameters (its target network is synced every
    10 env steps during collection, so before each batch's updates, as in the programs above)."""
    warnings.filterwarnings("ignore")
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN as SB3DQN
    from stable_baselines3.common.evaluation import evaluate_policy

    hp = DQN
    model = SB3DQN(
        "MlpPolicy",
        gym.make(DQN_ENV),
        learning_rate=hp["lr"],
        buffer_size=hp["buffer"],
        learning_starts=hp["learning_starts"],
        batch_size=hp["batch_size"],
        gamma=hp["gamma"],
        train_freq=hp["frames_per_batch"],
        gradient_steps=hp["updates"],
        target_update_interval=10,
        exploration_fraction=hp["eps_frames"] / frames,
        exploration_initial_eps=hp["eps_init"],
        exploration_final_eps=hp["eps_end"],
        max_grad_norm=hp["max_grad_norm"],
        policy_kwargs={"net_arch": [hp["cells"]] * 2, "activation_fn": torch.nn.ReLU},
        seed=seed,
        device="cpu",
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=frames)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    eval_env = gym.make(DQN_ENV)
    eval_env.reset(seed=seed + 1000)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
    return {"lib": "sb3", "algo": "dqn", "frames": frames, "wall_s": wall, "cpu_s": cpu, "eval_return": float(mean)}


# --- SAC --------------------------------------------------------------------------------------


def sac_program(lib: str, frames: int, seed: int = 0) -> dict:
    """SAC on Pendulum-v1 written against TorchRL's API; ``lib`` is "tdrl" or "torchrl"."""
    warnings.filterwarnings("ignore")
    import torch
    from tensordict.nn import TensorDictModule
    from tensordict.nn.distributions import NormalParamExtractor
    from torch import nn

    def imp(name: str):
        return importlib.import_module(f"{lib}.{name}")

    collectors = imp("collectors")
    SyncDataCollector = getattr(collectors, "SyncDataCollector", None) or collectors.Collector
    rb = imp("data.replay_buffers")
    GymEnv = imp("envs.libs.gym").GymEnv
    utils = imp("envs.utils")
    modules = imp("modules")
    objectives = imp("objectives")

    hp = SAC
    torch.manual_seed(seed)
    env = GymEnv(SAC_ENV)
    env.set_seed(seed)
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
    collector = SyncDataCollector(
        env, actor, frames_per_batch=hp["frames_per_batch"], total_frames=frames, init_random_frames=hp["random_frames"]
    )
    buffer = rb.ReplayBuffer(storage=rb.LazyTensorStorage(hp["buffer"]), batch_size=hp["batch_size"])
    loss = objectives.SACLoss(actor, qnet, num_qvalue_nets=2, delay_qvalue=True)
    loss.make_value_estimator(gamma=hp["gamma"])
    target = objectives.SoftUpdate(loss, tau=hp["tau"])
    optim = torch.optim.Adam(loss.parameters(), lr=hp["lr"])
    start, cpu_start = time.perf_counter(), time.process_time()
    for batch in collector:
        buffer.extend(batch.reshape(-1))
        if len(buffer) >= hp["random_frames"]:
            for _ in range(hp["updates"]):
                out = loss(buffer.sample())
                value = out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]
                optim.zero_grad()
                value.backward()
                optim.step()
                target.step()
        collector.update_policy_weights_()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    collector.shutdown()
    eval_env = GymEnv(SAC_ENV)
    eval_env.set_seed(seed + 1000)
    with utils.set_exploration_type(utils.ExplorationType.DETERMINISTIC), torch.no_grad():
        returns = [eval_env.rollout(200, actor)["next", "reward"].sum().item() for _ in range(EVAL_EPISODES)]
    return {
        "lib": lib,
        "algo": "sac",
        "frames": frames,
        "wall_s": wall,
        "cpu_s": cpu,
        "eval_return": sum(returns) / len(returns),
    }


def sac_by_hand(frames: int, seed: int = 0) -> dict:
    """The same SAC in plain torch and gymnasium: one optimizer over actor, critics and log-alpha,
    as the program above (each loss term reaches only its own parameters)."""
    warnings.filterwarnings("ignore")
    import math

    import gymnasium as gym
    import torch
    import torch.nn.functional as F
    from torch import nn

    hp = SAC
    torch.manual_seed(seed)
    env = gym.make(SAC_ENV)
    obs_np, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    obs = torch.as_tensor(obs_np, dtype=torch.float32)
    high = float(env.action_space.high[0])
    c = hp["cells"]

    def mlp(inp: int, out: int) -> nn.Module:
        return nn.Sequential(nn.Linear(inp, c), nn.ReLU(), nn.Linear(c, c), nn.ReLU(), nn.Linear(c, out))

    actor = mlp(3, 2)
    critics = nn.ModuleList([mlp(4, 1), mlp(4, 1)])
    targets = copy.deepcopy(critics).requires_grad_(False)
    log_alpha = nn.Parameter(torch.zeros(()))
    target_entropy = -1.0
    params = [*actor.parameters(), *critics.parameters(), log_alpha]
    optim = torch.optim.Adam(params, lr=hp["lr"])

    def act(o: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw_scale = actor(o).chunk(2, -1)
        scale = F.softplus(raw_scale + math.log(math.e - 1)).clamp_min(1e-4)  # 1 at 0, as NormalParamExtractor's
        u = loc if deterministic else loc + scale * torch.randn_like(loc)
        a = torch.tanh(u)
        logp = (torch.distributions.Normal(loc, scale).log_prob(u) - torch.log1p(-a.pow(2) + 1e-6)).sum(-1)
        return a * high, logp

    def q(nets: nn.ModuleList, o: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = torch.cat([o, a], -1)
        return torch.stack([n(x).squeeze(-1) for n in nets])

    size = hp["buffer"]
    b_obs, b_next, b_act = torch.zeros(size, 3), torch.zeros(size, 3), torch.zeros(size, 1)
    b_rew, b_term = torch.zeros(size), torch.zeros(size)
    stored = cursor = 0
    fpb, steps_done, tau = hp["frames_per_batch"], 0, hp["tau"]
    start, cpu_start = time.perf_counter(), time.process_time()
    while steps_done < frames:
        for _ in range(fpb):
            if steps_done < hp["random_frames"]:
                action = torch.as_tensor(env.action_space.sample(), dtype=torch.float32)
            else:
                with torch.no_grad():
                    action = act(obs)[0]
            next_np, reward, terminated, truncated, _ = env.step(action.numpy())
            nxt = torch.as_tensor(next_np, dtype=torch.float32)
            b_obs[cursor], b_next[cursor], b_act[cursor] = obs, nxt, action
            b_rew[cursor], b_term[cursor] = float(reward), float(terminated)
            cursor, stored = (cursor + 1) % size, min(stored + 1, size)
            if terminated or truncated:
                obs_np, _ = env.reset()
                nxt = torch.as_tensor(obs_np, dtype=torch.float32)
            obs = nxt
            steps_done += 1
        if stored < hp["random_frames"]:
            continue
        for _ in range(hp["updates"]):
            idx = torch.randint(stored, (hp["batch_size"],))
            o, a, r, o2, term = b_obs[idx], b_act[idx], b_rew[idx], b_next[idx], b_term[idx]
            alpha = log_alpha.exp().detach()
            with torch.no_grad():
                a2, logp2 = act(o2)
                q_next = q(targets, o2, a2).min(0).values - alpha * logp2
                y = r + hp["gamma"] * (1.0 - term) * q_next
            loss_q = (q(critics, o, a) - y).pow(2).mean(-1).sum()  # (as SACLoss: summed over the two critics)
            a_new, logp = act(o)
            critics.requires_grad_(False)  # the actor's loss moves the actor only
            q_new = q(critics, o, a_new).min(0).values
            critics.requires_grad_(True)
            loss_actor = (alpha * logp - q_new).mean()
            loss_alpha = -(log_alpha * (logp.detach() + target_entropy)).mean()
            optim.zero_grad()
            (loss_q + loss_actor + loss_alpha).backward()
            optim.step()
            with torch.no_grad():
                for p, t in zip(critics.parameters(), targets.parameters()):
                    t.lerp_(p, tau)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    eval_env = gym.make(SAC_ENV)
    returns = []
    for episode in range(EVAL_EPISODES):
        o_np, _ = eval_env.reset(seed=seed + 1000 + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                a = act(torch.as_tensor(o_np, dtype=torch.float32), deterministic=True)[0]
            o_np, r, term, trunc, _ = eval_env.step(a.numpy())
            total += float(r)
            done = term or trunc
        returns.append(total)
    return {
        "lib": "hand",
        "algo": "sac",
        "frames": frames,
        "wall_s": wall,
        "cpu_s": cpu,
        "eval_return": sum(returns) / len(returns),
    }


def sac_sb3(frames: int, seed: int = 0) -> dict:
    """Stable-Baselines3's SAC with the same hyperparameters."""
    warnings.filterwarnings("ignore")
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.evaluation import evaluate_policy

    hp = SAC
    model = SB3SAC(
        "MlpPolicy",
        gym.make(SAC_ENV),
        learning_rate=hp["lr"],
        buffer_size=hp["buffer"],
        learning_starts=hp["random_frames"],
        batch_size=hp["batch_size"],
        tau=hp["tau"],
        gamma=hp["gamma"],
        train_freq=hp["frames_per_batch"],
        gradient_steps=hp["updates"],
        ent_coef="auto",
        policy_kwargs={"net_arch": [hp["cells"]] * 2, "activation_fn": torch.nn.ReLU},
        seed=seed,
        device="cpu",
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=frames)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    eval_env = gym.make(SAC_ENV)
    eval_env.reset(seed=seed + 1000)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
    return {"lib": "sb3", "algo": "sac", "frames": frames, "wall_s": wall, "cpu_s": cpu, "eval_return": float(mean)}


# --- driver -----------------------------------------------------------------------------------

PROGRAMS = {
    "dqn": {"hand": dqn_by_hand, "sb3": dqn_sb3, "lib": dqn_program},
    "sac": {"hand": sac_by_hand, "sb3": sac_sb3, "lib": sac_program},
}


def one(algo: str, lib: str, frames: int, seed: int) -> dict:
    table = PROGRAMS[algo]
    if lib in ("hand", "sb3"):
        return table[lib](frames, seed)
    return table["lib"](lib, frames, seed)


def _in_subprocess(algo: str, lib: str, frames: int, seed: int = 0) -> dict | None:
    cmd = [sys.executable, "-m", "benchmarks.bench_offpolicy_e2e", "--one", lib, "--algo", algo]
    cmd += ["--frames", str(frames), "--seed", str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"[bench_offpolicy_e2e] {algo} {lib} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(
    algos: tuple[str, ...] = ("dqn", "sac"),
    dqn_frames: int = 50_000,
    sac_frames: int = 20_000,
    rounds: int = 1,
    peers: tuple[str, ...] = ("torchrl", "sb3"),
) -> list[dict]:
    """Each program in its own subprocess, ``rounds`` times in interleaved order; medians of the rounds."""
    import os
    from statistics import median

    from benchmarks._common import row

    rows = []
    for algo in algos:
        frames = dqn_frames if algo == "dqn" else sac_frames
        libs = ("tdrl", "hand", *peers)
        runs: dict[str, list[dict]] = {lib: [] for lib in libs}
        for _ in range(rounds):
            for lib in libs:
                result = _in_subprocess(algo, lib, frames)
                if result is not None:
                    runs[lib].append(result)
        tdrl, hand = runs["tdrl"], runs["hand"]
        if len(tdrl) != rounds or len(hand) != rounds:
            raise RuntimeError(f"the tdrl or the hand-written {algo} run failed; see stderr")
        wall = {lib: median(r["wall_s"] for r in rs) if rs else None for lib, rs in runs.items()}
        returns = ", ".join(f"{lib} {median(r['eval_return'] for r in rs):.1f}" for lib, rs in runs.items() if rs)
        cpu = ", ".join(f"{lib} {median(r['cpu_s'] for r in rs):.1f}" for lib, rs in runs.items() if rs)
        task = DQN_ENV if algo == "dqn" else SAC_ENV
        result_row = row(
            f"{algo.upper()} on {task}, {frames} frames end to end, wall s (vs the same program in plain torch)",
            cast(float, wall["tdrl"]),
            cast(float, wall["hand"]),
            "s",
            ">= 0.95",
            higher_is_better=False,
            torchrl=wall.get("torchrl"),
            sb3=wall.get("sb3"),
            note=f"eval return (mean of {EVAL_EPISODES} episodes, greedy / mean action; median of {rounds} "
            f"round(s)): {returns}; CPU s of the training (one thread: the wall time on an idle machine): {cpu}; "
            f"load average at the end {os.getloadavg()[0]:.2f}",
        )
        # each round's tdrl and hand runs are neighbours in time: the ratio is the median of the rounds' ratios
        result_row["ratio"] = median(h["wall_s"] / t["wall_s"] for t, h in zip(tdrl, hand))
        rows.append(result_row)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--algo", nargs="+", choices=["dqn", "sac"], default=["dqn", "sac"])
    parser.add_argument("--one", choices=["tdrl", "hand", "torchrl", "sb3"])
    parser.add_argument("--frames", type=int, help="with --one: the frames of that run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dqn-frames", type=int, default=50_000)
    parser.add_argument("--sac-frames", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all programs (medians)")
    parser.add_argument(
        "--peers", nargs="*", choices=["torchrl", "sb3"], default=["torchrl", "sb3"], help="peer programs to run too"
    )
    args = parser.parse_args()
    if args.one:
        import torch

        torch.set_num_threads(1)
        algo = args.algo[0]
        frames = args.frames or (args.dqn_frames if algo == "dqn" else args.sac_frames)
        print(json.dumps(one(algo, args.one, frames, args.seed)))
    else:
        from benchmarks._common import print_rows

        rows = run(tuple(args.algo), args.dqn_frames, args.sac_frames, args.rounds, tuple(args.peers))
        print_rows(rows)
        for r in rows:
            print(r["note"])
