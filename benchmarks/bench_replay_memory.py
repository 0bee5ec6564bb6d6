"""Replay-buffer memory: each observation stored once (``DedupNextStorage``) or twice (plain).

Two buffers of ``CAPACITY`` (100k) Atari-like transitions, filled with the same stream: a
``uint8`` frame of ``FRAME`` (84x84) at the root and under ``"next"``, an ``int64`` action,
a reward, done / terminated / truncated flags and trajectory ids, as a collector of
``N_ENVS`` envs returns them (``[N_ENVS, STEPS]`` per batch, flattened with ``reshape(-1)``,
``CAPACITY`` plus a tenth so that the ring has wrapped). Episodes end after a geometric
number of steps (mean ``EPISODE_MEAN``), half by termination, half by truncation; a new
episode starts from another frame. One buffer is on a plain ``LazyTensorStorage``, the other
on ``DedupNextStorage(LazyTensorStorage(...))``.

Figures, all measured in the same run:

- bytes held: the sizes of all the tensors each storage holds, found by walking the storage
  object (not computed from the layout); ratio = plain / dedup (about 2 expected).
- ``sample(256)`` time and ``extend`` time of one collector batch: median over rounds of the
  thread CPU time per call, the two buffers alternating; ratio = plain / dedup.

Run: ``python -m benchmarks.bench_replay_memory`` (about a minute; 2.2 GB of memory at the peak).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from benchmarks._common import median_cpu_us, print_rows, row

CAPACITY = 100_000
FRAME = (84, 84)
N_ENVS = 8
STEPS = 128  # per env and batch: 1024 frames per batch
EPISODE_MEAN = 500
BATCH = 256
POOL = 4096  # distinct frames the stream cycles through
SAMPLE_CALLS = 60
EXTEND_CALLS = 10
ROUNDS = 7


class AtariLikeStream:
    """Collector batches of Atari-like transitions: consecutive frames of an episode are
    consecutive frames of a pool of random images; a reset jumps to a random one."""

    def __init__(self, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.pool = torch.randint(0, 256, (POOL, *FRAME), generator=gen, dtype=torch.uint8)
        self.rng = random.Random(seed)
        self.frame = [self.rng.randrange(POOL) for _ in range(N_ENVS)]
        self.traj = list(range(N_ENVS))
        self.next_traj = N_ENVS

    def batch(self) -> TensorDict:
        """``N_ENVS * STEPS`` transitions, env after env."""
        obs, nxt, terminated, truncated, traj = [], [], [], [], []
        for env in range(N_ENVS):
            for _ in range(STEPS):
                following = (self.frame[env] + 1) % POOL
                obs.append(self.frame[env])
                nxt.append(following)
                traj.append(self.traj[env])
                end = self.rng.random() < 1 / EPISODE_MEAN
                terminated.append(end and self.rng.random() < 0.5)
                truncated.append(end and not terminated[-1])
                if end:
                    self.frame[env] = self.rng.randrange(POOL)
                    self.traj[env] = self.next_traj
                    self.next_traj += 1
                else:
                    self.frame[env] = following
        count = len(obs)
        term = torch.tensor(terminated).unsqueeze(-1)
        trunc = torch.tensor(truncated).unsqueeze(-1)
        flags = {"done": torch.zeros(count, 1, dtype=torch.bool)}
        flags["terminated"], flags["truncated"] = flags["done"].clone(), flags["done"].clone()
        return TensorDict(
            {
                "observation": self.pool[torch.tensor(obs)],
                "action": torch.randint(0, 18, (count, 1)),
                "collector": {"traj_ids": torch.tensor(traj)},
                **flags,
                "next": {
                    "observation": self.pool[torch.tensor(nxt)],
                    "reward": torch.randn(count, 1),
                    "done": term | trunc,
                    "terminated": term,
                    "truncated": trunc,
                },
            },
            [count],
        )


def held_bytes(storage: Any) -> int:
    """The bytes of every tensor (each memory block once) and of every numpy array that owns
    its memory (views of tensors do not), reachable from ``storage``'s attributes."""
    seen: set[int] = set()
    total = 0
    stack = [storage]
    visited: set[int] = set()
    while stack:
        obj = stack.pop()
        if isinstance(obj, torch.Tensor):
            block = obj.untyped_storage()
            if block.nbytes() and block.data_ptr() not in seen:
                seen.add(block.data_ptr())
                total += block.nbytes()
        elif isinstance(obj, np.ndarray):
            if obj.flags.owndata and obj.ctypes.data not in seen:
                seen.add(obj.ctypes.data)
                total += obj.nbytes
        elif isinstance(obj, TensorDictBase):
            stack.extend(obj.values(include_nested=True, leaves_only=True))
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("tdrl.") and id(obj) not in visited:
            visited.add(id(obj))  # a storage, or a part of one
            stack.extend(vars(obj).values())
    return total


def filled_buffers() -> tuple[Any, Any, AtariLikeStream]:
    from tdrl.data.replay_buffers import DedupNextStorage, LazyTensorStorage, ReplayBuffer

    plain = ReplayBuffer(storage=LazyTensorStorage(CAPACITY), batch_size=BATCH)
    dedup = ReplayBuffer(storage=DedupNextStorage(LazyTensorStorage(CAPACITY)), batch_size=BATCH)
    stream = AtariLikeStream()
    frames = 0
    while frames < CAPACITY * 11 // 10:
        batch = stream.batch()
        plain.extend(batch)
        dedup.extend(batch)
        frames += batch.batch_size[0]
    return plain, dedup, stream


def run() -> list[dict[str, Any]]:
    """Bytes held, sample and extend times of the two buffers, measured in this run."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    plain, dedup, stream = filled_buffers()
    plain_bytes, dedup_bytes = held_bytes(plain.storage), held_bytes(dedup.storage)
    sample = median_cpu_us({"dedup": dedup.sample, "plain": plain.sample}, calls=SAMPLE_CALLS, rounds=ROUNDS)
    batch = stream.batch()
    extend = median_cpu_us(
        {"dedup": lambda: dedup.extend(batch), "plain": lambda: plain.extend(batch)}, calls=EXTEND_CALLS, rounds=ROUNDS
    )
    shape = "x".join(map(str, FRAME))
    kept = dedup.storage.kept_next
    return [
        row(
            f"DedupNextStorage: bytes held by {CAPACITY:,} uint8 {shape} transitions (reference: plain storage)",
            dedup_bytes / 2**20,
            plain_bytes / 2**20,
            "MB",
            ">= 1.9 (dedup holds <= 0.53 of it)",
            higher_is_better=False,
            note=(
                f"dedup / plain = {dedup_bytes / plain_bytes:.3f}; {kept:,} of {len(dedup):,} items keep their next "
                f"frame apart ({N_ENVS} envs x {STEPS} steps per batch, episodes of ~{EPISODE_MEAN} steps)"
            ),
        ),
        row(
            f"DedupNextStorage: sample({BATCH}) of those (reference: plain storage)",
            sample["dedup"],
            sample["plain"],
            "us",
            ">= 0.8",
            higher_is_better=False,
            note="thread CPU time per call; ratio = plain / dedup",
        ),
        row(
            f"DedupNextStorage: extend({batch.batch_size[0]} frames) into those (reference: plain storage)",
            extend["dedup"],
            extend["plain"],
            "us",
            ">= 0.8",
            higher_is_better=False,
            note="thread CPU time per call; the dedup write compares each frame with the next one",
        ),
    ]


if __name__ == "__main__":
    rows = run()
    print_rows(rows)
    for r in rows:
        print("   ", r["note"])
