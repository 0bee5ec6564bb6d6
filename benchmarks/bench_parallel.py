"""Worker processes on 2 cores: ParallelEnv(2) against SerialEnv(2), MultiSyncDataCollector(2) against one collector.

Two ``InvertedDoublePendulum-v4`` copies, collected in batches of 2,000 frames:

- ``ParallelEnv(2)`` against ``SerialEnv(2)`` under ``SyncDataCollector``, random policy
  (``policy=None``), the bar of issue 5 (>= 1.4x): random actions do not depend on
  observations, so both batched envs run each batch open loop (``_rollout_actions``):
  ``SerialEnv`` steps its copies one after the other, ``ParallelEnv``'s workers step
  theirs at the same time with one round trip per batch.
- the same with a policy in the loop (a small torch module on the observation): one
  round trip per step. Bar (issue 22): >= 1.2x.
- ``ParallelEnv(2)``'s per-step protocols against each other, policy in the loop: the
  lane (shared-memory words, one eventfd wake-up for all workers; the default on Linux)
  against the socket messages it replaced (one pickled frame per worker and step).
- the lane's wake-ups (x86): the last worker to answer a step rings the parent alone
  against every worker ringing (a ring costs a system call even when the parent, checking
  the shared words before it sleeps, is awake; a sleeping parent wakes up to once per
  worker and step).
- ``MultiSyncDataCollector(2)`` against one ``SyncDataCollector`` (issue 22, bar >= 1.4x):
  the same env (``DoubleToFloat`` only), the seed tutorial's 3x256 ``ProbabilisticActor``
  (``TanhNormal``) and 2,000 frames per batch; each worker runs its own copy of the
  policy and collects half the batch.

TorchRL 0.14.1's ParallelEnv / SerialEnv with its collector and a random policy are
measured too when importable (they cost several seconds to start).

Wall-clock time (the point is using two cores); rounds are interleaved and the ratio is
the median of per-round ratios. On a machine whose cores are busy with other jobs the
parallel figures fall with them: each row's note gives the load average before and after
its rounds, and the CPU time per frame that the parent and the worker processes used (read
from ``/proc``; Linux only). A parallel contender pays when its processes' total CPU per
frame stays close to the reference's and the cores are free to run them at once.

Run: ``python -m benchmarks.bench_parallel``.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Callable
from statistics import median

import torch
from torch import nn

try:
    from benchmarks._common import print_rows, row
except ImportError:  # pragma: no cover - run as a script
    from _common import print_rows, row  # type: ignore[no-redef]

ENV = "InvertedDoublePendulum-v4"
FRAMES = 2000
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_s(pids: list[int]) -> float:
    """The CPU seconds (user + system) the processes ``pids`` used so far; 0.0 where /proc is not there."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
        except (OSError, IndexError, ValueError):
            pass
    return total


def _rate(batches, procs: Callable[[], list]) -> Callable[[], tuple[float, float, float]]:
    """One batch per call: (frames/s, parent CPU us per frame, workers' CPU us per frame)."""

    def run() -> tuple[float, float, float]:
        pids = [p.pid for p in procs()]
        workers, parent, start = _cpu_s(pids), time.process_time(), time.perf_counter()
        frames = next(batches).numel()
        wall = time.perf_counter() - start
        parent, workers = time.process_time() - parent, _cpu_s(pids) - workers
        return frames / wall, 1e6 * parent / frames, 1e6 * workers / frames

    return run


def _collector(lib: str, cls_name: str, policy_kind: str, sockets: bool = False, every_ring: bool = False):
    if lib == "tdrl":
        import tdrl.envs as envs
        from tdrl.collectors import SyncDataCollector
        from tdrl.envs.libs.gym import GymEnv
    else:
        import torchrl.collectors as trl_collectors
        import torchrl.envs as envs
        from torchrl.envs.libs.gym import GymEnv

        SyncDataCollector = getattr(trl_collectors, "SyncDataCollector", None) or trl_collectors.Collector
    if every_ring:  # every worker rings the parent after each step, as before the last one rang alone
        import tdrl._workers.lane as lane_mod

        saved, lane_mod._LAST_RINGS = lane_mod._LAST_RINGS, False
        try:
            env = getattr(envs, cls_name)(2, functools.partial(GymEnv, ENV))
        finally:
            lane_mod._LAST_RINGS = saved
    else:
        env = getattr(envs, cls_name)(2, functools.partial(GymEnv, ENV))
    if sockets:
        env._lane = None  # steps over the sockets, as where the OS has no lane
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
    procs = (lambda: list(env._procs)) if lib == "tdrl" and cls_name == "ParallelEnv" else list

    def close() -> None:
        collector.shutdown()
        try:
            env.close()
        except RuntimeError:  # TorchRL's collector closed it already
            pass

    return _rate(batches, procs), close


def _multi_pair() -> dict:
    """MultiSyncDataCollector(2) and one SyncDataCollector: same env, same actor, same frames per batch."""
    try:
        from benchmarks.bench_collector import _actor, _net, _seed_env
    except ImportError:  # pragma: no cover - run as a script
        from bench_collector import _actor, _net, _seed_env  # type: ignore[no-redef]
    from tdrl.collectors import MultiSyncDataCollector, SyncDataCollector

    make = functools.partial(_seed_env, "tdrl", True)
    actor = _actor("tdrl", _net(11, 1), make())
    multi = MultiSyncDataCollector([make, make], actor, frames_per_batch=FRAMES, total_frames=-1)
    multi.set_seed(0)
    sync = SyncDataCollector(make, actor, frames_per_batch=FRAMES, total_frames=-1)
    sync.set_seed(0)
    pairs = {}
    for name, collector in (("MultiSync", multi), ("Sync", sync)):
        batches = iter(collector)
        next(batches)
        procs = (lambda: list(multi._procs)) if collector is multi else list
        pairs[name] = (_rate(batches, procs), collector.shutdown)
    return pairs


def _measure(pairs: dict, rounds: int) -> tuple[dict, float, dict]:
    """Interleaved rounds: median rates, the median of per-round ratios, median (parent, workers) CPU us/frame."""
    rates: dict = {k: [] for k in pairs}
    cpu: dict = {k: [] for k in pairs}
    for _ in range(rounds):
        for name, (run, _) in pairs.items():
            rate, parent, workers = run()
            rates[name].append(rate)
            cpu[name].append((parent, workers))
    keys = list(pairs)
    ratio = median([p / s for p, s in zip(rates[keys[0]], rates[keys[1]])])
    cpu_med = {k: (median(a for a, _ in v), median(b for _, b in v)) for k, v in cpu.items()}
    return {k: median(v) for k, v in rates.items()}, ratio, cpu_med


def lane_rings_alone() -> bool:
    """Whether this machine's lanes let the last worker of a step ring alone (x86, not turned off)."""
    import tdrl._workers.lane as lane_mod

    return lane_mod.LANE_AVAILABLE and lane_mod._LAST_RINGS


def _note(load: tuple[float, float], cpu: dict) -> str:
    parts = [f"load average {load[0]:.1f} -> {load[1]:.1f} on {os.cpu_count()} cores; CPU us/frame"]
    for name, (parent, workers) in cpu.items():
        parts.append(f"{name} {parent:.0f} parent + {workers:.0f} workers")
    return parts[0] + ": " + ", ".join(parts[1:])


def _pair_row(figure: str, pairs: dict, bar: str, rounds: int, torchrl: float | None = None, extra: str = "") -> dict:
    before = os.getloadavg()[0]
    rates, ratio, cpu = _measure(pairs, rounds)
    after = os.getloadavg()[0]
    for _, close in pairs.values():
        close()
    ours, ref = list(pairs)
    r = row(figure, rates[ours], rates[ref], "frames/s", bar, torchrl=torchrl, note=_note((before, after), cpu) + extra)
    r["ratio"] = ratio
    return r


def run(rounds: int = 7) -> list[dict]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    torchrl, extra = None, ""
    try:
        trl = {name: _collector("torchrl", name, "random") for name in ("ParallelEnv", "SerialEnv")}
    except Exception:
        trl = None
    if trl is not None:
        trl_rates, trl_ratio, _ = _measure(trl, 3)
        for _, close in trl.values():
            close()
        torchrl, extra = trl_rates["ParallelEnv"], f"; TorchRL ParallelEnv/SerialEnv = {trl_ratio:.2f}"
    for kind, bar, what in (
        ("random", ">= 1.4", "random policy, open loop"),
        ("module", ">= 1.2", "policy in the loop (round trip per step)"),
    ):
        pairs = {name: _collector("tdrl", name, kind) for name in ("ParallelEnv", "SerialEnv")}
        figure = f"ParallelEnv(2) vs SerialEnv(2), {ENV}, {what}, frames/s"
        rows.append(_pair_row(figure, pairs, bar, rounds, *((torchrl, extra) if kind == "random" else ())))
    pairs = {
        "lane": _collector("tdrl", "ParallelEnv", "module"),
        "sockets": _collector("tdrl", "ParallelEnv", "module", True),
    }
    figure = f"ParallelEnv(2) step protocol: lane vs socket messages, {ENV}, policy in the loop, frames/s"
    rows.append(_pair_row(figure, pairs, "> 1.0", rounds))
    if lane_rings_alone():
        pairs = {
            "last rings": _collector("tdrl", "ParallelEnv", "module"),
            "every ring": _collector("tdrl", "ParallelEnv", "module", every_ring=True),
        }
        figure = f"ParallelEnv(2) lane: the last worker of a step rings vs every worker rings, {ENV}, frames/s"
        rows.append(_pair_row(figure, pairs, ">= 1.0", rounds))
    figure = (
        f"MultiSyncDataCollector(2) vs SyncDataCollector, {ENV} + DoubleToFloat, 3x256 TanhNormal actor, "
        f"{FRAMES} frames per batch, frames/s"
    )
    rows.append(_pair_row(figure, _multi_pair(), ">= 1.4", rounds))
    return rows


if __name__ == "__main__":
    for r in run():
        print_rows([r])
        print("   ", r["note"])
