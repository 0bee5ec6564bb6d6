"""Where the seed tutorial's training time goes: each part of tdrl's loop against the same part
of the plain-torch program (``bench_e2e.hand_tutorial``), in one process.

One batch of 1,000 frames is collected once with tdrl; both programs then train on it. Parts
(per batch of the tutorial, i.e. 10 epochs of 15 minibatches of 64):

- ``collect``: the next 1,000-frame batch of tdrl's ``SyncDataCollector`` (the seed's env and
  transforms, the policy in the loop) against the hand program's collection loop (gymnasium,
  normalization, the same actor head and log-probability, stores into preallocated tensors);
- ``eval``: the tutorial's evaluation rollout (``env.rollout(1000, policy)`` under
  ``ExplorationType.MEAN``) against the hand program's evaluation episode, per 1,000 steps
  (episodes run until 1,000 steps in all: their lengths differ between the two policies);
- ``gae``: tdrl's ``GAE(batch)`` ten times against the hand program's two critic passes and
  numpy recursion ten times;
- ``buffer``: ``buffer.extend(batch.reshape(-1).cpu())`` then 15 ``buffer.sample(64).to(device)``,
  ten times, against a ``randperm`` and 15 index gathers of the four tensors the hand loss reads;
- ``loss``: 150 ClipPPOLoss forward + backward against the hand-written loss on the same
  minibatches;
- ``step``: 150 ``clip_grad_norm_`` + Adam step + ``zero_grad``, the same code in both
  (the tutorial passes ``loss_module.parameters()``, the hand program a list);
- ``log``: the per-batch logging reads.

Figures are medians over interleaved rounds of thread CPU ms per batch (on an idle machine,
the wall time). ``--profile`` also prints a cProfile of tdrl's training loop on the batch.

Run: ``python -m benchmarks.profile_e2e [--rounds 7] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import statistics
import time
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.bench_e2e import ENV

EPOCHS, MINI, SUB, CELLS = 10, 15, 64, 256


def _tdrl_setup() -> dict:
    from tensordict.nn import TensorDictModule
    from tensordict.nn.distributions import NormalParamExtractor

    from tdrl.collectors import SyncDataCollector
    from tdrl.data.replay_buffers import ReplayBuffer
    from tdrl.data.replay_buffers.samplers import SamplerWithoutReplacement
    from tdrl.data.replay_buffers.storages import LazyTensorStorage
    from tdrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
    from tdrl.envs.libs.gym import GymEnv
    from tdrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
    from tdrl.objectives import ClipPPOLoss
    from tdrl.objectives.value import GAE

    torch.manual_seed(0)
    device = torch.device("cpu")
    env = TransformedEnv(
        GymEnv(ENV, device=device),
        Compose(ObservationNorm(in_keys=["observation"]), DoubleToFloat(), StepCounter()),
    )
    env.transform[0].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0)
    env.set_seed(0)

    def mlp(out: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [nn.LazyLinear(CELLS), nn.Tanh()]
        return nn.Sequential(*layers, nn.LazyLinear(out))

    policy = ProbabilisticActor(
        module=TensorDictModule(
            nn.Sequential(mlp(2 * env.action_spec.shape[-1]), NormalParamExtractor()),
            in_keys=["observation"],
            out_keys=["loc", "scale"],
        ),
        spec=env.action_spec,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": env.action_spec.space.low, "high": env.action_spec.space.high},
        return_log_prob=True,
    )
    value = ValueOperator(module=mlp(1), in_keys=["observation"])
    policy(env.reset())
    value(env.reset())
    collector = SyncDataCollector(env, policy, frames_per_batch=1000, total_frames=-1, split_trajs=False)
    batches = iter(collector)
    batch = next(batches)
    buffer = ReplayBuffer(storage=LazyTensorStorage(max_size=1000), sampler=SamplerWithoutReplacement())
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
    return {
        "batch": batch,
        "buffer": buffer,
        "advantage": advantage,
        "loss": loss_module,
        "optim": optim,
        "params": list(loss_module.parameters()),
        "device": device,
        "batches": batches,
        "collector": collector,
        "env": env,
        "policy": policy,
    }


def _hand_setup(batch) -> dict:
    """The hand program's tensors and networks, filled from the tdrl batch."""
    obs_dim = batch["observation"].shape[-1]
    torch.manual_seed(0)

    def mlp(out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(obs_dim, CELLS),
            nn.Tanh(),
            nn.Linear(CELLS, CELLS),
            nn.Tanh(),
            nn.Linear(CELLS, CELLS),
            nn.Tanh(),
            nn.Linear(CELLS, out),
        )

    actor, critic = mlp(2), mlp(1)
    params = [*actor.parameters(), *critic.parameters()]
    import gymnasium as gym

    env = gym.make(ENV)
    env.reset(seed=0)
    return {
        "env": env,
        "actor": actor,
        "critic": critic,
        "params": params,
        "optim": torch.optim.Adam(params, 3e-4),
        "obs": batch["observation"].clone(),
        "next": batch["next", "observation"].clone(),
        "act": batch["action"].clone(),
        "logp": batch.get("sample_log_prob", batch.get("action_log_prob", None)).clone(),
        "rew": batch["next", "reward"].squeeze(-1).numpy().copy(),
        "term": batch["next", "terminated"].squeeze(-1).float().numpy().copy(),
        "done": batch["next", "done"].squeeze(-1).float().numpy().copy(),
    }


# ---------------------------------------------------------------------------- tdrl parts
def tdrl_collect(s: dict) -> None:
    next(s["batches"])


def tdrl_eval(s: dict) -> int:
    """One evaluation rollout as the tutorial runs it; returns its length."""
    from tdrl.envs.utils import ExplorationType, set_exploration_type

    with set_exploration_type(ExplorationType.MEAN), torch.no_grad():
        return s["env"].rollout(1000, s["policy"]).numel()


def tdrl_gae(s: dict) -> None:
    for _ in range(EPOCHS):
        s["advantage"](s["batch"])


def tdrl_buffer(s: dict) -> list:
    out = []
    for _ in range(EPOCHS):
        s["buffer"].extend(s["batch"].reshape(-1).cpu())
        out += [s["buffer"].sample(SUB).to(s["device"]) for _ in range(MINI)]
    return out


def tdrl_loss(s: dict, samples: list) -> None:
    for td in samples:
        losses = s["loss"](td)
        (losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]).backward()
    s["optim"].zero_grad()


def _step(params: Callable[[], Iterable[torch.Tensor]], optim: torch.optim.Optimizer) -> None:
    for p in params():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for _ in range(EPOCHS * MINI):
        torch.nn.utils.clip_grad_norm_(params(), 1.0)
        optim.step()
        # keep the gradients: the next round steps again (set_to_none would drop them)
        optim.zero_grad(set_to_none=False)


def tdrl_log(s: dict) -> None:
    b = s["batch"]
    b["next", "reward"].mean().item()
    b["step_count"].max().item()
    s["optim"].param_groups[0]["lr"]


def tdrl_train(s: dict) -> None:
    """The tutorial's inner loops, as written."""
    buffer, loss_module, optim = s["buffer"], s["loss"], s["optim"]
    batch = s["batch"]
    for _ in range(EPOCHS):
        s["advantage"](batch)
        buffer.extend(batch.reshape(-1).cpu())
        for _ in range(MINI):
            losses = loss_module(buffer.sample(SUB).to(s["device"]))
            loss = losses["loss_objective"] + losses["loss_critic"] + losses["loss_entropy"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(loss_module.parameters(), 1.0)
            optim.step()
            optim.zero_grad()


# ---------------------------------------------------------------------------- hand parts
def _hand_norm(s: dict, h: dict) -> None:
    """The hand program's statistics: the tdrl env's, as a mean and an inverse std."""
    norm = s["env"].transform[0]
    h["inv_std"], h["mean"] = norm.scale.clone(), -norm.loc / norm.scale


def _hand_head(h: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loc, raw = h["actor"](x).chunk(2, -1)
    return loc, F.softplus(raw + _SCALE_BIAS) + 0.01


def hand_collect(h: dict) -> None:
    """``bench_e2e.hand_tutorial``'s collection of one 1,000-frame batch."""
    env, n = h["env"], len(h["rew"])
    obs_buf, next_buf, act_buf, logp_buf = h["obs"], h["next"], h["act"], h["logp"]
    rew, term, done = h["rew"], h["term"], h["done"]
    lim = 1.0 - torch.finfo(torch.float32).resolution

    def normalize(o: np.ndarray) -> torch.Tensor:
        return ((torch.from_numpy(o) - h["mean"]) * h["inv_std"]).float()

    x = h.get("x")
    if x is None:
        x = normalize(env.reset()[0])
    with torch.no_grad():
        for t in range(n):
            loc, scale = _hand_head(h, x)
            u = loc + scale * torch.randn_like(loc)
            a = u.tanh().clamp(-lim, lim)
            obs, reward, terminated, truncated, _ = env.step(a.numpy())
            obs_buf[t], act_buf[t], logp_buf[t] = x, a, _log_prob(a.atanh(), loc, scale)
            next_buf[t] = normalize(obs)
            rew[t], term[t], done[t] = reward, terminated, terminated or truncated
            if terminated or truncated:
                obs, _ = env.reset()
            x = normalize(obs)
    h["x"] = x


_QUANTILES = torch.special.ndtri((torch.arange(128, dtype=torch.float64) + 0.5) / 128).float()


def hand_eval(h: dict) -> int:
    """``bench_e2e.hand_tutorial``'s evaluation episode; returns its length."""
    env = h["env"]
    obs, _ = env.reset()
    steps = 0
    with torch.no_grad():
        while steps < 1000:
            x = ((torch.from_numpy(obs) - h["mean"]) * h["inv_std"]).float()
            loc, scale = _hand_head(h, x)
            action = torch.addcmul(loc.unsqueeze(-1), scale.unsqueeze(-1), _QUANTILES).tanh().mean(-1)
            obs, _reward, terminated, truncated, _ = env.step(action.numpy())
            steps += 1
            if terminated or truncated:
                break
    h["x"] = None  # the collection resumes from a reset
    return steps


def hand_gae(h: dict) -> None:
    n = len(h["rew"])
    for _ in range(EPOCHS):
        with torch.no_grad():
            value = h["critic"](h["obs"]).squeeze(-1).numpy()
            next_value = h["critic"](h["next"]).squeeze(-1).numpy()
        delta = h["rew"] + 0.99 * (1.0 - h["term"]) * next_value - value
        adv = np.empty(n, np.float32)
        last = 0.0
        for t in range(n - 1, -1, -1):
            last = delta[t] + 0.99 * 0.95 * (1.0 - h["done"][t]) * last
            adv[t] = last
        h["target"] = torch.from_numpy(adv + value).unsqueeze(-1)
        h["adv"] = torch.from_numpy((adv - adv.mean()) / (adv.std() + 1e-8)).unsqueeze(-1)


def hand_buffer(h: dict) -> list:
    out = []
    n = len(h["rew"])
    for _ in range(EPOCHS):
        perm = torch.randperm(n)
        for k in range(MINI):
            idx = perm[k * SUB : (k + 1) * SUB]
            out.append((h["obs"][idx], h["act"][idx], h["logp"][idx], h["adv"][idx], h["target"][idx]))
    return out


_BIAS = math.log(math.e - 1.0)
_SCALE_BIAS = math.log(math.expm1(0.99))  # NormalParamExtractor: softplus(x + b) + 0.01
_HALF_LOG_2PI, _LOG2 = 0.5 * math.log(2 * math.pi), math.log(2.0)


def _log_prob(u, loc, scale):
    z = (u - loc) / scale
    return (-0.5 * z * z - scale.log() - _HALF_LOG_2PI - 2.0 * (_LOG2 - u - F.softplus(-2.0 * u))).sum(-1)


def hand_loss(h: dict, samples: list) -> None:
    lim = 1.0 - torch.finfo(torch.float32).resolution
    for o, a_old, lp_old, adv_b, target in samples:
        loc, raw = h["actor"](o).chunk(2, -1)
        scale = F.softplus(raw + _BIAS).clamp_min(1e-4)
        lp = _log_prob(a_old.clamp(-lim, lim).atanh(), loc, scale)
        entropy = -_log_prob(loc + scale * torch.randn_like(loc), loc, scale)
        ratio = (lp - lp_old).exp().unsqueeze(-1)
        gain = torch.minimum(ratio * adv_b, ratio.clamp(0.8, 1.2) * adv_b)
        loss = -gain.mean() + F.smooth_l1_loss(h["critic"](o), target) - 1e-4 * entropy.mean()
        loss.backward()
    h["optim"].zero_grad()


def hand_log(h: dict) -> None:
    float(h["rew"].mean())
    h["optim"].param_groups[0]["lr"]


def _cpu_ms(fn) -> float:
    start = time.thread_time()
    fn()
    return (time.thread_time() - start) * 1e3


def _per_1000_steps(fn: Callable[[], int]) -> Callable[[], float]:
    """Thread CPU ms per 1,000 steps of episodes run until at least 1,000 steps in all."""

    def timed() -> float:
        start, steps = time.thread_time(), 0
        while steps < 1000:
            steps += fn()
        return (time.thread_time() - start) * 1e6 / steps

    return timed


def measure(rounds: int = 7) -> dict[str, tuple[float, float]]:
    s = _tdrl_setup()
    h = _hand_setup(s["batch"])
    _hand_norm(s, h)
    tdrl_collect(s)
    hand_collect(h)
    # warm up (and fill the advantage keys the buffer stores)
    tdrl_gae(s)
    hand_gae(h)
    t_samples, h_samples = tdrl_buffer(s), hand_buffer(h)
    tdrl_loss(s, t_samples)
    hand_loss(h, h_samples)
    parts = {
        "collect": (lambda: tdrl_collect(s), lambda: hand_collect(h)),
        "eval": (_per_1000_steps(lambda: tdrl_eval(s)), _per_1000_steps(lambda: hand_eval(h))),
        "gae": (lambda: tdrl_gae(s), lambda: hand_gae(h)),
        "buffer": (lambda: tdrl_buffer(s), lambda: hand_buffer(h)),
        "loss": (lambda: tdrl_loss(s, t_samples), lambda: hand_loss(h, h_samples)),
        # as the programs do: the tutorial walks loss_module.parameters() at each step, the hand
        # program keeps a list
        "step": (lambda: _step(s["loss"].parameters, s["optim"]), lambda: _step(lambda: h["params"], h["optim"])),
        "log": (lambda: tdrl_log(s), lambda: hand_log(h)),
    }
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in parts}
    timed = {"eval"}  # these return their own figure
    for _ in range(rounds):
        for name, (t_fn, h_fn) in parts.items():
            times[name][0].append(t_fn() if name in timed else _cpu_ms(t_fn))
            times[name][1].append(h_fn() if name in timed else _cpu_ms(h_fn))
    return {name: (statistics.median(t), statistics.median(hd)) for name, (t, hd) in times.items()}


def profile(sort: str = "tottime", lines: int = 30) -> str:
    s = _tdrl_setup()
    tdrl_train(s)  # warm up
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(3):
        tdrl_train(s)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats(sort).print_stats(lines)
    return out.getvalue()


def main() -> None:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    figures = measure(args.rounds)
    print(f"{'part':8} {'tdrl ms':>9} {'hand ms':>9} {'extra ms':>9}  (thread CPU per 1,000-frame batch, medians)")
    total_t = total_h = 0.0
    for name, (t, hd) in figures.items():
        total_t, total_h = total_t + t, total_h + hd
        print(f"{name:8} {t:9.1f} {hd:9.1f} {t - hd:9.1f}")
    ratio = total_h / total_t
    print(f"{'total':8} {total_t:9.1f} {total_h:9.1f} {total_t - total_h:9.1f}  ratio hand/tdrl {ratio:.2f}")
    if args.profile:
        print(profile())


if __name__ == "__main__":
    main()
