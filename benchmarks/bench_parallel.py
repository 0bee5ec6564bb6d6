"""ParallelEnv(2) against SerialEnv(2): does stepping in worker processes pay on 2 cores?

Two ``InvertedDoublePendulum-v4`` copies, collected by ``SyncDataCollector`` in batches of
2,000 frames:

- random policy (``policy=None``), the bar of issue 5: random actions do not depend on
  observations, so both batched envs run each batch open loop (``_rollout_actions``):
  ``SerialEnv`` steps its copies one after the other, ``ParallelEnv``'s workers step
  theirs at the same time with one round trip per batch. Bar: >= 1.4x.
- a policy in the loop (a small torch module on the observation), for information: one
  round trip per step; with an env step of ~60-80 us, a round trip through pipes costs
  about as much as the step it parallelizes.

TorchRL 0.14.1's ParallelEnv / SerialEnv with its collector and a random policy are
measured too when importable (they cost several seconds to start).

Wall-clock time (the point is using two cores); rounds are interleaved and the ratio is
the median of per-round ratios. On a machine whose cores are busy with other jobs the
parallel figure falls with them: read the ratio with the load average printed beside it.

Run: ``python -m benchmarks.bench_parallel``.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from statistics import median

import torch
from torch import nn

try:
    from benchmarks._common import print_rows, row
except ImportError:  # pragma: no cover - run as a script
    from _common import print_rows, row  # type: ignore[no-redef]

ENV = "InvertedDoublePendulum-v4"
FRAMES = 2000


def _collector(lib: str, cls_name: str, policy_kind: str):
    if lib == "tdrl":
        import tdrl.envs as envs
        from tdrl.collectors import SyncDataCollector
        from tdrl.envs.libs.gym import GymEnv
    else:
        import torchrl.collectors as trl_collectors
        import torchrl.envs as envs
        from torchrl.envs.libs.gym import GymEnv

        SyncDataCollector = getattr(trl_collectors, "SyncDataCollector", None) or trl_collectors.Collector
    env = getattr(envs, cls_name)(2, functools.partial(GymEnv, ENV))
    env.set_seed(0)
    policy = None
    if policy_kind == "module":
        from tensordict.nn import TensorDictModule

        policy = TensorDictModule(
            nn.Sequential(nn.Linear(11, 1), nn.Tanh()), in_keys=["observation"], out_keys=["action"]
        ).double()
    collector = SyncDataCollector(env, policy, frames_per_batch=FRAMES, total_frames=-1)
    batches = iter(collector)
    next(batches)

    def run() -> float:
        start = time.perf_counter()
        batch = next(batches)
        return batch.numel() / (time.perf_counter() - start)

    def close() -> None:
        collector.shutdown()
        try:
            env.close()
        except RuntimeError:  # TorchRL's collector closed it already
            pass

    return run, close


def _measure(pairs: dict, rounds: int) -> tuple[dict, float]:
    rates: dict = {k: [] for k in pairs}
    for _ in range(rounds):
        for name, (run, _) in pairs.items():
            rates[name].append(run())
    keys = list(pairs)
    ratio = median([p / s for p, s in zip(rates[keys[0]], rates[keys[1]])])
    return {k: median(v) for k, v in rates.items()}, ratio


def run(rounds: int = 7) -> list[dict]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    load = os.getloadavg()[0]
    rows = []
    for kind, bar in (("random", ">= 1.4"), ("module", "info")):
        pairs = {name: _collector("tdrl", name, kind) for name in ("ParallelEnv", "SerialEnv")}
        rates, ratio = _measure(pairs, rounds)
        for _, close in pairs.values():
            close()
        torchrl = None
        if kind == "random":
            try:
                trl = {name: _collector("torchrl", name, kind) for name in ("ParallelEnv", "SerialEnv")}
            except Exception:
                trl = None
            if trl is not None:
                trl_rates, trl_ratio = _measure(trl, 3)
                for _, close in trl.values():
                    close()
                torchrl = trl_rates["ParallelEnv"]
        what = "random policy, open loop" if kind == "random" else "policy in the loop (round trip per step)"
        r = row(
            f"ParallelEnv(2) vs SerialEnv(2), {ENV}, {what}, frames/s",
            rates["ParallelEnv"],
            rates["SerialEnv"],
            "frames/s",
            bar,
            torchrl=torchrl,
            note=f"load average {load:.1f} on {os.cpu_count()} cores"
            + (f"; TorchRL ParallelEnv/SerialEnv = {trl_ratio:.2f}" if torchrl is not None else ""),
        )
        r["ratio"] = ratio
        rows.append(r)
    return rows


if __name__ == "__main__":
    for r in run():
        print_rows([r])
        print("   ", r["note"])
