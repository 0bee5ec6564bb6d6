"""Collection from VMAS ``navigation`` (600 vectorised envs): tdrl's collector against VMAS's own step loop.

The setting of TorchRL's multi-agent PPO tutorial, scaled to the issue's 600 envs:
``navigation`` with 4 agents, ``max_steps=100``, continuous actions. The policy is one MLP
shared by the agents (18 -> 64 -> 64 -> 2, tanh, scaled to the action box), the same
``nn.Module`` on both sides.

- **tdrl**: ``SyncDataCollector(VmasEnv("navigation", num_envs=600, ...), policy)`` with the
  net in a ``TensorDictModule`` reading ``("agents", "observation")`` and writing
  ``("agents", "action")``; one batch is 100 steps of the 600 envs (60,000 frames).
- **reference**: the loop a user writes with ``vmas.make_env`` and the same net: stack the
  agents' observations, call the net, ``env.step(list of per-agent actions)``, store
  observation, action, reward, next observation and done into preallocated tensors by
  index, and reset when the envs are done (``env.reset()`` when all are, ``reset_at`` for
  each done one otherwise, as tdrl does).

Both loops run under ``torch.no_grad`` on one thread; each contender collects one batch per
round, in turn, and the ratio is the median of the rounds' ratios (neighbouring
measurements pair up, so slow drifts of the shared machine's load cancel). Clock: CPU time
of the process (``time.process_time``): on the shared 2-core machine wall-clock rounds
measure who was preempted.

With the TorchRL venv, TorchRL 0.14.1's ``SyncDataCollector`` over its ``VmasEnv`` is measured
with the same net (every third round) and shown beside.

Bar (issue 19): tdrl >= 0.9x VMAS's own step loop.

Run: ``python -m benchmarks.bench_vmas``.
"""

from __future__ import annotations

import time
import warnings
from statistics import median

import torch
from torch import nn

try:
    from benchmarks._common import print_rows, row
except ImportError:  # pragma: no cover - run as a script
    from _common import print_rows, row  # type: ignore[no-redef]

CLOCK = time.process_time
SCENARIO = "navigation"
NUM_ENVS = 600
STEPS = 100  # per batch: frames_per_batch = NUM_ENVS * STEPS
MAX_STEPS = 100
CELLS = 64
ROUNDS = 7


class SharedMLP(nn.Module):
    """One MLP for every agent: ``[..., n_agents, obs] -> [..., n_agents, 2]`` in the action box."""

    def __init__(self, obs_dim: int, act_dim: int, high: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, CELLS), nn.Tanh(), nn.Linear(CELLS, CELLS), nn.Tanh(), nn.Linear(CELLS, act_dim)
        )
        self.high = high

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs)) * self.high


def _make_net(env) -> SharedMLP:
    spec = env.full_action_spec["agents", "action"]
    obs_dim = env.full_observation_spec["agents", "observation"].shape[-1]
    return SharedMLP(obs_dim, spec.shape[-1], float(spec.space.high.max()))


def _batch_rate(collector):
    """A callable timing one batch of ``collector`` (frames/s), after a warm-up batch."""
    batches = iter(collector)
    next(batches)

    def run() -> float:
        start = CLOCK()
        batch = next(batches)
        return batch.numel() / (CLOCK() - start)

    return run


def _tdrl(net: nn.Module):
    from tensordict.nn import TensorDictModule

    from tdrl.collectors import SyncDataCollector
    from tdrl.envs.libs.vmas import VmasEnv

    env = VmasEnv(SCENARIO, num_envs=NUM_ENVS, max_steps=MAX_STEPS, seed=0)
    policy = TensorDictModule(net, in_keys=[("agents", "observation")], out_keys=[("agents", "action")])
    collector = SyncDataCollector(env, policy, frames_per_batch=NUM_ENVS * STEPS, total_frames=-1)
    return _batch_rate(collector), collector


def _torchrl(net: nn.Module):
    try:
        import torchrl.collectors as trl_collectors
        from tensordict.nn import TensorDictModule
        from torchrl.envs.libs.vmas import VmasEnv
    except Exception:
        return None
    SyncDataCollector = getattr(trl_collectors, "SyncDataCollector", None) or trl_collectors.Collector
    env = VmasEnv(SCENARIO, num_envs=NUM_ENVS, max_steps=MAX_STEPS, seed=0)
    policy = TensorDictModule(net, in_keys=[("agents", "observation")], out_keys=[("agents", "action")])
    collector = SyncDataCollector(env, policy, frames_per_batch=NUM_ENVS * STEPS, total_frames=-1)
    return _batch_rate(collector), collector


def _hand(net: nn.Module):
    """VMAS's own loop with the same net, storing what a training loop needs by index."""
    import vmas

    env = vmas.make_env(SCENARIO, num_envs=NUM_ENVS, max_steps=MAX_STEPS, seed=0, continuous_actions=True)
    n_agents = env.n_agents
    obs_dim = env.observation_space[0].shape[0]
    act_dim = env.action_space[0].shape[0]
    state = {"obs": env.reset()}

    def run() -> float:
        obs_buf = torch.empty(STEPS, NUM_ENVS, n_agents, obs_dim)
        next_obs_buf = torch.empty(STEPS, NUM_ENVS, n_agents, obs_dim)
        act_buf = torch.empty(STEPS, NUM_ENVS, n_agents, act_dim)
        rew_buf = torch.empty(STEPS, NUM_ENVS, n_agents, 1)
        done_buf = torch.empty(STEPS, NUM_ENVS, 1, dtype=torch.bool)
        obs = state["obs"]
        start = CLOCK()
        with torch.no_grad():
            for t in range(STEPS):
                x = torch.stack(obs, dim=1)
                action = net(x)
                obs, rewards, dones, _ = env.step(list(action.unbind(1)))
                obs_buf[t] = x
                act_buf[t] = action
                next_obs_buf[t] = torch.stack(obs, dim=1)
                rew_buf[t] = torch.stack(rewards, dim=1).unsqueeze(-1)
                done_buf[t] = dones.unsqueeze(-1)
                if dones.any():
                    if dones.all():
                        obs = env.reset()
                    else:
                        for index in dones.nonzero().flatten().tolist():
                            env.reset_at(index, return_observations=False)
                        obs = env.get_from_scenario(
                            get_observations=True, get_rewards=False, get_infos=False, get_dones=False
                        )[0]
        elapsed = CLOCK() - start
        state["obs"] = obs
        return STEPS * NUM_ENVS / elapsed

    return run


def run(rounds: int = ROUNDS) -> list[dict]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from tdrl.envs.libs.vmas import VmasEnv

    net = _make_net(VmasEnv(SCENARIO, num_envs=1, seed=0))
    with torch.no_grad():
        tdrl_run, collector = _tdrl(net)
        fns = {"tdrl": tdrl_run, "hand": _hand(net)}
        trl = _torchrl(net)
        rates: dict[str, list[float]] = {k: [] for k in (*fns, "torchrl")}
        for r in range(rounds):
            for name, fn in fns.items():
                rates[name].append(fn())
            if trl is not None and r % 3 == 0:  # TorchRL is slower: every third round is enough
                rates["torchrl"].append(trl[0]())
    collector.shutdown()
    if trl is not None:
        trl[1].shutdown()
    med = {k: median(v) for k, v in rates.items() if v}
    torchrl = med.get("torchrl")
    main = row(
        f"SyncDataCollector over VmasEnv('{SCENARIO}', num_envs={NUM_ENVS}), shared 2x{CELLS} MLP, frames/s",
        med["tdrl"],
        med["hand"],
        "frames/s",
        ">= 0.9",
        torchrl=torchrl,
        note="reference: vmas.make_env + env.step loop, same net, obs/action/reward/next obs/done stored by index",
    )
    main["ratio"] = median([x / y for x, y in zip(rates["tdrl"], rates["hand"])])
    rows = [main]
    if torchrl is not None:
        rows.append(
            row(
                f"SyncDataCollector over VmasEnv vs TorchRL 0.14.1's (same scenario, {NUM_ENVS} envs, same net)",
                med["tdrl"],
                torchrl,
                "frames/s",
                "info",
                torchrl=torchrl,
                note=f"TorchRL reaches {torchrl / med['hand']:.2f}x VMAS's own loop in this run",
            )
        )
    return rows


if __name__ == "__main__":
    print_rows(run())
