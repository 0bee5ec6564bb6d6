"""A 1M-frame soak: multi-process collection, a replay buffer, an update loop and checkpoints.

What a long training run does, at the speed of the cheapest env so that tdrl's own work
dominates: ``MultiSyncDataCollector`` over two worker processes (``CountingEnv`` with batch
size ``[10]`` each, random actions), every batch written into a 200k-item
``LazyTensorStorage`` replay buffer, eight sampled minibatches of 256 per batch for an Adam
step of a small regression network (observation -> reward), and a ``dumps()`` checkpoint of
the whole buffer every 25 batches (crash-safe: new folder, fsync, rename).

After every batch it reads the resident memory of the parent and of each worker
(``VmRSS`` in ``/proc/<pid>/status``), the parent's open file descriptors
(``/proc/self/fd``) and its live child processes. The figures compare the end of the run
with the state once 10% of the frames are in (allocator pools, the buffer and the
checkpoint folder warmed up): resident memory within 5%, descriptors and processes equal.
After ``shutdown()`` no child process may be left.

Bars (issue 16): RSS ratio >= 0.95; descriptors and processes ratio == 1.00; 0 processes
after shutdown.

Run: ``python -m benchmarks.bench_soak`` (about 10 s on 2 cores).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
import warnings

import torch
from torch import nn

try:
    from benchmarks._common import print_rows, row
except ImportError:  # pragma: no cover - run as a script
    from _common import print_rows, row  # type: ignore[no-redef]

TOTAL = 1_000_000
BATCH = 10_000
ENVS_PER_WORKER = 10
WORKERS = 2
BUFFER = 200_000
MINIBATCH = 256
UPDATES_PER_BATCH = 8
CHECKPOINT_EVERY = 25


def rss_mb(pid: int | str = "self") -> float:
    """The resident set size of process ``pid``, in MB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return 0.0
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def open_fds() -> int:
    """The number of file descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))


def _make_env():
    from tdrl.testing import CountingEnv

    return CountingEnv(max_steps=50, batch_size=[ENVS_PER_WORKER])


def run() -> list[dict]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from tdrl.collectors import MultiSyncDataCollector
    from tdrl.data.replay_buffers import ReplayBuffer
    from tdrl.data.replay_buffers.storages import LazyTensorStorage

    collector = MultiSyncDataCollector(
        [_make_env] * WORKERS, None, frames_per_batch=BATCH, total_frames=TOTAL, cat_results=0
    )
    buffer = ReplayBuffer(storage=LazyTensorStorage(BUFFER), batch_size=MINIBATCH)
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    optim = torch.optim.Adam(net.parameters(), lr=1e-3)
    samples: list[dict] = []
    start = time.perf_counter()
    frames = 0
    with tempfile.TemporaryDirectory() as folder:
        for i, batch in enumerate(collector):
            frames += batch.numel()
            buffer.extend(batch.reshape(-1))
            for _ in range(UPDATES_PER_BATCH):
                sample = buffer.sample()
                prediction = net(sample["observation"].float())
                loss = (prediction - sample["next", "reward"]).pow(2).mean()
                optim.zero_grad()
                loss.backward()
                optim.step()
            if i % CHECKPOINT_EVERY == 0:
                buffer.dumps(folder)
            children = multiprocessing.active_children()
            samples.append(
                {
                    "rss": rss_mb() + sum(rss_mb(p.pid) for p in children),
                    "fds": open_fds(),
                    "procs": len(children),
                }
            )
        elapsed = time.perf_counter() - start
        collector.shutdown()
    time.sleep(0.2)  # let the OS reap what shutdown() joined
    left = len(multiprocessing.active_children())
    early, final = samples[len(samples) // 10], samples[-1]
    peak = max(s["rss"] for s in samples[len(samples) // 10 :])
    setting = f"{frames:,} frames, {WORKERS} workers, replay {BUFFER:,}, {UPDATES_PER_BATCH} updates/batch"
    return [
        row(
            f"soak ({setting}): RSS of parent + workers (MB) at 10% vs at the end",
            final["rss"],
            early["rss"],
            "MB",
            ">= 0.95",
            higher_is_better=False,
            note=f"peak after warm-up {peak:.1f} MB; {frames / elapsed:,.0f} frames/s; final loss {loss.item():.4f}",
        ),
        row(
            f"soak ({setting}): open file descriptors at 10% vs at the end",
            final["fds"],
            early["fds"],
            "fds",
            "== 1.00",
            higher_is_better=False,
            note=f"{early['fds']} at 10%, {final['fds']} at the end, max {max(s['fds'] for s in samples)}",
        ),
        row(
            f"soak ({setting}): live worker processes at 10% vs at the end (and after shutdown)",
            final["procs"],
            early["procs"],
            "processes",
            "== 1.00, 0 after shutdown",
            higher_is_better=False,
            note=f"{early['procs']} at 10%, {final['procs']} at the end, {left} after shutdown()",
        ),
    ]


if __name__ == "__main__":
    rows = run()
    print_rows(rows)
    for r in rows:
        print("   ", r["note"])
