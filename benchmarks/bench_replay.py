"""Replay-buffer benchmarks: sample / extend on a 1M-transition storage, prioritized
sampling, and the resident memory of a memory-mapped storage being filled.

Every figure is measured in the same run as its reference (and as TorchRL 0.14.1 when it
is importable). Transitions have HalfCheetah-v5's layout: observation float64 [17],
action float32 [6], reward float32 [1], done/terminated/truncated bool [1], with a
``"next"`` sub-TensorDict. The sample/extend storages are filled synthetically; the
memory-mapped storage is filled with 1000 real HalfCheetah-v5 steps, repeated, in a
fresh child process per library so that each resident-memory figure is its own.

Times are the calling thread's CPU time per call (``time.thread_time``), median over
rounds in which tdrl, the reference and TorchRL alternate. Everything runs on one thread
(``torch.set_num_threads(1)``), so on an idle machine this equals the wall time; on this
shared 2-core machine it leaves out the time other processes hold the core.

Run: ``python -m benchmarks.bench_replay`` (from the repository root).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from benchmarks._common import median_cpu_us, print_rows, row

CAPACITY = 1_000_000
BATCH = 256
FRAMES = 1000
ROUNDS = 7


def transitions(n: int, seed: int = 0) -> TensorDict:
    """``n`` synthetic transitions with HalfCheetah-v5's keys, shapes and dtypes."""
    gen = torch.Generator().manual_seed(seed)
    flags = {k: torch.zeros(n, 1, dtype=torch.bool) for k in ("done", "terminated", "truncated")}
    return TensorDict(
        {
            "observation": torch.randn(n, 17, dtype=torch.float64, generator=gen),
            "action": torch.rand(n, 6, generator=gen) * 2 - 1,
            **flags,
            "next": {
                "observation": torch.randn(n, 17, dtype=torch.float64, generator=gen),
                "reward": torch.randn(n, 1, generator=gen),
                **{k: v.clone() for k, v in flags.items()},
            },
        },
        [n],
    )


def half_cheetah(n: int = FRAMES) -> TensorDict:
    """``n`` real HalfCheetah-v5 transitions under a uniform random policy."""
    import gymnasium as gym

    env = gym.make("HalfCheetah-v5")
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    out = {k: [] for k in ("obs", "act", "next", "rew", "term", "trunc")}
    for _ in range(n):
        action = env.action_space.sample()
        nxt, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(out, (obs, action, nxt, reward, terminated, truncated)):
            out[key].append(value)
        obs = env.reset()[0] if terminated or truncated else nxt
    env.close()
    term = torch.tensor(out["term"]).reshape(n, 1)
    trunc = torch.tensor(out["trunc"]).reshape(n, 1)
    return TensorDict(
        {
            "observation": torch.as_tensor(np.stack(out["obs"]), dtype=torch.float64),
            "action": torch.as_tensor(np.stack(out["act"]), dtype=torch.float32),
            "done": torch.zeros(n, 1, dtype=torch.bool),
            "terminated": torch.zeros(n, 1, dtype=torch.bool),
            "truncated": torch.zeros(n, 1, dtype=torch.bool),
            "next": {
                "observation": torch.as_tensor(np.stack(out["next"]), dtype=torch.float64),
                "reward": torch.tensor(out["rew"], dtype=torch.float32).reshape(n, 1),
                "done": term | trunc,
                "terminated": term,
                "truncated": trunc,
            },
        },
        [n],
    )


def _interleaved(fns: dict[str, Callable[[], Any]], calls: int, rounds: int = ROUNDS) -> dict[str, float]:
    return median_cpu_us(fns, calls, rounds)


def _row(figure: str, tdrl: float, reference: float, unit: str, bar: str, torchrl: float | None) -> dict[str, Any]:
    # lower is better for every figure here: ratio = reference / tdrl (> 1: tdrl is better)
    note = "thread CPU time per call" if unit == "us" else "VmRSS growth while filling"
    return row(figure, tdrl, reference, unit, bar, higher_is_better=False, torchrl=torchrl, note=note)


def _torchrl_buffers():
    try:
        from torchrl.data.replay_buffers import LazyTensorStorage as TLazy
        from torchrl.data.replay_buffers import ReplayBuffer as TRB
    except Exception:
        return None
    return TRB, TLazy


# ----------------------------------------------------------------------------- figures
def bench_sample_extend() -> list[dict[str, Any]]:
    from tdrl.data.replay_buffers import LazyTensorStorage, ReplayBuffer

    batch = transitions(FRAMES)
    rb = ReplayBuffer(storage=LazyTensorStorage(CAPACITY))
    for _ in range(CAPACITY // FRAMES):
        rb.extend(batch)

    # the hand-written reference: preallocated tensors, one index per leaf, a dict out
    keys = list(batch.keys(include_nested=True, leaves_only=True))
    flat = {k: torch.empty((CAPACITY, *batch[k].shape[1:]), dtype=batch[k].dtype) for k in keys}
    for k in keys:
        flat[k].view(CAPACITY // FRAMES, FRAMES, *batch[k].shape[1:]).copy_(
            batch[k].unsqueeze(0).expand(CAPACITY // FRAMES, *batch[k].shape)
        )
    cursor = [0]

    def ref_sample():
        index = torch.randint(0, CAPACITY, (BATCH,))
        return {k: t[index] for k, t in flat.items()}

    def ref_extend():
        start = cursor[0]
        for k in keys:
            flat[k][start : start + FRAMES].copy_(batch.get(k))
        cursor[0] = (start + FRAMES) % CAPACITY

    sample_fns = {"tdrl": lambda: rb.sample(BATCH), "reference": ref_sample}
    extend_fns = {"tdrl": lambda: rb.extend(batch), "reference": ref_extend}
    trl = _torchrl_buffers()
    if trl is not None:
        TRB, TLazy = trl
        theirs = TRB(storage=TLazy(CAPACITY))
        for _ in range(CAPACITY // FRAMES):
            theirs.extend(batch)
        sample_fns["torchrl"] = lambda: theirs.sample(BATCH)
        extend_fns["torchrl"] = lambda: theirs.extend(batch)
    sample = _interleaved(sample_fns, calls=300)
    extend = _interleaved(extend_fns, calls=100)
    return [
        _row(
            "ReplayBuffer.sample(256), full 1M LazyTensorStorage, HalfCheetah transitions",
            sample["tdrl"],
            sample["reference"],
            "us",
            "<= 100 us",
            sample.get("torchrl"),
        ),
        _row(
            "ReplayBuffer.extend(1000 frames), 1M LazyTensorStorage",
            extend["tdrl"],
            extend["reference"],
            "us",
            "<= 300 us",
            extend.get("torchrl"),
        ),
    ]


def bench_prioritized() -> list[dict[str, Any]]:
    from tdrl.data.replay_buffers import LazyTensorStorage, TensorDictPrioritizedReplayBuffer

    batch = transitions(FRAMES)
    rb = TensorDictPrioritizedReplayBuffer(alpha=0.7, beta=0.5, storage=LazyTensorStorage(CAPACITY))
    for _ in range(CAPACITY // FRAMES):
        rb.extend(batch)
    gen = torch.Generator().manual_seed(0)
    rb.update_priority(torch.arange(CAPACITY), torch.rand(CAPACITY, generator=gen))

    def ours():
        sample = rb.sample(BATCH)
        rb.update_priority(sample["index"], torch.rand(BATCH))

    # the hand-written reference: a flat priority array, cumulative sum + searchsorted
    priorities = np.random.default_rng(0).random(CAPACITY) ** 0.7
    storage = rb.storage

    rng = np.random.default_rng(0)

    def reference():
        cumulative = np.cumsum(priorities)
        index = np.searchsorted(cumulative, rng.random(BATCH) * cumulative[-1], side="right")
        _ = (priorities[index] / priorities.min()) ** -0.5
        storage.get(torch.from_numpy(index))
        priorities[index] = rng.random(BATCH) ** 0.7

    torchrl_time = None
    try:  # TorchRL's sum tree is a compiled extension, missing from some installs
        from torchrl.data.replay_buffers import LazyTensorStorage as TLazy
        from torchrl.data.replay_buffers import TensorDictPrioritizedReplayBuffer as TPRB

        theirs = TPRB(alpha=0.7, beta=0.5, storage=TLazy(CAPACITY))
        for _ in range(CAPACITY // FRAMES):
            theirs.extend(batch)

        def torchrl_step():
            sample = theirs.sample(BATCH)
            theirs.update_priority(sample["index"], torch.rand(BATCH))

        fns = {"tdrl": ours, "reference": reference, "torchrl": torchrl_step}
    except Exception:
        fns = {"tdrl": ours, "reference": reference}
    times = _interleaved(fns, calls=40)
    torchrl_time = times.get("torchrl")
    return [
        _row(
            "Prioritized sample(256) + update_priority, 1M capacity",
            times["tdrl"],
            times["reference"],
            "us",
            "<= 1000 us",
            torchrl_time,
        )
    ]


def _rss_mb() -> float:
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def memmap_child(library: str) -> dict[str, float]:
    """Fills a 1M LazyMemmapStorage with repeated real HalfCheetah-v5 batches (in this
    process) and returns the growth of its resident memory."""
    torch.set_num_threads(1)
    batch = half_cheetah()
    folder = tempfile.mkdtemp(prefix=f"bench-memmap-{library}-", dir="/tmp")
    if library == "tdrl":
        from tdrl.data.replay_buffers import LazyMemmapStorage, ReplayBuffer

        rb = ReplayBuffer(storage=LazyMemmapStorage(CAPACITY, scratch_dir=folder))
    else:
        from torchrl.data.replay_buffers import LazyMemmapStorage, ReplayBuffer

        rb = ReplayBuffer(storage=LazyMemmapStorage(CAPACITY, scratch_dir=folder))
    rb.extend(batch)  # allocation happens here
    before = _rss_mb()
    start = time.perf_counter()
    for _ in range(CAPACITY // FRAMES - 1):
        rb.extend(batch)
    elapsed = time.perf_counter() - start
    after = _rss_mb()
    assert len(rb) == CAPACITY
    nbytes = sum(v.numel() * v.element_size() for v in batch.values(True, True)) * CAPACITY // FRAMES
    return {"rss_growth_mb": after - before, "data_mb": nbytes / 2**20, "fill_s": elapsed}


def bench_memmap() -> list[dict[str, Any]]:
    def child(library: str) -> dict[str, float] | None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_replay", "--memmap-child", library],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=root,
        )
        if proc.returncode != 0:
            if library == "tdrl":
                raise RuntimeError(proc.stderr)
            return None
        return json.loads(proc.stdout.strip().splitlines()[-1])

    ours = child("tdrl")
    theirs = child("torchrl") if _torchrl_buffers() is not None else None
    assert ours is not None
    return [
        _row(
            "LazyMemmapStorage 1M HalfCheetah-v5 fill: resident-memory growth (reference: data size)",
            ours["rss_growth_mb"],
            ours["data_mb"],
            "MB",
            "< 200 MB",
            None if theirs is None else theirs["rss_growth_mb"],
        )
    ]


def run() -> list[dict[str, Any]]:
    """All replay-buffer figures, each with its reference measured in the same run."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = bench_sample_extend()
    rows += bench_prioritized()
    rows += bench_memmap()
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memmap-child":
        print(json.dumps(memmap_child(sys.argv[2])))
        sys.exit(0)
    print_rows(run())
