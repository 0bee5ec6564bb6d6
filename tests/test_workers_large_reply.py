"""Worker replies larger than a socket's buffer arrive whole (a worker blocks until they are read)."""

from __future__ import annotations

import torch

from tdrl._workers import WorkerPool, report_start, serve, setup_worker
from tdrl.envs import ParallelEnv
from tdrl.testing import ContinuousActionMock


def _echo_big(idx, sock, inherited, payload, parent_pid):
    setup_worker(inherited)
    report_start(sock, idx, lambda: None, lambda _: bytes(payload))  # a start report of `payload` bytes
    serve(sock, parent_pid, lambda cmd, n: torch.arange(n))


def test_a_start_report_and_replies_many_times_a_socket_buffer_arrive_whole():
    pool = WorkerPool("Big", _echo_big, [3_000_000, 10])
    try:
        reports = pool.started(60.0)
        assert [len(r) for r in reports] == [3_000_000, 10]
        seqs = [(0, pool.send(0, "arange", 1_000_000)), (1, pool.send(1, "arange", 5))]
        big, small = pool.results(seqs)
        assert torch.equal(big, torch.arange(1_000_000))
        assert torch.equal(small, torch.arange(5))
        # and the pool goes on with small replies after a large one
        assert torch.equal(pool.results([(0, pool.send(0, "arange", 3))])[0], torch.arange(3))
    finally:
        pool.close()


def test_parallel_env_whose_specs_outgrow_the_socket_buffer_starts():
    # an observation of 300k bounded entries: its spec alone pickles to megabytes (pixel envs' do too)
    env = ParallelEnv(2, ContinuousActionMock, create_env_kwargs={"obs_dim": 300_000, "action_dim": 1})
    try:
        td = env.rollout(2)
        assert td["next", "observation"].shape == (2, 2, 300_000)
    finally:
        env.close()
