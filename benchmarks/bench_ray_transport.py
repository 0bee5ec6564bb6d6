"""Per-message costs of Ray on this machine: what a scaling analysis for 8-512 workers builds on.

Figures, all measured in one run on a local Ray runtime (``num_cpus=2``):

- (a) an empty actor call, round trip; reference: the same round trip through a
  ``multiprocessing.Pipe`` to a child process (what tdrl's own workers use).
- (b) ``ray.get(ray.put(x))`` in the driver for payloads of ``PAYLOADS`` bytes, as a torch
  tensor and as a TensorDict of ten leaves; reference: ``x.clone()`` (one memory copy).
  The TensorDict is also timed as :class:`~tdrl.data.RayReplayBuffer` ships it: flattened
  into numpy arrays, which Ray passes without pickling their bytes.
- (c) one ``ray.put`` read by ``N`` actors (``READERS``), the weight-broadcast pattern, for
  the seed's 3x256 policy weights (as a TensorDict, and packed) and for ``BROADCAST_BYTES``;
  reference: ``N = 1``.
- (d) :class:`~tdrl.data.RayReplayBuffer` ``extend`` of a ``FRAMES``-frame CartPole-like
  collector batch and ``sample(BATCH)``; reference: the same buffer held locally. Also the
  transport chosen for TensorDicts (flat numpy dict) against pickling the TensorDict whole.

Each timing is the best of ``ROUNDS`` interleaved rounds of ``CALLS`` wall-clock calls (the
costs span processes, so thread CPU time would miss them). :func:`measure` returns the raw
figures (a dict), :func:`run` the result rows for ``run_all``.

Run: ``python -m benchmarks.bench_ray_transport`` (about a minute).
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from tensordict import TensorDict

from benchmarks._common import interleaved, print_rows, row

PAYLOADS = {"1KB": 1 << 10, "100KB": 100 << 10, "1MB": 1 << 20, "10MB": 10 << 20}
READERS = (1, 2, 4)
BROADCAST_BYTES = 10 << 20
FRAMES = 1000
BATCH = 256
CALLS = 200  # per round, for a message of up to 100 KB; fewer for larger ones
ROUNDS = 5


def _calls(nbytes: int) -> int:
    return max(3, min(CALLS, CALLS * (100 << 10) // max(nbytes, 1)))


def _per_call_s(fn: Callable[[], object], calls: int) -> Callable[[], float]:
    """A measurement for :func:`interleaved`: calls per second over ``calls`` calls."""

    def rate() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return calls / (time.perf_counter() - start)

    return rate


def _best_us(fns: dict[str, Callable[[], object]], calls: int) -> dict[str, float]:
    for fn in fns.values():  # warm up: first calls start workers, import modules
        for _ in range(min(calls, 3)):
            fn()
    rates = interleaved({name: _per_call_s(fn, calls) for name, fn in fns.items()}, rounds=ROUNDS)
    return {name: 1e6 / rate for name, rate in rates.items()}


def _echo(conn: Any) -> None:
    while True:
        message = conn.recv()
        if message is None:
            return
        conn.send(message)


def cartpole_batch(frames: int = FRAMES) -> TensorDict:
    """A collector batch of CartPole-like transitions (4 floats of observation, a one-hot action)."""
    done = torch.zeros(frames, 1, dtype=torch.bool)
    return TensorDict(
        {
            "observation": torch.randn(frames, 4),
            "action": torch.nn.functional.one_hot(torch.randint(0, 2, (frames,)), 2),
            "done": done,
            "terminated": done.clone(),
            "truncated": done.clone(),
            "collector": {"traj_ids": torch.zeros(frames, dtype=torch.int64)},
            "next": {
                "observation": torch.randn(frames, 4),
                "reward": torch.ones(frames, 1),
                "done": done.clone(),
                "terminated": done.clone(),
                "truncated": done.clone(),
            },
        },
        [frames],
    )


def _tensordict_of(nbytes: int) -> TensorDict:
    """Ten float32 leaves (two of them nested) that add up to ``nbytes``."""
    per_leaf = max(nbytes // 40, 1)
    leaves = {f"x{i}": torch.randn(per_leaf) for i in range(8)}
    return TensorDict({**leaves, "next": {"a": torch.randn(per_leaf), "b": torch.randn(per_leaf)}}, [])


def policy_weights() -> TensorDict:
    """The parameters of the seed's policy: an MLP 11 -> 256 -> 256 -> 256 -> 2 x 2 (loc, scale)."""
    sizes = [11, 256, 256, 256, 4]
    return TensorDict(
        {
            f"layer{i}": {"weight": torch.randn(b, a), "bias": torch.randn(b)}
            for i, (a, b) in enumerate(itertools.pairwise(sizes))
        },
        [],
    )


def measure() -> dict[str, Any]:
    """The raw figures (microseconds, MB/s, ratios), measured in this run."""
    import ray

    from tdrl._ray_transport import pack, unpack
    from tdrl.data import LazyTensorStorage, RayReplayBuffer, TensorDictReplayBuffer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    # the Pipe reference's child: forked before Ray starts threads (spawn where fork is missing)
    parent, child_conn = mp.Pipe()
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    child = mp.get_context(method).Process(target=_echo, args=(child_conn,), daemon=True)
    child.start()
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=0)
    class Reader:
        def nop(self) -> None:
            return None

        def read(self, data: Any) -> int:  # a top-level ObjectRef argument is fetched before the call
            return 0 if data is None else 1

    out: dict[str, Any] = {}
    readers = [Reader.remote() for _ in range(max(READERS))]
    try:
        ray.get([r.nop.remote() for r in readers], timeout=300)
        # (a) round trip
        a = _best_us(
            {
                "ray_actor_call": lambda: ray.get(readers[0].nop.remote(), timeout=60),
                "pipe": lambda: (parent.send(b""), parent.recv()),
            },
            CALLS,
        )
        out["actor_call_us"], out["pipe_round_trip_us"] = a["ray_actor_call"], a["pipe"]

        # (b) put + get in the driver
        out["put_get"] = {}
        for name, nbytes in PAYLOADS.items():
            tensor = torch.randn(nbytes // 4)
            td = _tensordict_of(nbytes)
            b = _best_us(
                {
                    "tensor": lambda t=tensor: ray.get(ray.put(t), timeout=60),
                    "tensordict": lambda t=td: ray.get(ray.put(t), timeout=60),
                    "packed_tensordict": lambda t=td: unpack(ray.get(ray.put(pack(t)), timeout=60), writable=False),
                    "clone": lambda t=tensor: t.clone(),
                },
                _calls(nbytes),
            )
            out["put_get"][name] = {
                "bytes": nbytes,
                **{f"{k}_us": v for k, v in b.items()},
                "tensor_MBps": nbytes / b["tensor"],  # bytes per us = MB/s
                "tensordict_MBps": nbytes / b["tensordict"],
                "packed_tensordict_MBps": nbytes / b["packed_tensordict"],
            }

        # (c) one put, read by N actors
        out["broadcast"] = {}
        weights = policy_weights()
        for name, payload in (
            ("policy_3x256", weights),
            ("policy_3x256_packed", pack(weights)),
            ("10MB", torch.randn(BROADCAST_BYTES // 4)),
        ):
            leaves = weights.values(True, True) if name.startswith("policy") else [payload]
            nbytes = sum(v.numel() * v.element_size() for v in leaves)

            def broadcast(n: int, payload: Any = payload) -> None:
                ref = ray.put(payload)
                ray.get([r.read.remote(ref) for r in readers[:n]], timeout=60)

            c = _best_us({f"N={n}": partial(broadcast, n) for n in READERS}, _calls(nbytes))
            out["broadcast"][name] = {"bytes": nbytes, **{f"{k}_us": v for k, v in c.items()}}

        # (d) the replay buffer, remote against local
        batch = cartpole_batch()
        local = TensorDictReplayBuffer(storage=LazyTensorStorage(100_000), batch_size=BATCH)
        with RayReplayBuffer(
            replay_buffer_cls=TensorDictReplayBuffer,
            storage=partial(LazyTensorStorage, 100_000),
            batch_size=BATCH,
            remote_config={"num_cpus": 0},
        ) as remote:
            local_batch = batch.clone()  # the local buffer writes "index" into what it is given
            for _ in range(20):
                local.extend(local_batch)
                remote.extend(batch)
            actor = remote._actor
            d = _best_us(
                {
                    "ray_extend": lambda: remote.extend(batch),
                    "ray_extend_pickled_td": lambda: ray.get(actor.extend.remote(batch, {}), timeout=60),
                    "local_extend": lambda: local.extend(local_batch),
                    "ray_sample": remote.sample,
                    "local_sample": local.sample,
                },
                CALLS // 2,
            )
        out["replay"] = {f"{k}_us": v for k, v in d.items()} | {"frames": FRAMES, "batch": BATCH}
    finally:
        parent.send(None)
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
        for r in readers:
            ray.kill(r)
        if started:
            ray.shutdown()
    return out


def run() -> list[dict[str, Any]]:
    """Result rows (each against its reference from the same run) of :func:`measure`."""
    m = measure()
    rows = [
        row(
            "Ray: empty actor call, round trip (reference: multiprocessing.Pipe round trip)",
            m["actor_call_us"],
            m["pipe_round_trip_us"],
            "us",
            "none (a cost to build on)",
            higher_is_better=False,
        )
    ]
    for name, fig in m["put_get"].items():
        rows.append(
            row(
                f"Ray: ray.get(ray.put(tensor of {name})) in the driver (reference: tensor.clone())",
                fig["tensor_us"],
                fig["clone_us"],
                "us",
                "none (a cost to build on)",
                higher_is_better=False,
                note=(
                    f"{name}: tensor {fig['tensor_MBps']:.0f} MB/s, TensorDict of 10 leaves "
                    f"{fig['tensordict_us']:.0f} us ({fig['tensordict_MBps']:.0f} MB/s), the same packed as "
                    f"numpy arrays {fig['packed_tensordict_us']:.0f} us ({fig['packed_tensordict_MBps']:.0f} MB/s)"
                ),
            )
        )
    for name, fig in m["broadcast"].items():
        widest = max(READERS)
        rows.append(
            row(
                f"Ray: one put of {name} ({fig['bytes'] / 2**20:.2f} MB) read by {widest} actors (reference: 1 actor)",
                fig[f"N={widest}_us"],
                fig["N=1_us"],
                "us",
                "none (a cost to build on)",
                higher_is_better=False,
                note=f"{name}: " + ", ".join(f"{k[:-3]} {v:.0f} us" for k, v in fig.items() if k.endswith("_us")),
            )
        )
    replay = m["replay"]
    rows += [
        row(
            f"RayReplayBuffer: extend({FRAMES} CartPole frames) (reference: the same buffer, local)",
            replay["ray_extend_us"],
            replay["local_extend_us"],
            "us",
            "none (a cost to build on)",
            higher_is_better=False,
            note=(
                "the TensorDict pickled whole instead of as flat numpy arrays: "
                f"{replay['ray_extend_pickled_td_us']:.0f} us"
            ),
        ),
        row(
            f"RayReplayBuffer: sample({BATCH}) (reference: the same buffer, local)",
            replay["ray_sample_us"],
            replay["local_sample_us"],
            "us",
            "none (a cost to build on)",
            higher_is_better=False,
        ),
    ]
    return rows


if __name__ == "__main__":
    import json

    rows = run()
    print_rows(rows)
    for r in rows:
        if r["note"]:
            print("   ", r["note"])
    print(json.dumps({r["figure"]: round(r["tdrl"], 1) for r in rows}, indent=1))
