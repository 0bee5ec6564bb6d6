"""MultiSyncDataCollector and MultiaSyncDataCollector: batches, ids, weights, failures, shutdown."""

from __future__ import annotations

import functools
import gc
import time

import pytest
import torch
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.collectors import MultiaSyncDataCollector as _MultiaSync
from tdrl.collectors import MultiSyncDataCollector as _MultiSync
from tdrl.testing import ContinuousActionMock, CountingEnv, FailingEnv

# fork explicitly: importing torchrl elsewhere in the suite makes "spawn" the default (slow to start)
MultiSyncDataCollector = functools.partial(_MultiSync, mp_start_method="fork")
MultiaSyncDataCollector = functools.partial(_MultiaSync, mp_start_method="fork")


def _linear_policy() -> TensorDictModule:
    return TensorDictModule(nn.Linear(3, 2), in_keys=["observation"], out_keys=["action"])


def test_multisync_batches_and_ids():
    fns = [functools.partial(CountingEnv, max_steps=2), functools.partial(CountingEnv, max_steps=3)]
    collector = MultiSyncDataCollector(fns, None, frames_per_batch=12, total_frames=30)
    batches = list(collector)
    assert [b.batch_size for b in batches] == [torch.Size([2, 6])] * 3
    ids = torch.cat([b["collector", "traj_ids"] for b in batches], -1)
    for i, n in enumerate((2, 3)):
        obs = torch.cat([b["next", "observation"][i, :, 0] for b in batches])
        assert obs[: 2 * n].tolist() == list(range(1, n + 1)) * 2
        assert (ids[i] % 2 == i).all()  # worker-unique ids
        changed = ids[i, 1:] != ids[i, :-1]
        assert torch.equal(changed, obs[:-1] == n)
    collector.shutdown()


def test_multisync_cat_results_and_split():
    collector = MultiSyncDataCollector(
        CountingEnv, None, num_workers=2, frames_per_batch=8, total_frames=8, cat_results=-1, split_trajs=True
    )
    batch = next(iter(collector))
    assert batch["collector", "mask"].sum() == 8
    collector.shutdown()


def test_multiasync_batches():
    collector = MultiaSyncDataCollector([ContinuousActionMock] * 2, None, frames_per_batch=5, total_frames=20)
    batches = list(collector)
    assert len(batches) == 4
    assert all(b.batch_size == (5,) for b in batches)
    assert collector._frames == 20
    collector.shutdown()


@pytest.mark.parametrize("cls", [MultiSyncDataCollector, MultiaSyncDataCollector])
def test_weights_are_pushed(cls):
    policy = _linear_policy()
    collector = cls([ContinuousActionMock] * 2, policy, frames_per_batch=4, total_frames=-1)
    it = iter(collector)
    first = next(it)
    assert (first["action"] != 0).any()
    with torch.no_grad():
        for p in policy.parameters():
            p.zero_()
    collector.update_policy_weights_()
    # each worker's batch in flight during the push may predate it; every later one uses the new weights
    per_worker: dict[int, list] = {0: [], 1: []}  # each worker's share of each batch, in order
    taken = 0
    while min(len(v) for v in per_worker.values()) < 2:
        batch = next(it).reshape(-1)
        taken += 1
        assert taken <= 12, f"a worker starved: batches per worker {[len(v) for v in per_worker.values()]}"
        workers = batch["collector", "traj_ids"] % 2
        for w in (0, 1):
            if (workers == w).any():
                per_worker[w].append(batch["action"][workers == w])
    for shares in per_worker.values():
        assert all((a == 0).all() for a in shares[1:])
    state = collector.state_dict()
    assert state["frames"] == 4 * (1 + taken)
    assert "policy_state_dict" in state
    collector.shutdown()


def test_worker_error_reaches_parent():
    collector = MultiSyncDataCollector(
        [functools.partial(FailingEnv, fail_after=4)] * 2, None, frames_per_batch=4, total_frames=-1
    )
    it = iter(collector)
    next(it)
    start = time.monotonic()
    with pytest.raises(
        RuntimeError, match=r"(?s)MultiSyncDataCollector worker 0 raised.*FailingEnv: failing on purpose"
    ):
        next(it)
    assert time.monotonic() - start < 30
    procs = list(collector._procs)
    collector.shutdown()
    assert not any(p.is_alive() for p in procs)


def test_bad_input():
    with pytest.raises(RuntimeError, match="no simulator"):
        MultiSyncDataCollector([_raising_factory], None, frames_per_batch=4)
    with pytest.raises(ValueError, match="multiple of the number of workers"):
        MultiSyncDataCollector([CountingEnv] * 3, None, frames_per_batch=10)
    lazy = TensorDictModule(nn.LazyLinear(2), in_keys=["observation"], out_keys=["action"])
    with pytest.raises(ValueError, match="uninitialized"):
        MultiaSyncDataCollector([ContinuousActionMock], lazy, frames_per_batch=4)
    with pytest.raises(TypeError, match="callables"):
        MultiSyncDataCollector([CountingEnv()], None, frames_per_batch=4)
    with pytest.raises(ValueError, match="num_workers"):
        MultiSyncDataCollector(CountingEnv, None, frames_per_batch=4)


def _raising_factory():
    raise RuntimeError("no simulator here")


def test_garbage_collection_stops_workers():
    collector = MultiaSyncDataCollector([CountingEnv] * 2, None, frames_per_batch=4, total_frames=-1)
    it = iter(collector)
    next(it)
    procs = list(collector._procs)
    del it, collector
    gc.collect()
    for p in procs:
        p.join(10)
    assert not any(p.is_alive() for p in procs)
