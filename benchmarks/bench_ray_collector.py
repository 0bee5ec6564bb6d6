"""RayCollector against the local collectors, and what a batch and a weight push cost through Ray.

Env and policy: ``CartPole-v1`` through tdrl's ``GymEnv``, and the seed PPO policy (3 hidden
layers of 256, ``tdrl.examples.ppo.make_modules``), on a local Ray cluster this script starts.

- frames/s: ``RayCollector`` with 1 and 2 collectors (one env each; ``sync=True`` with 2,
  so every batch holds both collectors' frames, as ``MultiSyncDataCollector`` does) against
  ``MultiSyncDataCollector(2)`` on the same envs and policy; the reference is the local
  multi-process collector. Rounds are interleaved; each figure is the median over rounds.
- per-batch overhead: ``RayCollector`` with 1 collector (``sync=True``: request, collect,
  reply; nothing overlaps) against a ``SyncDataCollector`` in this process, same frames per
  batch; the overhead is the difference of the median times per batch.
- weight sync: ``update_policy_weights_()`` of the 3x256 policy with 1 and 2 idle
  collectors (it returns when every actor has loaded the weights), and the raw cost of the
  same payload: ``ray.put`` alone, and ``ray.put`` plus an actor that receives the object
  and returns (one put, one get), beside an empty actor call.

Wall-clock times on a 2-core machine shared with Ray's own processes: read the ratios, and
the load average printed in the notes.

Run: ``python -m benchmarks.bench_ray_collector``.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings

import torch

try:
    from benchmarks._common import print_rows, row
except ImportError:  # pragma: no cover - run as a script
    from _common import print_rows, row  # type: ignore[no-redef]

ENV = "CartPole-v1"
FRAMES = 1000  # frames per batch for the frames/s figures
SMALL = 200  # frames per batch for the per-batch overhead
BATCHES = 3  # batches per timed round
WEIGHT_CALLS = 20  # weight pushes per round


def _make_env():
    from tdrl.envs.libs.gym import GymEnv

    return GymEnv(ENV)


def _policy() -> torch.nn.Module:
    from tdrl.examples.ppo import make_modules

    policy, _ = make_modules(_make_env(), 256, torch.device("cpu"))  # type: ignore[arg-type]
    return policy


class _DirectActor:
    """A RayCollector's actor asked for batches directly (``ray.get(actor.collect.remote())``): no driver logic."""

    def __init__(self, actor) -> None:
        self.actor = actor

    def next(self):
        import ray

        return ray.get(self.actor.collect.remote(), timeout=600)


def _timed_batches(collector, batches: int) -> tuple[float, int]:
    """Seconds and frames for ``batches`` calls of ``collector.next()``."""
    start = time.perf_counter()
    frames = sum(collector.next().numel() for _ in range(batches))
    return time.perf_counter() - start, frames


def _rates(collectors: dict, rounds: int, batches: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in collectors}
    for collector in collectors.values():
        collector.next()  # warm up (first batch validates, workers start)
    for _ in range(rounds):
        for name, collector in collectors.items():
            seconds, frames = _timed_batches(collector, batches)
            out[name].append(frames / seconds)
    return out


def _weight_times(collectors: dict, rounds: int, calls: int, raw: dict) -> dict[str, float]:
    """Median seconds per call of each weight push (and of the raw Ray calls in ``raw``)."""
    fns = {**{name: c.update_policy_weights_ for name, c in collectors.items()}, **raw}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - start) / calls)
    return {name: statistics.median(v) for name, v in times.items()}


def run(rounds: int = 5) -> list[dict]:
    import ray
    from tensordict import TensorDict

    from tdrl.collectors import MultiSyncDataCollector, SyncDataCollector
    from tdrl.collectors.distributed import RayCollector

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    load = os.getloadavg()[0]
    policy = _policy()
    ray_kwargs = {"total_frames": -1, "remote_configs": {"num_cpus": 0.5}}
    rows = []
    try:
        # frames/s
        contenders = {
            "ray1": RayCollector(_make_env, policy, frames_per_batch=FRAMES, **ray_kwargs),
            "ray2": RayCollector(_make_env, policy, frames_per_batch=FRAMES, num_collectors=2, sync=True, **ray_kwargs),
            "multi2": MultiSyncDataCollector([_make_env] * 2, policy, frames_per_batch=FRAMES, total_frames=-1),
        }
        rates = _rates(contenders, rounds, BATCHES)
        for c in contenders.values():
            c.shutdown()
        med = {k: statistics.median(v) for k, v in rates.items()}
        note = f"{ENV}, 3x256 policy, {FRAMES} frames/batch; load average {load:.1f} on {os.cpu_count()} cores"
        for name, what in (("ray1", "1 collector"), ("ray2", "2 collectors, sync")):
            r = row(f"RayCollector({what}) vs MultiSyncDataCollector(2), frames/s", med[name], med["multi2"],
                    "frames/s", "info", note=note)  # fmt: skip
            r["ratio"] = statistics.median(a / b for a, b in zip(rates[name], rates["multi2"]))
            rows.append(r)

        # per-batch overhead
        ray_small = RayCollector(_make_env, policy, frames_per_batch=SMALL, sync=True, **ray_kwargs)
        pair = {
            "ray": ray_small,
            "direct": _DirectActor(ray_small.remote_collectors[0]),
            "local": SyncDataCollector(_make_env(), policy, frames_per_batch=SMALL, total_frames=-1),
        }
        small = _rates(pair, rounds, BATCHES * 3)
        pair["local"].shutdown()
        per_batch = {k: statistics.median(SMALL / r for r in v) for k, v in small.items()}
        overhead_ms = (per_batch["ray"] - per_batch["local"]) * 1e3
        driver_ms = (per_batch["ray"] - per_batch["direct"]) * 1e3
        r = row(f"RayCollector(1) vs SyncDataCollector in-process, {SMALL} frames/batch, s/batch",
                per_batch["ray"], per_batch["local"], "s/batch", "info", higher_is_better=False,
                note=f"overhead {overhead_ms:.2f} ms per batch, of which {driver_ms:.2f} ms is RayCollector's "
                f"own (next() vs the actor's collect called directly: {per_batch['direct'] * 1e3:.1f} ms)")  # fmt: skip
        r["overhead_ms"] = overhead_ms
        r["driver_overhead_ms"] = driver_ms
        rows.append(r)

        # weight sync
        pushers = {
            "push1": pair["ray"],
            "push2": RayCollector(_make_env, policy, frames_per_batch=SMALL, num_collectors=2, sync=True, **ray_kwargs),
        }
        weights = TensorDict.from_module(policy).data
        payload = sum(t.numel() * t.element_size() for t in weights.values(True, True))

        @ray.remote(num_cpus=0)
        class Receiver:
            def take(self, weights) -> None:
                return None

        receiver = Receiver.remote()
        ray.get(receiver.take.remote(None), timeout=120)
        raw = {
            "put": lambda: ray.put(weights),
            "put_get": lambda: ray.get(receiver.take.remote(ray.put(weights)), timeout=60),
            "empty_call": lambda: ray.get(receiver.take.remote(None), timeout=60),
        }
        t = _weight_times(pushers, rounds, WEIGHT_CALLS, raw)
        for c in pushers.values():
            c.shutdown()
        ray.kill(receiver)
        size = f"{payload / 1e6:.2f} MB of weights"
        for name, n in (("push1", 1), ("push2", 2)):
            r = row(f"update_policy_weights_, 3x256 policy, {n} collector(s), ms (ref: ray.put + 1 actor get)",
                    t[name] * 1e3, t["put_get"] * 1e3, "ms", "info", higher_is_better=False,
                    note=f"{size}; ray.put alone {t['put'] * 1e3:.2f} ms, "
                    f"empty actor call {t['empty_call'] * 1e3:.2f} ms")  # fmt: skip
            rows.append(r)
        rows[-1]["raw_ms"] = {k: v * 1e3 for k, v in t.items()}
    finally:
        if started:
            ray.shutdown()
    return rows


if __name__ == "__main__":
    for r in run():
        print_rows([r])
        print("   ", r["note"])
