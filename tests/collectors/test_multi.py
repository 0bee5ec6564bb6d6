"""MultiSyncDataCollector and MultiaSyncDataCollector: batches, ids, weights, failures, shutdown."""

from __future__ import annotations

import functools
import gc
import os
import signal
import time

import pytest
import torch
from tensordict.nn import TensorDictModule
from torch import nn

from tdrl.collectors import MultiaSyncDataCollector as _MultiaSync
from tdrl.collectors import MultiSyncDataCollector as _MultiSync
from tdrl.envs import ParallelEnv
from tdrl.testing import ContinuousActionMock, CountingEnv, FailingEnv

# fork explicitly: importing torchrl elsewhere in the suite makes "spawn" the default (slow to start)
MultiSyncDataCollector = functools.partial(_MultiSync, mp_start_method="fork")
MultiaSyncDataCollector = functools.partial(_MultiaSync, mp_start_method="fork")


class _SlowCountingEnv(CountingEnv):
    """A CountingEnv that never ends and takes 20 ms a step: each worker's observations count its frames."""

    def __init__(self) -> None:
        super().__init__(max_steps=10**9)

    def _step(self, tensordict):
        time.sleep(0.02)
        return super()._step(tensordict)


def _per_worker(batch, num_workers: int = 2) -> dict[int, list[float]]:
    """Each worker's observations in ``batch``, in order (the worker is ``traj_id % num_workers``)."""
    flat = batch.reshape(-1)
    workers = flat["collector", "traj_ids"] % num_workers
    obs = flat["next", "observation"].squeeze(-1)
    return {w: obs[workers == w].tolist() for w in range(num_workers) if (workers == w).any()}


def _take_until_it_raises(batches, into: list | None = None) -> None:
    """Take batches (appending them to ``into``) until one ``next()`` raises; at most 10,000."""
    for _ in range(10_000):
        batch = next(batches)
        if into is not None:
            into.append(batch)


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


def test_multisync_split_trajs_counts_the_frames_collected_not_the_padded_ones():
    # each batch is 2 x 3 frames of 2-step episodes, split into 4 padded trajectories of 2 (8 entries): counting
    # those stopped after 4 batches (32 >= 30) with 24 frames collected
    fns = [functools.partial(CountingEnv, max_steps=2)] * 2
    collector = MultiSyncDataCollector(fns, None, frames_per_batch=6, total_frames=30, split_trajs=True)
    batches = list(collector)
    assert len(batches) == 5
    assert sum(int(b["collector", "mask"].sum()) for b in batches) == 30
    collector.shutdown()


def _check_whole_episodes(episodes: list, lengths: set[int]) -> None:
    """CountingEnv episodes: observations 0..L-1, next 1..L, done only at the last step, one trajectory id."""
    for ep in episodes:
        n = ep.shape[0]
        assert n in lengths
        assert ep["observation"][:, 0].tolist() == list(range(n))
        assert ep["next", "observation"][:, 0].tolist() == list(range(1, n + 1))
        assert ep["next", "done"][:, 0].tolist() == [False] * (n - 1) + [True]
        assert ep["collector", "traj_ids"].unique().numel() == 1


def _padded_episodes(batch) -> list:
    mask = batch["collector", "mask"]
    return [batch[i][mask[i]] for i in range(batch.shape[0])]


def _cat_episodes(batch) -> list:
    ends = torch.nonzero(batch["next", "done"][:, 0]).squeeze(-1).tolist()
    assert ends[-1] == batch.shape[0] - 1  # a cat batch ends with an episode's last step
    return [batch[start : stop + 1] for start, stop in zip([0, *[e + 1 for e in ends[:-1]]], ends)]


@pytest.mark.parametrize("traj_format", ["padded", "cat"])
@pytest.mark.parametrize("cls", [MultiSyncDataCollector, MultiaSyncDataCollector])
def test_trajs_per_batch_yields_whole_episodes_of_all_workers(cls, traj_format):
    # 2 frames per request: the 5-step episodes span three internal batches each
    fns = [functools.partial(CountingEnv, max_steps=5), functools.partial(CountingEnv, max_steps=3)]
    frames = 4 if cls is MultiSyncDataCollector else 2
    collector = cls(fns, None, frames_per_batch=frames, total_frames=60, trajs_per_batch=3, traj_format=traj_format)
    batches = list(collector)
    assert collector._frames == 60
    assert len(batches) >= 4
    episodes = []
    for batch in batches:
        got = _padded_episodes(batch) if traj_format == "padded" else _cat_episodes(batch)
        assert len(got) == 3
        if traj_format == "padded":
            assert batch.shape == (3, max(e.shape[0] for e in got))
        episodes += got
    _check_whole_episodes(episodes, {5, 3})
    ids = [int(e["collector", "traj_ids"][0]) for e in episodes]
    assert len(set(ids)) == len(ids)  # no episode handed out twice
    assert {i % 2 for i in ids} == {0, 1}  # both workers' episodes
    collector.shutdown()


def test_trajs_per_batch_after_reset_at_each_iter_drops_the_cut_episodes():
    # each request resets the workers: a 3-step episode and a cut step per 4-frame worker batch
    fns = [functools.partial(CountingEnv, max_steps=3)] * 2
    collector = MultiaSyncDataCollector(
        fns, None, frames_per_batch=4, total_frames=80, trajs_per_batch=2, reset_at_each_iter=True
    )
    batches = iter(collector)
    episodes = []
    for batch in batches:
        episodes += _padded_episodes(batch)
        assert len(batches._episodes.partial) <= 2  # at most one cut episode per worker is held, then dropped
    _check_whole_episodes(episodes, {3})
    assert len(episodes) == 20
    collector.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"trajs_per_batch": 0}, "trajs_per_batch must be None or a positive int"),
        ({"traj_format": "cat"}, "needs trajs_per_batch"),
        ({"trajs_per_batch": 2, "traj_format": "stacked"}, "traj_format must be one of"),
        ({"trajs_per_batch": 2, "split_trajs": True}, "Pass one of them"),
    ],
)
def test_trajs_per_batch_bad_input(kwargs, match):
    for cls in (MultiSyncDataCollector, MultiaSyncDataCollector):
        with pytest.raises(ValueError, match=match):
            cls([CountingEnv], None, frames_per_batch=2, **kwargs)


def test_multiasync_batches():
    collector = MultiaSyncDataCollector([ContinuousActionMock] * 2, None, frames_per_batch=5, total_frames=20)
    batches = list(collector)
    assert len(batches) == 4
    assert all(b.batch_size == (5,) for b in batches)
    assert collector._frames == 20
    collector.shutdown()


def _stacks_then_norm(max_steps: int, scale: float | None):
    """CountingEnv through CatFrames, then (with ``scale``) ObservationNorm rewriting the stacks (kept inside)."""
    from tdrl.envs import CatFrames, Compose, ObservationNorm, TransformedEnv

    chain = Compose(CatFrames(N=3, dim=-1, in_keys=["observation"]))
    if scale is not None:
        chain.append(ObservationNorm(loc=0.5, scale=scale, in_keys=["observation"]))
    return TransformedEnv(CountingEnv(max_steps=max_steps), chain)


def test_workers_collect_the_stacks_cat_frames_keeps_inside():
    batches = []
    for scale in (None, 2.0):
        fns = [functools.partial(_stacks_then_norm, n, scale) for n in (3, 4)]
        collector = MultiSyncDataCollector(fns, None, frames_per_batch=12, total_frames=24)
        batches.append(torch.cat(list(collector), -1))
        collector.shutdown()
    plain, normed = batches
    assert plain["next", "done"].sum() >= 6
    for key in ("observation", ("next", "observation")):
        assert torch.equal(normed[key], plain[key] * 2.0 + 0.5), key


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
    # the collector failed: every later use says so (not a bare StopIteration)
    for again in (lambda: next(it), lambda: next(iter(collector)), collector.next):
        with pytest.raises(
            RuntimeError,
            match=r"cannot be used any more: a worker failed while collecting \(RuntimeError: FailingEnv: failing",
        ):
            again()
    procs = list(collector._procs)
    collector.shutdown()
    assert not any(p.is_alive() for p in procs)


@pytest.mark.parametrize("cls", [MultiSyncDataCollector, MultiaSyncDataCollector])
def test_next_after_ctrl_c_resumes_the_interrupted_batch(cls, ctrl_c_after):
    collector = cls([_SlowCountingEnv] * 2, None, frames_per_batch=4, total_frames=-1)
    it = iter(collector)
    got = []
    with pytest.raises(KeyboardInterrupt), ctrl_c_after(0.1):  # lands while the workers collect (80 ms a batch)
        _take_until_it_raises(it, got)
    for batches in (it, iter(collector)):  # the same iterator goes on, and so does a new one
        got += [next(batches) for _ in range(3)]
    seen: dict[int, list[float]] = {0: [], 1: []}
    for batch in got:
        for w, obs in _per_worker(batch).items():
            seen[w] += obs
    # every worker's frames, in order: none skipped, none handed out twice
    for obs in seen.values():
        assert obs == list(range(1, len(obs) + 1))
    assert sum(map(len, seen.values())) == 4 * len(got)
    collector.shutdown()


@pytest.mark.parametrize("cls", [MultiSyncDataCollector, MultiaSyncDataCollector])
def test_a_stopped_worker_times_out_naming_it(cls):
    collector = cls([CountingEnv] * 2, None, frames_per_batch=4, total_frames=-1, timeout=0.5)
    it = iter(collector)
    next(it)
    procs = list(collector._procs)
    os.kill(procs[0].pid, signal.SIGSTOP)
    try:
        # (MultiaSync: the other worker goes on delivering meanwhile)
        with pytest.raises(TimeoutError, match=r"worker 0 did not answer 'collect' within 0.5 s \(it is stopped"):
            _take_until_it_raises(it)
        with pytest.raises(TimeoutError, match=r"worker 0 did not answer 'collect' within 0.5 s twice in a row"):
            _take_until_it_raises(it)
        with pytest.raises(RuntimeError, match="cannot be used any more: worker 0 did not answer"):
            next(it)
        collector.shutdown()
        assert not any(p.is_alive() for p in procs)
    finally:
        if procs[0].is_alive():
            os.kill(procs[0].pid, signal.SIGCONT)


@pytest.mark.parametrize("cls", [MultiSyncDataCollector, MultiaSyncDataCollector])
def test_a_killed_worker_is_reported_then_the_collector_refuses_further_use(cls):
    collector = cls([CountingEnv] * 2, None, frames_per_batch=4, total_frames=-1)
    it = iter(collector)
    next(it)
    os.kill(collector._procs[1].pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match=r"worker 1 died while 'collect' \(exit code -9\)"):
        _take_until_it_raises(it)
    with pytest.raises(RuntimeError, match="cannot be used any more: worker 1 died"):
        next(it)
    collector.shutdown()
    assert not any(p.is_alive() for p in collector._procs)


@pytest.mark.parametrize("cls", [MultiSyncDataCollector, MultiaSyncDataCollector])
def test_a_shut_down_collector_says_so(cls):
    collector = cls([CountingEnv] * 2, None, frames_per_batch=4, total_frames=-1)
    it = iter(collector)
    next(it)
    collector.shutdown()
    collector.shutdown()  # idempotent
    for use in (lambda: next(it), lambda: next(iter(collector)), lambda: collector.set_seed(0)):
        with pytest.raises(RuntimeError, match=f"{cls.func.__name__} was shut down"):
            use()


@pytest.mark.parametrize("cls", [MultiSyncDataCollector, MultiaSyncDataCollector])
def test_workers_may_run_a_parallel_env(cls, descendants):
    make = functools.partial(ParallelEnv, 2, functools.partial(CountingEnv, max_steps=100), mp_start_method="fork")
    before = set(descendants())
    collector = cls([make] * 2, None, frames_per_batch=8, total_frames=16)
    assert len(set(descendants()) - before) == 6  # 2 collector workers, each with 2 env workers
    batches = list(collector)
    assert sum(b.numel() for b in batches) == 16
    for batch in batches:
        assert batch.shape[-2] == 2  # each worker's ParallelEnv has batch size [2]
        obs = batch["next", "observation"].squeeze(-1)
        assert ((obs[..., 1:] - obs[..., :-1]) == 1).all()
    collector.shutdown()
    assert set(descendants()) - before == set()


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
