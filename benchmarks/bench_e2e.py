"""The seed PPO tutorial end to end, at 50k frames: tdrl vs TorchRL 0.14.1 vs Stable-Baselines3.

tdrl and TorchRL run the very same training function: it imports the library by name, which
is possible only because tdrl keeps TorchRL's public API. The reference is the same program
written by hand in plain torch and gymnasium (``hand_tutorial``): what the tutorial costs with
no library at all. Stable-Baselines3 runs its own PPO
with the same hyperparameters (3x256 tanh MLPs, 1000 steps per rollout, minibatch 64,
10 epochs, lr 3e-4 with cosine/linear decay, gamma 0.99, lambda 0.95, clip 0.2, entropy
1e-4, value coefficient 1, grad-norm 1). Each run happens in its own subprocess, one after
the other, so they do not compete for the 2 cores.

Bar (issue 8): tdrl >= 3x faster than TorchRL and >= 1.5x faster than SB3, with an eval
return no worse at equal frames.

Run: ``python -m benchmarks.bench_e2e [--frames 50000] [--pairs 3]``: ``--pairs`` tdrl and
plain-torch runs alternate, and the row is the pair with the median ratio (one run's wall time
moves by a few percent from run to run on this machine); TorchRL and SB3 run once. The eval return of one run is
mostly seed noise at 50k frames; ``python -m benchmarks.bench_e2e --returns 12`` trains the
seed tutorial on tdrl and the hand-written program on seeds 0-11 (two runs at a time: wall
times are not comparable, returns are), writes ``benchmarks/e2e_seeds_tdrl_hand.json`` after
each run, and prints the medians and a rank-sum test of the first program against the others.
``--libs tdrl,torchrl`` compares the libraries (``e2e_seeds.json``); ``hand_fast`` is the
earlier hand-written program and ``tdrl_fast`` the tutorial on tdrl with its choices (see
:func:`hand_tutorial` and :func:`seed_tutorial`). ``benchmarks/lockstep_e2e.py`` runs the
tutorial and the hand-written program side by side from equal starts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ENV = "InvertedDoublePendulum-v4"


def seed_tutorial(lib: str, frames: int, seed: int = 0, variant: str = "tutorial") -> dict:
    """The seed tutorial's program, against ``lib`` ("tdrl" or "torchrl").

    As the tutorial writes it: ``device`` passed to the env, the layers and the collector,
    each minibatch moved ``.to(device)``, per-batch logs and a tqdm bar, and an evaluation
    rollout (up to 1,000 steps under ``ExplorationType.MEAN``) every 10 batches. Left out:
    the tutorial's printouts before training and its plots.

    ``variant="fast"`` makes, with the library's own arguments, the choices of the earlier
    hand-written program (``hand_tutorial(variant="fast")``): statistics of the observations
    after each step (``init_stats(key=("next", "observation"))``), the scale floor 1e-4
    (``NormalParamExtractor(scale_mapping="biased_softplus_1.0_0.0001")``), a fresh permutation
    per epoch (``SamplerWithoutReplacement(drop_last=True)``), and the evaluations on a second
    env with the same statistics under ``ExplorationType.DETERMINISTIC`` (the squashed location).
    """
    if variant not in ("tutorial", "fast"):
        raise ValueError(f"seed_tutorial: variant must be 'tutorial' or 'fast', got {variant!r}")
    fast = variant == "fast"
    warnings.filterwarnings("ignore")
    from collections import defaultdict

    import torch
    from tensordict.nn import TensorDictModule
    from tensordict.nn.distributions import NormalParamExtractor
    from torch import nn
    from tqdm import tqdm

    def imp(name: str):
        return importlib.import_module(f"{lib}.{name}")

    collectors = imp("collectors")
    # TorchRL 0.14 renamed SyncDataCollector to Collector; tdrl accepts both names
    SyncDataCollector = getattr(collectors, "SyncDataCollector", None) or collectors.Collector
    ReplayBuffer = imp("data.replay_buffers").ReplayBuffer
    SamplerWithoutReplacement = imp("data.replay_buffers.samplers").SamplerWithoutReplacement
    LazyTensorStorage = imp("data.replay_buffers.storages").LazyTensorStorage
    envs = imp("envs")
    GymEnv = imp("envs.libs.gym").GymEnv
    utils = imp("envs.utils")
    modules = imp("modules")
    ClipPPOLoss = imp("objectives").ClipPPOLoss
    GAE = imp("objectives.value").GAE

    torch.manual_seed(seed)
    device = torch.device("cpu")
    frames_per_batch, sub_batch_size, num_epochs, num_cells = 1000, 64, 10, 256
    start = time.perf_counter()
    env = envs.TransformedEnv(
        GymEnv(ENV, device=device),
        envs.Compose(envs.ObservationNorm(in_keys=["observation"]), envs.DoubleToFloat(), envs.StepCounter()),
    )
    if fast:
        env.transform[0].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0, key=("next", "observation"))
    else:
        env.transform[0].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0)
    env.set_seed(seed)
    eval_env, eval_type = env, utils.ExplorationType.MEAN
    if fast:
        norm = env.transform[0]
        eval_env = envs.TransformedEnv(
            GymEnv(ENV, device=device),
            envs.Compose(
                envs.ObservationNorm(loc=norm.loc.clone(), scale=norm.scale.clone(), in_keys=["observation"]),
                envs.DoubleToFloat(),
                envs.StepCounter(),
            ),
        )
        eval_env.set_seed(seed + 1)
        eval_type = utils.ExplorationType.DETERMINISTIC

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

    policy = modules.ProbabilisticActor(
        module=TensorDictModule(
            nn.Sequential(
                mlp(2 * env.action_spec.shape[-1]),
                NormalParamExtractor(scale_mapping="biased_softplus_1.0_0.0001") if fast else NormalParamExtractor(),
            ),
            in_keys=["observation"],
            out_keys=["loc", "scale"],
        ),
        spec=env.action_spec,
        in_keys=["loc", "scale"],
        distribution_class=modules.TanhNormal,
        distribution_kwargs={"low": env.action_spec.space.low, "high": env.action_spec.space.high},
        return_log_prob=True,
    )
    value = modules.ValueOperator(module=mlp(1), in_keys=["observation"])
    policy(env.reset())
    value(env.reset())
    collector = SyncDataCollector(
        env, policy, frames_per_batch=frames_per_batch, total_frames=frames, split_trajs=False, device=device
    )
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(max_size=frames_per_batch), sampler=SamplerWithoutReplacement(drop_last=fast)
    )
    advantage = GAE(gamma=0.99, lmbda=0.95, value_network=value, average_gae=True)
    loss_module = ClipPPOLoss(
        actor_network=policy,
        critic_network=value,
        clip_epsilon=0.2,
        entropy_bonus=True,
        entropy_coeff=1e-4,
        critic_coeff=1.0,
        loss_critic_type="smooth_l1",
    )
    optim = torch.optim.Adam(loss_module.parameters(), 3e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optim, frames // frames_per_batch, 0.0)
    logs = defaultdict(list)
    pbar = tqdm(total=frames)
    eval_str = ""
    collect_time = 0.0
    t0 = time.perf_counter()
    for i, batch in enumerate(collector):
        collect_time += time.perf_counter() - t0
        for _ in range(num_epochs):
            advantage(batch)
            buffer.extend(batch.reshape(-1).cpu())
            for _ in range(frames_per_batch // sub_batch_size):
                losses = loss_module(buffer.sample(sub_batch_size).to(device))
                loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), 1.0)
                optim.step()
                optim.zero_grad()
        logs["reward"].append(batch["next", "reward"].mean().item())
        pbar.update(batch.numel())
        logs["step_count"].append(batch["step_count"].max().item())
        logs["lr"].append(optim.param_groups[0]["lr"])
        if i % 10 == 0:
            with utils.set_exploration_type(eval_type), torch.no_grad():
                rollout = eval_env.rollout(1000, policy)
                logs["eval reward (sum)"].append(rollout["next", "reward"].sum().item())
                logs["eval step_count"].append(rollout["step_count"].max().item())
                eval_str = f"eval cumulative reward: {logs['eval reward (sum)'][-1]: 4.4f}"
                del rollout
        pbar.set_description(f"{eval_str}, average reward={logs['reward'][-1]: 4.4f}, lr {logs['lr'][-1]: 4.4f}")
        scheduler.step()
        t0 = time.perf_counter()
    pbar.close()
    train_time = time.perf_counter() - start
    with utils.set_exploration_type(eval_type), torch.no_grad():
        returns = [eval_env.rollout(1000, policy)["next", "reward"].sum().item() for _ in range(5)]
    collector.shutdown()
    return {
        "lib": f"{lib}_fast" if fast else lib,
        "frames": frames,
        "wall_s": train_time,
        "collect_fps": frames / collect_time,
        "eval_return": sum(returns) / len(returns),
        "last_train_eval": logs["eval reward (sum)"][-1],
    }


def hand_tutorial(frames: int, seed: int = 0, variant: str = "tutorial") -> dict:
    """The seed tutorial written by hand: gymnasium, plain torch, numpy GAE, no RL library.

    Same program as :func:`seed_tutorial`: observation statistics from 1,000 random steps,
    3x256 tanh MLPs, a tanh-squashed Normal policy, 1,000 frames per batch, GAE recomputed
    before each of 10 epochs, 15 minibatches of 64 per epoch, clipped PPO with a one-sample
    entropy estimate, smooth-L1 critic, gradient clipping, Adam with cosine decay. Per-batch
    logs and a tqdm bar; an evaluation episode (up to 1,000 steps) every 10 batches.

    ``variant="tutorial"`` (default) makes the choices the tutorial's library calls make, so that
    the two programs are the same algorithm (``benchmarks/lockstep_e2e.py`` runs both from equal
    weights, statistics, env states and random draws and finds them equal to float noise):
    statistics over the rollout's observations before each step (reset states included, final
    ones not: ``ObservationNorm.init_stats``); scale ``softplus(x + b) + 0.01``
    (``NormalParamExtractor``); minibatches drawn as ``SamplerWithoutReplacement`` does (one
    permutation walked across epochs: an epoch's 40 left-over items are the next epoch's first,
    short, minibatch); the evaluation every 10 batches on the training env, under
    ``ExplorationType.MEAN`` (the collection then resumes from the observation it last saw, while
    the env is where the evaluation left it), and the final one under ``MEAN`` too.

    ``variant="fast"`` is the earlier hand program, which learned faster at 50k frames (median
    2,765 against ~880, ``RESULTS.md``): statistics over the observations after each step,
    scale ``softplus(x + b).clamp_min(1e-4)``, a fresh permutation each epoch (40 items skipped),
    evaluation on a second env with the squashed location.
    """
    if variant not in ("tutorial", "fast"):
        raise ValueError(f"hand_tutorial: variant must be 'tutorial' or 'fast', got {variant!r}")
    as_tutorial = variant == "tutorial"
    warnings.filterwarnings("ignore")
    import math
    from collections import defaultdict

    import gymnasium as gym
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn
    from tqdm import tqdm

    torch.manual_seed(seed)
    frames_per_batch, sub_batch_size, num_epochs, num_cells = 1000, 64, 10, 256
    gamma, lmbda, clip, ent_coef = 0.99, 0.95, 0.2, 1e-4
    start = time.perf_counter()
    env = gym.make(ENV)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    seen = []
    while len(seen) < 1000:  # ObservationNorm.init_stats by hand
        if as_tutorial:
            seen.append(obs)  # the observation the step starts from (a rollout's "observation")
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if not as_tutorial:
            seen.append(obs)
        if terminated or truncated:
            obs, _ = env.reset()
    seen = np.stack(seen)
    mean, std = seen.mean(0), seen.std(0, ddof=1)
    std[std <= 1e-6] = 1.0
    mean_t, inv_std_t = torch.from_numpy(mean), torch.from_numpy(1.0 / std)
    obs_dim = mean.shape[0]

    def mlp(out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(obs_dim, num_cells),
            nn.Tanh(),
            nn.Linear(num_cells, num_cells),
            nn.Tanh(),
            nn.Linear(num_cells, num_cells),
            nn.Tanh(),
            nn.Linear(num_cells, out),
        )

    actor, critic = mlp(2), mlp(1)
    params = [*actor.parameters(), *critic.parameters()]
    optim = torch.optim.Adam(params, 3e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optim, frames // frames_per_batch, 0.0)
    lim = 1.0 - torch.finfo(torch.float32).resolution
    half_log_2pi, log2 = 0.5 * math.log(2 * math.pi), math.log(2.0)
    # the Normal's quantiles at 128 equal-probability bin centres: ExplorationType.MEAN of TanhNormal
    quantiles = torch.special.ndtri((torch.arange(128, dtype=torch.float64) + 0.5) / 128).float()

    def head(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = actor(x).chunk(2, -1)
        if as_tutorial:  # NormalParamExtractor: softplus(x + b) + 0.01, 1 at x = 0
            return loc, F.softplus(raw + math.log(math.expm1(0.99))) + 0.01
        return loc, F.softplus(raw + math.log(math.e - 1.0)).clamp_min(1e-4)

    def eval_action(x: torch.Tensor) -> torch.Tensor:
        loc, scale = head(x)
        if not as_tutorial:
            return loc.tanh()
        return torch.addcmul(loc.unsqueeze(-1), scale.unsqueeze(-1), quantiles).tanh().mean(-1)

    def log_prob(u: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        z = (u - loc) / scale
        return (-0.5 * z * z - scale.log() - half_log_2pi - 2.0 * (log2 - u - F.softplus(-2.0 * u))).sum(-1)

    def normalize(o: np.ndarray) -> torch.Tensor:
        return ((torch.from_numpy(o) - mean_t) * inv_std_t).float()

    @torch.no_grad()
    def episode(env: gym.Env) -> float:
        obs, _ = env.reset()
        total = 0.0
        for _ in range(1000):
            obs, reward, terminated, truncated, _ = env.step(eval_action(normalize(obs)).numpy())
            total += float(reward)
            if terminated or truncated:
                break
        return total

    if as_tutorial:
        eval_env = env  # the tutorial evaluates on the env it trains on
    else:
        eval_env = gym.make(ENV)
        eval_env.reset(seed=seed + 1)
    logs = defaultdict(list)
    pbar = tqdm(total=frames)

    n = frames_per_batch
    obs_buf, next_buf = torch.empty(n, obs_dim), torch.empty(n, obs_dim)
    act_buf, logp_buf = torch.empty(n, 1), torch.empty(n)
    rew, term, done = np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32)
    obs, _ = env.reset()
    x = normalize(obs)
    perm: torch.Tensor | None = None
    pos = 0
    collect_time = 0.0
    for i in range(frames // frames_per_batch):
        t0 = time.perf_counter()
        with torch.no_grad():
            for t in range(n):
                loc, scale = head(x)
                u = loc + scale * torch.randn_like(loc)
                a = u.tanh().clamp(-lim, lim)
                obs, reward, terminated, truncated, _ = env.step(a.numpy())
                obs_buf[t], act_buf[t], logp_buf[t] = x, a, log_prob(a.atanh(), loc, scale)
                next_buf[t] = normalize(obs)
                rew[t], term[t], done[t] = reward, terminated, terminated or truncated
                if terminated or truncated:
                    obs, _ = env.reset()
                x = normalize(obs)
        collect_time += time.perf_counter() - t0
        for _ in range(num_epochs):
            with torch.no_grad():
                value = critic(obs_buf).squeeze(-1).numpy()
                next_value = critic(next_buf).squeeze(-1).numpy()
            delta = rew + gamma * (1.0 - term) * next_value - value
            adv = np.empty(n, np.float32)
            last = 0.0
            for t in range(n - 1, -1, -1):
                last = delta[t] + gamma * lmbda * (1.0 - done[t]) * last
                adv[t] = last
            target = torch.from_numpy(adv + value).unsqueeze(-1)
            # GAE(average_gae=True) divides by the sample std (torch's), the earlier program by numpy's
            advantage = torch.from_numpy((adv - adv.mean()) / (adv.std(ddof=int(as_tutorial)) + 1e-8)).unsqueeze(-1)
            if not as_tutorial:
                perm, pos = torch.randperm(n), 0
            for _ in range(n // sub_batch_size):
                if perm is None:
                    perm, pos = torch.randperm(n), 0
                idx = perm[pos : pos + sub_batch_size]
                pos += len(idx)
                if as_tutorial and pos == n:  # SamplerWithoutReplacement: a new permutation once one is used up
                    perm = None
                o, a_old, lp_old = obs_buf[idx], act_buf[idx], logp_buf[idx]
                loc, scale = head(o)
                lp = log_prob(a_old.atanh(), loc, scale)
                entropy = -log_prob(loc + scale * torch.randn_like(loc), loc, scale)
                ratio = (lp - lp_old).exp().unsqueeze(-1)
                adv_b = advantage[idx]
                gain = torch.minimum(ratio * adv_b, ratio.clamp(1 - clip, 1 + clip) * adv_b)
                loss = -gain.mean() + F.smooth_l1_loss(critic(o), target[idx]) - ent_coef * entropy.mean()
                loss.backward()
                nn.utils.clip_grad_norm_(params, 1.0)
                optim.step()
                optim.zero_grad()
        logs["reward"].append(float(rew.mean()))
        pbar.update(n)
        logs["lr"].append(optim.param_groups[0]["lr"])
        if i % 10 == 0:
            logs["eval reward (sum)"].append(episode(eval_env))
        pbar.set_description(f"eval {logs['eval reward (sum)'][-1]: 4.4f}, average reward={logs['reward'][-1]: 4.4f}")
        scheduler.step()
    pbar.close()
    train_time = time.perf_counter() - start
    returns = [episode(env) for _ in range(5)]
    return {
        "lib": "hand",
        "frames": frames,
        "wall_s": train_time,
        "collect_fps": frames / collect_time,
        "eval_return": sum(returns) / len(returns),
        "last_train_eval": logs["eval reward (sum)"][-1],
    }


def sb3_ppo(frames: int, seed: int = 0) -> dict:
    """Stable-Baselines3's PPO with the seed's hyperparameters, evaluated every 10 rollouts."""
    warnings.filterwarnings("ignore")
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    torch.manual_seed(seed)
    start = time.perf_counter()
    venv = VecNormalize(DummyVecEnv([lambda: gym.make(ENV)]), norm_reward=False)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=1000,
        batch_size=64,
        n_epochs=10,
        learning_rate=lambda progress: 3e-4 * progress,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=1e-4,
        vf_coef=1.0,
        max_grad_norm=1.0,
        seed=seed,
        device="cpu",
        policy_kwargs={"net_arch": {"pi": [256] * 3, "vf": [256] * 3}, "activation_fn": torch.nn.Tanh},
    )
    # the tutorial's evaluation every 10 batches: one deterministic episode on an env sharing
    # the observation statistics (EvalCallback syncs them before each evaluation)
    eval_env = VecNormalize(DummyVecEnv([lambda: gym.make(ENV)]), norm_reward=False, training=False)
    evaluate = EvalCallback(eval_env, eval_freq=10 * 1000, n_eval_episodes=1, deterministic=True, verbose=0)
    model.learn(total_timesteps=frames, callback=evaluate)
    train_time = time.perf_counter() - start
    venv.training = False
    returns = []
    for _ in range(5):
        obs, total = venv.reset(), 0.0
        for _ in range(1000):
            obs, _reward, done, _ = venv.step(model.predict(obs, deterministic=True)[0])
            total += float(venv.get_original_reward()[0])
            if done[0]:
                break
        returns.append(total)
    return {
        "lib": "sb3",
        "frames": frames,
        "wall_s": train_time,
        "eval_return": float(np.mean(returns)),
        "last_train_eval": float(evaluate.last_mean_reward),
    }


def _in_subprocess(lib: str, frames: int, seed: int = 0) -> dict | None:
    cmd = [sys.executable, "-m", "benchmarks.bench_e2e", "--one", lib, "--frames", str(frames), "--seed", str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"[bench_e2e] {lib} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_pair(pairs: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    """The (tdrl, hand) pair whose wall-time ratio hand/tdrl is the median of the pairs' (the lower
    middle one for an even count): one row's figure from interleaved runs, not from one draw."""
    if not pairs:
        raise ValueError("median_pair: no (tdrl, hand) pair ran")
    ordered = sorted(pairs, key=lambda p: p[1]["wall_s"] / p[0]["wall_s"])
    return ordered[(len(ordered) - 1) // 2]


def run(frames: int = 50_000, pairs: int = 3) -> list[dict]:
    """The e2e rows: ``pairs`` interleaved tdrl / plain-torch runs (the median ratio's pair makes the
    row), then TorchRL and SB3 once each; every run in its own subprocess, one after the other."""
    from benchmarks._common import row

    runs: list[tuple[dict, dict]] = []
    for _ in range(pairs):
        ours, by_hand = _in_subprocess("tdrl", frames), _in_subprocess("hand", frames)
        if ours is None or by_hand is None:
            raise RuntimeError("the tdrl or the hand-written run failed; see stderr")
        runs.append((ours, by_hand))
    results = {lib: _in_subprocess(lib, frames) for lib in ("torchrl", "sb3")}
    tdrl, hand = median_pair(runs)
    spread = ", ".join(f"{h['wall_s'] / t['wall_s']:.3f}" for t, h in runs)
    peers = {
        "torchrl": results["torchrl"]["wall_s"] if results["torchrl"] else None,
        "sb3": results["sb3"]["wall_s"] if results["sb3"] else None,
    }
    rows = [
        row(
            f"seed PPO tutorial, {frames} frames, wall s (vs the same program in plain torch)",
            tdrl["wall_s"],
            hand["wall_s"],
            "s",
            ">= 0.95",  # issue 22: zero library overhead end to end
            higher_is_better=False,
            **peers,
            note=f"median of {len(runs)} interleaved pairs (ratios {spread}); "
            f"collection: tdrl {tdrl['collect_fps']:.0f} frames/s, by hand {hand['collect_fps']:.0f} frames/s; "
            f"eval return: tdrl {tdrl['eval_return']:.1f}, by hand {hand['eval_return']:.1f} "
            "(both under ExplorationType.MEAN)",
        )
    ]
    for peer, bar in (("torchrl", ">= 3"), ("sb3", ">= 1.5")):
        other = results[peer]
        if other is None:
            continue
        rows.append(
            row(
                f"seed PPO tutorial, {frames} frames, wall s (vs {peer})",
                tdrl["wall_s"],
                other["wall_s"],
                "s",
                bar,
                higher_is_better=False,
                **peers,
                note=f"eval return (mean of 5 episodes under ExplorationType.MEAN): tdrl {tdrl['eval_return']:.1f}, "
                f"{peer} {other['eval_return']:.1f}; the same program in plain torch is "
                f"{other['wall_s'] / hand['wall_s']:.2f}x {peer} (the ratio a library with no overhead would reach)",
            )
        )
    return rows


def rank_sum(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mann-Whitney U of ``a`` against ``b`` and its two-sided p-value (normal approximation,
    ties averaged): is one library's eval return stochastically larger than the other's?"""
    pooled = sorted((x, i) for i, x in enumerate(a + b))
    ranks = [0.0] * len(pooled)
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[pooled[k][1]] = (i + j) / 2 + 1
        i = j + 1
    n, m = len(a), len(b)
    u = sum(ranks[:n]) - n * (n + 1) / 2
    sd = math.sqrt(n * m * (n + m + 1) / 12)
    p = math.erfc(abs(u - n * m / 2) / sd / math.sqrt(2)) if sd else 1.0
    return u, p


def compare_returns(
    seeds: int, frames: int, jobs: int = 2, out: Path | None = None, libs: tuple[str, ...] = ("tdrl", "hand")
) -> list[dict]:
    """Each of ``libs`` on seeds ``0..seeds-1``; writes the runs to ``out`` (JSON) and prints the
    medians and a rank-sum test of the first against each other."""
    tasks = [(lib, seed) for seed in range(seeds) for lib in libs]
    note = (
        f"{', '.join(libs)}: the seed tutorial at {frames} frames, seeds 0-{seeds - 1}, {jobs} runs at a time "
        f"(started {time.strftime('%Y-%m-%d %H:%M')}); wall times are not comparable, returns are"
    )
    runs: list[dict] = []

    def one(task: tuple[str, int]) -> None:
        result = _in_subprocess(task[0], frames, task[1])
        if result is not None:
            runs.append(dict(result, seed=task[1]))
            if out is not None:  # after each run, so that a run cut short keeps what finished
                out.write_text(json.dumps({"note": note, "runs": runs}, indent=1) + "\n")

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, tasks))
    by_lib = {lib: [r["eval_return"] for r in runs if r["lib"] == lib] for lib in libs}
    for lib, returns in by_lib.items():
        ordered = sorted(returns)
        mid = len(ordered) // 2
        median = (ordered[mid] + ordered[~mid]) / 2 if ordered else float("nan")
        print(f"{lib}: median {median:.0f} over {len(ordered)} seeds: {[round(x) for x in ordered]}")
    first = libs[0]
    for other in libs[1:]:
        if by_lib[first] and by_lib[other]:
            u, p = rank_sum(by_lib[first], by_lib[other])
            print(
                f"Mann-Whitney U ({first} vs {other}) = {u:.1f} of {len(by_lib[first]) * len(by_lib[other])}, "
                f"two-sided p = {p:.2f}"
            )
    return runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--one", choices=["tdrl", "tdrl_fast", "hand", "hand_fast", "torchrl", "sb3"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=3, help="interleaved tdrl / plain-torch runs for the e2e row")
    parser.add_argument("--returns", type=int, metavar="SEEDS", help="compare eval returns over this many seeds")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--libs",
        default="tdrl,hand",
        help="programs for --returns, comma-separated (tdrl, tdrl_fast, hand, hand_fast, torchrl)",
    )
    args = parser.parse_args()
    if args.one:
        import torch

        torch.set_num_threads(1)
        if args.one == "sb3":
            out = sb3_ppo(args.frames, args.seed)
        elif args.one in ("hand", "hand_fast"):
            out = hand_tutorial(args.frames, args.seed, "fast" if args.one == "hand_fast" else "tutorial")
            out["lib"] = args.one
        elif args.one == "tdrl_fast":
            out = seed_tutorial("tdrl", args.frames, args.seed, "fast")
        else:
            out = seed_tutorial(args.one, args.frames, args.seed)
        print(json.dumps(out))
    elif args.returns:
        libs = tuple(args.libs.split(","))
        name = "e2e_seeds.json" if libs == ("tdrl", "torchrl") else f"e2e_seeds_{'_'.join(libs)}.json"
        compare_returns(args.returns, args.frames, args.jobs, Path(__file__).with_name(name), libs)
    else:
        from benchmarks._common import print_rows

        rows = run(args.frames, args.pairs)
        print_rows(rows)
        for r in rows:
            print(r["note"])
