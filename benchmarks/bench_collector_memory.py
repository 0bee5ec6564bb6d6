"""1M frames through SyncDataCollector with a bounded consumer: resident memory must stay flat.

The cheapest env (``CountingEnv`` with batch size ``[10]``, random actions, so 100,000
collector steps) makes the collector's own per-step and per-batch work dominate. The
consumer keeps the last two batches and a running sum, as a training loop would. The
resident set size (``VmRSS`` in ``/proc/self/status``) is sampled after every batch;
the figure compares the RSS at the end with the RSS once the first 10% of the frames
are collected (allocator pools warmed up). A leak of one tensor per step would add
tens of MB over the run.

Bar (issue 5): flat, i.e. the final RSS within 5% of the early one (ratio >= 0.95).

Run: ``python -m benchmarks.bench_collector_memory`` (about 30-60 s on 2 cores).
"""

from __future__ import annotations

import collections
import time
import warnings

import torch

try:
    from benchmarks._common import print_rows, row
except ImportError:  # pragma: no cover - run as a script
    from _common import print_rows, row  # type: ignore[no-redef]

TOTAL = 1_000_000
BATCH = 10_000
ENVS = 10


def rss_mb() -> float:
    """This process's resident set size, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run() -> list[dict]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from tdrl.collectors import SyncDataCollector
    from tdrl.testing import CountingEnv

    collector = SyncDataCollector(
        CountingEnv(max_steps=50, batch_size=[ENVS]), None, frames_per_batch=BATCH, total_frames=TOTAL
    )
    kept: collections.deque = collections.deque(maxlen=2)
    total_reward = 0.0
    samples = []
    start = time.perf_counter()
    for batch in collector:
        kept.append(batch)
        total_reward += float(batch["next", "reward"].sum())
        samples.append(rss_mb())
    elapsed = time.perf_counter() - start
    collector.shutdown()
    early = samples[len(samples) // 10]
    final = samples[-1]
    peak = max(samples[len(samples) // 10 :])
    frames = collector._frames
    r = row(
        f"SyncDataCollector, {frames:,} frames, bounded consumer: RSS (MB) at 10% vs at the end",
        final,
        early,
        "MB",
        ">= 0.95",
        higher_is_better=False,
        note=f"peak after warm-up {peak:.1f} MB; {frames / elapsed:,.0f} frames/s; reward sum {total_reward:.0f}",
    )
    return [r]


if __name__ == "__main__":
    rows = run()
    print_rows(rows)
    print("   ", rows[0]["note"])
