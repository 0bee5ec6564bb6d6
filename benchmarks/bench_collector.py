"""SyncDataCollector against the hand-written gymnasium loop (and TorchRL 0.14.1's collector).

The seed tutorial's setting: ``InvertedDoublePendulum-v4`` through ``ObservationNorm``,
``DoubleToFloat`` and ``StepCounter``, and its 3x256 tanh MLP ``ProbabilisticActor``
(``TanhNormal``, ``return_log_prob=True``), 1,000 frames per batch.

The reference is the loop a user writes by hand with the same torch network: gymnasium
step, the same normalization and float cast, ``torch.distributions.Normal`` sample, tanh
squash and log-probability, a step counter, and obs / action / reward / done / log-prob
stored into preallocated tensors, with a reset when an episode ends. Each contender runs
one batch per round, in turn (interleaved); the ratio is the median of the rounds'
ratios (each round pairs neighbouring measurements, so slow drifts in the machine's load
cancel), and the rates shown are the median rounds.

Argument validation: the reference's ``torch.distributions.Normal`` is built with
``validate_args=False``, the fastest way to write it (and what importing TorchRL sets for the
whole process, as this benchmark does: measured either way, the figure must not depend on
import order). tdrl's distributions never validate per step.

Clock: every contender is one single-threaded process loop, so its cost is the CPU time
it uses (``time.process_time``). On this project's shared 2-core machine other jobs
steal the cores at random; wall-clock rounds then measure who was preempted, CPU time
measures the loops. ``CLOCK = time.perf_counter`` gives wall-clock figures on a quiet box.

Bars: tdrl >= 0.95x the hand-written loop with the seed's transforms (issue 22; 0.9x in
issue 5), and >= 2.5x TorchRL's collector.

Run: ``python -m benchmarks.bench_collector``.
"""

from __future__ import annotations

import time
import warnings
from statistics import median

import torch
from torch import distributions as D
from torch import nn

try:
    from benchmarks._common import print_rows, row
except ImportError:  # pragma: no cover - run as a script
    from _common import print_rows, row  # type: ignore[no-redef]

CLOCK = time.process_time
ENV = "InvertedDoublePendulum-v4"
FRAMES = 1000
CELLS = 256


def _batch_rate(collector):
    """A callable timing one batch of ``collector`` (frames/s), after a warm-up batch."""
    batches = iter(collector)
    next(batches)

    def run() -> float:
        start = CLOCK()
        batch = next(batches)
        return batch.numel() / (CLOCK() - start)

    return run


def _net(obs_dim: int, act_dim: int) -> nn.Module:
    from tensordict.nn import NormalParamExtractor

    return nn.Sequential(
        nn.Linear(obs_dim, CELLS),
        nn.Tanh(),
        nn.Linear(CELLS, CELLS),
        nn.Tanh(),
        nn.Linear(CELLS, CELLS),
        nn.Tanh(),
        nn.Linear(CELLS, 2 * act_dim),
        NormalParamExtractor(),
    )


def _seed_env(lib: str, minimal: bool = False):
    if lib == "tdrl":
        from tdrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
        from tdrl.envs.libs.gym import GymEnv
    else:
        from torchrl.envs import Compose, DoubleToFloat, ObservationNorm, StepCounter, TransformedEnv
        from torchrl.envs.libs.gym import GymEnv
    if minimal:  # just what the float32 policy needs
        return TransformedEnv(GymEnv(ENV), DoubleToFloat())
    return TransformedEnv(
        GymEnv(ENV), Compose(ObservationNorm(in_keys=["observation"]), DoubleToFloat(), StepCounter())
    )


def _actor(lib: str, net: nn.Module, env):
    from tensordict.nn import TensorDictModule

    if lib == "tdrl":
        from tdrl.modules import ProbabilisticActor, TanhNormal
    else:
        from torchrl.modules import ProbabilisticActor, TanhNormal
    return ProbabilisticActor(
        TensorDictModule(net, in_keys=["observation"], out_keys=["loc", "scale"]),
        spec=env.action_spec,
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        distribution_kwargs={"low": env.action_spec.space.low, "high": env.action_spec.space.high},
        return_log_prob=True,
    )


def _tdrl(net: nn.Module, minimal: bool = False):
    from tdrl.collectors import SyncDataCollector

    env = _seed_env("tdrl", minimal)
    env.set_seed(0)
    if minimal:
        loc, scale = torch.zeros(11, dtype=torch.float64), torch.ones(11, dtype=torch.float64)
    else:
        env.transform[0].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0)
        loc, scale = env.transform[0].loc.clone(), env.transform[0].scale.clone()
    collector = SyncDataCollector(env, _actor("tdrl", net, env), frames_per_batch=FRAMES, total_frames=-1)
    return _batch_rate(collector), (loc, scale), collector


def _tdrl_hand_policy(net: nn.Module):
    """The collector alone: DoubleToFloat only, and the hand loop's policy math as a plain callable."""
    from tdrl.collectors import SyncDataCollector

    env = _seed_env("tdrl", minimal=True)
    env.set_seed(0)

    def policy(td):
        mu, sigma = net(td.get("observation"))
        dist = D.Normal(mu, sigma, validate_args=False)
        u = dist.sample()
        a = torch.tanh(u)
        td.set("action", a)
        td.set("sample_log_prob", (dist.log_prob(u) - torch.log(1 - a.pow(2) + 1e-6)).sum(-1))
        return td

    collector = SyncDataCollector(env, policy, frames_per_batch=FRAMES, total_frames=-1)
    return _batch_rate(collector), collector


def _overhead_pair():
    """The collector against the minimal loop a user writes, over a trivial env and policy.

    The env and the policy cost a few microseconds, so what is measured is the loop
    itself: the collector's stepping and recording against calling the same ``_step``
    and policy by hand and storing obs / action / reward / done / log-prob by index.
    """
    from tdrl._compat import td_unchecked
    from tdrl.collectors import SyncDataCollector
    from tdrl.envs.common import EnvBase
    from tdrl.specs import Composite, Unbounded

    size = torch.Size([])

    class Trivial(EnvBase):
        def __init__(self) -> None:
            super().__init__()
            self.observation_spec = Composite(observation=Unbounded(shape=(11,)), shape=())
            self.action_spec = Unbounded(shape=(1,))
            self.__dict__["t"] = 0

        def _reset(self, td):
            self.__dict__["t"] = 0
            return td_unchecked(
                {
                    "observation": torch.zeros(11),
                    "done": torch.zeros(1, dtype=torch.bool),
                    "terminated": torch.zeros(1, dtype=torch.bool),
                    "truncated": torch.zeros(1, dtype=torch.bool),
                },
                size,
            )

        def _step(self, td):
            self.__dict__["t"] += 1
            done = torch.tensor([self.t % 8 == 0])
            return td_unchecked(
                {
                    "observation": torch.zeros(11),
                    "reward": torch.zeros(1),
                    "done": done,
                    "terminated": done.clone(),
                    "truncated": torch.zeros(1, dtype=torch.bool),
                },
                size,
            )

        def _set_seed(self, seed):
            pass

    def policy(td):
        td.set("action", torch.zeros(1))
        td.set("sample_log_prob", torch.zeros(()))
        return td

    batches = iter(SyncDataCollector(Trivial(), policy, frames_per_batch=FRAMES, total_frames=-1))
    next(batches)

    def collector() -> float:
        start = CLOCK()
        next(batches)
        return FRAMES / (CLOCK() - start)

    env = Trivial()

    def by_hand() -> float:
        obs, act, rew = torch.empty(FRAMES, 11), torch.empty(FRAMES, 1), torch.empty(FRAMES, 1)
        done_buf, logp = torch.empty(FRAMES, 1, dtype=torch.bool), torch.empty(FRAMES)
        root = env.reset()
        start = CLOCK()
        for t in range(FRAMES):
            td = policy(root)
            nxt = env._step(td)
            obs[t], act[t], rew[t] = td.get("observation"), td.get("action"), nxt.get("reward")
            done_buf[t], logp[t] = nxt.get("done"), td.get("sample_log_prob")
            if nxt.get("done").item():
                root = env.reset()
            else:
                root = td_unchecked({k: nxt.get(k) for k in ("observation", "done", "terminated", "truncated")}, size)
        return FRAMES / (CLOCK() - start)

    return collector, by_hand


def _hand(net: nn.Module, loc: torch.Tensor, scale: torch.Tensor, normalize: bool = True):
    import gymnasium as gym

    env = gym.make(ENV)
    state = {"obs": env.reset(seed=0)[0], "count": 0}
    low, high = -1.0, 1.0
    obs_dim = env.observation_space.shape[0]

    def run() -> float:
        obs_buf = torch.empty(FRAMES, obs_dim)
        act_buf = torch.empty(FRAMES, 1)
        rew_buf = torch.empty(FRAMES, 1)
        done_buf = torch.empty(FRAMES, 1, dtype=torch.bool)
        logp_buf = torch.empty(FRAMES)
        obs, count = state["obs"], state["count"]
        start = CLOCK()
        with torch.no_grad():
            for t in range(FRAMES):
                x = torch.from_numpy(obs)
                x = torch.addcmul(loc, x, scale).float() if normalize else x.float()
                mu, sigma = net(x)
                dist = D.Normal(mu, sigma, validate_args=False)
                u = dist.sample()
                a = torch.tanh(u)
                logp = (dist.log_prob(u) - torch.log(1 - a.pow(2) + 1e-6)).sum(-1)
                action = low + (a + 1) * (high - low) / 2
                obs, reward, terminated, truncated, _ = env.step(action.numpy())
                count += 1  # the step counter
                obs_buf[t] = x
                act_buf[t] = action
                rew_buf[t] = reward
                done_buf[t] = terminated or truncated
                logp_buf[t] = logp
                if terminated or truncated:
                    obs, _ = env.reset()
                    count = 0
        elapsed = CLOCK() - start
        state["obs"], state["count"] = obs, count
        return FRAMES / elapsed

    return run


def _torchrl(net: nn.Module):
    try:
        import torchrl.collectors as trl_collectors
    except Exception:
        return None
    SyncDataCollector = getattr(trl_collectors, "SyncDataCollector", None) or trl_collectors.Collector
    env = _seed_env("torchrl")
    env.set_seed(0)
    env.transform[0].init_stats(num_iter=1000, reduce_dim=0, cat_dim=0)
    collector = SyncDataCollector(env, _actor("torchrl", net, env), frames_per_batch=FRAMES, total_frames=-1)
    return _batch_rate(collector), collector


def run(rounds: int = 21) -> list[dict]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = _net(11, 1)
    seed_run, (loc, scale), seed_collector = _tdrl(net)
    min_run, _, min_collector = _tdrl(net, minimal=True)
    bare_run, bare_collector = _tdrl_hand_policy(net)
    fns = {
        "tdrl": seed_run,
        "hand": _hand(net, loc, scale),
        "tdrl_min": min_run,
        "hand_min": _hand(net, loc, scale, normalize=False),
        "tdrl_bare": bare_run,
    }
    fns["loop"], fns["loop_hand"] = _overhead_pair()
    trl = _torchrl(net)
    rates: dict[str, list[float]] = {k: [] for k in (*fns, "torchrl")}
    for r in range(rounds):
        for name, fn in fns.items():
            rates[name].append(fn())
        if trl is not None and r % 3 == 0:  # TorchRL is slow: every third round is enough
            rates["torchrl"].append(trl[0]())
    for c in (seed_collector, min_collector, bare_collector):
        c.shutdown()
    med = {k: median(v) for k, v in rates.items() if v}
    torchrl = med.get("torchrl")

    def paired(a: str, b: str) -> float:
        return median([x / y for x, y in zip(rates[a], rates[b])])

    main = row(
        f"SyncDataCollector, {ENV} + seed transforms + 3x256 ProbabilisticActor, frames/s",
        med["tdrl"],
        med["hand"],
        "frames/s",
        ">= 0.95",
        torchrl=torchrl,
        note="reference: hand-written gymnasium loop, same torch net and normalization, torch.distributions",
    )
    main["ratio"] = paired("tdrl", "hand")
    minimal = row(
        f"SyncDataCollector, {ENV} + DoubleToFloat only, same actor, frames/s",
        med["tdrl_min"],
        med["hand_min"],
        "frames/s",
        "info",
        note="the collector with the fewest transforms: reference casts to float32, no normalization",
    )
    minimal["ratio"] = paired("tdrl_min", "hand_min")
    bare = row(
        f"SyncDataCollector, {ENV} + DoubleToFloat, the hand loop's policy math as a plain callable, frames/s",
        med["tdrl_bare"],
        med["hand_min"],
        "frames/s",
        ">= 0.9",
        note="the collector's own cost: same policy code as the reference, one transform",
    )
    bare["ratio"] = paired("tdrl_bare", "hand_min")
    loop = row(
        "SyncDataCollector's own loop vs the minimal hand loop (trivial env and policy), steps/s",
        med["loop"],
        med["loop_hand"],
        "steps/s",
        "info",
        note="what the collector adds per step, with nothing else to measure",
    )
    loop["ratio"] = paired("loop", "loop_hand")
    rows = [main, minimal, bare, loop]
    if torchrl is not None:
        rows.append(
            row(
                "SyncDataCollector vs TorchRL 0.14.1's collector (same env, transforms, actor)",
                med["tdrl"],
                torchrl,
                "frames/s",
                ">= 2.5",
                torchrl=torchrl,
                note=f"TorchRL reaches {torchrl / med['hand']:.2f}x the hand-written loop in this run",
            )
        )
    return rows


if __name__ == "__main__":
    print_rows(run())
