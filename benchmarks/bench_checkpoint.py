"""Saving and restoring a whole training state: ``tdrl.checkpoint`` against ``torch.save``.

The state is an off-policy run's: a 3x256 MLP policy and a Q-network, their Adam optimizers,
and a replay buffer of 100k transitions (17-float observations, 6-float actions). The
reference is what a careful user writes by hand: the same state dicts (the buffer as plain
tensors) in one ``torch.save`` file, flushed, fsynced and renamed into place, read back with
``torch.load(weights_only=True)``. tdrl writes a folder with a checksum per file (crash-safe,
no pickle) and checks every file and key before it restores anything. Wall-clock seconds,
best of interleaved rounds; run with ``python -m benchmarks.bench_checkpoint``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
from tensordict import TensorDict

from benchmarks._common import interleaved, print_rows, row
from tdrl.checkpoint import Checkpoint, GlobalRNGState
from tdrl.data.replay_buffers import ReplayBuffer
from tdrl.data.replay_buffers.storages import LazyTensorStorage
from tdrl.modules import MLP

TRANSITIONS = 100_000


def _state(seed: int) -> dict:
    torch.manual_seed(seed)
    policy = MLP(in_features=17, out_features=6, num_cells=[256, 256, 256])
    qnet = MLP(in_features=23, out_features=1, num_cells=[256, 256, 256])
    optims = [torch.optim.Adam(m.parameters()) for m in (policy, qnet)]
    for module, optim in zip((policy, qnet), optims):
        module(torch.randn(8, module[0].in_features)).sum().backward()
        optim.step()
    buffer = ReplayBuffer(storage=LazyTensorStorage(TRANSITIONS))
    obs = torch.randn(TRANSITIONS, 17)
    buffer.extend(
        TensorDict(
            observation=obs,
            action=torch.randn(TRANSITIONS, 6),
            next=TensorDict(observation=obs + 1, reward=torch.randn(TRANSITIONS, 1), batch_size=[TRANSITIONS]),
            batch_size=[TRANSITIONS],
        )
    )
    return {"policy": policy, "qnet": qnet, "policy_optim": optims[0], "qnet_optim": optims[1], "buffer": buffer}


def _by_hand_save(state: dict, path: Path) -> None:
    payload = {k: v.state_dict() for k, v in state.items() if k != "buffer"}
    payload["buffer"] = state["buffer"][:].to_dict()
    payload["rng"] = torch.get_rng_state()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as file:
        torch.save(payload, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def _by_hand_load(state: dict, path: Path) -> None:
    payload = torch.load(path, weights_only=True)
    for k, v in state.items():
        if k != "buffer":
            v.load_state_dict(payload[k])
    state["buffer"].empty()
    state["buffer"].extend(TensorDict.from_dict(payload["buffer"], batch_size=[TRANSITIONS]))
    torch.set_rng_state(payload["rng"])


def main() -> list[dict]:
    torch.set_num_threads(1)
    source, target = _state(0), _state(1)
    folder = Path(tempfile.mkdtemp())

    def tdrl_save() -> float:
        start = time.perf_counter()
        Checkpoint(**source, rng=GlobalRNGState()).save(folder / "tdrl")
        return 1 / (time.perf_counter() - start)

    def tdrl_load() -> float:
        start = time.perf_counter()
        Checkpoint(**target, rng=GlobalRNGState()).load(folder / "tdrl")
        return 1 / (time.perf_counter() - start)

    def hand_save() -> float:
        start = time.perf_counter()
        _by_hand_save(source, folder / "hand.pt")
        return 1 / (time.perf_counter() - start)

    def hand_load() -> float:
        start = time.perf_counter()
        _by_hand_load(target, folder / "hand.pt")
        return 1 / (time.perf_counter() - start)

    best = interleaved({"tdrl_save": tdrl_save, "hand_save": hand_save, "tdrl_load": tdrl_load, "hand_load": hand_load})
    size = sum(f.stat().st_size for f in (folder / "tdrl").rglob("*") if f.is_file()) / 2**20
    rows = [
        row("save: policy, Q-net, 2 Adam, 100k-transition buffer", 1 / best["tdrl_save"], 1 / best["hand_save"], "s",
            "none set", higher_is_better=False, note=f"{size:.0f} MiB on disk"),
        row("load (checked) of the same state", 1 / best["tdrl_load"], 1 / best["hand_load"], "s", "none set",
            higher_is_better=False),
    ]  # fmt: skip
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main()
